"""``classify``: a trained model applied to new scenes gives the map the batch run gives."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import rasterio

from seaice_dask.classify import check_scene, classify, model_record
from seaice_dask.cube import open_cube
from seaice_dask.errors import ModelError, ProductError
from seaice_dask.safe import open_safe
from tests.smallseries import SEAICE_DASK, env


def _scenes(workdir: Path) -> list[Path]:
    return sorted((workdir / "scenes").glob("*.zip"))


@pytest.mark.slow
def test_classify_gives_the_batch_map_and_a_stac_item(small_series, tmp_path):
    """A model folder copied elsewhere classifies a scene with no config: the class map equals
    the one ``run`` wrote for that scene, as a COG with its style and a STAC Item."""
    from distributed import Client, LocalCluster

    reference = small_series.reference
    models = shutil.copytree(reference / "models", tmp_path / "model")  # the portable artefact
    scene = _scenes(reference)[-1]
    with LocalCluster(n_workers=1, threads_per_worker=1, dashboard_address=None) as cluster, Client(cluster) as client:
        report = classify(models, [scene], tmp_path / "out", client=client, progress=False)
        assert not report.refused and len(report.class_maps) == 1
        again = classify(models, [scene], tmp_path / "out", client=client, progress=False)
    assert again.class_maps == report.class_maps  # no duplicate map or item

    batch = open_cube(reference / "cube.zarr")
    mine = open_cube(tmp_path / "out" / "cube.zarr")
    assert mine.sizes["time"] == 1
    t = int(np.flatnonzero(batch["product_id"].values == open_safe(scene).name)[0])
    expected = batch["class"].isel(time=t).values
    np.testing.assert_array_equal(mine["class"].isel(time=0).values, expected)
    assert (expected >= 0).any()
    with rasterio.open(report.class_maps[0]) as cog:
        written = cog.read(1)
    np.testing.assert_array_equal(written, np.where(expected >= 0, expected, 255).astype(np.uint8))
    stamp = pd.Timestamp(batch["time"].values[t]).strftime("%Y%m%dT%H%M%S")
    item = json.loads((tmp_path / "out" / "maps" / f"class_{stamp}.json").read_text())
    assert item["properties"]["seaice:source_product"] == open_safe(scene).name
    assert item["properties"]["seaice:relative_orbit"] == 24
    assert item["properties"]["seaice:pass_direction"] == "DESCENDING"
    assert Path(report.class_maps[0]).with_suffix(".qml").is_file()
    card = (models / "MODEL.md").read_text()
    assert "Trained on" in card and "Intended use" in card
    assert "| 2020-1" in card.split("## Accuracy per month")[1]  # evaluate's per-month table


def test_model_record_holds_what_classify_needs(small_series):
    path, meta = model_record(small_series.reference / "models")
    recorded = meta["pipeline"]
    assert path.name == json.loads((small_series.reference / "models" / "train_report.json").read_text())["best_model"]
    assert recorded["products"] == ["EW_GRDM"]
    assert recorded["grid"]["resolution_m"] == 1600
    assert recorded["features"]["window"] == 5
    low, high = recorded["incidence_range_deg"]
    assert 15 < low < high < 50


def test_scenes_the_model_cannot_serve_are_refused(small_series):
    _, meta = model_record(small_series.reference / "models")
    product = open_safe(_scenes(small_series.reference)[0])
    check_scene(product, meta)  # a scene like the training scenes is served
    other_pols = {**meta, "pipeline": {**meta["pipeline"], "preprocess": {**meta["pipeline"]["preprocess"], "polarisations": ["VV", "VH"]}}}
    with pytest.raises(ProductError, match=r"polarisations.*VV") as err:
        check_scene(product, other_pols)
    assert product.name in str(err.value)
    grdh_only = {**meta, "pipeline": {**meta["pipeline"], "products": ["EW_GRDH"]}}
    with pytest.raises(ProductError, match="EW_GRDM"):
        check_scene(product, grdh_only)
    narrow = {**meta, "pipeline": {**meta["pipeline"], "incidence_range_deg": [30.0, 32.0]}}
    with pytest.raises(ProductError, match="incidence angles"):
        check_scene(product, narrow)


def test_corrupt_foreign_and_old_models_are_refused(small_series, tmp_path):
    corrupt = tmp_path / "corrupt.skops"
    corrupt.write_bytes(b"not a zip")
    with pytest.raises(ModelError, match="corrupt.skops"):
        model_record(corrupt)
    with pytest.raises(ModelError, match="no model here"):
        model_record(tmp_path / "missing.skops")
    from seaice_dask.learn.persist import load_model, save_model

    model, meta = load_model(small_series.reference / "models" / "gnb.skops")
    old = save_model(model, tmp_path / "old.skops", learner="gnb", feature_names=meta["feature_names"],
                     classes=meta["classes"], grid=meta["grid"])
    with pytest.raises(ModelError, match="does not record its preprocessing"):
        model_record(old)


def test_cli_names_the_refused_scene(small_series, tmp_path):
    models = small_series.reference / "models"
    bogus = tmp_path / "S1A_EW_GRDM_1SDH_20201005T080000_20201005T080100_034661_04093A_0000.zip"
    bogus.write_bytes(b"not a zip")
    proc = subprocess.run([SEAICE_DASK, "classify", str(models), str(bogus), "--out", str(tmp_path / "out")],
                          env=env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    assert "refused" in proc.stderr and bogus.name in proc.stderr


def test_model_card_names_the_training_and_takes_the_monthly_scores(tmp_path):
    from types import SimpleNamespace

    from seaice_dask.learn.card import add_monthly_scores, write_model_card
    from seaice_dask.learn.evaluate import scores

    cm = np.array([[50, 2, 0, 0], [3, 40, 5, 0], [0, 4, 60, 1], [0, 0, 2, 30]])
    names = ["open water", "young ice", "first-year ice", "old ice"]
    report = SimpleNamespace(
        best="mlp", best_model="mlp.skops", select="balanced", classes=[0, 1, 2, 3], class_names=names,
        train_dates=["2020-10-05T08:22:00", "2020-11-02T08:22:00"], test_dates=["2020-12-07T08:22:00"],
        n_train=1000, n_test=400, train_class_counts=[250] * 4, validation="temporal",
        feature_names=["sigma0_hh", "incidence"], scores={"mlp": scores(cm, names)}, predict_px_per_s={"mlp": 9.7e6},
    )
    pipeline = {"class_scheme": "sod4", "products": ["EW_GRDM"], "incidence_range_deg": [18.9, 47.0],
                "grid": {"crs": "EPSG:32626", "resolution_m": 80.0, "bounds": [0, 0, 1, 1]},
                "preprocess": {"denoise": "esa", "multilook": 2, "textural_noise": False, "incidence": {"correction": "none"}},
                "features": {"window": 11, "levels": 32, "angles": [0, 45, 90, 135], "features": ["contrast"]}}
    card = write_model_card(tmp_path, report, pipeline).read_text()
    assert "mlp.skops" in card and "EW_GRDM" in card and "18.9–47.0°" in card and f"{40 / 46:.3f}" in card
    monthly = {"2020-12": scores(cm, names)}
    for _ in range(2):  # evaluated twice: the table is replaced, not appended
        add_monthly_scores(tmp_path, "mlp", monthly, "truth")
    text = (tmp_path / "MODEL.md").read_text()
    assert text.count("## Accuracy per month") == 1 and f"| 2020-12 | {scores(cm, names)['overall_accuracy']:.3f} |" in text
    assert "## Intended use" in text
