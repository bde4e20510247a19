"""Scaling from 1 to 2 workers, per stage: features, train, predict, evaluate on the same data.

A simulated series (the demo's settings: 400 m grid, GLCM window 7, every default learner) is
ingested and its charts rasterised once, and one untimed pass of the four stages fills Numba's
on-disk cache of compiled kernels (else the first timed run would include compiling them).
Then, for 1 and for 2 worker processes (one thread each, a fresh LocalCluster), a fresh copy of
the ingested cube goes through ``features``, ``train``, ``predict`` and ``evaluate``
(``run_pipeline`` one stage at a time, wall time). Speed-up = t(1 worker) / t(2 workers),
efficiency = speed-up / 2. Target (issue 15): efficiency ≥ 0.8 for features and predict.

On a machine with fewer free cores than workers the numbers measure the machine, not the
pipeline: ``cpu_count`` and the load average at start are recorded with the results.

    python -m benchmarks.bench_scaling [--scenes 8] [--resolution 400] [--chunk 256]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from pathlib import Path

from distributed import Client, LocalCluster

from benchmarks.common import timer, write_results
from seaice_dask.config import PipelineConfig, dump_config, load_config
from seaice_dask.pipeline import demo_config, run_pipeline, simulate_inputs

STAGES = ("features", "train", "predict", "evaluate")
TARGET = {"features": 0.8, "predict": 0.8}


def prepare(out: Path, scenes: int, resolution: float, chunk: int) -> Path:
    """Simulated inputs, ingested and labelled (the state before ``features``); returns the config.

    The four timed stages run once on a copy, untimed, to fill the compiled-kernel cache."""
    cfg = demo_config(out, scenes)
    cfg.grid.resolution_m, cfg.grid.chunk = resolution, chunk
    cfg = load_config(dump_config(cfg, out / "pipeline.yaml"))
    simulate_inputs(cfg)
    with LocalCluster(n_workers=2, threads_per_worker=1, memory_limit="4GiB", dashboard_address=None) as cluster, \
            Client(cluster) as client:
        run_pipeline(cfg, client, stages=["ingest", "charts"], progress=False)
        warm = load_config(_copy(out / "pipeline.yaml", out.with_name("warm-up")))
        run_pipeline(warm, client, stages=STAGES, progress=False)
    return out / "pipeline.yaml"


def _copy(config: Path, workdir: Path) -> Path:
    """A copy of the work folder of ``config`` (scenes linked); returns the copy's config."""
    shutil.copytree(config.parent, workdir, ignore=shutil.ignore_patterns("scenes", "*.lock"))
    (workdir / "scenes").symlink_to(config.parent / "scenes")
    return workdir / config.name


def time_stages(template: Path, workdir: Path, n_workers: int) -> dict[str, float]:
    cfg = load_config(_copy(template, workdir))
    seconds = {}
    with LocalCluster(n_workers=n_workers, threads_per_worker=1, memory_limit="4GiB",
                      dashboard_address=None) as cluster, Client(cluster) as client:
        for stage in STAGES:
            with timer() as t:
                run_pipeline(cfg, client, stages=[stage], progress=False)
            seconds[stage] = t["seconds"]
            print(f"{n_workers} worker(s): {stage} {t['seconds']:.1f} s", flush=True)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=8)
    parser.add_argument("--resolution", type=float, default=400.0, help="grid spacing (m)")
    parser.add_argument("--chunk", type=int, default=256)
    args = parser.parse_args()
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        template = prepare(Path(tmp) / "template", args.scenes, args.resolution, args.chunk)
        shape = PipelineConfig.model_validate({"grid": {"resolution_m": args.resolution}}).grid.to_grid().shape
        times = {n: time_stages(template, Path(tmp) / f"workers{n}", n) for n in (1, 2)}
    rows = []
    for stage in STAGES:
        speedup = times[1][stage] / times[2][stage]
        rows.append({"stage": stage, "1_worker_s": times[1][stage], "2_workers_s": times[2][stage],
                     "speedup": speedup, "efficiency": speedup / 2, "target": TARGET.get(stage)})
    write_results(
        "bench_scaling", rows, scenes=args.scenes, grid=f"{shape[0]}x{shape[1]}", chunk=args.chunk,
        threads_per_worker=1, load_average_at_start=load,
    )


if __name__ == "__main__":
    main()
