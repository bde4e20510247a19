"""Apply a trained model to new scenes: no charts, no training, the model's own preprocessing.

A model folder (what ``train`` writes to ``paths.models``: the skops files, their compiled
weights, ``train_report.json`` and ``MODEL.md``) records everything needed to classify a new
product the way its training cube was made: grid, denoising, multilook, radiometric corrections
(the fitted incidence correction itself, never refitted on the new scene), GLCM settings and
inputs. :func:`classify` rebuilds the pipeline configuration from that record and runs the
per-scene stages (ingest, features, predict, export) into a small cube under the output folder,
so a map from ``classify`` is the map ``run`` writes for the same scene on the same grid.
"""

from __future__ import annotations

import time as clock
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from seaice_dask.config import PipelineConfig, load_config
from seaice_dask.errors import ModelError, ProductError, SeaIceError
from seaice_dask.learn.persist import load_model
from seaice_dask.learn.predict import best_model_path

#: A scene whose incidence range reaches further than this beyond the training range is refused.
INCIDENCE_MARGIN_DEG = 3.0
#: The stages that turn a new product into a map.
CLASSIFY_STAGES = ("ingest", "features", "predict", "export")


@dataclass
class ClassifyReport:
    """What ``classify`` did: the model used, maps written, scenes refused, timings."""

    model: str
    out: str
    class_maps: list[str] = field(default_factory=list)
    items: list[str] = field(default_factory=list)
    refused: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def model_file(model: str | Path) -> Path:
    """The model file of ``model``: a ``.skops`` file, or a model folder (the one ``train`` chose)."""
    model = Path(model)
    if model.is_dir():
        return best_model_path(model)
    if not model.is_file():
        raise ModelError("no model here: give a model folder (with train_report.json) or a .skops file", model)
    return model


def model_record(model: str | Path) -> tuple[Path, dict[str, Any]]:
    """``(model file, metadata)``; refuses files that do not record their pipeline settings."""
    path = model_file(model)
    _, meta = load_model(path)
    if "pipeline" not in meta:
        raise ModelError("the model does not record its preprocessing (trained by an older "
                         "seaice-dask): retrain it with `seaice-dask train`", path)
    return path, meta


def classify_config(meta: dict[str, Any], model_dir: Path, scenes: Sequence[str | Path], out: Path,
                    *, grid_config: str | Path | None = None, probabilities: bool = False) -> PipelineConfig:
    """The pipeline config that makes a cube like the model's training cube, for ``scenes``.

    The grid is the model's unless ``grid_config`` (a pipeline YAML) gives another one.
    """
    recorded = meta["pipeline"]
    grid = load_config(grid_config).grid.model_dump(mode="json") if grid_config else recorded["grid"]
    raw = {
        "name": f"classify-{Path(model_dir).name}",
        "paths": {"workdir": str(out), "scenes": [str(Path(s).resolve()) for s in scenes],
                  "charts": [], "models": str(Path(model_dir).resolve()), "reports": str(out)},
        "grid": grid,
        "preprocess": recorded["preprocess"],
        "features": recorded["features"],
        "charts": {"scheme": recorded["class_scheme"]},
        "model": {"inputs": meta["inputs"], "smoothing_m": recorded["smoothing_m"]},
        "export": {"probabilities": probabilities},
    }
    return PipelineConfig.model_validate(raw).resolve(out)


def check_scene(product: Any, meta: dict[str, Any]) -> None:
    """Refuse (ProductError naming the scene) a product the model cannot serve: other
    polarisations, another mode or resolution class, or incidence angles far outside training."""
    recorded = meta["pipeline"]
    pols = [p.upper() for p in recorded["preprocess"]["polarisations"]]
    missing = [p for p in pols if p not in product.polarisations]
    if missing:
        raise ProductError(f"the model needs polarisations {pols}, the scene has {list(product.polarisations)}", product.path)
    served = recorded.get("products", [])
    kind = f"{product.mode}_GRD{product.resolution_class}"
    if served and kind not in served:
        raise ProductError(f"the model was trained on {served} products, the scene is {kind}", product.path)
    low, high = recorded.get("incidence_range_deg", (None, None))
    if low is not None:
        grid = product.geolocation_grid(pols[0])
        angles = np.asarray(grid["incidence_angle"].values, dtype=float)
        lo, hi = float(np.nanmin(angles)), float(np.nanmax(angles))
        if lo < low - INCIDENCE_MARGIN_DEG or hi > high + INCIDENCE_MARGIN_DEG:
            raise ProductError(
                f"incidence angles {lo:.1f}–{hi:.1f}° reach beyond the training range {low:.1f}–{high:.1f}° "
                f"(± {INCIDENCE_MARGIN_DEG}°)", product.path)


def classify(
    model: str | Path,
    scenes: Sequence[str | Path],
    out: str | Path,
    *,
    grid_config: str | Path | None = None,
    probabilities: bool = False,
    client: Any = None,
    progress: bool = True,
) -> ClassifyReport:
    """Classify ``scenes`` with ``model`` into ``out``: class COGs with QGIS styles (and
    probability COGs when asked), a STAC Item per map in ``out/maps/collection.json``, and the
    cube ``out/cube.zarr`` they come from. Scenes the model cannot serve are refused (listed in
    the report, one line each) and the others still classified; ``classify`` again with more
    scenes adds them (finished ones are not recomputed).
    """
    from seaice_dask.cube import cube_store
    from seaice_dask.ingest import ingest
    from seaice_dask.lock import store_lock
    from seaice_dask.pipeline import STAGE_FUNCTIONS
    from seaice_dask.preprocess.incidence import IncidenceCorrection
    from seaice_dask.safe import open_safe

    start = clock.perf_counter()
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    path, meta = model_record(model)
    report = ClassifyReport(model=str(path), out=str(out))
    usable = []
    for scene in scenes:
        try:
            check_scene(open_safe(scene), meta)
        except SeaIceError as exc:
            report.refused[str(scene)] = str(exc)
            continue
        usable.append(scene)
    if not usable:
        report.seconds = clock.perf_counter() - start
        return report
    model_dir = path.parent
    cfg = classify_config(meta, model_dir, usable, out, grid_config=grid_config, probabilities=probabilities)
    incidence = IncidenceCorrection.from_attrs(meta["radiometry"]["incidence_correction"])
    with store_lock(cube_store(cfg)):
        ingested = ingest(cfg, progress=progress, incidence=incidence, client=client)
        report.refused.update(ingested.failed)
        for stage in CLASSIFY_STAGES[1:]:
            result = STAGE_FUNCTIONS[stage](cfg, client, progress)
            if stage == "export":
                report.class_maps, report.items = result.class_maps, result.items
    report.seconds = clock.perf_counter() - start
    return report
