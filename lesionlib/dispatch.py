"""Training runs on a Dask cluster: a `LocalCluster` on this machine, or any scheduler you point at.

Each run is one Dask task, keyed by its cache key, that trains in a worker process and stores its
result in the shared run cache; a task depends on the task of the model it starts from, so source
models finish before the target runs that need them. Identical runs submitted at once (from two
notebooks on one scheduler) share one task key, and the per-run file lock of the cache stops two
clients of different schedulers from training the same run twice.

Choose the cluster with the profile (`workers`, `scheduler`) or the environment variable
``LESIONLIB_SCHEDULER`` (an address such as ``tcp://10.0.0.5:8786``), which wins over the profile.
"""
from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from dataclasses import asdict, replace

from .cache import spec_key
from .profile import Profile

ENV = "LESIONLIB_SCHEDULER"
CONNECT_TIMEOUT = "30s"  # how long a client keeps trying to reach a scheduler before the clear error below
_RUNNERS: dict = {}  # one Runner per profile in each worker, so data sets are loaded once per worker


def scheduler_address(P: Profile) -> str | None:
    """The scheduler the runs go to: $LESIONLIB_SCHEDULER, else the profile's `scheduler`, else None."""
    return os.environ.get(ENV) or P.scheduler or None


def local_cluster(workers: int):
    """A LocalCluster of `workers` processes that share this machine's cores (one GPU each where present)."""
    from distributed import LocalCluster

    threads = max(1, (os.cpu_count() or 1) // workers)
    return LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                        env={"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
                             "LESIONLIB_TORCH_THREADS": str(threads)})


@contextmanager
def client_for(P: Profile):
    """A Dask client on the profile's scheduler, or on a LocalCluster started (and closed) here."""
    from distributed import Client

    address = scheduler_address(P)
    if address:
        try:
            client = Client(address, timeout=CONNECT_TIMEOUT)
        except OSError as err:
            raise RuntimeError(f"cannot reach the Dask scheduler {address!r} (from ${ENV} or the profile's "
                               f"'scheduler'): {err}. Start one with `dask scheduler`, or unset it to run locally") from err
        with client:
            yield client
        return
    with local_cluster(P.workers) as cluster, Client(cluster) as client:
        yield client


def _device_for_worker(P: Profile) -> Profile:
    """On a machine with GPUs, worker i trains on GPU i mod the number of GPUs."""
    import torch

    if P.device != "auto" or not torch.cuda.is_available():
        return P
    try:
        from distributed import get_worker

        name = get_worker().name
        index = int(str(name).rsplit("-", 1)[-1])
    except (ValueError, ImportError):
        index = os.getpid()
    return replace(P, device=f"cuda:{index % torch.cuda.device_count()}")


def train_task(profile: dict, spec: dict, *parents) -> bool:
    """Dask task: make sure `spec` is in the run cache; True if this task trained it."""
    import torch

    from .experiment import Runner

    threads = int(os.environ.get("LESIONLIB_TORCH_THREADS", "0"))
    if threads:
        torch.set_num_threads(threads)
    P = _device_for_worker(Profile.from_mapping(profile))
    runner = _RUNNERS.setdefault(repr(sorted(profile.items())), Runner(P))
    before = runner.trained
    runner.ensure(spec)
    return runner.trained > before


def run_on_cluster(P: Profile, specs: list, log=None) -> int:
    """Train `specs` (parents listed before children) on Dask; returns how many were trained now."""
    from distributed import as_completed
    from tqdm.auto import tqdm

    from .experiment import describe, trained_parent, unique_runs

    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    wanted = {spec_key(s) for s in specs}
    order = [s for s in unique_runs(specs) if spec_key(s) in wanted]  # parents first; finished parents not resubmitted
    profile = asdict(P)
    with client_for(P) as client:
        log(f"dispatching {len(order)} runs to Dask ({client.scheduler.address}, "
            f"{len(client.scheduler_info()['workers'])} workers)")
        futures, labels = {}, {}
        for spec in order:
            parent = trained_parent(spec)
            deps = [futures[spec_key(parent)]] if parent is not None and spec_key(parent) in futures else []
            key = f"lesionlib-run-{spec_key(spec)}"
            futures[spec_key(spec)] = client.submit(train_task, profile, spec, *deps, key=key, pure=False)
            labels[key] = describe(spec)
        trained = 0
        with tqdm(total=len(futures), desc="runs", unit="run", file=sys.stderr, mininterval=5) as bar:
            for fut in as_completed(list(futures.values())):
                trained += bool(fut.result())  # re-raises a run's error here, with its traceback
                bar.update()
                log(f"  finished {labels[fut.key]}")
    return trained
