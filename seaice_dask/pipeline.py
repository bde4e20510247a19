"""The whole pipeline as library calls: what ``seaice-dask run`` and ``seaice-dask demo`` do.

Each stage is resumable on its own (the cube keeps a completion flag per stage and time slice),
so ``run`` after a crash, or after adding scenes, only does the missing work.
"""

from __future__ import annotations

import glob
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from distributed import Client

from seaice_dask.config import PipelineConfig, dump_config, load_config
from seaice_dask.errors import ConfigError

log = logging.getLogger(__name__)

STAGES = ("ingest", "charts", "features", "train", "predict", "evaluate")


def expand(cfg: PipelineConfig, patterns: Sequence[str]) -> list[Path]:
    """Sorted, de-duplicated paths matching the config's glob patterns."""
    found = {Path(p) for pattern in patterns for p in glob.glob(str(cfg.path(pattern)))}
    return sorted(found)


def stage_ingest(cfg: PipelineConfig, client: Client) -> object:
    from seaice_dask.ingest import ingest

    return ingest(cfg)


def stage_charts(cfg: PipelineConfig, client: Client) -> object:
    from seaice_dask.charts.labels import write_labels

    charts = expand(cfg, cfg.paths.charts)
    if not charts:
        raise ConfigError(f"no ice charts match paths.charts={cfg.paths.charts} in {cfg.paths.workdir}")
    return write_labels(cfg.paths.store, charts, cfg.charts)


def stage_features(cfg: PipelineConfig, client: Client) -> object:
    from seaice_dask.features.store import write_glcm_features

    pols = tuple(p.lower() for p in cfg.preprocess.polarisations)
    return write_glcm_features(cfg.paths.store, cfg.features, pols=pols)


def stage_train(cfg: PipelineConfig, client: Client) -> object:
    from seaice_dask.learn import train

    return train(cfg, client)


def stage_predict(cfg: PipelineConfig, client: Client) -> object:
    from seaice_dask.learn import predict

    return predict(cfg)


def stage_evaluate(cfg: PipelineConfig, client: Client) -> object:
    from seaice_dask.learn import evaluate

    return evaluate(cfg)


STAGE_FUNCTIONS: dict[str, Callable[[PipelineConfig, Client], object]] = {
    "ingest": stage_ingest,
    "charts": stage_charts,
    "features": stage_features,
    "train": stage_train,
    "predict": stage_predict,
    "evaluate": stage_evaluate,
}


def run_pipeline(
    cfg: PipelineConfig, client: Client, stages: Sequence[str] = STAGES
) -> dict[str, object]:
    """Run ``stages`` in pipeline order; returns each stage's report."""
    unknown = set(stages) - set(STAGES)
    if unknown:
        raise ConfigError(f"unknown stage(s) {sorted(unknown)}; choose from {STAGES}")
    reports: dict[str, object] = {}
    for name in STAGES:
        if name not in stages:
            continue
        start = time.perf_counter()
        log.info("stage %s …", name)
        reports[name] = STAGE_FUNCTIONS[name](cfg, client)
        log.info("stage %s done in %.1f s", name, time.perf_counter() - start)
    return reports


def demo_config(out: Path, n_scenes: int) -> PipelineConfig:
    """Config of the offline demo: simulated small scenes over the Denmark Strait at 400 m."""
    cfg = PipelineConfig.model_validate(
        {
            "name": "denmark-strait-demo",
            "paths": {"workdir": ".", "scenes": ["simulated/scenes/*.zip"], "charts": ["simulated/charts/*.zip"]},
            "grid": {"resolution_m": 400, "chunk": 256},
            "preprocess": {"multilook": 1},
            "features": {"window": 7},
            "model": {"cap_per_class": 5000},
            "cluster": {"n_workers": 2, "threads_per_worker": 1, "memory_limit": "3GiB"},
            "simulate": {"enabled": True, "n_scenes": n_scenes, "size": "small"},
        }
    )
    out.mkdir(parents=True, exist_ok=True)
    return load_config(dump_config(cfg, out / "pipeline.yaml"))


def simulate_inputs(cfg: PipelineConfig) -> object:
    """Render the configured simulated scenes and charts into ``workdir/simulated`` (once)."""
    from seaice_dask.simulate import simulate_series

    sim = cfg.simulate
    out = cfg.paths.workdir / "simulated"
    if (out / "simulation.json").exists():
        log.info("simulated inputs already in %s", out)
        return out
    return simulate_series(
        out,
        n_scenes=sim.n_scenes,
        start=str(sim.start),
        end=str(sim.end),
        size=sim.size,
        product=sim.product,
        seed=sim.seed,
        grid=cfg.grid.to_grid(),
    )
