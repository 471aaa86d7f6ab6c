"""Builds the optional oneDNN convolution extension, `genimg/ops/_onednn_conv*.so`.

Everything else about the package lives in pyproject.toml. The extension is compiled against
oneDNN's headers (`onednn-devel-cpu-gomp`) and the XLA FFI headers shipped in `jaxlib`, and is
not linked against libdnnl: genimg/ops/onednn.py loads libdnnl.so.3 of the `onednn-cpu-gomp`
wheel (extra `onednn`) with RTLD_GLOBAL first. It is optional: the extension is declared only
when both headers are found, so elsewhere (macOS, Windows, Linux aarch64, where oneDNN has no
wheels and pyproject.toml's build requirements leave them out) the package builds as a pure
Python wheel; without a C++ compiler the build of the extension warns and the install still
succeeds. `genimg.ops.onednn.unavailable_reason()` then says why the backend is missing.

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
    """Compiles C++ without the C-only flag that setuptools takes from Python's C flags."""

    def build_extensions(self):
        if "-Wstrict-prototypes" in self.compiler.compiler_so:
            self.compiler.compiler_so.remove("-Wstrict-prototypes")
        super().build_extensions()


def _extensions() -> list[Extension]:
    dnnl, ffi = _dnnl_include(), _ffi_include()
    if dnnl is None or ffi is None:
        missing = "oneDNN (onednn-devel-cpu-gomp)" if dnnl is None else "XLA FFI (jaxlib)"
        print(f"genimg: no oneDNN conv extension ({missing} headers not found): pure Python")
        return []
    return [
        Extension(
            "genimg.ops._onednn_conv",
            sources=["genimg/ops/onednn_conv.cc"],
            language="c++",
            # -isystem: no warnings from third-party headers
            extra_compile_args=["-std=c++17", "-O2", "-Wall", "-isystem", dnnl, "-isystem", ffi],
            optional=True,  # a failed build warns and leaves the backend unavailable
        )
    ]


setup(ext_modules=_extensions(), cmdclass={"build_ext": BuildExt})
