"""pytest set-up for the unit tests and nbval alike (this file sits above tests/ and book/).

Every pytest session trains into a fresh, empty run cache: tests never read runs that an earlier
session (or the user's own grid in .cache/lesionlib) left behind, and nbval's notebook kernels,
which inherit this environment, train what their pages need.
"""
import os
import shutil
import tempfile

_SESSION_CACHE = tempfile.mkdtemp(prefix="lesionlib-test-cache-")
os.environ["LESIONLIB_CACHE"] = _SESSION_CACHE
os.environ.pop("LESIONLIB_SCHEDULER", None)  # tests never send work to a user's Dask cluster


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(_SESSION_CACHE, ignore_errors=True)


def pytest_configure(config):
    config.addinivalue_line("markers", "browser: opens the built book in headless Chromium (tests/test_browser.py)")
