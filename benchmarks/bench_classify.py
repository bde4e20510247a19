"""Operational latency: one new full-size scene to a written class COG and STAC Item with ``classify``.

A model is trained once with the default configuration on N full-size simulated EW GRDM scenes
(80 m grid; the batch ``run`` stages ingest → charts → features → train → predict), then the last
scene is classified from the model folder alone:

- **warm**: in this process, on the running cluster, kernels compiled (the operational case);
- **cold**: ``seaice-dask classify`` in a new process (imports, cluster start, cached kernels loaded).

Both must give the class map the batch run stored for that scene (pixels compared).

    python -m benchmarks.bench_classify [--scenes 3] [--workdir DIR] [--set KEY=VALUE]
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.bench_season import fresh_season, season_arguments
from benchmarks.common import write_results
from seaice_dask.classify import classify
from seaice_dask.cluster import open_client
from seaice_dask.cube import open_cube
from seaice_dask.pipeline import run_pipeline
from seaice_dask.safe import open_safe

BATCH = ("ingest", "charts", "features", "train", "predict")


def _same_map(batch_store: Path, classified_store: Path, product: str) -> tuple[bool, int]:
    batch, mine = open_cube(batch_store), open_cube(classified_store)
    t = int(np.flatnonzero(batch["product_id"].values == product)[0])
    expected = batch["class"].isel(time=t).values
    got = mine["class"].isel(time=int(np.flatnonzero(mine["product_id"].values == product)[0])).values
    return bool(np.array_equal(expected, got)), int((expected >= 0).sum())


def main() -> None:
    args = season_arguments(__doc__.splitlines()[0], 3, "preprocess.denoise=esa").parse_args()
    workdir = args.workdir or Path(__file__).with_name(f".classify-{args.scenes}")
    cfg = fresh_season(workdir, args.scenes, args.overrides)
    scene = sorted(Path(p) for p in (workdir / "scenes").glob("*.zip"))[-1]
    product = open_safe(scene).name
    rows = []
    with open_client(cfg.cluster) as client:
        start = time.perf_counter()
        run_pipeline(cfg, client, stages=BATCH, progress=False)
        print(f"batch run (training the model): {time.perf_counter() - start:.0f} s", flush=True)
        warm_out = workdir / "classified-warm"
        for attempt in (1, 2):  # the first run also loads the model and its compiled weights on the workers
            shutil.rmtree(warm_out, ignore_errors=True)
            start = time.perf_counter()
            report = classify(cfg.paths.models, [scene], warm_out, client=client, progress=False)
            wall = time.perf_counter() - start
            assert report.class_maps and report.items and not report.refused, report
            same, valid = _same_map(cfg.paths.store, warm_out / "cube.zarr", product)
            rows.append({"case": f"warm (run {attempt})", "wall_s": wall, "same_as_batch": same, "valid_px": valid})
            print(f"warm classify, run {attempt}: {wall:.1f} s, same map as batch: {same}", flush=True)
    cold_out = workdir / "classified-cold"
    shutil.rmtree(cold_out, ignore_errors=True)
    command = [str(Path(sys.executable).with_name("seaice-dask")), "-q", "classify", str(cfg.paths.models), str(scene),
               "--out", str(cold_out)]
    start = time.perf_counter()
    subprocess.run(command, check=True)
    wall = time.perf_counter() - start
    same, valid = _same_map(cfg.paths.store, cold_out / "cube.zarr", product)
    rows.append({"case": "cold (new process and cluster)", "wall_s": wall, "same_as_batch": same, "valid_px": valid})
    print(f"cold classify: {wall:.1f} s, same map as batch: {same}")
    write_results("bench_classify", rows, scenes=args.scenes, overrides=args.overrides, product=product)


if __name__ == "__main__":
    main()
