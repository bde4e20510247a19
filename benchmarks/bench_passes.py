"""Slices assembled into passes, at the scale users run, and several orbits in one cube.

1. **Slices.** N passes simulated with one seed as single products and as 2 slices each (full
   size, 80 m grid, the seed's preprocessing: :data:`SEED_PREPROCESS`). ``run`` trains on the
   single-product cube; the sliced cube is ingested, labelled, textured and classified with that
   same model, so the comparison measures assembly, not training noise. Reported: time steps,
   class agreement per pass, grid pixels valid in the single-product cube but not in the
   assembled one (a seam), the radiometric seam per class against the truth
   (:func:`~seaice_dask.diagnostics.seam_steps`: the median σ0 of the rows either side of the
   slice boundary against neighbouring rows inside a slice), and ingest worker CPU: each cube
   ingested ``--repeats`` times from scratch, alternately, in one session (median and best;
   ``--repeats 0``: no ingest, the cubes an earlier run left are measured), and pixels classified
   in the single-product cube but not in the assembled one (``unclassified_px``).
2. **Orbits** (``--orbits 24,89``): M passes over both orbits through every stage; accuracy
   against the truth per relative orbit (≥ 2 test passes each: ``model.test_fraction`` 0.5).

    python -m benchmarks.bench_passes [--scenes 4] [--repeats 3] [--set KEY=VALUE] [--orbit-scenes 8] [--orbit-size small] [--workdir DIR]
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
from seaice_dask.cube import cube_attrs, cube_grid, open_cube
from seaice_dask.ingest import ingest
from seaice_dask.pipeline import STAGES, run_pipeline, simulate_inputs
from seaice_dask.preprocess.incidence import ATTR as INCIDENCE_ATTR
from seaice_dask.preprocess.incidence import IncidenceCorrection


#: The seed's preprocessing (NERSC denoising, textural noise, class-aware incidence correction).
SEED_PREPROCESS = ["preprocess.denoise=nersc", "preprocess.textural_noise=true", "preprocess.incidence.correction=class"]


def _ingest_cpu(cfg, client) -> float:
    """Worker CPU seconds of one ingest of ``cfg`` into a new cube."""
    shutil.rmtree(cfg.paths.store, ignore_errors=True)
    cpu0 = client.run(_cpu_seconds)
    run_pipeline(cfg, client, stages=["ingest"], progress=False)
    return sum(v - cpu0.get(w, 0.0) for w, v in client.run(_cpu_seconds).items())


def _seams(cfg, ds, whole) -> list[dict]:
    """Per sliced time step and class: the step of the median σ0 (dB) across each slice boundary,
    and between neighbouring rows inside a slice (:func:`~seaice_dask.diagnostics.seam_steps`);
    ``whole_boundary_db``: the same rows of the single-product cube ``whole`` (scene structure);
    ``added_db``: the step across the boundary of the assembled cube's difference from ``whole``,
    what assembly adds to the scene's own step."""
    from seaice_dask.diagnostics import seam_steps
    from seaice_dask.ingest.passes import Pass
    from seaice_dask.ingest.plan import find_scenes
    from seaice_dask.learn.evaluate import TRUTH_STORE, open_truth
    from seaice_dask.safe import open_safe

    products = {q.name: q for q in map(open_safe, find_scenes(cfg))}
    truth = open_truth(Path(cfg.paths.workdir) / TRUTH_STORE, ds)
    grid = cube_grid(ds)
    rows = []
    for t in range(ds.sizes["time"]):
        names = str(ds["product_id"].values[t]).split(";")
        if len(names) < 2:
            continue
        classes = np.where(ds["land"].values, -1, truth.isel(time=t).values)
        for b, boundary in enumerate(Pass(tuple(products[n] for n in names)).boundary_rows(grid)):
            for pol in ("hh", "hv"):
                steps = seam_steps(ds[f"sigma0_{pol}"].isel(time=t).values, classes, boundary)
                reference = whole[f"sigma0_{pol}"].isel(time=t).values
                same = seam_steps(reference, classes, boundary)
                added = seam_steps(ds[f"sigma0_{pol}"].isel(time=t).values - reference, classes, boundary)
                for k, v in steps.items():
                    rows.append({"pass": str(ds["time"].values[t])[:19], "boundary": b + 1, "pol": pol, "class": k, **v,
                                 "whole_boundary_db": same.get(k, {}).get("boundary_db", float("nan")),
                                 "added_db": added.get(k, {}).get("boundary_db", float("nan"))})
                    print(f"seam {rows[-1]['pass']} {pol} class {k}: {v['boundary_db']:.3f} dB (single product "
                          f"{rows[-1]['whole_boundary_db']:.3f}, added {rows[-1]['added_db']:.3f}; inside "
                          f"{v['inside_db']:.3f}, max {v['inside_max_db']:.3f})", flush=True)
    return rows


def _report_seams(name: str, sliced, whole, n: int) -> None:
    """:func:`_seams` of the two cubes, printed and written as ``name``."""
    seams = _seams(sliced, open_cube(sliced.paths.store), open_cube(whole.paths.store))
    worst = {k: max((r[k] for r in seams), default=None) for k in ("boundary_db", "whole_boundary_db", "added_db")}
    print(f"{name}: largest step {worst}; {sum(r['boundary_db'] > 0.2 for r in seams)} of {len(seams)} cases above "
          f"0.2 dB", flush=True)
    write_results(name, seams, passes=n, preprocess=SEED_PREPROCESS, **{f"worst_{k}": v for k, v in worst.items()})


def slices(workdir: Path, n: int, repeats: int, overrides: list[str]) -> list[dict]:
    whole = season_config(workdir / "whole", n, [*SEED_PREPROCESS, *overrides])
    sliced = season_config(workdir / "sliced", n, [*SEED_PREPROCESS, *overrides, "simulate.slices_per_pass=2"])
    for cfg in (whole, sliced):
        t0 = time.perf_counter()
        simulate_inputs(cfg)
        print(f"simulated {cfg.paths.workdir.name} in {time.perf_counter() - t0:.0f} s (not counted)", flush=True)
        for old in (cfg.paths.store, cfg.paths.models, cfg.paths.reports)[0 if repeats else 1 :]:
            shutil.rmtree(old, ignore_errors=True)
    sliced.paths.models = whole.paths.models  # one model for both cubes
    cpu: dict[str, list[float]] = {"whole": [], "sliced": []}
    with open_client(whole.cluster) as client:
        for _ in range(repeats):  # alternately, so a busy spell of the machine hits both
            for name, cfg in (("whole", whole), ("sliced", sliced)):
                cpu[name].append(_ingest_cpu(cfg, client))
                print(f"ingest {name}: {cpu[name][-1]:.1f} worker CPU s", flush=True)
        cost = ratio = None  # --repeats 0: the cubes an earlier run left
        if repeats:
            cost = {k: {"runs": v, "median": float(np.median(v)), "best": min(v)} for k, v in cpu.items()}
            ratio = {k: cost["sliced"][k] / cost["whole"][k] for k in ("median", "best")}
            print(f"ingest worker CPU (s) of {repeats} runs: whole {cpu['whole']}, sliced {cpu['sliced']}; "
                  f"median ratio {ratio['median']:.3f}, best {ratio['best']:.3f}", flush=True)
        _report_seams("bench_passes-seams", sliced, whole, n)
        run_pipeline(whole, client, stages=[s for s in STAGES if s not in ("ingest", "evaluate", "export")], progress=False)
        # the model's incidence correction (each cube above estimated its own, as a first ingest does)
        shutil.rmtree(sliced.paths.store)
        ingest(sliced, progress=False, incidence=IncidenceCorrection.from_attrs(cube_attrs(whole.paths.store)[INCIDENCE_ATTR]))
        run_pipeline(sliced, client, stages=["charts", "features", "predict"], progress=False)
        _report_seams("bench_passes-seams-one-correction", sliced, whole, n)  # both cubes corrected alike
    a, b = open_cube(whole.paths.store), open_cube(sliced.paths.store)
    rows = []
    for t in range(a.sizes["time"]):
        ca, cb = a["class"].isel(time=t).values, b["class"].isel(time=t).values
        both = (ca >= 0) | (cb >= 0)
        va, vb = a["valid"].isel(time=t).values, b["valid"].isel(time=t).values
        rows.append({"pass": str(a["time"].values[t])[:19], "products": str(b["product_id"].values[t]).count(";") + 1,
                     "agreement": float((ca == cb)[both].mean()), "seam_px": int((va & ~vb).sum()),
                     "extra_px": int((vb & ~va).sum()), "unclassified_px": int(((ca >= 0) & (cb < 0)).sum())})
    print(f"time steps: whole {a.sizes['time']}, sliced {b.sizes['time']}")
    write_results("bench_passes-slices", rows, passes=n, preprocess=SEED_PREPROCESS, steps_whole=a.sizes["time"],
                  steps_sliced=b.sizes["time"], ingest_cpu_s=cost, ingest_cpu_ratio=ratio)
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
    parser.add_argument("--repeats", type=int, default=3,
                        help="ingests of each cube for the CPU comparison (0: reuse the cubes of an earlier run)")
    parser.add_argument("--orbit-scenes", type=int, default=8, help="passes of the orbits run")
    parser.add_argument("--orbit-size", default="small", choices=["small", "full"])
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="config override of the slices comparison (e.g. simulate.size=small for a quick check)")
    parser.add_argument("--skip", choices=["slices", "orbits"], action="append", default=[])
    parser.add_argument("--workdir", type=Path, default=Path(__file__).with_name(".passes"))
    args = parser.parse_args()
    if "orbits" not in args.skip:
        orbits(args.workdir, args.orbit_scenes, args.orbit_size)
    if "slices" not in args.skip:
        slices(args.workdir, args.scenes, args.repeats, args.overrides)


if __name__ == "__main__":
    main()
