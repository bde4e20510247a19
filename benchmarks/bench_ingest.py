"""Ingest of one full-size simulated EW GRDM HH+HV scene onto the 80 m Denmark Strait grid.

Question: how long does ingest take per scene on 2 single-threaded workers, how much memory does
a worker need, and how big is a scene in the store? Targets: < 60 s, < 3 GiB peak per worker.

Baseline (same run, same cluster): computing the full-resolution calibrated, denoised sigma0 of
both polarisations (a reduction, nothing written) — the part of ingest that geocoding cannot
avoid; the ratio shows what geocoding + writing add.

    python -m benchmarks.bench_ingest [--scene-dir DIR] [--workers 2] [--resolution 80]

The simulated scene is written once into ``--scene-dir`` (default: a folder in the system temp
dir) and reused. Prints a table and writes ``benchmarks/results/bench_ingest.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import shutil
import tempfile
import threading
import time
from pathlib import Path

RESULTS = Path(__file__).with_name("results")


def _scene(scene_dir: Path) -> Path:
    from seaice_dask.simulate.safe_writer import SceneSpec, write_scene

    spec = SceneSpec(start=dt.datetime(2021, 1, 4, 8, 30), absolute_orbit=35200, size="full", product="GRDM")
    return write_scene(scene_dir, spec, fmt="safe")  # returns the existing product when present


class _PeakRSS:
    """Polls every worker's resident memory and keeps the maximum per worker."""

    def __init__(self, client, every_s: float = 0.25):
        self.client, self.every_s = client, every_s
        self.peak: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import psutil

        while not self._stop.is_set():
            try:
                rss = self.client.run(lambda: psutil.Process().memory_info().rss)
            except Exception:  # a worker restarting: skip one sample
                rss = {}
            for worker, value in rss.items():
                self.peak[worker] = max(self.peak.get(worker, 0), value)
            self._stop.wait(self.every_s)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def _worker_cpu_s(client) -> float:
    """CPU seconds (user + system) used so far by all worker processes: unlike wall time, it
    barely depends on what else the machine runs."""
    import psutil

    times = client.run(lambda: tuple(psutil.Process().cpu_times())[:2])
    return float(sum(sum(t) for t in times.values()))


def _du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scene-dir", type=Path, default=Path(tempfile.gettempdir()) / "seaice-dask-bench-scene")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--memory-limit", default="3GiB")
    parser.add_argument("--resolution", type=float, default=80.0)
    args = parser.parse_args()

    import dask
    import dask.array as da
    import numpy as np
    from distributed import Client, LocalCluster

    from seaice_dask.config import PipelineConfig
    from seaice_dask.ingest import ingest
    from seaice_dask.preprocess import sigma0
    from seaice_dask.safe import open_safe

    args.scene_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    scene = _scene(args.scene_dir)
    render_s = time.perf_counter() - t0
    product = open_safe(scene)
    work = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    cfg = PipelineConfig.model_validate({
        "paths": {"workdir": str(work), "scenes": [str(scene)], "store": str(work / "cube.zarr")},
        "grid": {"resolution_m": args.resolution},
    })
    cfg = cfg.resolve(work)
    results: dict = {
        "machine": {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count(),
                    "load_avg_1min": os.getloadavg()[0]},
        "scene": {"name": product.name, "shape": list(product.shape), "polarisations": list(product.polarisations),
                  "render_s": round(render_s, 1)},
        "cluster": {"workers": args.workers, "threads_per_worker": 1, "memory_limit": args.memory_limit},
        "grid": {"crs": cfg.grid.crs, "resolution_m": args.resolution, "shape": list(cfg.grid.to_grid().shape),
                 "chunk": cfg.grid.chunk},
    }
    with LocalCluster(n_workers=args.workers, threads_per_worker=1, memory_limit=args.memory_limit,
                      processes=True, dashboard_address=":0") as cluster, Client(cluster) as client:
        # baseline: full-resolution sigma0 of both polarisations, reduced (not written)
        with _PeakRSS(client) as rss_base:
            cpu0, t0 = _worker_cpu_s(client), time.perf_counter()
            total = dask.compute(*[da.nansum(sigma0(product, p, chunks=(2048, 2048)).data) for p in ("HH", "HV")])
            baseline_s, baseline_cpu = time.perf_counter() - t0, _worker_cpu_s(client) - cpu0
        assert all(np.isfinite(v) for v in total)
        client.run(lambda: __import__("gc").collect())
        with _PeakRSS(client) as rss:
            cpu0, t0 = _worker_cpu_s(client), time.perf_counter()
            report = ingest(cfg, [scene], progress=False, client=client)
            ingest_s, ingest_cpu = time.perf_counter() - t0, _worker_cpu_s(client) - cpu0
        if not report.ok or len(report.ingested) != 1:
            raise SystemExit(f"ingest failed: {report.failed}")
    store = Path(cfg.paths.store)
    sizes = {p.name: _du(p) for p in store.iterdir() if p.is_dir()}
    per_scene = sum(v for k, v in sizes.items() if k in ("sigma0_hh", "sigma0_hv", "incidence", "valid"))
    gib = 1024**3
    results["timings_s"] = {"baseline_sigma0_full_res": round(baseline_s, 2), "ingest": round(ingest_s, 2),
                            "ratio_ingest_to_baseline": round(ingest_s / baseline_s, 2),
                            "worker_cpu_baseline": round(baseline_cpu, 1), "worker_cpu_ingest": round(ingest_cpu, 1),
                            "client_cpu_total": round(sum(os.times()[:2]), 1)}
    results["memory"] = {
        "peak_rss_per_worker_gib": {w: round(v / gib, 3) for w, v in rss.peak.items()},
        "peak_rss_per_worker_gib_baseline": {w: round(v / gib, 3) for w, v in rss_base.peak.items()},
        "client_peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / gib, 3),
    }
    results["store"] = {"per_scene_mib": round(per_scene / 2**20, 1), "land_mib": round(sizes.get("land", 0) / 2**20, 2),
                        "total_mib": round(_du(store) / 2**20, 1), "per_variable_mib": {k: round(v / 2**20, 2) for k, v in sizes.items()}}
    worst = max(rss.peak.values()) / gib if rss.peak else float("nan")
    results["targets"] = {"ingest_lt_60s": ingest_s < 60, "peak_lt_3gib_per_worker": worst < 3.0}
    shutil.rmtree(work, ignore_errors=True)

    rows = [
        ("scene", f"{product.name[:40]} {product.shape[0]}x{product.shape[1]} HH+HV"),
        ("grid", f"{cfg.grid.crs} {args.resolution:g} m, {results['grid']['shape'][0]}x{results['grid']['shape'][1]}"),
        ("cluster", f"{args.workers} workers x 1 thread, limit {args.memory_limit}; load avg {results['machine']['load_avg_1min']:.1f}"),
        ("baseline sigma0 (full res, HH+HV)", f"{baseline_s:.1f} s wall, {baseline_cpu:.1f} s worker CPU"),
        ("ingest (geocode + write + land)", f"{ingest_s:.1f} s wall ({ingest_s / baseline_s:.2f} x baseline), "
                                            f"{ingest_cpu:.1f} s worker CPU  target < 60 s"),
        ("peak RSS per worker", f"{worst:.2f} GiB  target < 3 GiB"),
        ("store per scene", f"{per_scene / 2**20:.1f} MiB (+ land {sizes.get('land', 0) / 2**20:.2f} MiB once)"),
    ]
    width = max(len(r[0]) for r in rows)
    print("\n".join(f"{k:<{width}}  {v}" for k, v in rows))
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "bench_ingest.json"
    out.write_text(json.dumps(results, indent=2))
    print(f"written {out}")


if __name__ == "__main__":
    main()
