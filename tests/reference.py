"""The PyTorch reference in the tests: optional where they run, required in CI.

The tests compare genimg against golden outputs of the reference computations
(`tests/data/reference_*.npz`, written by tools/make_reference_goldens.py), so they need no
torch. The few tests that run the reference itself (the golden files are current, the `.pth`
weight conversion, the PyTorch peer of the benchmarks) skip when torch is missing, and fail
instead when GENIMG_REQUIRE_REFERENCE=1 (CI installs torch and sets it).
"""

import importlib
import importlib.util
import os

import pytest

ENV = "GENIMG_REQUIRE_REFERENCE"
INSTALL = "pip install -e '.[reference]'"


def _missing(module: str, why: str):
    if os.environ.get(ENV, "") == "1":
        pytest.fail(f"{ENV}=1 but {module} {why} ({INSTALL})")
    pytest.skip(f"{module} {why} ({INSTALL})")


def require(module: str):
    """Imports a reference-only module (torch, pytorch_fid.inception, ...), else skips the
    test, or fails it under GENIMG_REQUIRE_REFERENCE=1."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        _missing(module, f"cannot be imported: {err}")


def available(module: str = "torch") -> bool:
    """Whether `module` is installed, for tests that check more when it is; under
    GENIMG_REQUIRE_REFERENCE=1 a missing module fails the test instead."""
    if importlib.util.find_spec(module) is not None:
        return True
    if os.environ.get(ENV, "") == "1":
        pytest.fail(f"{ENV}=1 but {module} is not installed ({INSTALL})")
    return False
