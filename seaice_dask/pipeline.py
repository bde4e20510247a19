"""The whole pipeline as library calls: what ``seaice-dask run`` and ``seaice-dask demo`` do.

Each stage is resumable on its own (the cube keeps a completion flag per stage and time slice),
so ``run`` after a crash, or after adding scenes, only does the missing work.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import CancelledError
from pathlib import Path

from distributed import Client

from seaice_dask.config import PipelineConfig, dump_config, load_config
from seaice_dask.cube import cube_store
from seaice_dask.errors import ClusterError, ConfigError
from seaice_dask.lock import store_lock

log = logging.getLogger(__name__)

STAGES = ("ingest", "charts", "features", "train", "predict", "evaluate", "export")


def stage_ingest(cfg: PipelineConfig, client: Client, progress: bool) -> object:
    from seaice_dask.ingest import ingest

    return ingest(cfg, progress=progress, client=client)


def stage_charts(cfg: PipelineConfig, client: Client, progress: bool) -> object:
    from seaice_dask.charts import write_labels_from_config

    return write_labels_from_config(cfg, progress=progress)


def stage_features(cfg: PipelineConfig, client: Client, progress: bool) -> object:
    from seaice_dask.features.store import write_glcm_features

    pols = tuple(p.lower() for p in cfg.preprocess.polarisations)
    return write_glcm_features(cube_store(cfg), cfg.features, pols=pols, progress=progress, client=client)


def stage_train(cfg: PipelineConfig, client: Client, progress: bool) -> object:
    from seaice_dask.learn import train

    return train(cfg, client, progress=progress)


def stage_predict(cfg: PipelineConfig, client: Client, progress: bool) -> object:
    from seaice_dask.learn import predict

    return predict(cfg, client=client, progress=progress)


def stage_evaluate(cfg: PipelineConfig, client: Client, progress: bool) -> object:
    from seaice_dask.learn import evaluate

    return evaluate(cfg, client=client, progress=progress)


def stage_export(cfg: PipelineConfig, client: Client, progress: bool) -> object:
    """GIS files and STAC catalogue of the class maps, then ``index.html`` (once scores exist)."""
    from seaice_dask.export import export_maps
    from seaice_dask.report import write_index

    report = export_maps(cfg, client=client, progress=progress)
    if (cfg.paths.reports / "scores.json").is_file():
        report.index = str(write_index(cfg.paths.reports, title=f"seaice-dask report: {cfg.name}"))
    return report


STAGE_FUNCTIONS: dict[str, Callable[[PipelineConfig, Client, bool], object]] = {
    "ingest": stage_ingest,
    "charts": stage_charts,
    "features": stage_features,
    "train": stage_train,
    "predict": stage_predict,
    "evaluate": stage_evaluate,
    "export": stage_export,
}


def run_pipeline(
    cfg: PipelineConfig,
    client: Client,
    stages: Sequence[str] = STAGES,
    *,
    progress: bool | None = None,
) -> dict[str, object]:
    """Run ``stages`` in pipeline order; returns each stage's report.

    Progress bars are shown when ``progress`` is true, by default when stderr is a terminal
    (log files of batch jobs stay readable). The store's lock is held throughout
    (:mod:`seaice_dask.lock`). Losing the scheduler raises :class:`ClusterError`; finished
    slices are kept, so running again on a new scheduler resumes.
    """
    progress = sys.stderr.isatty() if progress is None else progress
    unknown = set(stages) - set(STAGES)
    if unknown:
        raise ConfigError(f"unknown stage(s) {sorted(unknown)}; choose from {STAGES}")
    reports: dict[str, object] = {}
    with store_lock(cube_store(cfg)):
        for name in STAGES:
            if name not in stages:
                continue
            start = time.perf_counter()
            log.info("stage %s …", name)
            try:
                reports[name] = STAGE_FUNCTIONS[name](cfg, client, progress)
            except (CancelledError, OSError) as exc:  # FutureCancelledError, CommClosedError, …
                if not _scheduler_lost(client, exc):
                    raise
                reason = getattr(exc, "reason", None) or f"{type(exc).__name__}: {exc}".splitlines()[0]
                raise ClusterError(
                    f"stage {name}: lost the Dask scheduler {client.scheduler.address} ({reason}); "
                    "finished slices are kept, run again to resume"
                ) from exc
            log.info("stage %s done in %.1f s", name, time.perf_counter() - start)
    return reports


def _scheduler_lost(client: Client, exc: BaseException, wait_s: float = 5.0) -> bool:
    """Whether ``exc``, raised by a stage, means the client lost its scheduler. A closed
    connection or a cancelled future can reach the stage before the client has noticed the
    scheduler is gone (its status still "running"): give it ``wait_s`` to notice."""
    from distributed.comm import CommClosedError

    deadline = time.monotonic() + (wait_s if isinstance(exc, (CancelledError, CommClosedError)) else 0.0)
    while client.status == "running" and time.monotonic() < deadline:
        time.sleep(0.1)
    return client.status != "running"


def demo_config(out: Path, n_scenes: int) -> PipelineConfig:
    """Config of the offline demo: small simulated scenes over the Denmark Strait at 400 m.

    Written to ``out/pipeline.yaml`` so that the same run can be repeated with
    ``seaice-dask run out/pipeline.yaml`` and edited.
    """
    cfg = PipelineConfig.model_validate(
        {
            "name": "denmark-strait-demo",
            "grid": {"resolution_m": 400, "chunk": 256},
            "preprocess": {"multilook": 1},
            "features": {"window": 7},
            # the learners predict does not use are scored on 25 000 pixels per class (the
            # default's 100 000 would be half the demo's test pixels; ±0.002 on their accuracy)
            "model": {"cap_per_class": 5000, "smoothing_m": 2800, "eval_sample_per_class": 25000},
            "cluster": {"n_workers": 2, "threads_per_worker": 1, "memory_limit": "4GiB"},
            "simulate": {"enabled": True, "n_scenes": n_scenes, "size": "small"},
        }
    )
    out.mkdir(parents=True, exist_ok=True)
    return load_config(dump_config(cfg, out / "pipeline.yaml"))


def simulate_inputs(cfg: PipelineConfig, processes: int = 1) -> Path:
    """Render the configured simulated scenes, charts and truth into ``paths.workdir`` (once).

    The simulator writes ``scenes/``, ``charts/``, ``truth.zarr`` and ``simulation.json``,
    which the default ``paths.scenes``/``paths.charts`` patterns and ``evaluate`` pick up.
    ``processes``: see :func:`~seaice_dask.simulate.series.simulate_series`.
    """
    from seaice_dask.simulate import simulate_series

    sim = cfg.simulate
    out = cfg.paths.workdir
    if (out / "simulation.json").exists():
        log.info("simulated inputs already in %s", out)
        return out
    simulate_series(
        out,
        progress=sys.stderr.isatty(),
        n_scenes=sim.n_scenes,
        start=sim.start,
        end=sim.end,
        size=sim.size,
        product=sim.product,
        seed=sim.seed,
        grid=cfg.grid.to_grid(),
        slices_per_pass=sim.slices_per_pass,
        orbits=sim.orbits,
        centres=sim.centres,
        processes=processes,
    )
    return out
