"""Where and how a run computes: the device, its hardware name, the training precision, torch's thread count.

torch only (no fastai, no torchvision): a page that computes run keys but trains nothing in its own process
(its runs cached, or trained on Dask workers) needs these and nothing heavier.
"""
from __future__ import annotations

import inspect
import os
from contextlib import contextmanager
from functools import wraps

import torch


def resolve_device(device: str = "auto") -> torch.device:
    """'auto' picks CUDA when present, else the CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def hardware(device: torch.device) -> str:
    """What computes on `device`: the CPU's instruction set (AVX2, AVX512: other kernels) or the GPU's model."""
    if device.type == "cpu":
        return f"cpu-{torch.backends.cpu.get_cpu_capability()}"
    if device.type == "cuda":  # a client without the GPU (its Dask workers have it) cannot name it
        return torch.cuda.get_device_name(device) if torch.cuda.is_available() else "cuda-unknown"
    return device.type


@contextmanager
def torch_threads(n: int | None):
    """Run the block with `n` torch intra-op threads (None: unchanged), then restore the count."""
    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def with_run_threads(f):
    """Run `f` with its `cfg` argument's torch thread count (`torch_threads(cfg.threads)`)."""
    sig = inspect.signature(f)

    @wraps(f)
    def in_threads(*args, **kwargs):
        bound = sig.bind(*args, **kwargs)
        bound.apply_defaults()
        with torch_threads(bound.arguments["cfg"].threads):
            return f(*args, **kwargs)
    return in_threads


GRAPHED = "bf16-mixed+cuda-graph"
BF16_EAGER = "bf16-mixed"  # the same bf16 step without the graph: LESIONLIB_CUDA_GRAPH=0
GRAPH_SWITCH = "LESIONLIB_CUDA_GRAPH"


def cuda_graph_allowed() -> bool:
    """False when the environment says LESIONLIB_CUDA_GRAPH=0 (to debug a step, or where a capture fails)."""
    return os.environ.get(GRAPH_SWITCH, "1").strip().lower() not in ("0", "false", "no", "off")


def precision(device: torch.device) -> str:
    """How training computes on `device`: bf16 autocast with the step in a CUDA graph on a GPU with native bf16
    (the same step eagerly under LESIONLIB_CUDA_GRAPH=0), fp16 autocast with a gradient scaler (fastai's loop, no
    graph) on an older GPU, fp32 on a CPU. It is part of every run's key: the variants are never mixed up.

    A client that cannot see the GPU it specifies runs for says 'unknown' (its workers know)."""
    if device.type != "cuda":
        return "fp32"
    if not torch.cuda.is_available():
        return "unknown"
    if not torch.cuda.is_bf16_supported(including_emulation=False):
        return "fp16-mixed"
    return GRAPHED if cuda_graph_allowed() else BF16_EAGER


def amp_dtype(prec: str) -> torch.dtype | None:
    """The autocast type of a `precision` (None: fp32, no autocast)."""
    return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(prec[:4])
