"""Test-session settings: a persistent XLA compilation cache shared by every test process.

Many tests compile the same tiny networks (in-process and in subprocesses); the cache turns
the repeats into look-ups. Subprocesses inherit it through the environment variables.
"""

import os
import tempfile

_CACHE = os.path.join(tempfile.gettempdir(), "genimg-test-jax-cache")
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", _CACHE)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.2")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")
# Tests never reach the network: the download path is tested against file:// mirrors.
os.environ["GENIMG_DOWNLOAD"] = "0"
