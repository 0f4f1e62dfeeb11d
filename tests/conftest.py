import pytest


@pytest.fixture(scope="session")
def smoke_book(tmp_path_factory):
    """The whole smoke book, built once per session: every page in both directions executed with papermill,
    then `jupyter-book build -W -n`. Returns (output folder, the grid's timings). Its training runs go to the
    session's run cache, where nbval's notebooks (run after the unit tests) find them."""
    from lesionlib.grid import run_grid
    out = tmp_path_factory.mktemp("smoke-book")
    # Sequential: nbval then reuses these runs and compares them with outputs made with all cores; runs
    # trained with fewer threads (`--parallel`) differ in their last bits and, on these tiny sets, in calls.
    return out, run_grid("smoke", output=out)


@pytest.fixture
def cache_dir(tmp_path):
    return tmp_path / "cache"
