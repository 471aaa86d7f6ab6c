"""The golden reference outputs in tests/data/ are current: where torch and pytorch-fid are
installed, tools/make_reference_goldens.py's computations are rerun and compared with the stored
files (skipped without torch; CI installs it and sets GENIMG_REQUIRE_REFERENCE=1, so there they
cannot skip)."""

import numpy as np
import pytest

from tests import reference as ref
from tools import make_reference_goldens as goldens


@pytest.fixture
def reference():
    ref.require("torch")
    ref.require("pytorch_fid.inception")


@pytest.mark.usefixtures("reference")
def test_conv_transpose_goldens_are_current():
    stored = goldens.load(goldens.CONV_TRANSPOSE_FILE)
    assert goldens.compare(goldens.conv_transpose_reference(), stored) == []


@pytest.mark.usefixtures("reference")
def test_resize_goldens_are_current():
    stored = goldens.load(goldens.RESIZE_FILE)
    assert goldens.compare(goldens.resize_reference(), stored) == []


@pytest.mark.usefixtures("reference")
def test_inception_goldens_are_current():
    assert goldens.check_inception() == []


def test_compare_finds_a_stale_file():
    """The check can fail: a moved output, a missing key, a changed shape."""
    stored = goldens.load(goldens.CONV_TRANSPOSE_FILE)
    key = goldens.conv_transpose_key(goldens.CONV_TRANSPOSE_CONFIGS[0])
    moved = dict(stored, **{key: stored[key] * (1 + 1e-3)})
    assert any(key in p for p in goldens.compare(moved, stored))
    fewer = {k: v for k, v in stored.items() if k != key}
    assert goldens.compare(fewer, stored) != []
    reshaped = dict(stored, **{key: stored[key][:1]})
    assert goldens.compare(reshaped, stored) != []
    assert goldens.compare({"bn/x": np.float16([1.0])}, {"bn/x": np.float16([1.001])}) == []
