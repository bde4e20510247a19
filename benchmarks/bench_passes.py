"""Slices assembled into passes, at the scale users run, and several orbits in one cube.

1. **Slices.** N passes simulated with one seed as single products and as 2 slices each (full
   size, default config, 80 m grid). ``run`` trains on the single-product cube; the sliced cube is
   ingested, labelled, textured and classified with that same model, so the comparison measures
   assembly, not training noise. Reported: time steps, class agreement per pass, grid pixels
   valid in the single-product cube but not in the assembled one (a seam), and ingest worker CPU.
2. **Orbits** (``--orbits 24,89``): M passes over both orbits through every stage; accuracy
   against the truth per relative orbit (≥ 2 test passes each: ``model.test_fraction`` 0.5).

    python -m benchmarks.bench_passes [--scenes 4] [--orbit-scenes 8] [--orbit-size small] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

import numpy as np

from benchmarks.bench_season import _cpu_seconds, season_config
from benchmarks.common import write_results
from seaice_dask.cluster import open_client
from seaice_dask.cube import open_cube
from seaice_dask.pipeline import STAGES, run_pipeline, simulate_inputs


def _ingest_cpu(cfg, client) -> float:
    cpu0 = client.run(_cpu_seconds)
    run_pipeline(cfg, client, stages=["ingest"], progress=False)
    return sum(v - cpu0.get(w, 0.0) for w, v in client.run(_cpu_seconds).items())


def slices(workdir: Path, n: int) -> list[dict]:
    whole = season_config(workdir / "whole", n, [])
    sliced = season_config(workdir / "sliced", n, ["simulate.slices_per_pass=2"])
    for cfg in (whole, sliced):
        t0 = time.perf_counter()
        simulate_inputs(cfg)
        print(f"simulated {cfg.paths.workdir.name} in {time.perf_counter() - t0:.0f} s (not counted)", flush=True)
        for old in (cfg.paths.store, cfg.paths.models, cfg.paths.reports):
            shutil.rmtree(old, ignore_errors=True)
    sliced.paths.models = whole.paths.models  # one model for both cubes
    with open_client(whole.cluster) as client:
        cpu_whole = _ingest_cpu(whole, client)
        run_pipeline(whole, client, stages=[s for s in STAGES if s not in ("ingest", "evaluate", "export")], progress=False)
        cpu_sliced = _ingest_cpu(sliced, client)
        run_pipeline(sliced, client, stages=["charts", "features", "predict"], progress=False)
    a, b = open_cube(whole.paths.store), open_cube(sliced.paths.store)
    rows = []
    for t in range(a.sizes["time"]):
        ca, cb = a["class"].isel(time=t).values, b["class"].isel(time=t).values
        both = (ca >= 0) | (cb >= 0)
        va, vb = a["valid"].isel(time=t).values, b["valid"].isel(time=t).values
        rows.append({"pass": str(a["time"].values[t])[:19], "products": str(b["product_id"].values[t]).count(";") + 1,
                     "agreement": float((ca == cb)[both].mean()), "seam_px": int((va & ~vb).sum()),
                     "extra_px": int((vb & ~va).sum())})
    print(f"time steps: whole {a.sizes['time']}, sliced {b.sizes['time']}; ingest worker CPU whole {cpu_whole:.1f} s, "
          f"sliced {cpu_sliced:.1f} s (ratio {cpu_sliced / cpu_whole:.3f})")
    write_results("bench_passes-slices", rows, passes=n, steps_whole=a.sizes["time"], steps_sliced=b.sizes["time"],
                  ingest_cpu_whole_s=cpu_whole, ingest_cpu_sliced_s=cpu_sliced, ingest_cpu_ratio=cpu_sliced / cpu_whole)
    return rows


def orbits(workdir: Path, n: int, size: str) -> dict:
    overrides = ["simulate.orbits=[24, 89]", f"simulate.size={size}", "model.test_fraction=0.5"]
    if size == "small":
        overrides += ["grid.resolution_m=400", "grid.chunk=256", "preprocess.multilook=1", "features.window=7"]
    cfg = season_config(workdir / "orbits", n, overrides)
    simulate_inputs(cfg)
    for old in (cfg.paths.store, cfg.paths.models, cfg.paths.reports):
        shutil.rmtree(old, ignore_errors=True)
    with open_client(cfg.cluster) as client:
        reports = run_pipeline(cfg, client, stages=[s for s in STAGES if s != "export"], progress=False)
    evaluation = reports["evaluate"]
    chosen = reports["predict"].learner
    per_orbit = {o: s["overall_accuracy"] for o, s in evaluation.scores[chosen]["truth"]["per_orbit"].items()}
    test_orbits = [f"{int(o)} {d}" for o, d in zip(*(open_cube(cfg.paths.store)[c].values[reports["train"].test_index]
                                                     for c in ("relative_orbit", "pass_direction")), strict=True)]
    rows = [{"orbit": o, "accuracy": acc, "test_passes": test_orbits.count(o)} for o, acc in per_orbit.items()]
    write_results("bench_passes-orbits", rows, passes=n, size=size, chosen=chosen)
    return per_orbit


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=4, help="passes of the slices comparison (full size)")
    parser.add_argument("--orbit-scenes", type=int, default=8, help="passes of the orbits run")
    parser.add_argument("--orbit-size", default="small", choices=["small", "full"])
    parser.add_argument("--skip", choices=["slices", "orbits"], action="append", default=[])
    parser.add_argument("--workdir", type=Path, default=Path(__file__).with_name(".passes"))
    args = parser.parse_args()
    if "orbits" not in args.skip:
        orbits(args.workdir, args.orbit_scenes, args.orbit_size)
    if "slices" not in args.skip:
        slices(args.workdir, args.scenes)


if __name__ == "__main__":
    main()
