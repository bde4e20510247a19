"""One context manager that yields a ``distributed.Client`` for every kind of deployment.

* ``local`` (default): a LocalCluster on this machine;
* ``address``: connect to a running scheduler (``tcp://`` or ``tls://``; also the environment
  variable ``DASK_SCHEDULER_ADDRESS``), with TLS certificates from the config;
* ``slurm`` / ``pbs``: dask-jobqueue, configured through dask's own config (``jobqueue.slurm``);
* ``kubernetes``: dask-kubernetes' operator ``KubeCluster`` (``kubernetes`` dask config);
* ``ssh``: distributed's SSHCluster over ``hosts`` (the first runs the scheduler).

Only what the context manager started is shut down on exit. Every client registers
:class:`MallocTuning` on its workers.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
from collections.abc import Iterator
from typing import Any

from distributed import Client, LocalCluster, WorkerPlugin

from seaice_dask.config import ClusterConfig
from seaice_dask.errors import ConfigError, EngineUnavailableError

log = logging.getLogger(__name__)


def _security(cfg: ClusterConfig) -> Any:
    if cfg.tls is None:
        return None
    from distributed.security import Security

    for name in ("ca_file", "cert", "key"):
        path = getattr(cfg.tls, name)
        if not path.is_file():
            raise ConfigError(f"cluster.tls.{name}: file not found", path)
    return Security(
        tls_ca_file=str(cfg.tls.ca_file),
        tls_client_cert=str(cfg.tls.cert),
        tls_client_key=str(cfg.tls.key),
        require_encryption=True,
    )


#: glibc ``mallopt`` parameters (malloc.h) and the values :func:`tune_malloc` sets.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD_BYTES, TRIM_THRESHOLD_BYTES = (64 * 2**20, 32 * 2**20), 256 * 2**20


def tune_malloc() -> bool:
    """Let glibc keep freed blocks of up to 64 MiB (32 where it refuses 64) for reuse, and give
    memory back to the system only above 256 MiB free at the heap's top; False where this is
    not glibc.

    Why: Dask's nanny starts workers with ``MALLOC_TRIM_THRESHOLD_=65536``, and any such setting
    turns off glibc's adaptive mmap threshold, so every array over 128 KiB is a fresh ``mmap``
    that the kernel zero-fills page by page on first touch, and is unmapped when freed. Every
    block temporary paid that: predicting one 512² block took 73 ms in a worker against 29 ms
    in a plain process, and ingest and features were slowed alike. Kept, the blocks are reused;
    a worker holds at most its peak, as with any allocator that does not trim.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mapped = any(mallopt(_M_MMAP_THRESHOLD, size) == 1 for size in MMAP_THRESHOLD_BYTES)
    return mapped and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES) == 1


class MallocTuning(WorkerPlugin):
    """:func:`tune_malloc` on every worker, those that join or restart later included."""

    name = "seaice-dask-malloc"

    def setup(self, worker: Any) -> None:
        if not tune_malloc():
            log.debug("worker %s: not glibc, malloc left as it is", worker.address)


def _make_cluster(cfg: ClusterConfig) -> Any:
    """Start the cluster object for ``cfg.kind`` (not used for ``address``)."""
    if cfg.kind == "local":
        return LocalCluster(
            n_workers=cfg.n_workers,
            threads_per_worker=cfg.threads_per_worker,
            memory_limit=cfg.memory_limit,
            dashboard_address=":0" if cfg.dashboard else None,
            processes=True,
        )
    if cfg.kind in ("slurm", "pbs"):
        try:
            import dask_jobqueue
        except ImportError as exc:
            raise EngineUnavailableError(
                f"cluster.kind={cfg.kind} needs dask-jobqueue: pip install '.[cluster]' in the seaice-dask checkout"
            ) from exc
        cls = dask_jobqueue.SLURMCluster if cfg.kind == "slurm" else dask_jobqueue.PBSCluster
        cluster = cls()  # queue, cores, memory, walltime from dask config (jobqueue.<kind>)
        cluster.scale(jobs=cfg.n_workers)
        return cluster
    if cfg.kind == "kubernetes":
        try:
            from dask_kubernetes.operator import KubeCluster
        except ImportError as exc:
            raise EngineUnavailableError(
                "cluster.kind=kubernetes needs dask-kubernetes: pip install '.[cluster]' in the seaice-dask checkout"
            ) from exc
        # the workers need seaice-dask: the image built from deployments/docker/Dockerfile
        image = {"image": cfg.image} if cfg.image else {}
        return KubeCluster(name="seaice-dask", n_workers=cfg.n_workers, **image)
    if cfg.kind == "ssh":
        from distributed import SSHCluster

        if len(cfg.hosts) < 2:
            raise ConfigError("cluster.hosts needs a scheduler host and at least one worker host")
        return SSHCluster(
            cfg.hosts,
            worker_options={"nthreads": cfg.threads_per_worker, "memory_limit": cfg.memory_limit},
        )
    raise ConfigError(f"cluster.kind {cfg.kind!r} is not known")


@contextlib.contextmanager
def open_client(cfg: ClusterConfig | None = None, *, address: str | None = None) -> Iterator[Client]:
    """Yield a connected Client; close only what was started here.

    ``address`` (or ``DASK_SCHEDULER_ADDRESS`` when ``cfg.kind`` is ``local``) overrides the
    config and connects to an existing scheduler instead of starting a cluster.
    """
    cfg = cfg or ClusterConfig()
    address = address or cfg.address or (
        os.environ.get("DASK_SCHEDULER_ADDRESS") if cfg.kind in ("local", "address") else None
    )
    if cfg.kind == "address" and not address:
        raise ConfigError("cluster.kind=address needs cluster.address or DASK_SCHEDULER_ADDRESS")
    cluster = None
    if address:
        client = Client(address, security=_security(cfg), timeout="30s")
    else:
        cluster = _make_cluster(cfg)
        client = Client(cluster)
    try:
        client.register_plugin(MallocTuning())
        log.info("Dask dashboard: %s", client.dashboard_link)
        yield client
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def describe(client: Client) -> dict[str, Any]:
    """Scheduler address, dashboard link, workers, threads and memory of a connected cluster."""
    info = client.scheduler_info(n_workers=-1)
    workers = info.get("workers", {})
    return {
        "scheduler": client.scheduler.address,
        "dashboard": client.dashboard_link,
        "workers": len(workers),
        "threads": sum(w.get("nthreads", 0) for w in workers.values()),
        "memory_bytes": sum(w.get("memory_limit", 0) for w in workers.values()),
    }
