"""Shared benchmark plumbing: machine description, peak memory of workers, JSON results."""

from __future__ import annotations

import json
import os
import platform
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

RESULTS = Path(__file__).with_name("results")


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    import dask
    import numpy

    import seaice_dask

    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
        "seaice_dask": seaice_dask.__version__,
        "dask": dask.__version__,
        "numpy": numpy.__version__,
    }


@contextmanager
def timer() -> Iterator[dict[str, float]]:
    """``with timer() as t: ...`` then ``t["seconds"]``."""
    out: dict[str, float] = {}
    start = time.perf_counter()
    try:
        yield out
    finally:
        out["seconds"] = time.perf_counter() - start


def worker_peak_memory(client) -> dict[str, int]:
    """Peak resident memory (bytes) of every worker process since it started (Linux ru_maxrss)."""

    def peak() -> int:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    return client.run(peak)


def rss() -> int:
    """Resident memory (bytes) of this process."""
    import psutil

    return psutil.Process().memory_info().rss


@contextmanager
def rss_poller(client, interval: float = 0.2):
    """Poll every worker's RSS in a thread; yields a dict filled with the peak per worker."""
    peaks: dict[str, int] = {}
    stop = threading.Event()

    def poll() -> None:
        while not stop.is_set():
            for worker, value in client.run(rss).items():
                peaks[worker] = max(peaks.get(worker, 0), value)
            stop.wait(interval)

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    try:
        yield peaks
    finally:
        stop.set()
        thread.join()


def store_bytes(path: Path) -> int:
    """Bytes on disk of a folder (a local Zarr store): every file under it."""
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def write_results(name: str, rows: list[dict[str, Any]], **extra: Any) -> Path:
    """Print ``rows`` as a table and write them with the machine description to JSON."""
    if rows:
        keys = list(dict.fromkeys(k for row in rows for k in row))
        widths = {k: max(len(k), *(len(_fmt(r.get(k))) for r in rows)) for k in keys}
        print("  ".join(k.ljust(widths[k]) for k in keys))
        for row in rows:
            print("  ".join(_fmt(row.get(k)).ljust(widths[k]) for k in keys))
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    payload = {"benchmark": name, "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
               "machine": machine(), "rows": rows, **extra}
    path.write_text(json.dumps(payload, indent=2, default=str))
    print(f"→ {path}")
    return path


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)
