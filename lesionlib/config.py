"""How Learn and Transfer fit a model: `TrainConfig`, in a module without torch, so that profiles and the
command line can use it without loading the deep-learning stack; and the process settings a fit runs under."""
from __future__ import annotations

import ctypes
import os
from dataclasses import asdict, dataclass
from functools import lru_cache


def cores_per(n: int) -> int:
    """This machine's cores shared among `n` processes that compute side by side (at least 1 each)."""
    return max(1, (os.cpu_count() or 1) // max(1, n))


@lru_cache(maxsize=1)
def steady_heap() -> bool:
    """Keep a training step's buffers in glibc's heap (mmap threshold 32 MiB, trim threshold 64 MiB), once per process.

    Dask's nanny starts its workers with MALLOC_TRIM_THRESHOLD_=65536, and any such setting also pins glibc's
    mmap threshold at 128 KiB: every activation of every step was then a fresh mapping whose pages fault in
    again (a third of a quick-profile worker's CPU time went to the kernel). The values are glibc's own
    adaptive ones at their ceiling. No effect on results; False where the C library is not glibc.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # <malloc.h>
    return bool(libc.mallopt(m_mmap_threshold, 32 << 20)) and bool(libc.mallopt(m_trim_threshold, 64 << 20))


ARCH_NAMES = ("densenet201", "test_densenet")  # the networks a profile's `arch` may name (lesionlib.learner.ARCHS)


@dataclass(frozen=True)
class TrainConfig:
    """How Learn and Transfer fit a model (the paper: Adam, lr 1e-4, batch 64, early stopping)."""

    arch: str = "densenet201"  # the network (π): the paper's DenseNet-201, or `test_densenet` for bookkeeping tests
    epochs: int = 10  # upper bound; early stopping usually ends sooner
    patience: int = 3  # epochs without a lower validation loss before stopping
    min_steps: int = 0  # gradient steps a fit takes at least (more epochs if need be; no early stop before); 0: off
    lr: float = 1e-4
    batch_size: int = 64
    valid_frac: float = 0.2  # share of each training set held out (by patient) for early stopping
    transfer_head: bool = True  # Transfer keeps the source head when it has the same outputs
    max_rotate: float = 20.0  # degrees
    max_shift: float = 0.1  # fraction of the image side
    flip: bool = True  # random horizontal and vertical flips
    device: str = "auto"
    threads: int | None = None  # torch threads on a CPU (None: leave the process's); keyed in the run's `env`

    def as_spec(self) -> dict:
        """The fields of the training recipe (where it runs, device and threads, is the spec's `env`)."""
        d = asdict(self)
        d.pop("device")
        d.pop("threads")
        return d
