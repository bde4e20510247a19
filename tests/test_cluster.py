"""The cluster entry point against real LocalClusters and real scheduler/worker processes."""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from seaice_dask.cluster import MallocTuning, describe, open_client
from seaice_dask.config import ClusterConfig
from seaice_dask.errors import ConfigError

pytestmark = pytest.mark.cluster
DASK = str(Path(sys.executable).with_name("dask"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_local_cluster_runs_a_task_and_is_closed():
    cfg = ClusterConfig(n_workers=1, threads_per_worker=1, memory_limit="1GiB", dashboard=False)
    with open_client(cfg) as client:
        assert client.submit(sum, [1, 2, 3]).result() == 6
        info = describe(client)
        assert info["workers"] == 1 and info["threads"] == 1
        plugins = client.run_on_scheduler(lambda dask_scheduler: list(dask_scheduler.worker_plugins))
        assert MallocTuning.name in plugins
        cluster = client.cluster
    assert cluster.status.name == "closed"


def _mapped_bytes_of_a_reallocated_array(mb: int = 20) -> int:
    """Bytes glibc holds in separately mmapped blocks while an ``mb`` MB array lives, after an
    array of that size was allocated and freed once (``mallinfo2().hblkhd``)."""
    import ctypes

    import numpy as np

    class MallInfo2(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                          "fsmblks", "uordblks", "fordblks", "keepcost")]

    mallinfo2 = ctypes.CDLL("libc.so.6").mallinfo2
    mallinfo2.restype = MallInfo2
    np.ones(mb * 2**20 // 8)
    array = np.ones(mb * 2**20 // 8)
    mapped = mallinfo2().hblkhd
    del array
    return int(mapped)


def test_workers_reuse_freed_arrays():
    """Dask's nanny starts workers with glibc's reuse of large freed blocks off: every array over
    128 KiB is a fresh mmap, its pages faulted in one by one (predicting a block took 2.5× as
    long); the plugin every client registers turns reuse back on."""
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=1, dashboard_address=None) as cluster, Client(cluster) as client:
        untuned = next(iter(client.run(_mapped_bytes_of_a_reallocated_array).values()))
        client.register_plugin(MallocTuning())
        tuned = next(iter(client.run(_mapped_bytes_of_a_reallocated_array).values()))
    assert untuned >= 20 * 2**20 > tuned, (untuned, tuned)


@pytest.fixture(scope="module")
def scheduler_and_workers(tmp_path_factory):
    """A real `dask scheduler` and two `dask worker` processes, shared by the module's tests
    (none of them closes or changes it)."""
    tmp_path = tmp_path_factory.mktemp("workers")
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    env = {**os.environ, "DASK_DISTRIBUTED__WORKER__DAEMON": "False"}
    procs = [
        subprocess.Popen(
            [DASK, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--dashboard-address", ":0"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
        )
    ]
    time.sleep(1.0)
    for i in range(2):
        procs.append(
            subprocess.Popen(
                [DASK, "worker", address, "--nthreads", "1", "--memory-limit", "1GiB",
                 "--name", f"w{i}", "--local-directory", str(tmp_path / f"w{i}"), "--no-dashboard"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
            )
        )
    try:
        yield address
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()


def test_connects_to_real_scheduler_and_workers(scheduler_and_workers):
    address = scheduler_and_workers
    with open_client(address=address) as client:
        client.wait_for_workers(2, timeout=60)
        futures = client.map(lambda x: x * x, range(8))
        assert client.gather(futures) == [x * x for x in range(8)]
        ran_on = {ws for ws in client.who_has(futures).values() for ws in ws}
        assert len(ran_on) >= 1
        assert describe(client)["workers"] == 2
    # the external scheduler is still alive: we only close what we started
    with open_client(address=address) as client:
        assert client.submit(int, "7").result() == 7


def test_environment_variable_selects_the_scheduler(scheduler_and_workers, monkeypatch):
    monkeypatch.setenv("DASK_SCHEDULER_ADDRESS", scheduler_and_workers)
    with open_client(ClusterConfig()) as client:
        assert client.scheduler.address == scheduler_and_workers
        assert client.cluster is None


def test_address_kind_needs_an_address(monkeypatch):
    monkeypatch.delenv("DASK_SCHEDULER_ADDRESS", raising=False)
    with pytest.raises(ConfigError, match="needs cluster.address"):
        with open_client(ClusterConfig(kind="address")):
            pass


def test_missing_tls_files_are_named(tmp_path):
    cfg = ClusterConfig.model_validate(
        {"kind": "address", "address": "tls://127.0.0.1:1", "tls": {"ca_file": tmp_path / "ca.pem", "cert": tmp_path / "c.pem", "key": tmp_path / "k.pem"}}
    )
    with pytest.raises(ConfigError, match="cluster.tls.ca_file: file not found"):
        with open_client(cfg):
            pass
