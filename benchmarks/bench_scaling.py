"""Scaling from 1 to 2 workers, per stage: features, train, predict, evaluate on the same data.

At the scale users run: the default configuration (80 m Denmark Strait grid, window 11, the
default learners) on full-size simulated EW GRDM scenes, as ``bench_season`` sets it up. The
scenes are ingested and their charts rasterised once, and one untimed pass of the four stages
fills Numba's on-disk cache of compiled kernels (else the first timed run would include
compiling them). Then, for 1 and for 2 worker processes (one thread each, a fresh LocalCluster),
a fresh copy of the ingested cube goes through ``features``, ``train``, ``predict`` and
``evaluate`` (one stage at a time, wall time). Speed-up = t(1 worker) / t(2 workers),
efficiency = speed-up / 2. Target (issue 15): efficiency ≥ 0.8 for features and predict.

On a machine with fewer free cores than workers the numbers measure the machine, not the
pipeline: ``cpu_count`` and the load average at start are recorded with the results.

    python -m benchmarks.bench_scaling [--scenes 2] [--workdir DIR] [--set grid.resolution_m=400]
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from distributed import Client, LocalCluster

from benchmarks.bench_season import fresh_season, season_arguments
from benchmarks.common import timer, write_results
from seaice_dask.config import load_config
from seaice_dask.pipeline import run_pipeline

STAGES = ("features", "train", "predict", "evaluate")
TARGET = {"features": 0.8, "predict": 0.8}


def _cluster(n_workers: int) -> LocalCluster:
    return LocalCluster(n_workers=n_workers, threads_per_worker=1, memory_limit="4GiB", dashboard_address=None)


def prepare(workdir: Path, scenes: int, overrides: list[str]) -> Path:
    """Simulated inputs (kept in ``workdir``), ingested and labelled (the state before
    ``features``); returns the config. The four timed stages run once on a copy, untimed, to
    fill the compiled-kernel cache."""
    cfg = fresh_season(workdir / "template", scenes, overrides)
    with _cluster(2) as cluster, Client(cluster) as client:
        run_pipeline(cfg, client, stages=["ingest", "charts"], progress=False)
        warm = load_config(_copy(workdir / "template" / "pipeline.yaml", workdir / "warm-up"))
        run_pipeline(warm, client, stages=STAGES, progress=False)
    shutil.rmtree(workdir / "warm-up")
    return workdir / "template" / "pipeline.yaml"


def _copy(config: Path, workdir: Path) -> Path:
    """A copy of the work folder of ``config`` (scenes and truth linked); returns the copy's config."""
    shutil.rmtree(workdir, ignore_errors=True)
    linked = ("scenes", "truth.zarr")
    shutil.copytree(config.parent, workdir, ignore=shutil.ignore_patterns(*linked, "*.lock", "models", "reports"))
    for name in linked:
        if (config.parent / name).exists():
            (workdir / name).symlink_to(config.parent / name)
    return workdir / config.name


def time_stages(template: Path, workdir: Path, n_workers: int) -> dict[str, float]:
    cfg = load_config(_copy(template, workdir))
    seconds = {}
    with _cluster(n_workers) as cluster, Client(cluster) as client:
        for stage in STAGES:
            with timer() as t:
                run_pipeline(cfg, client, stages=[stage], progress=False)
            seconds[stage] = t["seconds"]
            print(f"{n_workers} worker(s): {stage} {t['seconds']:.1f} s", flush=True)
    shutil.rmtree(workdir)
    return seconds


def main() -> None:
    args = season_arguments(__doc__.splitlines()[0], 2, "grid.resolution_m=400").parse_args()
    load = os.getloadavg()[0]
    workdir = args.workdir or Path(__file__).with_name(f".scaling-{args.scenes}")
    template = prepare(workdir, args.scenes, args.overrides)
    grid = load_config(template).grid.to_grid()
    times = {n: time_stages(template, workdir / f"workers{n}", n) for n in (1, 2)}
    rows = []
    for stage in STAGES:
        speedup = times[1][stage] / times[2][stage]
        rows.append({"stage": stage, "1_worker_s": times[1][stage], "2_workers_s": times[2][stage],
                     "speedup": speedup, "efficiency": speedup / 2, "target": TARGET.get(stage)})
    write_results(
        "bench_scaling", rows, scenes=args.scenes, grid=f"{grid.shape[0]}x{grid.shape[1]}",
        overrides=args.overrides, threads_per_worker=1, load_average_at_start=load,
    )


if __name__ == "__main__":
    main()
