"""Builds the optional oneDNN convolution extension, `genimg/ops/_onednn_conv*.so`.

Everything else about the package lives in pyproject.toml. The extension is compiled against
oneDNN's headers (`onednn-devel-cpu-gomp`) and the XLA FFI headers shipped in `jaxlib`, and is
not linked against libdnnl: genimg/ops/onednn.py loads libdnnl.so.3 of the `onednn-cpu-gomp`
wheel (extra `onednn`) with RTLD_GLOBAL first. It is optional: without a C++ compiler or the
headers the install still succeeds and `genimg.ops.onednn.unavailable_reason()` says why
the backend is missing.

Headers are looked up in `$GENIMG_DNNL_INCLUDE`, then the build environment
(`onednn-devel-cpu-gomp` from [build-system].requires, or `onednn-devel`), then this
interpreter's prefix.
"""

import importlib.util
import os
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext


def _dnnl_include() -> str | None:
    candidates = [os.environ.get("GENIMG_DNNL_INCLUDE", "")]
    try:
        from importlib import metadata

        for dist in ("onednn-devel-cpu-gomp", "onednn-devel"):
            try:
                files = metadata.distribution(dist).files or ()
            except metadata.PackageNotFoundError:
                continue
            for f in files:
                if f.name == "dnnl.hpp":  # <root>/include/oneapi/dnnl/dnnl.hpp
                    candidates.append(str(f.locate().resolve().parents[2]))
    except Exception:  # metadata unreadable
        pass
    candidates.append(os.path.join(sys.prefix, "include"))
    for path in candidates:
        if path and os.path.exists(os.path.join(path, "oneapi", "dnnl", "dnnl.hpp")):
            return path
    return None


def _ffi_include() -> str | None:
    spec = importlib.util.find_spec("jaxlib")
    for root in (spec and spec.submodule_search_locations) or ():
        path = os.path.join(root, "include")
        if os.path.exists(os.path.join(path, "xla", "ffi", "api", "ffi.h")):
            return path
    return None


class BuildExt(build_ext):
    """Adds the header paths found at build time; skips (never fails) when they are missing."""

    def build_extensions(self):
        dnnl, ffi = _dnnl_include(), _ffi_include()
        if dnnl is None or ffi is None:
            missing = "oneDNN (onednn-devel-cpu-gomp)" if dnnl is None else "XLA FFI (jaxlib)"
            print(f"genimg: skipping the oneDNN conv extension: {missing} headers not found")
            return
        # setuptools compiles C++ with the C flags Python was built with; drop the C-only one.
        if "-Wstrict-prototypes" in self.compiler.compiler_so:
            self.compiler.compiler_so.remove("-Wstrict-prototypes")
        for ext in self.extensions:  # -isystem: no warnings from third-party headers
            ext.extra_compile_args += ["-isystem", dnnl, "-isystem", ffi]
        super().build_extensions()


setup(
    ext_modules=[
        Extension(
            "genimg.ops._onednn_conv",
            sources=["genimg/ops/onednn_conv.cc"],
            language="c++",
            extra_compile_args=["-std=c++17", "-O2", "-Wall"],
            optional=True,  # a failed build warns and leaves the backend unavailable
        )
    ],
    cmdclass={"build_ext": BuildExt},
)
