import sys
from pathlib import Path

import pytest

# tools/ holds the browser check the tests share with people (python tools/browser_check.py _build/html)
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))


@pytest.fixture(scope="session")
def smoke_book(tmp_path_factory):
    """The whole smoke book, built once per session: every page in both directions executed with papermill,
    then `jupyter-book build -W -n`. Returns (output folder, the grid's timings). Its training runs go to the
    session's run cache, where nbval's notebooks (run after the unit tests) find them."""
    from lesionlib.grid import run_grid
    out = tmp_path_factory.mktemp("smoke-book")
    # Two pages at a time: every run trains with the profile's `threads` whichever kernel trains it, so
    # nbval (which reuses these runs) sees the same calls as the committed outputs made one page at a time.
    return out, run_grid("smoke", output=out, parallel=2)


@pytest.fixture
def cache_dir(tmp_path):
    return tmp_path / "cache"
