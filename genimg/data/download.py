"""Fetching the small IDX datasets (Fashion-MNIST, MNIST, KMNIST) for users who are online.

The four ``*-idx?-ubyte.gz`` files go to ``$GENIMG_DATA_DIR/<name>/`` (default
``~/.cache/genimg/data/<name>/``), where ``genimg.data.load("<name>")`` finds them next time.
Each file is written to a temporary name and renamed only after it decompresses to the
expected size (and SHA-256 of the decompressed bytes, where known), so an interrupted or
corrupted download never leaves a file behind. ``GENIMG_DOWNLOAD=0`` turns downloads off.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import pathlib
import urllib.request

IDX_FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)

# name -> (mirrors tried in order, {file: (decompressed bytes, sha256 of them or None)}).
IDX_DATASETS: dict[str, tuple[tuple[str, ...], dict[str, tuple[int, str | None]]]] = {
    "fashion_mnist": (
        (
            "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
            "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
        ),
        {
            "train-images-idx3-ubyte.gz": (
                47040016,
                "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
            ),
            "train-labels-idx1-ubyte.gz": (
                60008,
                "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
            ),
            "t10k-images-idx3-ubyte.gz": (
                7840016,
                "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
            ),
            "t10k-labels-idx1-ubyte.gz": (
                10008,
                "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
            ),
        },
    ),
    "mnist": (
        (
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
            "https://storage.googleapis.com/cvdf-datasets/mnist/",
        ),
        {
            "train-images-idx3-ubyte.gz": (47040016, None),
            "train-labels-idx1-ubyte.gz": (60008, None),
            "t10k-images-idx3-ubyte.gz": (7840016, None),
            "t10k-labels-idx1-ubyte.gz": (10008, None),
        },
    ),
    "kmnist": (
        ("http://codh.rois.ac.jp/kmnist/dataset/kmnist/",),
        {
            "train-images-idx3-ubyte.gz": (47040016, None),
            "train-labels-idx1-ubyte.gz": (60008, None),
            "t10k-images-idx3-ubyte.gz": (7840016, None),
            "t10k-labels-idx1-ubyte.gz": (10008, None),
        },
    ),
}


class DownloadError(OSError):
    """A download failed or gave unexpected bytes; the message is one line."""


def data_dir() -> pathlib.Path:
    """Where downloaded datasets live: ``$GENIMG_DATA_DIR`` or ``~/.cache/genimg/data``."""
    root = os.environ.get("GENIMG_DATA_DIR") or os.path.join("~", ".cache", "genimg", "data")
    return pathlib.Path(root).expanduser()


def downloads_enabled() -> bool:
    return os.environ.get("GENIMG_DOWNLOAD", "1") != "0"


def _check(data: bytes, name: str, size: int, sha256: str | None) -> None:
    try:
        raw = gzip.decompress(data)
    except (OSError, EOFError) as e:
        raise DownloadError(f"downloaded {name} is not a valid gzip file ({e})") from e
    if len(raw) != size:
        raise DownloadError(f"downloaded {name} has {len(raw)} bytes, expected {size}")
    if sha256 is not None and hashlib.sha256(raw).hexdigest() != sha256:
        raise DownloadError(f"downloaded {name} has the wrong SHA-256 (corrupted or tampered)")


def download_idx_dataset(name: str, dest: pathlib.Path | None = None, timeout: float = 60.0):
    """Download dataset ``name`` into ``dest`` (default ``data_dir() / name``); returns dest."""
    mirrors, files = IDX_DATASETS[name]
    dest = pathlib.Path(dest) if dest is not None else data_dir() / name
    dest.mkdir(parents=True, exist_ok=True)
    for fname in IDX_FILES:
        target = dest / fname
        if target.is_file():
            continue
        size, sha256 = files[fname]
        errors = []
        for mirror in mirrors:
            try:
                with urllib.request.urlopen(mirror + fname, timeout=timeout) as response:
                    data = response.read()
                _check(data, fname, size, sha256)
                break
            except (OSError, ValueError) as e:  # URLError, timeouts, DownloadError
                errors.append(f"{mirror + fname}: {e}")
        else:
            raise DownloadError(f"could not download {name}: {'; '.join(errors)}")
        tmp = target.with_name(fname + ".part")
        tmp.write_bytes(data)
        os.replace(tmp, target)
    return dest
