"""Tests for genimg.platform.configure_cpu_defaults, each in a fresh interpreter.

The settings only matter before jax initialises its backends, so every case runs in its own
subprocess with a controlled environment.
"""

import json
import os
import subprocess
import sys
import textwrap

import pytest

from genimg import platform

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# mallinfo2 (glibc >= 2.33): ten size_t fields; hblks counts live mmap-ed chunks.
_MALLINFO = """
import ctypes
class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd",
                "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]
libc = ctypes.CDLL(None)
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
libc.mallinfo2.restype = MallInfo2
def mmapped_chunks_for_big_malloc():
    before = libc.mallinfo2().hblks
    p = libc.malloc(64 << 20)
    n = libc.mallinfo2().hblks - before
    libc.free(p)
    return n
"""


def _run(code: str, **env_overrides) -> dict:
    """Run `code` in a fresh python; it must print one JSON line last."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k != "XLA_FLAGS" and not k.startswith("MALLOC_") and k != platform.DISABLE_ENV
    }
    env.pop("GLIBC_TUNABLES", None)
    env["PYTHONPATH"] = _REPO + os.pathsep + env.get("PYTHONPATH", "")
    env.update(env_overrides)
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


_CONFIGURE_TWICE = """
    import json, os
    from genimg.platform import configure_cpu_defaults
    first, second = configure_cpu_defaults(), configure_cpu_defaults()
    print(json.dumps({"first": first, "second": second, "flags": os.environ.get("XLA_FLAGS")}))
"""


def test_flag_appended_once_and_jax_accepts_it():
    # XLA aborts on unknown flags, so also compile and run a conv with the flag in force.
    out = _run(
        _CONFIGURE_TWICE.replace(
            "print(",
            "import jax, jax.numpy as jnp\n"
            "    y = jax.jit(lambda x, w: jax.lax.conv(x, w, (1, 1), 'SAME'))(\n"
            "        jnp.ones((1, 2, 5, 5)), jnp.ones((3, 2, 3, 3)))\n"
            "    center = float(y[0, 0, 2, 2])\n"
            "    print(",
        ).replace('"flags":', '"center": center, "flags":'),
        XLA_FLAGS="--xla_force_host_platform_device_count=1",
    )
    assert out["flags"] == f"--xla_force_host_platform_device_count=1 {platform.YNN_FLAG}"
    assert out["flags"].count(platform.YNN_FLAG_NAME) == 1
    assert out["first"]["xla_flags"] == out["second"]["xla_flags"] == "appended"
    assert out["center"] == 18.0  # 2 channels x 3x3 ones


def test_flag_moves_only_convolutions_off_ynnpack():
    # XLA's default gives dots, reductions and convolutions to YNNPACK; the flag must leave
    # the dots and reductions there (taking reductions away slowed the MLP GAN by ~15%).
    code = """
        import json
        from genimg.platform import configure_cpu_defaults
        configure_cpu_defaults()
        import jax, jax.numpy as jnp
        def ynn(f, *args):
            return jax.jit(f).lower(*args).compile().as_text().count("__ynn_fusion")
        print(json.dumps({
            "conv": ynn(lambda x, w: jax.lax.conv(x, w, (1, 1), "SAME"),
                        jnp.ones((4, 16, 16, 16)), jnp.ones((32, 16, 3, 3))),
            "reduce": ynn(lambda x: jnp.sum(x * x), jnp.ones((512, 512))),
            "dot": ynn(lambda a, b: a @ b, jnp.ones((256, 256)), jnp.ones((256, 256))),
        }))
    """
    with_flag, without = _run(code), _run(code, GENIMG_NO_CPU_DEFAULTS="1")
    assert without["conv"] > 0, "this jaxlib no longer runs convs on YNNPACK: revisit the flag"
    assert with_flag["conv"] == 0
    assert with_flag["reduce"] == without["reduce"] > 0
    assert with_flag["dot"] == without["dot"] > 0


def test_malloc_left_alone_for_accelerator_runs():
    out = _run(_CONFIGURE_TWICE, JAX_PLATFORMS="cuda,cpu")
    assert out["first"]["malloc"] == "accelerator"
    assert _run(_CONFIGURE_TWICE, JAX_PLATFORMS="cpu")["first"]["malloc"] == "applied"


def test_old_jaxlib_gets_no_flag(monkeypatch):
    # jaxlib < 0.8.2 has no YNNPACK convolutions, and XLA aborts on flags it does not know.
    import importlib.metadata

    monkeypatch.setattr(importlib.metadata, "version", lambda name: "0.8.1")
    monkeypatch.delenv("XLA_FLAGS", raising=False)
    monkeypatch.delenv(platform.DISABLE_ENV, raising=False)
    assert platform._configure_xla_flags() == "unsupported"
    assert "XLA_FLAGS" not in os.environ
    monkeypatch.setattr(importlib.metadata, "version", lambda name: "0.10.2")
    assert platform._jaxlib_has_ynn_convs()


def test_user_flag_is_respected():
    user = f"--{platform.YNN_FLAG_NAME}=default"
    out = _run(_CONFIGURE_TWICE, XLA_FLAGS=user)
    assert out["flags"] == user
    assert out["first"]["xla_flags"] == "kept"


def test_opt_out():
    out = _run(_CONFIGURE_TWICE, GENIMG_NO_CPU_DEFAULTS="1")
    assert out["flags"] is None
    assert out["first"] == {"xla_flags": "disabled", "malloc": "disabled"}


def test_user_malloc_env_is_respected():
    out = _run(_CONFIGURE_TWICE, MALLOC_ARENA_MAX="2")
    assert out["first"]["malloc"] == "kept"
    assert out["first"]["xla_flags"] == "appended"


def test_late_call_warns():
    out = _run("""
        import json, warnings
        import jax
        jax.devices()
        from genimg.platform import configure_cpu_defaults
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            configure_cpu_defaults()
        print(json.dumps({"warned": any("after jax initialised" in str(x.message) for x in w)}))
    """)
    assert out["warned"]


@pytest.mark.skipif(not hasattr(os, "confstr"), reason="needs glibc")
def test_malloc_no_longer_mmaps_big_buffers():
    try:
        if not (os.confstr("CS_GNU_LIBC_VERSION") or "").startswith("glibc 2."):
            pytest.skip("not glibc")
    except ValueError:
        pytest.skip("not glibc")
    code = (
        _MALLINFO
        + """
import json
from genimg.platform import configure_cpu_defaults
default = mmapped_chunks_for_big_malloc()
status = configure_cpu_defaults()["malloc"]
print(json.dumps({"default": default, "status": status,
                  "configured": mmapped_chunks_for_big_malloc()}))
"""
    )
    out = _run(code)
    assert out["default"] == 1  # glibc's default: a 64 MB request is its own mmap
    assert out["status"] == "applied"
    assert out["configured"] == 0  # now served from the (never trimmed) heap
