"""End to end on simulated data: what `make demo` runs, checked against the simulator's truth."""

from __future__ import annotations

import json
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pystac
import pystac.validation
import pytest
import rasterio

from seaice_dask.cluster import open_client
from seaice_dask.cube import done, open_cube
from seaice_dask.export import stac_validator
from seaice_dask.ingest import validate_ingest
from seaice_dask.pipeline import STAGES, demo_config, run_pipeline, simulate_inputs
from seaice_dask.simulate.series import render_processes

pytestmark = [pytest.mark.slow, pytest.mark.cluster]


@pytest.fixture(scope="module")
def season(tmp_path_factory):
    """12 small simulated scenes (Oct 2020 – Mar 2021) through every stage on a LocalCluster."""
    out = tmp_path_factory.mktemp("demo")
    cfg = demo_config(out, n_scenes=12)
    simulate_inputs(cfg, processes=render_processes(12))  # as `seaice-dask demo`
    with open_client(cfg.cluster) as client:
        reports = run_pipeline(cfg, client, progress=False)
    return cfg, reports


def test_every_stage_completed_every_slice(season):
    cfg, reports = season
    assert set(reports) == set(STAGES)
    assert reports["ingest"].ok and len(reports["ingest"].ingested) == 12
    for stage in ("ingest", "labels", "glcm_hh", "glcm_hv", "predict"):
        assert done(cfg.paths.store, stage).all(), stage
    assert validate_ingest(cfg.paths.store) == []
    ds = open_cube(cfg.paths.store)
    for name in ("sigma0_hh", "sigma0_hv", "incidence", "valid", "land", "labels", "glcm_hh", "glcm_hv", "class", "proba"):
        assert name in ds, name
    assert ds.rio.crs.to_epsg() == 32626
    assert set(np.unique(ds["labels"].isel(time=6).values)) == {-1, 0, 1, 2, 3}


def test_best_model_reaches_085_against_truth_on_held_out_dates(season):
    """Issue acceptance: temporal split, 4 classes, overall accuracy ≥ 0.85 against the truth."""
    cfg, reports = season
    evaluation = reports["evaluate"]
    table = evaluation.table("truth")
    assert set(table) == set(cfg.model.learners)  # every model is scored
    best = max(row["overall_accuracy"] for row in table.values())
    print("overall accuracy against truth:", {m: round(r["overall_accuracy"], 3) for m, r in table.items()})
    assert best >= 0.85
    train_dates = set(reports["train"].train_dates)
    assert train_dates.isdisjoint(evaluation.test_dates)
    scores = json.loads((cfg.paths.reports / "scores.json").read_text())
    assert set(scores["scores"][evaluation.best]) == {"labels", "truth"}


def test_class_maps_open_in_gis_tools_as_classes(season):
    """Issue acceptance: uint8 COGs with colour table, overviews, nodata 255 and class names; a .qml each."""
    cfg, reports = season
    maps = sorted((cfg.paths.reports / "maps").glob("class_*.tif"))
    assert len(maps) == 12 and [str(p) for p in maps] == reports["export"].class_maps
    ds = open_cube(cfg.paths.store)
    for t, path in enumerate(maps):
        with rasterio.open(path) as src:
            assert src.dtypes == ("uint8",) and src.nodata == 255 and src.overviews(1)
            assert src.colormap(1)[0] == (58, 111, 176, 255) and src.crs.to_epsg() == 32626
            expected = ds["class"].isel(time=t).values.astype(int)
            np.testing.assert_array_equal(src.read(1), np.where(expected < 0, 255, expected))
        names = [c.text for c in ET.parse(f"{path}.aux.xml").getroot().iter("Category")]
        assert names == ["open water", "young ice", "first-year ice", "old ice"]
        assert path.with_suffix(".qml").is_file() and path.with_name(path.name.replace("class_", "proba_")).is_file()
    if shutil.which("gdalinfo"):
        info = subprocess.run(["gdalinfo", str(maps[0])], capture_output=True, text=True, check=True).stdout
        assert "Categories:" in info and "first-year ice" in info


def test_one_valid_stac_item_per_map(season):
    cfg, reports = season
    validator = stac_validator()
    collection = pystac.Collection.from_file(reports["export"].collection)
    items = list(collection.get_items())
    assert len(items) == 12
    for item in items:
        pystac.validation.validate(item, validator=validator)
        assert item.properties["seaice:learner"] == reports["train"].best  # the model predict used
        assert Path(item.assets["class_map"].get_absolute_href()).is_file()
    pystac.validation.validate(collection, validator=validator)


def test_report_page_links_existing_files_and_shows_the_scores(season):
    import lxml.html

    cfg, reports = season
    index = cfg.paths.reports / "index.html"
    page = lxml.html.parse(str(index)).getroot()
    hrefs = [a.get("href") for a in page.iter("a")]
    assert len(hrefs) >= 12 * 4 and all((index.parent / h).is_file() for h in hrefs)
    overall = page.get_element_by_id("scores-overall").text_content()
    for row in reports["evaluate"].table("truth").values():
        assert f"{row['overall_accuracy']:.3f}" in overall
