import os

import pytest

# Tests never touch the user's run cache or the network.
os.environ.setdefault("LESIONLIB_CACHE", os.path.join(os.path.dirname(__file__), "..", "_build", "test-cache"))


@pytest.fixture
def cache_dir(tmp_path):
    return tmp_path / "cache"
