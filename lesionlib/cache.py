"""A cache of finished runs, keyed by the hash of each run's full specification.

An entry is a directory `runs/<key>/` holding `spec.json`, `result.json` and, for models that
other runs start from, `model.pt`. Entries are written into a temporary sibling (a name starting
with '.') and renamed into place, so an entry either exists complete or not at all; a crash leaves
at most a temporary directory, which `check` reports and `has` never sees.

`has` trusts an entry only after cheap checks (both JSON files parse, the spec hashes to the
directory's name, model.pt is a readable archive), so a damaged entry is trained again and replaced;
`verify` and `check` also load the weights (`lesionlib cache check`).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import zipfile
from pathlib import Path

PARTIAL = "partial: temporary directory left by an interrupted write"


class CacheEntryError(RuntimeError):
    """A run-cache entry that exists but cannot be used (corrupt files)."""


def canonical(spec) -> str:
    """A stable JSON text of `spec` (sorted keys, no whitespace): equal specs give equal text."""
    return json.dumps(spec, sort_keys=True, separators=(",", ":"), default=str)


def spec_key(spec) -> str:
    """The cache key of a run: a SHA-256 of its canonical specification."""
    return hashlib.sha256(canonical(spec).encode()).hexdigest()[:24]


def _read_json(path: Path, what: str, problems: list):
    """The parsed JSON object at `path`, or None after appending why it is unusable to `problems`."""
    if not path.is_file():
        problems.append(f"{what} missing")
        return None
    try:
        value = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as err:
        problems.append(f"{what} unreadable ({type(err).__name__}: {err})")
        return None
    if not isinstance(value, dict):
        problems.append(f"{what} holds a {type(value).__name__}, not a JSON object")
        return None
    return value


def _entry_problems(path: Path, deep: bool, load: bool = False) -> list[str]:
    """Problems of the entry directory `path`; `deep` checks every byte of model.pt against its CRCs,
    `load` also loads it with torch (slow for big models)."""
    if path.name.startswith("."):
        return [PARTIAL]
    if not path.is_dir():
        return ["not a run directory" if path.exists() else "no such entry"]
    problems: list[str] = []
    spec = _read_json(path / "spec.json", "spec.json", problems)
    _read_json(path / "result.json", "result.json", problems)
    if spec is not None and spec_key(spec) != path.name:
        problems.append(f"spec.json hashes to {spec_key(spec)}, not to the directory name {path.name}")
    model = path / "model.pt"
    if model.exists():
        problems += _model_problems(model, deep, load)
    return problems


def _model_problems(model: Path, deep: bool, load: bool = False) -> list[str]:
    """Why model.pt cannot be loaded: cheaply its zip directory (truncation); deeply the CRC of every member
    (any changed byte), without torch; with `load`, torch.load itself (tensors only)."""
    try:
        with zipfile.ZipFile(model) as z:  # torch.save writes a zip; reading its directory catches truncation
            bad = z.testzip() if deep else None
        if bad is not None:
            return [f"model.pt is corrupt: member {bad} fails its CRC check"]
        if load:
            import torch  # only here: `lesionlib cache check` without --weights never loads torch

            sd = torch.load(model, map_location="cpu", weights_only=True)
            if not isinstance(sd, dict):
                return [f"model.pt holds a {type(sd).__name__}, not a state dict"]
    except Exception as err:  # torch/zipfile/pickle raise many kinds
        return [f"model.pt unreadable ({type(err).__name__}: {err})"]
    return []


class RunCache:
    """Finished runs on disk under `root`."""

    def __init__(self, root):
        self.root = Path(root)

    @property
    def runs(self) -> Path:
        return self.root / "runs"

    def path(self, spec) -> Path:
        return self.runs / spec_key(spec)

    def _entry(self, key_or_path) -> Path:
        """The directory of a key (a name under runs/) or a path."""
        p = Path(key_or_path)
        return p if len(p.parts) > 1 or p.is_absolute() else self.runs / p

    def has(self, spec) -> bool:
        """True if a finished, sound-looking run of `spec` is stored (damaged entries count as absent)."""
        return not _entry_problems(self.path(spec), deep=False)

    def verify(self, key_or_path, load: bool = False) -> list[str]:
        """Every problem of one entry (empty: sound); `load` also loads its weights (`weights_only=True`)."""
        return _entry_problems(self._entry(key_or_path), deep=True, load=load)

    def check(self, load: bool = False) -> dict[str, list[str]]:
        """{entry name: problems} for every unsound entry or leftover temporary directory under runs/."""
        if not self.runs.is_dir():
            return {}
        found = {p.name: self.verify(p, load) for p in sorted(self.runs.iterdir())}
        return {k: v for k, v in found.items() if v}

    def entries(self) -> list[str]:
        """Names of the finished-run directories (temporary directories excluded)."""
        return sorted(p.name for p in self.runs.iterdir() if not p.name.startswith(".")) if self.runs.is_dir() else []

    def remove(self, key_or_path) -> None:
        """Delete one entry: renamed aside first (atomic), so no half-deleted entry is ever visible."""
        p = self._entry(key_or_path)
        if not p.exists():
            return
        if not p.is_dir():
            p.unlink()
            return
        if p.name.startswith("."):  # a temporary directory: nobody reads it
            shutil.rmtree(p, ignore_errors=True)
            return
        aside = Path(tempfile.mkdtemp(prefix=f".{p.name}.bad.", dir=p.parent))
        os.rename(p, aside / p.name)
        shutil.rmtree(aside, ignore_errors=True)

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
        import torch

        try:
            return torch.load(p, map_location="cpu", weights_only=True)
        except Exception as err:  # truncated or corrupt: name the entry and the cure
            raise CacheEntryError(f"{p} cannot be loaded ({type(err).__name__}: {err}); run `lesionlib cache "
                                  f"check --fix --cache {self.root}` and run again to retrain it") from None

    def put(self, spec, result: dict, state_dict: dict | None = None) -> Path:
        """Store a finished run atomically; a concurrent writer of the same spec wins harmlessly.

        A damaged entry already in place (one `has` rejects) is replaced.
        """
        final = self.path(spec)
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
        try:
            (tmp / "spec.json").write_text(json.dumps(spec, indent=1, sort_keys=True, default=str))
            if state_dict is not None:
                import torch

                torch.save(state_dict, tmp / "model.pt")
            # result.json is written last: it marks the entry as complete.
            (tmp / "result.json").write_text(json.dumps(result, indent=1, sort_keys=True))
            try:
                os.rename(tmp, final)
            except OSError:
                if not self.has(spec):  # a damaged leftover, not a concurrent winner: move it aside, then ours in
                    self._replace(final, tmp)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        if not self.has(spec):  # never return as if stored when the entry is not there
            raise CacheEntryError(f"could not store run {final.name} in {self.root}: {self.verify(final)}")
        return final

    def _replace(self, final: Path, tmp: Path) -> None:
        """Swap the damaged entry `final` for the complete `tmp` with renames only; then delete the old one."""
        aside = Path(tempfile.mkdtemp(prefix=f".{final.name}.bad.", dir=final.parent))
        try:
            os.rename(final, aside / final.name)
        except FileNotFoundError:  # another writer moved it already
            pass
        try:
            os.rename(tmp, final)
        except OSError:  # a concurrent writer put its complete entry in between: keep that one
            pass
        shutil.rmtree(aside, ignore_errors=True)
