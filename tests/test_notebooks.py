"""The Colab notebooks (colab/*.ipynb): committed without outputs, installing genimg from one
placeholder URL that the README's badges share, and executed end to end, headless, against this
checkout with their smallest settings (GENIMG_NOTEBOOK_SMOKE=1: the tiny presets on the 8x8
digits). A failing cell fails the test."""

import os
import pathlib
import re
import sys

import nbformat
import pytest
from nbclient import NotebookClient

REPO = pathlib.Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((REPO / "colab").glob("*.ipynb"))
NAMES = ["evaluate_folder.ipynb", "quickstart_gan.ipynb", "synthesis.ipynb", "vae.ipynb"]
# What each notebook prints at the end: its results.
EXPECTED = {
    "evaluate_folder.ipynb": ["noisy_images", "precision"],
    "quickstart_gan.ipynb": ["fid", "recall"],
    "synthesis.ipynb": ["classes drawn", "hole psnr"],
    "vae.ipynb": ["nll", "psnr"],
}
URL = re.compile(r'^REPO_URL = "https://github\.com/([\w.-]+)/genimg"', re.MULTILINE)


def _read(path):
    return nbformat.read(path, as_version=4)


def test_the_notebooks_are_there():
    assert [p.name for p in NOTEBOOKS] == NAMES


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_outputs_are_stripped(path):
    nb = _read(path)
    nbformat.validate(nb)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, (
                f"{path.name} cell {i} has outputs: python -m tools.strip_notebooks {path}"
            )
        assert not cell.get("attachments"), f"{path.name} cell {i}"
    assert "widgets" not in nb.metadata


def test_one_placeholder_url_for_the_notebooks_and_the_badges():
    """Each notebook installs from REPO_URL in its first code cell, and the README's "Open in
    Colab" badges name the same owner: publishing the repository changes one name."""
    owners = set()
    for path in NOTEBOOKS:
        first = next(c for c in _read(path).cells if c.cell_type == "code")
        match = URL.search(first.source)
        assert match, f"{path.name}: no REPO_URL in the first code cell"
        owners.add(match.group(1))
        assert "GENIMG_NOTEBOOK_SMOKE" in "".join(c.source for c in _read(path).cells)
    assert len(owners) == 1, owners
    (owner,) = owners
    readme = (REPO / "README.md").read_text()
    for path in NOTEBOOKS:
        badge = (
            f"https://colab.research.google.com/github/{owner}/genimg/blob/main/colab/{path.name}"
        )
        assert badge in readme, f"README lacks the badge of {path.name}"
        assert badge in _read(path).cells[0].source, f"{path.name} lacks its own badge"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs(path, tmp_path, monkeypatch):
    monkeypatch.setenv("GENIMG_NOTEBOOK_SMOKE", "1")
    monkeypatch.setenv("GENIMG_NOTEBOOK_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("GENIMG_CACHE_DIR", str(tmp_path / "cache"))
    nb = _read(path)
    client = NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(REPO)}}
    )
    client.execute()  # raises CellExecutionError on a failing cell
    outputs = "".join(
        o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs
    )
    assert f"genimg checkout: {REPO}" in outputs  # ran against this checkout, nothing installed
    assert "SMOKE=True" in outputs
    for expected in EXPECTED[path.name]:
        assert expected in outputs, f"{path.name}: no {expected!r} in its outputs"
    assert any((tmp_path / "runs").iterdir())  # runs went where the test said, not into runs/


def test_kernel_is_this_interpreter():
    """The notebooks run in the test's own environment (the kernel spec's `python` is resolved
    to this interpreter), not in some other Python on the PATH."""
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager

    spec = KernelSpecManager().get_kernel_spec("python3")
    km = KernelManager(kernel_name="python3")
    cmd = km.format_kernel_cmd()
    assert os.path.realpath(cmd[0]) == os.path.realpath(sys.executable), (spec.argv, cmd)
