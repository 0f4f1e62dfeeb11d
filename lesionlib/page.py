"""What every results page of the book starts with, in one call: `P, runner = page.setup(globals())`."""
from __future__ import annotations

from .dispatch import runner_for
from .experiment import Runner
from .profile import Profile


def setup(ns: dict) -> tuple[Profile, Runner]:
    """The page's profile, from its papermill parameters (validated before any work), and the Runner of its
    runs, training what is missing where the profile says (this kernel, or Dask workers)."""
    P = Profile.from_namespace(ns)
    return P, runner_for(P)
