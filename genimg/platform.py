"""Process-level defaults that make XLA:CPU training faster without changing any math.

Call `configure_cpu_defaults()` first thing in an entry point (experiment `main`, benchmark),
before anything initialises jax's backends (the first `jax.devices()`, array or jit call;
importing jax is fine). It applies two settings, each skipped when the user chose otherwise:

1. `--xla_cpu_experimental_ynn_fusion_type=-individual_convolution` is appended to `XLA_FLAGS`.
   XLA:CPU's default hands dots, reductions and convolutions to YNNPACK; the flag takes only the
   convolutions away (they go back to Eigen, which is faster for the conv shapes of our
   generators and discriminators) and leaves dots and reductions where they are. (The older
   recipe `=individual_dot` also took the reductions off YNNPACK, which slowed the MLP GAN
   step.) Measurements: benchmarks/README.md, "XLA on CPU: what the code relies on". It is
   an `xla_cpu_` flag: GPU and TPU compilation ignore it. Skipped if `XLA_FLAGS` already
   names the flag (any value), and with jaxlib older than 0.8.2, which has no YNNPACK
   convolutions (and would abort on a flag it does not know).
2. glibc malloc is told never to return large buffers to the kernel (`mallopt`: M_MMAP_MAX=0,
   M_TRIM_THRESHOLD=2 GiB, M_ARENA_MAX=1), the in-process form of
   `MALLOC_ARENA_MAX=1 MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=...`. Otherwise every
   XLA:CPU buffer of a few MB or more is a fresh `mmap`, page-faulted on each step. The
   cost: the process keeps its peak heap size. Skipped if any `MALLOC_*` variable or a
   `glibc.malloc` tunable is set, on non-glibc systems, and when jax is going to run on an
   accelerator (`JAX_PLATFORMS` names a non-CPU platform first, or, with `JAX_PLATFORMS`
   unset, a GPU/TPU plugin such as `jax-cuda12-plugin` or `libtpu` is installed): the
   setting only pays off where XLA:CPU runs the step.

`GENIMG_NO_CPU_DEFAULTS=1` turns both off.
"""

from __future__ import annotations

import ctypes
import os
import sys
import warnings

YNN_FLAG_NAME = "xla_cpu_experimental_ynn_fusion_type"
YNN_FLAG = f"--{YNN_FLAG_NAME}=-individual_convolution"
YNN_MIN_JAXLIB = (0, 8, 2)  # first jaxlib whose YNNPACK runs convolutions
DISABLE_ENV = "GENIMG_NO_CPU_DEFAULTS"

# From glibc's <malloc.h>.
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
M_ARENA_MAX = -8
TRIM_THRESHOLD = 2**31 - 1  # mallopt takes an int: 2 GiB, i.e. "never trim" in practice

_flag_appended = False
_malloc_applied = False


def _backends_initialized() -> bool:
    """True once jax has created its backends (after which XLA_FLAGS are no longer read)."""
    if "jax" not in sys.modules:
        return False
    try:
        from jax._src import xla_bridge

        return bool(xla_bridge.backends_are_initialized())
    except (ImportError, AttributeError):  # private API; assume the best
        return False


def _jaxlib_has_ynn_convs() -> bool:
    """True if the installed jaxlib is new enough to know the YNNPACK fusion-type flag."""
    try:
        from importlib.metadata import version

        release = version("jaxlib").split("+")[0].split(".")
        return tuple(int("".join(c for c in p if c.isdigit()) or 0) for p in release[:3]) >= (
            YNN_MIN_JAXLIB
        )
    except Exception:  # noqa: BLE001  (no jaxlib metadata: leave XLA_FLAGS alone)
        return False


def _configure_xla_flags() -> str:
    global _flag_appended
    flags = os.environ.get("XLA_FLAGS", "")
    if not _jaxlib_has_ynn_convs():
        return "unsupported"
    if YNN_FLAG_NAME in flags:
        return "appended" if _flag_appended and YNN_FLAG in flags else "kept"
    if _backends_initialized():
        warnings.warn(
            "configure_cpu_defaults() was called after jax initialised its backends; "
            f"{YNN_FLAG} will not take effect in this process",
            stacklevel=3,
        )
    os.environ["XLA_FLAGS"] = f"{flags} {YNN_FLAG}".strip()
    _flag_appended = True
    return "appended"


def _user_set_malloc() -> bool:
    return any(k.startswith("MALLOC_") for k in os.environ) or "glibc.malloc" in os.environ.get(
        "GLIBC_TUNABLES", ""
    )


def _accelerator_expected() -> bool:
    """True if jax will pick a GPU/TPU: by `JAX_PLATFORMS`, else by an installed plugin."""
    platforms = os.environ.get("JAX_PLATFORMS", "").strip()
    if platforms:
        return platforms.split(",")[0].strip().lower() != "cpu"
    import importlib.metadata
    import importlib.util

    try:
        if importlib.util.find_spec("jax_plugins") or importlib.util.find_spec("libtpu"):
            return True
        return bool(importlib.metadata.entry_points(group="jax_plugins"))
    except (ImportError, ValueError):
        return False


def _configure_malloc() -> str:
    global _malloc_applied
    if _malloc_applied:
        return "applied"
    if _user_set_malloc():
        return "kept"
    if _accelerator_expected():
        return "accelerator"
    try:
        glibc = os.confstr("CS_GNU_LIBC_VERSION")  # e.g. "glibc 2.36"; None or error elsewhere
        mallopt = ctypes.CDLL(None).mallopt if glibc else None
    except (ValueError, OSError, AttributeError):
        mallopt = None
    if mallopt is None:
        return "unsupported"
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # M_ARENA_MAX first: it only limits arenas created from now on.
    ok = all(
        mallopt(param, value) == 1
        for param, value in ((M_ARENA_MAX, 1), (M_MMAP_MAX, 0), (M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    )
    _malloc_applied = ok
    return "applied" if ok else "failed"


def configure_cpu_defaults() -> dict[str, str]:
    """Apply the XLA:CPU flag and the malloc settings (see the module docstring).

    Idempotent. Returns what happened to each, for logging: `{"xla_flags": s, "malloc": s}`
    with s in "appended"/"applied" (done now or earlier), "kept" (the user's setting is left
    alone), "disabled" (`GENIMG_NO_CPU_DEFAULTS=1`), "accelerator" (malloc only: jax will run on
    a GPU/TPU), "unsupported" (not glibc, or jaxlib too old for the flag) or "failed".
    """
    if os.environ.get(DISABLE_ENV, "") not in ("", "0"):
        return {"xla_flags": "disabled", "malloc": "disabled"}
    return {"xla_flags": _configure_xla_flags(), "malloc": _configure_malloc()}


# --- several processes (jax.distributed) ------------------------------------------------------

DISTRIBUTED_MODES = ("auto", "on", "off")
# Set by hand (or by a launcher) on clusters jax does not detect by itself.
COORDINATOR_ENV = "JAX_COORDINATOR_ADDRESS"
NUM_PROCESSES_ENV = "JAX_NUM_PROCESSES"
PROCESS_ID_ENV = "JAX_PROCESS_ID"


def initialize_distributed(mode: str = "auto", timeout_s: int = 300) -> bool:
    """Join the other processes of a multi-process run; True if this is one.

    ``mode``: "auto" joins when ``JAX_COORDINATOR_ADDRESS`` is set (with ``JAX_NUM_PROCESSES``
    and ``JAX_PROCESS_ID``, as a launcher or the user sets them); "on" always calls
    ``jax.distributed.initialize()``, which finds the coordinator itself on TPU pod slices,
    SLURM and Open MPI; "off" never joins. ``timeout_s`` bounds the wait for the other
    processes at start-up and the heartbeat after which a silent peer ends the run (so a
    crashed process cannot leave the others hanging). On CPU the collectives between
    processes use gloo. Call it before anything initialises jax's backends. Idempotent.
    """
    if mode not in DISTRIBUTED_MODES:
        raise ValueError(
            f"unknown train.distributed {mode!r}; expected one of {', '.join(DISTRIBUTED_MODES)}"
        )
    import jax

    if jax.distributed.is_initialized():
        return True
    address = os.environ.get(COORDINATOR_ENV)
    if mode == "off" or (mode == "auto" and not address):
        return False
    kwargs = {}
    for key, env in (("num_processes", NUM_PROCESSES_ENV), ("process_id", PROCESS_ID_ENV)):
        if os.environ.get(env):
            try:
                kwargs[key] = int(os.environ[env])
            except ValueError:
                raise ValueError(f"{env}={os.environ[env]!r} is not an integer") from None
    if _backends_initialized():
        raise RuntimeError(
            "jax.distributed must be initialised before jax's backends (the first array, jit "
            "or jax.devices() call); initialise it first thing in the entry point"
        )
    if jax.config.jax_cpu_collectives_implementation is None:
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
        address,
        initialization_timeout=int(timeout_s),
        heartbeat_timeout_seconds=max(int(timeout_s) // 3, 10),
        **kwargs,
    )
    return True


def is_primary() -> bool:
    """Whether this process writes the run's files (process 0; always true on one process)."""
    import jax

    return jax.process_index() == 0


def describe_devices() -> str:
    """One line: the backend, the devices and (with several processes) this process's rank,
    e.g. ``backend cpu: 4 devices (2 here: TFRT_CPU_0, TFRT_CPU_1), process 0 of 2``."""
    import jax

    local = jax.local_devices()
    kinds = sorted({d.device_kind for d in local})
    names = ", ".join(str(d) for d in local[:4]) + (", ..." if len(local) > 4 else "")
    line = f"backend {jax.default_backend()} ({'/'.join(kinds)}): "
    if jax.process_count() > 1:
        line += f"{jax.device_count()} devices ({len(local)} here: {names}), "
        line += f"process {jax.process_index()} of {jax.process_count()}"
    else:
        line += f"{len(local)} device{'s' if len(local) != 1 else ''} ({names})"
    return line
