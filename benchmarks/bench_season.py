"""A season at the scale users run: N full-size simulated EW GRDM scenes through every stage.

The default configuration (80 m Denmark Strait grid, window 11, the default learners, a
LocalCluster of 2 single-threaded workers) runs ``ingest → charts → features → train → predict
→ evaluate`` on simulated full scenes. Per stage: wall time, CPU time of the workers (user +
system, summed over workers), peak resident memory of the largest worker (polled every 0.2 s)
and grid pixels per second (scenes × grid pixels / wall time). Then the chosen model's accuracy
against the simulator's truth on the test dates, and the 29-scene extrapolation: per-scene
stages scale with the number of scenes, ``train`` with its sampling part (the models fit, are
scored and timed on capped samples, so that part stays constant), ``evaluate``'s reading with
the number of test dates (classifying its capped sample stays constant; figures with the number
of class-map plots, at most 4). Last, the store's bytes per scene (the cube on disk divided by the
scenes), in all and per variable.

Simulation is excluded from every timing; the simulated inputs are kept in ``--workdir`` and
reused by later runs (the cube, models and reports are rebuilt every time).

    python -m benchmarks.bench_season [--scenes 4] [--workdir DIR] [--set model.select=accuracy]
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path
from typing import Any

import yaml
from distributed import Client

from benchmarks.common import rss, rss_poller, store_bytes, write_results
from seaice_dask.cluster import open_client
from seaice_dask.config import PipelineConfig, dump_config, load_config
from seaice_dask.pipeline import STAGE_FUNCTIONS, STAGES, simulate_inputs

SEASON = 29
PER_SCENE = ("ingest", "charts", "features", "predict", "export")


def _cpu_seconds() -> float:
    import psutil

    t = psutil.Process().cpu_times()
    return t.user + t.system


def season_config(workdir: Path, n_scenes: int, overrides: list[str]) -> PipelineConfig:
    """The default configuration on ``n_scenes`` simulated full scenes in ``workdir``."""
    raw: dict[str, Any] = {
        "name": f"bench-season-{n_scenes}",
        "simulate": {"enabled": True, "n_scenes": n_scenes, "size": "full"},
    }
    for item in overrides:
        key, _, value = item.partition("=")
        node = raw
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = yaml.safe_load(value)
    cfg = PipelineConfig.model_validate(raw)
    workdir.mkdir(parents=True, exist_ok=True)
    return load_config(dump_config(cfg, workdir / "pipeline.yaml"))


def fresh_season(workdir: Path, n_scenes: int, overrides: list[str]) -> PipelineConfig:
    """:func:`season_config` with its simulated inputs made (or reused) and no outputs left."""
    cfg = season_config(workdir, n_scenes, overrides)
    t0 = time.perf_counter()
    simulate_inputs(cfg)
    print(f"simulated inputs ready in {time.perf_counter() - t0:.0f} s (not counted)")
    for old in (cfg.paths.store, cfg.paths.models, cfg.paths.reports):
        shutil.rmtree(old, ignore_errors=True)
    return cfg


def season_arguments(description: str, scenes: int, example: str) -> argparse.ArgumentParser:
    """The options every season benchmark takes: ``--scenes``, ``--workdir``, ``--set``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--scenes", type=int, default=scenes)
    parser.add_argument("--workdir", type=Path, default=None, help="where simulated inputs are kept (reused)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help=f"config override, e.g. {example} (repeatable)")
    return parser


def run_stages(cfg: PipelineConfig, client: Client) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Every stage in order, measured; returns the rows and the stage reports."""
    client.run(rss)  # every worker up before polling
    rows, reports = [], {}
    for stage in STAGES:
        cpu0 = client.run(_cpu_seconds)
        start = time.perf_counter()
        with rss_poller(client) as peaks:
            reports[stage] = STAGE_FUNCTIONS[stage](cfg, client, False)
        wall = time.perf_counter() - start
        cpu = sum(v - cpu0.get(w, 0.0) for w, v in client.run(_cpu_seconds).items())
        rows.append({"stage": stage, "wall_s": wall, "worker_cpu_s": cpu,
                     "peak_worker_GiB": max(peaks.values()) / 2**30})
        print(f"{stage}: {wall:.1f} s", flush=True)
    return rows, reports


def extrapolate(rows: list[dict[str, Any]], reports: dict[str, Any], n_scenes: int, n_test: int) -> dict[str, float]:
    """Seconds per stage for a ``SEASON``-scene series (see the module docs)."""
    out = {}
    test_season = max(1, round(SEASON * n_test / n_scenes))
    for row in rows:
        stage, wall = row["stage"], row["wall_s"]
        if stage in PER_SCENE:
            out[stage] = wall * SEASON / n_scenes
        elif stage == "train":  # sampling reads every date; fitting, scoring, timing: capped sample
            sampling = reports["train"].sample_seconds
            out[stage] = (wall - sampling) + sampling * SEASON / n_scenes
        else:  # evaluate: reading scales with test dates, classifying the sample is fixed
            phases = reports["evaluate"].phase_seconds
            reads = phases.get("stored_maps", 0.0) + phases.get("sample", 0.0)
            figures = phases.get("figures", 0.0) * min(4, test_season) / min(4, n_test)  # ≤ 4 map plots
            out[stage] = (wall - reads - phases.get("figures", 0.0)) + reads * test_season / n_test + figures
    return out


def main() -> None:
    parser = season_arguments(__doc__.splitlines()[0], 4, "model.select=accuracy")
    parser.add_argument("--tag", default="", help="suffix of the results file")
    args = parser.parse_args()
    workdir = args.workdir or Path(__file__).with_name(f".season-{args.scenes}")
    cfg = fresh_season(workdir, args.scenes, args.overrides)
    with open_client(cfg.cluster) as client:
        rows, reports = run_stages(cfg, client)
    grid_px = cfg.grid.to_grid().shape[0] * cfg.grid.to_grid().shape[1]
    evaluation = reports["evaluate"]
    n_test = len(evaluation.test_dates)
    season = extrapolate(rows, reports, args.scenes, n_test)
    for row in rows:
        row["Mpx_per_s"] = args.scenes * grid_px / row["wall_s"] / 1e6
        row["s_per_scene"] = row["wall_s"] / args.scenes
        row[f"{SEASON}_scenes_s"] = season[row["stage"]]
    total = {"stage": "total", **{k: sum(r[k] for r in rows) for k in ("wall_s", "worker_cpu_s", f"{SEASON}_scenes_s")},
             "peak_worker_GiB": max(r["peak_worker_GiB"] for r in rows)}
    rows.append(total)
    ref = "truth" if "truth" in next(iter(evaluation.scores.values())) else "labels"
    chosen = reports["predict"].learner
    accuracy = {m: r[ref]["overall"]["overall_accuracy"] for m, r in evaluation.scores.items()}
    train = reports["train"]
    by_stage = {r["stage"]: r["wall_s"] for r in rows}
    checks = {
        "predict_over_features": by_stage["predict"] / by_stage["features"],
        "evaluate_over_predict": by_stage["evaluate"] / by_stage["predict"],
        f"{SEASON}_scene_minutes": total[f"{SEASON}_scenes_s"] / 60,
    }
    store = Path(cfg.paths.store)
    by_variable = {p.name: store_bytes(p) / args.scenes for p in sorted(store.iterdir()) if p.is_dir()}
    bytes_per_scene = store_bytes(store) / args.scenes
    write_results(
        f"bench_season{args.tag}", rows, scenes=args.scenes, grid_pixels=grid_px, test_dates=n_test,
        store_bytes_per_scene=bytes_per_scene,
        store_bytes_per_scene_by_variable={k: round(v) for k, v in by_variable.items() if v >= 1e6},
        overrides=args.overrides, chosen=chosen, reference=ref, accuracy=accuracy,
        train_accuracy={m: s["overall_accuracy"] for m, s in train.scores.items()},
        learner_px_per_s=train.predict_px_per_s, checks=checks,
    )
    print(f"chosen model: {chosen}; overall accuracy against {ref}: "
          + ", ".join(f"{m} {a:.3f}" for m, a in accuracy.items()))
    print("single-thread px/s: " + ", ".join(f"{m} {v / 1e6:.2f} M" for m, v in train.predict_px_per_s.items()))
    print(f"store: {bytes_per_scene / 1e6:.0f} MB per scene ("
          + ", ".join(f"{k} {v / 1e6:.0f}" for k, v in sorted(by_variable.items(), key=lambda kv: -kv[1]) if v >= 1e6) + ")")
    print(json.dumps(checks, indent=1))


if __name__ == "__main__":
    main()
