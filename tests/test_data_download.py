"""Downloading IDX datasets: checked, atomic, found again by load(); tested on file:// mirrors."""

import gzip
import hashlib

import numpy as np
import pytest

from genimg.data import download, load
from genimg.data.sources import DataError


def _idx(array: np.ndarray) -> bytes:
    dims = b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return bytes([0, 0, 8, array.ndim]) + dims + array.astype(np.uint8).tobytes()


@pytest.fixture
def mirror(tmp_path, monkeypatch):
    """A fake 'fashion_mnist' on a file:// mirror: 6 train and 4 test images of 28x28."""
    rng = np.random.default_rng(0)
    served = tmp_path / "mirror"
    served.mkdir()
    files = {}
    for prefix, n in (("train", 6), ("t10k", 4)):
        for kind, array in (
            ("images-idx3", rng.integers(0, 256, (n, 28, 28))),
            ("labels-idx1", rng.integers(0, 10, (n,))),
        ):
            raw = _idx(array)
            name = f"{prefix}-{kind}-ubyte.gz"
            (served / name).write_bytes(gzip.compress(raw))
            files[name] = (len(raw), hashlib.sha256(raw).hexdigest())
    entry = (("file:///nonexistent-mirror/", served.as_uri() + "/"), files)
    monkeypatch.setitem(download.IDX_DATASETS, "fashion_mnist", entry)
    monkeypatch.setenv("GENIMG_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("GENIMG_DOWNLOAD", "1")
    monkeypatch.setattr("genimg.data.sources._SYSTEM_COPIES", {})  # ignore a Debian copy
    return served, files


def test_download_then_load_from_the_cache(mirror, tmp_path, monkeypatch):
    data = load("fashion_mnist", "test")
    assert data.images.shape == (4, 28, 28, 1) and "downloaded" in data.description
    assert sorted(p.name for p in (tmp_path / "data" / "fashion_mnist").iterdir()) == sorted(
        download.IDX_FILES
    )
    monkeypatch.setenv("GENIMG_DOWNLOAD", "0")  # second time: the cached copy, no download
    again = load("fashion_mnist", "train")
    assert again.images.shape == (6, 28, 28, 1) and "downloaded" not in again.description


def test_corrupt_download_leaves_nothing_behind(mirror, tmp_path, monkeypatch):
    served, files = mirror
    (served / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(b"\0\0\x08\x01tampered"))
    with pytest.raises(download.DownloadError, match="t10k-labels-idx1-ubyte.gz"):
        download.download_idx_dataset("fashion_mnist", tmp_path / "dest")
    assert not (tmp_path / "dest" / "t10k-labels-idx1-ubyte.gz").exists()
    assert not list((tmp_path / "dest").glob("*.part"))


def test_offline_error_names_the_alternatives(mirror, monkeypatch, tmp_path):
    served, _ = mirror
    for f in served.iterdir():
        f.unlink()
    monkeypatch.setenv("GENIMG_TFDS_DIR", str(tmp_path / "no_tfds"))
    with pytest.raises(DataError) as err:
        load("fashion_mnist")
    message = str(err.value)
    assert "\n" not in message and "download failed" in message and "idx:DIR" in message
