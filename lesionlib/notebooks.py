"""Refresh the committed notebooks: execute them in place with their own (smoke) defaults.

The committed outputs are build artefacts for nbval, never edited by hand.
"""
from __future__ import annotations

import os
from pathlib import Path

import nbformat
from nbclient import NotebookClient

from .profile import project_root


def refresh(paths=None, timeout: int = 1200) -> None:
    """Execute each notebook (default: book/*.ipynb) in place, atomically."""
    root = project_root()
    for path in [Path(p) for p in paths] if paths else sorted((root / "book").glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        NotebookClient(nb, timeout=timeout, kernel_name="python3",
                       resources={"metadata": {"path": str(path.parent)}}).execute()
        nb.metadata.pop("lesionlib", None)
        tmp = path.with_name(f".{path.stem}.tmp.ipynb")
        nbformat.write(nb, tmp)
        os.replace(tmp, path)
        print(f"refreshed {path}")
