"""Training runs on a Dask cluster: worker processes on this machine, or any scheduler you point at.

Each run is one Dask task, keyed by its cache key, that trains in a worker process and stores its
result in the shared run cache; a task depends on the task of the model it starts from, so source
models finish before the target runs that need them. Identical runs submitted at once (from two
notebooks on one scheduler) share one task key, and the per-run file lock of the cache stops two
clients of different schedulers from training the same run twice.

Choose the cluster with the profile (`workers`, `scheduler`) or the environment variable
``LESIONLIB_SCHEDULER`` (an address such as ``tcp://10.0.0.5:8786``), which wins over the profile.

GPUs: the local cluster starts one worker per GPU, each seeing only its own and declaring the Dask
resource ``GPU=1``; runs on CUDA then ask for that resource, so no two share a GPU. Workers you start
yourself do the same with ``CUDA_VISIBLE_DEVICES=<i> dask worker <scheduler> --nthreads 1 --resources GPU=1``
(or ``dask cuda worker <scheduler> --resources GPU=1``), one per GPU.
"""
from __future__ import annotations

import logging
import os
import sys
from contextlib import contextmanager
from dataclasses import asdict

from .cache import spec_key
from .config import cores_per
from .experiment import describe, trained_parent, unique_runs
from .runner import Runner
from .profile import SCHEDULER_ENV, Profile

CONNECT_TIMEOUT = "30s"  # how long a client keeps trying to reach a scheduler before the clear error below
_RUNNERS: dict = {}  # one Runner per profile in each worker, so data sets are loaded once per worker


def executor_for(P: Profile):
    """Where a Runner of `P` trains missing runs: `run_on_cluster` when the profile asks for workers or a
    scheduler is named, else None (the Runner's own process)."""
    return run_on_cluster if P.workers > 0 or P.scheduler_address() else None


def runner_for(P: Profile, **kwargs) -> Runner:
    """A Runner of `P` with the executor the profile asks for."""
    return Runner(P, executor=executor_for(P), **kwargs)


def gpu_count() -> int:
    """GPUs this machine's workers could use (0 without CUDA)."""
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def worker_specs(workers: int, gpus: int = 0, cores: int | None = None, per_gpu: int = 1) -> dict:
    """Dask worker specifications: `workers` single-task processes sharing the cores, or with GPUs `per_gpu`
    workers per GPU (at most `workers` in all), each seeing only its own GPU (CUDA_VISIBLE_DEVICES, as
    dask-cuda's LocalCUDACluster does) and declaring the resource GPU=1 that GPU runs ask for."""
    from distributed import Nanny

    n = min(workers, gpus * per_gpu) if gpus else workers
    threads = str(max(1, cores // n) if cores else cores_per(n))
    # this process may itself see a subset of the GPUs: worker i gets the i-th of those
    visible = [d for d in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()] or \
        [str(i) for i in range(gpus)]
    specs = {}
    for i in range(n):
        env = {"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
        options = {"nthreads": 1, "env": env}
        if gpus:
            env["CUDA_VISIBLE_DEVICES"] = visible[i // per_gpu]
            options["resources"] = {"GPU": 1}
        specs[f"lesionlib-{i}"] = {"cls": Nanny, "options": options}
    return specs


LOOPBACK = "127.0.0.1"  # an unauthenticated Dask scheduler runs any pickled task sent to it: never reachable by default


def local_cluster(workers: int, host: str = LOOPBACK, dashboard: str | None = None, per_gpu: int = 1):
    """A cluster of worker processes on this machine (see `worker_specs`), closed with its context.

    Scheduler and workers listen on `host` (loopback unless you name an address) and the dashboard is
    off unless `dashboard` names one (e.g. "127.0.0.1:8787")."""
    from distributed import Scheduler, SpecCluster

    # Dask's scheduler always serves /health and /metrics over HTTP: on `host`, at a free port, without the dashboard
    scheduler = {"cls": Scheduler, "options": {"host": host, "dashboard_address": dashboard or f"{host}:0",
                                                "dashboard": dashboard is not None}}
    specs = worker_specs(workers, gpu_count(), per_gpu=per_gpu)
    for spec in specs.values():
        spec["options"]["host"] = host  # the nanny, and through it its worker
    return SpecCluster(workers=specs, scheduler=scheduler, silence_logs=logging.WARNING)


def gpu_resources(client) -> dict:
    """{"GPU": 1} when the cluster's workers declare GPUs (a run then holds one GPU alone), else {}."""
    workers = client.scheduler_info()["workers"].values()
    return {"GPU": 1} if any(w.get("resources", {}).get("GPU") for w in workers) else {}


@contextmanager
def client_for(P: Profile):
    """A Dask client on the profile's scheduler, or on a LocalCluster started (and closed) here."""
    from distributed import Client

    address = P.scheduler_address()
    if address:
        try:
            client = Client(address, timeout=CONNECT_TIMEOUT)
        except OSError as err:
            raise RuntimeError(f"cannot reach the Dask scheduler {address!r} (from ${SCHEDULER_ENV} or the profile's "
                               f"'scheduler'): {err}. Start one with `dask scheduler`, or unset it to run locally") from err
        with client:
            yield client
        return
    with local_cluster(P.workers, per_gpu=P.runs_per_gpu) as cluster, Client(cluster) as client:
        yield client


def train_task(profile: dict, spec: dict, *parents) -> bool:
    """Dask task: make sure `spec` is in the run cache; True if this task trained it."""
    P = Profile.from_mapping(profile)  # a worker with a GPU sees just its own (CUDA_VISIBLE_DEVICES)
    runner = _RUNNERS.setdefault(repr(sorted(profile.items())), Runner(P))
    before = runner.trained
    runner.ensure(spec)
    return runner.trained > before


def run_on_cluster(P: Profile, specs: list, log=None) -> int:
    """Train `specs` (parents listed before children) on Dask; returns how many were trained now."""
    from distributed import as_completed
    from tqdm.auto import tqdm

    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    wanted = {spec_key(s) for s in specs}
    order = [s for s in unique_runs(specs) if spec_key(s) in wanted]  # parents first; finished parents not resubmitted
    profile = asdict(P)
    with client_for(P) as client:
        log(f"dispatching {len(order)} runs to Dask ({client.scheduler.address}, "
            f"{len(client.scheduler_info()['workers'])} workers)")
        futures, labels = {}, {}
        on_gpu = any(s.get("env", {}).get("device") == "cuda" for s in order)
        resources = gpu_resources(client) if on_gpu else {}
        for spec in order:
            parent = trained_parent(spec)
            deps = [futures[spec_key(parent)]] if parent is not None and spec_key(parent) in futures else []
            key = f"lesionlib-run-{spec_key(spec)}"
            futures[spec_key(spec)] = client.submit(train_task, profile, spec, *deps, key=key, pure=False,
                                                    resources=resources or None)
            labels[key] = describe(spec)
        trained = 0
        with tqdm(total=len(futures), desc="runs", unit="run", file=sys.stderr, mininterval=5) as bar:
            for fut in as_completed(list(futures.values())):
                trained += bool(fut.result())  # re-raises a run's error here, with its traceback
                bar.update()
                log(f"  finished {labels[fut.key]}")
    return trained
