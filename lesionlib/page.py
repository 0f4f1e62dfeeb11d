"""What every results page of the book starts with, in one call: `P, runner = page.setup(globals())`."""
from __future__ import annotations

from .dispatch import runner_for
from .figures import check_samples
from .runner import Runner
from .profile import Profile


def setup(ns: dict) -> tuple[Profile, Runner]:
    """The page's profile, from its papermill parameters (validated before any work), and the Runner of its
    runs, training what is missing where the profile says (this kernel, or Dask workers)."""
    P = check_samples(Profile.from_namespace(ns))  # the grid's samples too: nothing fails mid-page for lack of data
    return P, runner_for(P)
