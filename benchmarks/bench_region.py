"""A region 16× the default box, passes from many tracks: cost proportional to the data.

The reduced version of the Arctic season (``benchmarks/arctic_plan.py``) run end to end here: N
small simulated passes over a grid of 16× the default area at 400 m, each from another track and
scattered over the grid (``simulate.orbits: null``, ``simulate.centres: scatter``), against the same
number of passes of one track over the default box at 400 m. Every stage, one run each; reported
per stage: wall time, worker CPU-seconds, and CPU-seconds per million valid pixels (the data),
which should be alike on both grids; plus the store's bytes per valid pixel and the share of grid
blocks the passes cover.

    python -m benchmarks.bench_region [--scenes 12] [--workdir DIR]
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.bench_coverage import measure, widened
from benchmarks.common import store_bytes
from benchmarks.common import rss, write_results
from seaice_dask.cluster import open_client
from seaice_dask.config import PipelineConfig, dump_config, load_config
from seaice_dask.cube import open_cube
from seaice_dask.grid import DENMARK_STRAIT_BOUNDS
from seaice_dask.pipeline import STAGES, simulate_inputs


def region_config(workdir: Path, n_scenes: int, factor: float) -> PipelineConfig:
    """The demo's 400 m settings on the default box widened to ``factor`` × its area; beyond 1×,
    each pass from another track, scattered."""
    simulate: dict[str, Any] = {"enabled": True, "n_scenes": n_scenes, "size": "small"}
    if factor > 1:
        simulate.update(orbits=None, centres="scatter")
    raw = {
        "name": f"bench-region-x{factor:g}",
        "grid": {"resolution_m": 400, "chunk": 256, "bounds": widened(DENMARK_STRAIT_BOUNDS, factor, 400)},
        "preprocess": {"multilook": 1},
        "features": {"window": 7},
        "model": {"cap_per_class": 5000, "smoothing_m": 2800},
        "simulate": simulate,
    }
    workdir.mkdir(parents=True, exist_ok=True)
    return load_config(dump_config(PipelineConfig.model_validate(raw), workdir / "pipeline.yaml"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=12)
    parser.add_argument("--workdir", type=Path, default=Path(__file__).with_name(".region"))
    args = parser.parse_args()
    rows, grids = [], {}
    for factor in (1.0, 16.0):
        cfg = region_config(args.workdir / f"x{factor:g}", args.scenes, factor)
        simulate_inputs(cfg)
        with open_client(cfg.cluster) as client:
            client.run(rss)
            stages = measure(cfg, client, STAGES)
        ds = open_cube(cfg.paths.store)
        valid_mpx = float(ds["valid"].sum()) / 1e6
        covered = float(np.asarray(ds["coverage"].values).mean())
        size = store_bytes(cfg.paths.store)
        grids[f"x{factor:g}"] = {"grid_shape": [ds.sizes["y"], ds.sizes["x"]], "passes": ds.sizes["time"],
                                 "relative_orbits": sorted({int(o) for o in ds["relative_orbit"].values}),
                                 "valid_Mpx": valid_mpx, "blocks_covered": covered, "store_bytes": size,
                                 "store_bytes_per_valid_px": size / (valid_mpx * 1e6)}
        for row in stages:
            rows.append({"grid_area": factor, **row, "cpu_s_per_valid_Mpx": row["worker_cpu_s"] / valid_mpx})
    print(f"{'grid':>5} {'stage':>9} {'wall s':>8} {'CPU s':>8} {'CPU s/Mpx':>10}")
    for r in rows:
        print(f"{r['grid_area']:>4g}× {r['stage']:>9} {r['wall_s']:8.1f} {r['worker_cpu_s']:8.1f} {r['cpu_s_per_valid_Mpx']:10.2f}")
    for key, value in grids.items():
        print(key, value)
    write_results("bench_region", rows, scenes=args.scenes, grids=grids)


if __name__ == "__main__":
    main()
