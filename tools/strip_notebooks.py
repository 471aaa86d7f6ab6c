"""Strips outputs, execution counts and widget state from notebooks, in place: the form in
which colab/*.ipynb are committed (tests/test_notebooks.py checks it).

    python -m tools.strip_notebooks colab/*.ipynb
"""

import sys

import nbformat


def strip(path) -> bool:
    """Strips `path` in place; returns whether it changed."""
    nb = nbformat.read(path, as_version=4)
    before = nbformat.writes(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
        cell.metadata.pop("execution", None)
    nb.metadata.pop("widgets", None)
    after = nbformat.writes(nb)
    if after != before:
        nbformat.write(nb, path)
    return after != before


def main(argv=None) -> int:
    paths = sys.argv[1:] if argv is None else argv
    for path in paths:
        if strip(path):
            print(f"stripped {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
