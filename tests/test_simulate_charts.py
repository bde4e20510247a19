"""Simulated weekly SIGRID-3 charts: files like NIC's, codes from the tables, labels match the truth."""

from __future__ import annotations

import warnings
import zipfile

import geopandas as gpd
import numpy as np
import pandas as pd
import pyproj
import pytest
import shapely
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage

from seaice_dask.charts import chart_labels, classify_chart, decode_egg_code, load_chart, read_chart
from seaice_dask.charts.schemes import SOD4, classify_egg_code
from seaice_dask.charts.codes import CONCENTRATION, FORMS
from seaice_dask.grid import Grid
from seaice_dask.simulate.charts import chart_frame, egg_code, write_weekly_charts

GRID = Grid.from_bounds("EPSG:32626", (400_000.0, 7_300_000.0, 520_000.0, 7_420_000.0), 400.0)  # 300 × 300
DATES = pd.to_datetime(["2021-01-04", "2021-01-11"])
REAL_STAGES = {"81", "83", "84", "85", "86", "87", "91", "93", "95", "96", "97"}


def smooth_truth(seed: int) -> np.ndarray:
    """sod4 classes from a smooth Gaussian random field (regimes of ~30 km) with a land blob."""
    rng = np.random.default_rng(seed)
    field = ndimage.gaussian_filter(rng.standard_normal(GRID.shape), 25)
    field /= field.std()
    truth = np.digitize(field, [-0.8, -0.1, 0.7]).astype(np.int8)
    yy, xx = np.mgrid[: GRID.shape[0], : GRID.shape[1]]
    truth[(yy - 40) ** 2 + (xx - 250) ** 2 < 35**2] = -1
    return truth


@pytest.fixture(scope="module")
def truth():
    maps = np.stack([smooth_truth(1), smooth_truth(2)])
    da = GRID.wrap(maps, name="truth").rename({"dim_0": "time"})
    return da.assign_coords(time=DATES)


@pytest.fixture(scope="module")
def charts(truth, tmp_path_factory):
    return write_weekly_charts(truth, tmp_path_factory.mktemp("charts"), seed=7)


def test_files_look_like_nic_weekly_charts(charts):
    assert [p.name for p in charts] == ["nic_arctic_20210104_pl_a.zip", "nic_arctic_20210111_pl_a.zip"]
    assert sorted(p.name for p in charts[0].parent.iterdir()) == [p.name for p in charts]  # no temp files
    with zipfile.ZipFile(charts[0]) as archive:
        names = set(archive.namelist())
    assert {f"nic_arctic_20210104_pl_a.{ext}" for ext in ("shp", "shx", "dbf", "prj")} <= names


def test_attributes_use_real_sigrid3_codes_and_decode_cleanly(charts):
    for path in charts:
        chart = read_chart(path)
        assert chart.crs == pyproj.CRS("EPSG:3413")
        assert set(chart["POLY_TYPE"]) == {"I", "W", "L"}
        ice = chart[chart["POLY_TYPE"] == "I"]
        assert set(ice["CT"]) <= set(CONCENTRATION) and {"92", "91"} & set(ice["CT"])
        stages = set(ice[["SA", "SB", "SC"]].to_numpy().ravel()) - {"-9"}
        assert stages <= REAL_STAGES and len(stages) >= 6
        assert set(ice[["FA", "FB", "FC"]].to_numpy().ravel()) - {"-9"} <= set(FORMS) | {"99"}
        assert ((ice["CA"] != "-9").sum() > 0) and ((ice["CA"] == "-9").sum() > 0)  # one and several types
        assert chart.loc[chart["POLY_TYPE"] == "L", "CT"].isna().all()
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            out = classify_chart(chart.drop(columns="geometry"), "sod4", source=path)
        assert (out["problems"] == "").all()


def test_partial_concentrations_sum_to_the_total(charts):
    chart = read_chart(charts[0])
    several = chart[(chart["POLY_TYPE"] == "I") & (chart["CA"] != "-9")]
    for record in several.to_dict("records"):
        tenths = sum(int(record[c]) // 10 for c in ("CA", "CB", "CC") if record[c] != "-9")
        low, high = CONCENTRATION[record["CT"]]
        assert low / 10 <= tenths <= high / 10


def test_a_few_self_intersecting_polygons_like_real_charts(charts):
    raw = gpd.read_file(f"/vsizip/{charts[0]}/nic_arctic_20210104_pl_a.shp", engine="pyogrio")
    invalid = ~raw.is_valid
    assert invalid.sum() == 2
    assert all("Self-intersection" in shapely.is_valid_reason(g) for g in raw.geometry[invalid])
    assert load_chart(charts[0], GRID).is_valid.all()  # repaired on the way to the grid


@settings(max_examples=300, deadline=None)
@given(st.lists(st.floats(0, 1), min_size=4, max_size=4).filter(lambda w: sum(w) > 0), st.integers(0, 2**32 - 1))
def test_written_egg_codes_read_back_as_the_majority_class(weights, seed):
    shares = dict(zip((0, 1, 2, 3), np.asarray(weights) / sum(weights), strict=True))
    record = egg_code(shares, np.random.default_rng(seed))
    egg = decode_egg_code(record)
    assert not egg.problems
    label, _ = classify_egg_code(egg, SOD4, dominance=0.0)
    ice = {c: shares[c] for c in (1, 2, 3)}
    if shares[0] > max(ice.values()):
        assert label == 0
    else:  # the chart's dominant type is the truth's majority ice class
        assert label in ice and shares[label] == max(ice.values())


def test_labels_read_back_agree_with_the_truth(truth, charts):
    for i, path in enumerate(charts):
        labels = chart_labels(path, GRID).values
        true = truth.values[i]
        edges = ndimage.morphological_gradient(true, size=3) > 0
        away = ~ndimage.binary_dilation(edges, iterations=5)  # 2 km: one generalisation block
        labelled = labels >= 0
        assert labelled.mean() > 0.9
        agree_away = (labels == true)[labelled & away].mean()
        agree_ice = (labels == true)[true > 0].mean()
        assert agree_away >= 0.95, agree_away
        assert agree_ice >= 0.90, agree_ice


def test_same_seed_same_chart(truth):
    one = chart_frame(truth.isel(time=0), seed=3)
    two = chart_frame(truth.isel(time=0), seed=3)
    pd.testing.assert_frame_equal(one.drop(columns="geometry"), two.drop(columns="geometry"))
    assert shapely.equals_exact(one.geometry.values, two.geometry.values).all()


def test_charts_of_the_simulator_truth(tmp_path):
    truth_module = pytest.importorskip("seaice_dask.simulate.truth")
    grid = Grid.from_bounds("EPSG:32626", (300_000.0, 7_350_000.0, 600_000.0, 7_650_000.0), 500.0)
    truth = truth_module.weekly_truth(grid, dates=pd.to_datetime(["2020-11-02", "2021-02-01"]), seed=0)
    paths = write_weekly_charts(truth, tmp_path, seed=0)
    for i, path in enumerate(paths):
        labels = chart_labels(path, grid).values
        true = truth.values[i]
        edges = ndimage.morphological_gradient(true, size=3) > 0
        away = ~ndimage.binary_dilation(edges, iterations=4)
        labelled = labels >= 0
        assert (labels == true)[labelled & away].mean() >= 0.95
        assert (labels == true)[labelled].mean() >= 0.90
