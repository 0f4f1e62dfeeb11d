"""How Learn and Transfer fit a model: `TrainConfig`, in a module without torch, so that profiles and the
command line can use it without loading the deep-learning stack."""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass


def cores_per(n: int) -> int:
    """This machine's cores shared among `n` processes that compute side by side (at least 1 each)."""
    return max(1, (os.cpu_count() or 1) // max(1, n))


@dataclass(frozen=True)
class TrainConfig:
    """How Learn and Transfer fit a model (the paper: Adam, lr 1e-4, batch 64, early stopping)."""

    epochs: int = 10  # upper bound; early stopping usually ends sooner
    patience: int = 3  # epochs without a lower validation loss before stopping
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
