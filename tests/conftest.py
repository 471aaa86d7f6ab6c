"""Test-session settings: a persistent XLA compilation cache shared by every test process.

Many tests compile the same tiny networks (in-process and in subprocesses); the cache turns
the repeats into look-ups. Subprocesses inherit it through the environment variables.
"""

import os
import pathlib
import tempfile

_CACHE = os.path.join(tempfile.gettempdir(), "genimg-test-jax-cache")
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", _CACHE)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.2")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")
# Tests never reach the network: the download path is tested against file:// mirrors.
os.environ["GENIMG_DOWNLOAD"] = "0"

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def classifier_run(tmp_path_factory):
    """A 4-step run of the classifier experiment's tiny preset (8x8 digits), shared by the
    tests of one worker that need a domain extractor."""
    from experiments import classifier
    from genimg.train.loop import train_from_config

    workdir = tmp_path_factory.mktemp("classifier_run")
    train_from_config(classifier.get_config("tiny"), workdir)
    return workdir


@pytest.fixture(scope="session")
def gan_run(tmp_path_factory):
    """A 4-step run of the DCGAN experiment's tiny preset on the 8x8 digits."""
    from experiments import dcgan
    from genimg.train.loop import train_from_config

    workdir = tmp_path_factory.mktemp("gan_run")
    config = dcgan.get_config("tiny")
    config.data.source = "digits"
    train_from_config(config, workdir)
    return workdir


FASHION_DIR = pathlib.Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture
def fashion_dir():
    """Debian's Fashion-MNIST IDX files; skipped when absent unless GENIMG_REQUIRE_REAL_DATA
    is set (CI sets it, so the real-data tests cannot silently skip there)."""
    present = all(
        (FASHION_DIR / f"{p}-{k}-idx{d}-ubyte.gz").is_file()
        for p in ("train", "t10k")
        for k, d in (("images", 3), ("labels", 1))
    )
    if not present:
        if os.environ.get("GENIMG_REQUIRE_REAL_DATA"):
            pytest.fail(f"GENIMG_REQUIRE_REAL_DATA is set but {FASHION_DIR} lacks the IDX files")
        pytest.skip(f"{FASHION_DIR} not installed (apt-get install dataset-fashion-mnist)")
    return FASHION_DIR
