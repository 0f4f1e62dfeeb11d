"""Refresh the committed notebooks: execute them in place with their own (smoke) defaults.

The committed outputs are build artefacts for nbval, never edited by hand.
"""
from __future__ import annotations

import os
from pathlib import Path

import nbformat
from nbclient import NotebookClient

from .profile import SCHEDULER_ENV, project_root


def refresh(paths=None, timeout: int = 1200) -> None:
    """Execute each notebook (default: book/*.ipynb, in nbval's order) in place, atomically.

    The kernels train into one fresh run cache, as under `make test` (see conftest.py), so the stored
    counts of runs trained per page are the ones nbval will see.
    """
    import tempfile
    from unittest import mock

    root = project_root()
    with tempfile.TemporaryDirectory(prefix="lesionlib-refresh-cache-") as cache, \
            mock.patch.dict(os.environ, {"LESIONLIB_CACHE": cache}):  # restored afterwards, whatever happens
        os.environ.pop(SCHEDULER_ENV, None)
        _refresh([Path(p) for p in paths] if paths else sorted((root / "book").glob("*.ipynb")), timeout)


def _refresh(paths, timeout):
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        NotebookClient(nb, timeout=timeout, kernel_name="python3",
                       resources={"metadata": {"path": str(path.parent)}}).execute()
        nb.metadata.pop("lesionlib", None)
        tmp = path.with_name(f".{path.stem}.tmp.ipynb")
        nbformat.write(nb, tmp)
        os.replace(tmp, path)
        print(f"refreshed {path}")
