"""A cache of finished runs, keyed by the hash of each run's full specification.

An entry is a directory `runs/<key>/` holding `spec.json`, `result.json` and, for models that
other runs start from, `model.pt`. Entries are written into a temporary sibling and renamed into
place, so an entry either exists complete or not at all.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import torch


def canonical(spec) -> str:
    """A stable JSON text of `spec` (sorted keys, no whitespace): equal specs give equal text."""
    return json.dumps(spec, sort_keys=True, separators=(",", ":"), default=str)


def spec_key(spec) -> str:
    """The cache key of a run: a SHA-256 of its canonical specification."""
    return hashlib.sha256(canonical(spec).encode()).hexdigest()[:24]


class RunCache:
    """Finished runs on disk under `root`."""

    def __init__(self, root):
        self.root = Path(root)

    def path(self, spec) -> Path:
        return self.root / "runs" / spec_key(spec)

    def has(self, spec) -> bool:
        return (self.path(spec) / "result.json").is_file()

    def result(self, spec) -> dict:
        """The stored result of a finished run (KeyError if absent)."""
        p = self.path(spec) / "result.json"
        if not p.is_file():
            raise KeyError(f"no finished run in {self.root} for key {spec_key(spec)}")
        return json.loads(p.read_text())

    def state_dict(self, spec) -> dict:
        """The stored weights of a finished run, loaded safely (tensors only)."""
        p = self.path(spec) / "model.pt"
        if not p.is_file():
            raise KeyError(f"run {spec_key(spec)} in {self.root} kept no weights")
        return torch.load(p, map_location="cpu", weights_only=True)

    def put(self, spec, result: dict, state_dict: dict | None = None) -> Path:
        """Store a finished run atomically; a concurrent writer of the same spec wins harmlessly."""
        final = self.path(spec)
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
        try:
            (tmp / "spec.json").write_text(json.dumps(spec, indent=1, sort_keys=True, default=str))
            if state_dict is not None:
                torch.save(state_dict, tmp / "model.pt")
            # result.json is written last: it marks the entry as complete.
            (tmp / "result.json").write_text(json.dumps(result, indent=1, sort_keys=True))
            try:
                os.rename(tmp, final)
            except OSError:
                if not self.has(spec):  # an incomplete leftover, not a concurrent winner
                    shutil.rmtree(final, ignore_errors=True)
                    os.rename(tmp, final)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        return final
