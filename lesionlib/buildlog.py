"""What a grid build shows: one progress display on the terminal; everything else (training logs, Dask's and
Jupyter's messages, from this process and every process it starts) in a log file under `_build/`.

`lesionlib grid -v` shows all of it live instead.
"""
from __future__ import annotations

import os
import sys
import threading
import time
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from pathlib import Path


def _clock(seconds: float) -> str:
    """'7 s', '12 min 5 s', '2 h 3 min'."""
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60} s"
    return f"{s // 3600} h {s % 3600 // 60} min"


class Progress:
    """Pages done / total, runs cached / total, elapsed and an ETA, on one line of the terminal.

    Runs are counted in the run cache (`count_runs()`), every `every` seconds by a background thread; the ETA
    is the remaining runs at the pace of the runs trained so far in this build, else `estimate_s` (the dry run's)
    less the time spent."""

    def __init__(self, write, pages: int, runs: int, count_runs, estimate_s: float | None = None,
                 tty: bool = False, every: float = 5.0):
        self.write, self.pages, self.runs, self.count_runs = write, pages, runs, count_runs
        self.estimate_s, self.tty, self.every = estimate_s, tty, every
        self.t0, self.pages_done = time.perf_counter(), 0
        self.cached_at_start = self.cached = count_runs()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def line(self) -> str:
        """The progress display's text now."""
        elapsed = time.perf_counter() - self.t0
        trained = self.cached - self.cached_at_start
        left = self.runs - self.cached
        if trained > 0:
            eta = f"ETA {_clock(left * elapsed / trained)}" if left else "training done"
        elif self.estimate_s is not None and elapsed < self.estimate_s:
            eta = f"ETA ~{_clock(self.estimate_s - elapsed)} (dry-run estimate)"
        else:
            eta = "ETA unknown"
        if not self.runs:
            return f"pages {self.pages_done}/{self.pages} · {_clock(elapsed)} elapsed"
        return (f"pages {self.pages_done}/{self.pages} · runs {self.cached}/{self.runs} · "
                f"{_clock(elapsed)} elapsed · {eta}")

    def say(self, msg: str) -> None:
        """A line of its own (a page finished, an error), then the progress display again."""
        self.write(("\r\033[K" if self.tty else "") + msg + "\n")
        if self.tty:
            self.write(self.line())

    def page_done(self, msg: str) -> None:
        self.pages_done += 1
        self.cached = self.count_runs()
        self.say(f"{msg} · {self.line()}" if not self.tty else msg)

    def _poll(self) -> None:
        while not self._stop.wait(self.every):
            self.cached = self.count_runs()
            if self.tty:
                self.write("\r\033[K" + self.line())

    def __enter__(self):
        if self.tty:
            self.write(self.line())
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        if self.tty:
            self.write("\r\033[K")
        return False


class Terminal:
    """Where a build's own lines go: `write(text)`; `tty` when it is an interactive terminal."""

    def __init__(self, write, tty: bool):
        self.write, self.tty = write, tty


@contextmanager
def quiet(log_path: Path, verbose: bool = False):
    """Send this process's stdout and stderr, and so those of every process it starts (kernels, Dask workers),
    to `log_path`; yield the Terminal. With `verbose` nothing is redirected."""
    def to_stderr(text: str) -> None:
        sys.stderr.write(text)
        sys.stderr.flush()

    if verbose:
        yield Terminal(to_stderr, False)
        return
    log_path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    terminal = os.fdopen(os.dup(saved[1]), "w", buffering=1)

    def write(text: str) -> None:
        terminal.write(text)
        terminal.flush()

    with open(log_path, "ab", buffering=0) as log, open(log_path, "a", buffering=1) as text:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:  # Python's own streams too, wherever they point (pytest, Jupyter replace them)
            with redirect_stdout(text), redirect_stderr(text):
                yield Terminal(write, os.isatty(saved[1]))
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
            terminal.close()


def tail(path: Path, lines: int = 60) -> str:
    """The last `lines` lines of a log file (what a failed build shows on the terminal)."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])
