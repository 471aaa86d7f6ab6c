"""The repository stands alone: nothing in it points at files outside it."""

import pathlib
import subprocess

REPO = pathlib.Path(__file__).resolve().parent.parent
OUTSIDE = "shared" + "/"  # split so this file does not match itself


def test_no_file_refers_to_the_folder_beside_the_repo():
    files = subprocess.run(
        ["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split()
    hits = []
    for name in files:
        path = REPO / name
        if not path.is_file() or path.suffix in {".png", ".npz", ".so"}:
            continue
        text = path.read_text(errors="ignore")
        hits += [f"{name}:{i}" for i, ln in enumerate(text.splitlines(), 1) if OUTSIDE in ln]
    assert not hits, hits
