"""Runs on a Dask cluster and concurrent requests for one run: each run is trained once."""
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from dataclasses import asdict, replace

import pytest
import torch

from lesionlib.cache import RunCache
from lesionlib.dispatch import runner_for
from lesionlib.experiment import unique_runs
from lesionlib.figures import fig1_specs
from lesionlib.runner import Runner

from test_experiment import tiny_profile


def test_runs_go_to_a_local_dask_cluster_and_land_in_the_cache(cache_dir, monkeypatch):
    monkeypatch.delenv("LESIONLIB_SCHEDULER", raising=False)
    P = replace(tiny_profile(cache_dir), workers=2)
    specs = fig1_specs(P, "brain_to_lung")
    lines = []
    r = runner_for(P, log=lines.append)
    results = r.run_all(specs.values())
    assert r.trained == len(unique_runs(specs.values())) == 7
    assert any("dispatching 7 runs to Dask" in m for m in lines)
    cache = RunCache(cache_dir)
    assert all(cache.has(s) for s in unique_runs(specs.values()))
    # the same answers as a run in this process would give: a second runner finds everything cached
    again = Runner(replace(P, workers=0), log=lambda m: None)
    assert again.run_all(specs.values()) == results and again.trained == 0
    here = Runner(replace(P, workers=0, cache_dir=str(cache_dir) + "-here"), log=lambda m: None)
    lesagn = ("High", "lesagn", 0)  # trained afresh in this process (G too): what the workers stored
    threads = torch.get_num_threads()
    torch.set_num_threads(2)  # this process's own count differs from the workers'; the spec's `threads` decides
    try:
        assert here.run_all([specs[lesagn]])[0]["probs"] == results[list(specs).index(lesagn)]["probs"]
    finally:
        torch.set_num_threads(threads)
    assert here.trained == 2
    # one target lost: only it goes to the cluster, not its finished parents
    import shutil
    shutil.rmtree(cache.path(specs[("High", "lesaug", 0)]))
    lines.clear()
    third = runner_for(P, log=lines.append)
    third.run_all(specs.values())
    assert third.trained == 1 and any("dispatching 1 runs" in m for m in lines)


def test_a_local_cluster_gives_each_gpu_one_worker_that_sees_only_it(monkeypatch):
    from lesionlib.dispatch import worker_specs
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    cpu = worker_specs(2, gpus=0, cores=8)
    assert len(cpu) == 2 and all(w["options"]["env"]["OMP_NUM_THREADS"] == "4" for w in cpu.values())
    assert all("resources" not in w["options"] and "CUDA_VISIBLE_DEVICES" not in w["options"]["env"]
               for w in cpu.values())
    gpu = worker_specs(4, gpus=2, cores=16)  # more workers asked than GPUs: one per GPU, never two on one
    assert [w["options"]["env"]["CUDA_VISIBLE_DEVICES"] for w in gpu.values()] == ["0", "1"]
    assert all(w["options"]["resources"] == {"GPU": 1} and w["options"]["nthreads"] == 1 for w in gpu.values())
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,5")  # this process sees two of the machine's GPUs
    assert [w["options"]["env"]["CUDA_VISIBLE_DEVICES"] for w in worker_specs(2, gpus=2).values()] == ["2", "5"]
    # two runs at once on each GPU (runs_per_gpu): two workers see each GPU, each holding the resource GPU=1
    shared = worker_specs(8, gpus=2, cores=16, per_gpu=2)
    assert [w["options"]["env"]["CUDA_VISIBLE_DEVICES"] for w in shared.values()] == ["2", "2", "5", "5"]
    assert all(w["options"]["resources"] == {"GPU": 1} for w in shared.values())
    assert len(worker_specs(3, gpus=2, per_gpu=2)) == 3  # never more than `workers`


def _listening(process) -> set:
    """(pid, address) of every listening TCP socket of `process` and its children."""
    import psutil

    return {(p.pid, c.laddr.ip) for p in [process, *process.children(recursive=True)]
            for c in p.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN}


def test_the_local_cluster_listens_on_loopback_only_and_serves_no_dashboard():
    # An unauthenticated Dask scheduler runs any pickled task it is sent: reachable from the network it is
    # remote code execution as the user. Every socket of the real cluster (scheduler, nannies, workers) is checked.
    import psutil
    from distributed import Client

    from lesionlib.dispatch import local_cluster

    me = psutil.Process()
    before = _listening(me)
    with local_cluster(2) as cluster, Client(cluster) as client:
        client.wait_for_workers(2, timeout=60)
        opened = _listening(me) - before
        assert cluster.scheduler_address.startswith("tcp://127.0.0.1:")
        http = client.scheduler_info()["services"]["dashboard"]  # Dask's name for its HTTP server, dashboard or not
        assert http != 8787  # a free port, not the one a user's own Dask dashboard has
        with pytest.raises(urllib.error.HTTPError, match="404"):
            urllib.request.urlopen(f"http://127.0.0.1:{http}/status", timeout=10)  # the dashboard's page: absent
    assert len({pid for pid, _ in opened}) >= 3  # this process (scheduler, nannies) and two worker processes
    assert {ip for _, ip in opened} <= {"127.0.0.1", "::1"}, opened


def test_runs_on_cuda_ask_for_a_gpu_only_where_workers_declare_one():
    from distributed import Client, LocalCluster
    from lesionlib.dispatch import gpu_resources
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as cl, \
            Client(cl) as client:
        assert gpu_resources(client) == {}  # a CPU cluster: asking for a GPU would hang the runs
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None,
                      resources={"GPU": 1}) as cl, Client(cl) as client:
        assert gpu_resources(client) == {"GPU": 1}


def test_a_bad_scheduler_address_gives_one_clear_error(cache_dir, monkeypatch):
    monkeypatch.setenv("LESIONLIB_SCHEDULER", "tcp://127.0.0.1:9")  # nothing listens on the discard port
    monkeypatch.setattr("lesionlib.dispatch.CONNECT_TIMEOUT", "2s")  # the error, not the wait, is under test
    P = tiny_profile(cache_dir)
    with pytest.raises(RuntimeError, match="cannot reach the Dask scheduler 'tcp://127.0.0.1:9'"):
        runner_for(P, log=lambda m: None).run_all(fig1_specs(P, "brain_to_lung").values())


CHILD = """
import json, sys
from lesionlib.runner import Runner
from lesionlib.profile import Profile
P = Profile.from_mapping(json.loads(sys.argv[1]))
spec = json.loads(sys.argv[2])
r = Runner(P, log=lambda m: None)
r.ensure(spec)
print(r.trained)
"""


def test_two_processes_asking_for_one_run_at_once_train_it_once(cache_dir):
    P = tiny_profile(cache_dir)
    spec = fig1_specs(P, "brain_to_lung")[("High", "base", 0)]  # no parents: the race is on this run alone
    args = [sys.executable, "-c", CHILD, json.dumps(asdict(P)), json.dumps(spec)]
    env = dict(os.environ, OMP_NUM_THREADS="1")  # two trainers on two cores: one thread each
    procs = [subprocess.Popen(args, stdout=subprocess.PIPE, text=True, env=env) for _ in range(2)]
    trained = [int(p.communicate(timeout=300)[0].strip().splitlines()[-1]) for p in procs]
    assert sorted(trained) == [0, 1]  # one trained it, the other waited on the lock and reused it
    assert RunCache(cache_dir).has(spec) and len(list((cache_dir / "runs").iterdir())) == 1


def test_training_buffers_stay_in_the_heap_under_dasks_malloc_setting():
    """Dask's nanny gives its workers MALLOC_TRIM_THRESHOLD_=65536, which pins glibc's mmap threshold low: a
    1 MiB buffer freed and allocated again then faults in all its pages each time. `steady_heap` (called by
    every fit) keeps such buffers in the heap."""
    code = """
import resource, sys
import numpy as np
from lesionlib.config import steady_heap
def faults():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(200):
        np.ones(1 << 18, dtype=np.float32).sum()  # 1 MiB, allocated and freed
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
pinned = faults()
print(steady_heap(), pinned, faults())
"""
    env = {**os.environ, "MALLOC_TRIM_THRESHOLD_": "65536"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    ok, pinned, steady = out.split()
    if ok != "True":
        pytest.skip("not glibc: nothing to set")
    assert int(pinned) > 200 * 100 and int(steady) < int(pinned) / 20, out
