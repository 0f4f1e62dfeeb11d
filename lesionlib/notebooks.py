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
    """Execute each notebook (default: book/*.ipynb, in nbval's order) in place, atomically.

    The kernels train into one fresh run cache, as under `make test` (see conftest.py), so the stored
    counts of runs trained per page are the ones nbval will see.
    """
    import shutil
    import tempfile

    root = project_root()
    cache = tempfile.mkdtemp(prefix="lesionlib-refresh-cache-")
    saved = {k: os.environ.get(k) for k in ("LESIONLIB_CACHE", "LESIONLIB_SCHEDULER")}
    os.environ["LESIONLIB_CACHE"] = cache
    os.environ.pop("LESIONLIB_SCHEDULER", None)
    try:
        _refresh([Path(p) for p in paths] if paths else sorted((root / "book").glob("*.ipynb")), timeout)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        shutil.rmtree(cache, ignore_errors=True)


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
