"""Cost follows the data: the same full scenes on the default grid and on grids of 4× and 16× its area.

N full-size simulated EW GRDM scenes (default configuration, 80 m grid). The model is trained once
on the default grid; then, for each grid (the default box widened symmetrically to 1×, 4×, 16×
its area, on the same pixel lattice), a new cube goes through ingest → charts → features →
predict (that model) → export, best of ``--repeat`` runs per stage. Reported per grid and stage:
wall time, worker CPU-seconds, peak worker memory, and the ratio to the default grid; the store's
bytes; and whether the classes agree with the default grid's where the grids overlap (away from
its edges, where texture and smoothing windows see data beyond the default box on larger grids).

    python -m benchmarks.bench_coverage [--scenes 2] [--factors 1,4,16] [--repeat 2] [--workdir DIR]
"""

from __future__ import annotations

import math
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.bench_season import _cpu_seconds, fresh_season, season_arguments
from benchmarks.common import rss, rss_poller, store_bytes, write_results
from seaice_dask.cluster import open_client
from seaice_dask.config import PipelineConfig, dump_config, load_config
from seaice_dask.cube import open_cube
from seaice_dask.pipeline import STAGE_FUNCTIONS, run_pipeline

MEASURED = ("ingest", "charts", "features", "predict", "export")


def widened(bounds: tuple[float, float, float, float], factor: float, resolution: float) -> list[float]:
    """``bounds`` widened symmetrically to ``factor`` × their area, in whole pixels."""
    xmin, ymin, xmax, ymax = bounds
    grow = (math.sqrt(factor) - 1) / 2
    dx = round((xmax - xmin) * grow / resolution) * resolution
    dy = round((ymax - ymin) * grow / resolution) * resolution
    return [xmin - dx, ymin - dy, xmax + dx, ymax + dy]


def grid_config(base: PipelineConfig, factor: float, out: Path) -> PipelineConfig:
    """``base`` on the widened grid, with its own store and reports, and the base run's models."""
    raw = base.model_dump(mode="json")
    raw["grid"]["bounds"] = widened(tuple(base.grid.bounds), factor, base.grid.resolution_m)
    raw["paths"].update(store=str(out / "cube.zarr"), reports=str(out / "reports"),
                        models=str(base.paths.models), workdir=str(base.paths.workdir))
    out.mkdir(parents=True, exist_ok=True)
    return load_config(dump_config(PipelineConfig.model_validate(raw), out / "pipeline.yaml"))


def measure(cfg: PipelineConfig, client: Any, stages: tuple[str, ...] = MEASURED) -> list[dict[str, Any]]:
    """One fresh run of ``stages``: wall, worker CPU and peak worker memory per stage."""
    for old in (cfg.paths.store, cfg.paths.reports):
        shutil.rmtree(old, ignore_errors=True)
    rows = []
    for stage in stages:
        cpu0 = client.run(_cpu_seconds)
        start = time.perf_counter()
        with rss_poller(client) as peaks:
            STAGE_FUNCTIONS[stage](cfg, client, False)
        wall = time.perf_counter() - start
        cpu = sum(v - cpu0.get(w, 0.0) for w, v in client.run(_cpu_seconds).items())
        rows.append({"stage": stage, "wall_s": wall, "worker_cpu_s": cpu, "peak_worker_GiB": max(peaks.values()) / 2**30})
    return rows


def agreement(base: PipelineConfig, cfg: PipelineConfig) -> dict[str, Any]:
    """Classes of ``cfg``'s cube against the default grid's where they overlap."""
    small, big = open_cube(base.paths.store), open_cube(cfg.paths.store)
    common = big["class"].sel(y=small["y"], x=small["x"], method="nearest", tolerance=1.0).values
    ref = small["class"].values
    margin = base.features.window // 2 + int(small["class"].attrs["smoothing_window_px"]) // 2
    inner = (..., slice(margin, -margin), slice(margin, -margin))
    return {"differing_px": int((common != ref).sum()), "differing_px_inside": int((common[inner] != ref[inner]).sum()),
            "classified_px_inside": int((ref[inner] >= 0).sum()), "edge_margin_px": margin}


def main() -> None:
    parser = season_arguments(__doc__.splitlines()[0], 2, "grid.chunk=1024")
    parser.add_argument("--factors", default="1,4,16", help="grid areas, as multiples of the default's")
    parser.add_argument("--repeat", type=int, default=2, help="runs per grid; the best wall time per stage is kept")
    args = parser.parse_args()
    factors = [float(f) for f in args.factors.split(",")]
    workdir = args.workdir or Path(__file__).with_name(f".coverage-{args.scenes}")
    base = fresh_season(workdir, args.scenes, args.overrides)
    rows: list[dict[str, Any]] = []
    summary: dict[str, Any] = {}
    with open_client(base.cluster) as client:
        client.run(rss)
        start = time.perf_counter()
        run_pipeline(base, client, stages=("ingest", "charts", "features", "train"), progress=False)
        print(f"the model, trained on the default grid: {time.perf_counter() - start:.0f} s (not counted)", flush=True)
        for factor in factors:
            cfg = base if factor == 1 else grid_config(base, factor, workdir / f"grid-x{factor:g}")
            runs = [measure(cfg, client) for _ in range(args.repeat)]
            best = [min((run[i] for run in runs), key=lambda r: r["wall_s"]) for i in range(len(MEASURED))]
            size = store_bytes(cfg.paths.store)
            cube = open_cube(cfg.paths.store)
            shape, valid = cube.sizes, int(cube["valid"].sum().compute())
            for row in best:
                rows.append({"grid_area": factor, "grid_px": shape["y"] * shape["x"], **row})
            summary[f"x{factor:g}"] = {"store_bytes": size, "grid_shape": [shape["y"], shape["x"]], "valid_px": valid,
                                       "bytes_per_valid_px": size / valid, **({} if factor == 1 else agreement(base, cfg))}
            print(f"grid ×{factor:g} ({shape['y']} × {shape['x']}): " +
                  ", ".join(f"{r['stage']} {r['wall_s']:.1f} s" for r in best) + f"; store {size / 2**20:.0f} MiB", flush=True)
    by = {(r["grid_area"], r["stage"]): r for r in rows}
    for r in rows:
        one = by.get((1.0, r["stage"]))
        if one:
            r["wall_ratio"] = r["wall_s"] / one["wall_s"]
            r["cpu_ratio"] = r["worker_cpu_s"] / max(one["worker_cpu_s"], 1e-9)
    if "x1" in summary:
        for key, value in summary.items():
            value["store_ratio"] = value["store_bytes"] / summary["x1"]["store_bytes"]
            value["valid_ratio"] = value["valid_px"] / summary["x1"]["valid_px"]
    print(f"{'grid':>6} {'stage':>9} {'wall s':>8} {'ratio':>6} {'CPU s':>8} {'ratio':>6} {'peak GiB':>9}")
    for r in rows:
        print(f"{r['grid_area']:>5g}× {r['stage']:>9} {r['wall_s']:8.1f} {r.get('wall_ratio', np.nan):6.2f} "
              f"{r['worker_cpu_s']:8.1f} {r.get('cpu_ratio', np.nan):6.2f} {r['peak_worker_GiB']:9.2f}")
    for key, value in summary.items():
        print(key, value)
    write_results("bench_coverage", rows, scenes=args.scenes, overrides=args.overrides, repeat=args.repeat, grids=summary)


if __name__ == "__main__":
    main()
