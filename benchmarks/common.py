"""What every benchmark section shares: progress logging, the report's number format and tables, strict
JSON, the CPU share of other processes (snapshots and waiting for a quiet machine), and `machine()`.

Nothing here imports torch or fastai at module level, so `python -m benchmarks --help` stays light.
"""
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------------------ logging

def log(msg: str) -> None:
    """Progress on stderr, so stdout holds only the report."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------ report

def fmt(v, unit="", nd=1) -> str:
    """A number for the table."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    return f"{v:,.{nd}f}{(' ' + unit) if unit else ''}"


def table(rows: list[tuple]) -> str:
    """Three-column text table: quantity, value, note."""
    if not rows:
        return ""
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    return "\n".join(f"  {r[0]:<{w0}}  {r[1]:>{w1}}  {r[2] if len(r) > 2 else ''}".rstrip() for r in rows)


# --------------------------------------------------------------------------------------------- JSON

def json_safe(x):
    """`x` with NaN and infinities as None (strict JSON) and tuples as lists."""
    if isinstance(x, dict):
        return {k: json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [json_safe(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def write_json(path: Path, data: dict) -> None:
    """Write `data` as strict JSON atomically (temporary file, then os.replace)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(json_safe(data), indent=1, default=float, allow_nan=False))
    os.replace(tmp, path)


# ------------------------------------------------------------------------------ other processes' CPU

def cpu_snapshot() -> tuple:
    """(wall seconds, CPU seconds used by the whole machine, CPU seconds used by this process and its children)."""
    import resource

    try:
        v = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        busy = (sum(v[:8]) - v[3] - v[4]) / os.sysconf("SC_CLK_TCK")  # all but idle and iowait
    except (OSError, ValueError, IndexError):
        busy = math.nan
    own = sum(getattr(resource.getrusage(w), f) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
              for f in ("ru_utime", "ru_stime"))
    return time.perf_counter(), busy, own


def others_share(s0: tuple, s1: tuple) -> float:
    """Share of the machine's CPU capacity that other processes used between two snapshots."""
    wall = s1[0] - s0[0]
    return max(0.0, ((s1[1] - s0[1]) - (s1[2] - s0[2])) / (wall * (os.cpu_count() or 1))) if wall > 0 else math.nan


def wait_quiet(limit_s: float, window_s: float = 5.0, threshold: float = 0.10) -> float:
    """Wait (at most `limit_s`) until other processes use < `threshold` of the CPU over `window_s`; their last share."""
    t0 = time.perf_counter()
    while True:
        s0 = cpu_snapshot()
        time.sleep(window_s)
        share = others_share(s0, cpu_snapshot())
        if share < threshold or time.perf_counter() - t0 > limit_s:
            return share
        log(f"other processes use {share:.0%} of the CPU; waiting for a quiet machine")


# ------------------------------------------------------------------------------------------ machine

def cpu_bf16_flags() -> dict:
    """Whether this CPU has native bf16 arithmetic (AVX512-BF16, AMX) according to /proc/cpuinfo."""
    try:
        flags = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        flags = set()
    return {f: f in flags for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")}


def machine() -> dict:
    """What this ran on."""
    import torch

    from lesionlib import _quiet  # noqa: F401  (silences fastai's import warnings)
    import fastai

    cpu = "unknown"
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "threads": torch.get_num_threads(), "torch": torch.__version__,
            "fastai": fastai.__version__, "python": platform.python_version(), "bf16_flags": cpu_bf16_flags()}
