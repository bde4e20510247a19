"""Ice charts → labels: SIGRID-3 decoding, class schemes, reading, clipping, rasterising, cube."""

from __future__ import annotations

import datetime as dt
import warnings
import zipfile

import geopandas as gpd
import numpy as np
import pandas as pd
import pyproj
import pytest
import shapely
from conftest import CIS_CHART

from seaice_dask.charts import (
    ChartCodeWarning,
    chart_date,
    chart_labels,
    classify_chart,
    decode_egg_code,
    load_chart,
    prepare_chart,
    rasterize_labels,
    read_chart,
    repair_geometries,
    select_chart,
    write_labels,
    write_labels_from_config,
)
from seaice_dask.charts.codes import CONCENTRATION, THICKNESS_CM, normalise_code
from seaice_dask.config import ChartsConfig, PipelineConfig
from seaice_dask.cube import create_cube, done, open_cube
from seaice_dask.errors import ChartError
from seaice_dask.grid import Grid

#: A 500 km × 500 km box in EPSG:32626 over northern Baffin Bay, where the CIS chart has land,
#: new, young, first-year ice and water polygons (the chart does not reach the Denmark Strait).
BAFFIN_BOUNDS = (-1_200_000.0, 8_700_000.0, -700_000.0, 9_200_000.0)
GEOD = pyproj.Geod(ellps="WGS84")


@pytest.fixture(scope="module")
def cis(realdata):
    return realdata(CIS_CHART)


@pytest.fixture(scope="module")
def cis_frame(cis):
    return read_chart(cis).set_index("ID_NEW")


# --- code tables --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "percent"),
    [("92", 100), ("91", 95), ("81", 90), ("13", 20), ("79", 80), ("12", 15), ("70", 70), ("01", 0),
     ("02", 0), ("98", 0), ("00", 0)],
)  # fmt: skip
def test_concentration_codes_decode_to_interval_midpoints(code, percent):
    egg = decode_egg_code({"POLY_TYPE": "I", "CT": code, "SA": "87"})
    assert egg.total == pytest.approx(percent)
    assert not egg.problems


def test_code_tables_match_sigrid3_table_sizes():
    # Table 1: 13 single values (98, 01, 02, 10..90, 92) + 17 intervals, plus the 00 convention
    assert len(CONCENTRATION) == 13 + 17 + 1
    assert THICKNESS_CM["02"] == 2 and THICKNESS_CM["51"] == 55 and THICKNESS_CM["69"] == 190
    assert THICKNESS_CM["73"] == 350 and THICKNESS_CM["78"] == 800


@pytest.mark.parametrize(("value", "code"), [(92, "92"), (-9, None), ("-9", None), (None, None),
                                             (float("nan"), None), ("1", "01"), (81.0, "81"), (" 99", None)])  # fmt: skip
def test_normalise_code(value, code):
    assert normalise_code(value) == code


def test_partial_concentrations_and_remainder_stage():
    egg = decode_egg_code({"POLY_TYPE": "I", "CT": "90", "CA": "40", "SA": "95", "CB": "30", "SB": "87",
                           "CD": "84", "CN": "97"})  # fmt: skip
    assert egg.stages == [("95", 40.0), ("87", 30.0), ("84", 20.0)]
    assert egg.trace_stage == "97"


def test_codes_outside_the_tables_warn_name_the_file_and_leave_the_polygon_unlabelled():
    table = pd.DataFrame({"POLY_TYPE": ["I", "I", "I"], "CT": ["92", "92", "55"], "SA": ["87", "90", "87"]})
    with pytest.warns(ChartCodeWarning, match=r"bad_chart\.zip.*polygon 1: SA='90'.*polygon 2: CT='55'"):
        out = classify_chart(table, "sod4", source="bad_chart.zip")
    assert out["label"].tolist() == [2, -1, -1]


def test_water_rule_and_dominance_rule():
    table = pd.DataFrame(
        {"POLY_TYPE": ["W", "I", "I", "I", "I", "L"], "CT": ["00", "01", "92", "92", "92", None],
         "CA": ["-9", "-9", "70", "60", "-9", None], "SA": ["-9", "81", "97", "97", "-9", None],
         "CB": ["-9", "-9", "30", "40", "-9", None], "SB": ["-9", "-9", "91", "91", "-9", None]}
    )  # fmt: skip
    out = classify_chart(table, "sod4", dominance=0.65, water_ct_max=10)
    assert out["label"].tolist() == [0, 0, 3, -1, -1, -1]  # water, water, old, mixed, unknown SA, land
    assert classify_chart(table, "sod4", dominance=0.6)["label"].tolist()[3] == 3


# --- the real CIS chart ---------------------------------------------------------------------


def test_every_polygon_of_the_cis_chart_decodes(cis, cis_frame):
    assert len(cis_frame) == 432
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for scheme in ("sod4", "ai4arctic"):
            out = classify_chart(cis_frame.drop(columns="geometry"), scheme, source=cis)
            assert (out["problems"] == "").all()
    for record in cis_frame.drop(columns="geometry").to_dict("records"):
        assert decode_egg_code(record).problems == []


# Hand-read from the chart's attribute table (ID_NEW: egg code → class, share of the ice):
#   1: POLY_TYPE L → unlabelled;  387: POLY_TYPE S → unlabelled;  26: POLY_TYPE W, CT 00 → water
#   4: CT 02 (bergy water), SA 98 → 0 % sea ice → water
#   5: CT 80, 4/10 grey (84) + 4/10 new (81): sod4 young 8/8; ai4arctic young 4/8, new 4/8 → mixed
#  30: CT 90, 2/10 grey (84) + 7/10 new (81): sod4 young 9/9; ai4arctic new 7/9 = 0.78
#  69: CT 80, 2/10 grey-white (85) + 2/10 grey (84) + 4/10 new (81): ai4arctic young 4/8 → mixed
# 297: CT 90, 1/10 85 + 5/10 84 + 3/10 81 (+ trace MYI): ai4arctic young 6/9 = 0.667 ≥ 0.65
# 356: CT 92, 7/10 MYI (97) + 3/10 second-year (96) → old 10/10
# 382: CT 92, 1/10 MYI (97) + 9/10 thin FYI (87): sod4 FYI 0.9; ai4arctic thin FYI 0.9
# 417: CT 92, 3/10 97 + 3/10 96 + 4/10 87 → old 0.6 < 0.65 → mixed in both
# 429: CT 91, 7/10 97 + 2/10 87 + 1/10 85 → old 0.7
HAND = {
    "sod4": {1: -1, 387: -1, 26: 0, 4: 0, 5: 1, 30: 1, 69: 1, 297: 1, 356: 3, 382: 2, 417: -1, 429: 3},
    "ai4arctic": {1: -1, 387: -1, 26: 0, 4: 0, 5: -1, 30: 1, 69: -1, 297: 2, 356: 5, 382: 3, 417: -1, 429: 5},
}
HAND_SHARE = {"sod4": {5: 1.0, 382: 0.9, 417: 0.6, 429: 0.7}, "ai4arctic": {5: 0.5, 30: 7 / 9, 297: 6 / 9}}


@pytest.mark.parametrize("scheme", ["sod4", "ai4arctic"])
def test_named_cis_polygons_get_hand_computed_classes(cis_frame, scheme):
    out = classify_chart(cis_frame.drop(columns="geometry"), scheme)
    assert out.loc[list(HAND[scheme]), "label"].to_dict() == HAND[scheme]
    for poly, share in HAND_SHARE[scheme].items():
        assert out.loc[poly, "share"] == pytest.approx(share)


@pytest.mark.parametrize(
    ("scheme", "by_stage"),
    [("sod4", {"81": 1, "84": 1, "85": 1, "87": 2, "97": 3}), ("ai4arctic", {"81": 1, "84": 2, "85": 2, "87": 3, "97": 5})],
)  # fmt: skip
def test_single_type_cis_polygons_follow_their_stage(cis_frame, scheme, by_stage):
    """Independent check of all one-type ice polygons (CA empty): the class is SA's class."""
    attrs = cis_frame.drop(columns="geometry")
    out = classify_chart(attrs, scheme)
    single = (attrs["POLY_TYPE"] == "I") & (attrs["CA"] == "-9") & attrs["SA"].isin(list(by_stage))
    single &= ~attrs["CT"].isin(["01", "02"])
    assert single.sum() > 150
    expected = attrs.loc[single, "SA"].map(by_stage)
    assert (out.loc[single, "label"] == expected).all()


def test_cis_clip_and_reprojection_keep_the_area(cis):
    grid = Grid.from_bounds("EPSG:32626", BAFFIN_BOUNDS, 1000.0)
    chart = read_chart(cis)
    clipped = prepare_chart(chart, grid, source=cis)
    assert clipped.crs == pyproj.CRS("EPSG:32626")
    assert len(clipped) > 50 and set(clipped["POLY_TYPE"]) == {"I", "L"}
    box = shapely.box(*grid.bounds)
    # the chart tiles the AOI: the clipped polygons cover it exactly, in the grid CRS
    assert clipped.area.sum() / box.area == pytest.approx(1.0, abs=0.005)

    def geodesic_area(geoms, crs):
        series = gpd.GeoSeries(shapely.segmentize(np.asarray(geoms), 2000.0), crs=crs).to_crs(4326)
        return sum(abs(GEOD.geometry_area_perimeter(g)[0]) for g in series)

    aoi_in_chart = gpd.GeoSeries([shapely.segmentize(box, 2000.0)], crs=grid.crs).to_crs(chart.crs).iloc[0]
    before = geodesic_area(shapely.intersection(chart.geometry.values, aoi_in_chart), chart.crs)
    after = geodesic_area(clipped.geometry.values, grid.crs)
    assert after / before == pytest.approx(1.0, abs=0.005)


def test_cis_labels_on_a_baffin_grid(cis):
    grid = Grid.from_bounds("EPSG:32626", BAFFIN_BOUNDS, 2000.0)
    labels = chart_labels(cis, grid)
    assert labels.dtype == np.int8 and labels.shape == grid.shape
    assert labels.rio.crs == pyproj.CRS("EPSG:32626")
    assert labels.attrs["chart_date"] == "2020-11-02"
    values, counts = np.unique(labels.values, return_counts=True)
    assert set(values) == {-1, 0, 1, 2}
    # independent reference: the share of each class equals the clipped polygons' area share
    chart = load_chart(cis, grid)
    for cls in (0, 1, 2):
        area_share = chart.loc[chart["label"] == cls].area.sum() / shapely.box(*grid.bounds).area
        assert counts[values == cls][0] / labels.size == pytest.approx(area_share, abs=0.01)


def test_repair_of_a_bow_tie_polygon(cis_frame):
    polygon = cis_frame.geometry.loc[356]
    polygon = polygon.geoms[0] if polygon.geom_type == "MultiPolygon" else polygon
    ring = np.asarray(polygon.exterior.coords)[:-1]
    for i in range(len(ring) - 1):  # swap two consecutive vertices until the ring crosses itself
        swapped = ring.copy()
        swapped[[i, i + 1]] = swapped[[i + 1, i]]
        tie = shapely.Polygon(np.vstack([swapped, swapped[:1]]))
        if not tie.is_valid:
            break
    assert not tie.is_valid
    frame = gpd.GeoDataFrame({"CT": ["92", "92"]}, geometry=[tie, cis_frame.geometry.loc[382]], crs=cis_frame.crs)
    repaired, n_invalid = repair_geometries(frame)
    assert n_invalid == 1 and repaired.is_valid.all()
    assert repaired.geometry.iloc[0].geom_type in ("Polygon", "MultiPolygon")
    assert repaired.area.iloc[0] == pytest.approx(polygon.area, rel=0.01)


# --- dates, chart choice, file problems ---------------------------------------------------


@pytest.mark.parametrize(
    ("name", "date"),
    [("nic_arctic_20201102_pl_a.zip", dt.date(2020, 11, 2)), ("arctic201102.zip", dt.date(2020, 11, 2)),
     ("cis_SGRDREA_20201102T1800Z_pl_a.zip", dt.date(2020, 11, 2)), ("cis_SGRDREA_20201102T.gpkg", dt.date(2020, 11, 2))],
)  # fmt: skip
def test_chart_dates_from_file_names(name, date):
    assert chart_date(name) == date


def test_chart_date_from_mapping_and_missing_date():
    assert chart_date("/x/chart.zip", {"chart.zip": dt.date(2021, 1, 4)}) == dt.date(2021, 1, 4)
    with pytest.raises(ChartError, match=r"mychart\.zip.*charts\.dates"):
        chart_date("/x/mychart.zip")


def test_select_chart_nearest_within_max_days():
    dates = [dt.date(2021, 1, 4), dt.date(2021, 1, 11)]
    assert select_chart(dates, np.datetime64("2021-01-05T08:00"), 4) == 0
    assert select_chart(dates, np.datetime64("2021-01-09T20:00"), 4) == 1
    assert select_chart(dates, np.datetime64("2021-01-20T00:00"), 4) is None
    assert select_chart([], np.datetime64("2021-01-20T00:00"), 4) is None


def _small_chart(crs="EPSG:32626"):
    return gpd.GeoDataFrame(
        {"POLY_TYPE": ["I", "W"], "CT": ["92", "00"], "SA": ["87", "-9"]},
        geometry=[shapely.box(500_000, 7_400_000, 520_000, 7_420_000), shapely.box(520_000, 7_400_000, 540_000, 7_420_000)],
        crs=crs,
    )  # fmt: skip


def test_shapefile_without_prj_needs_an_explicit_crs(tmp_path):
    shp = tmp_path / "nic_arctic_20210104_pl_a.shp"
    _small_chart().to_file(shp, engine="pyogrio")
    shp.with_suffix(".prj").unlink()
    with pytest.raises(ChartError, match=r"nic_arctic_20210104_pl_a\.shp.*no CRS"):
        read_chart(shp)
    chart = read_chart(shp, crs="EPSG:32626")
    assert chart.crs == pyproj.CRS("EPSG:32626") and list(chart["CT"]) == ["92", "00"]


def test_zip_without_shapefile(tmp_path):
    path = tmp_path / "nic_arctic_20210104_pl_a.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("readme.txt", "no shapefile here")
    with pytest.raises(ChartError, match=r"nic_arctic_20210104_pl_a\.zip.*no shapefile"):
        read_chart(path)


def test_chart_outside_the_aoi(cis):
    far_away = Grid.from_bounds("EPSG:32626", (300_000.0, 1_000_000.0, 400_000.0, 1_100_000.0), 1000.0)
    with pytest.raises(ChartError, match=r"cis_SGRDREA_20201102T\.gpkg.*does not overlap"):
        load_chart(cis, far_away)


def test_missing_chart_file(tmp_path):
    with pytest.raises(ChartError, match="not found"):
        read_chart(tmp_path / "nic_arctic_20210104_pl_a.zip")


# --- rasterising and the cube -----------------------------------------------------------------


def test_rasterize_and_erosion():
    grid = Grid.from_bounds("EPSG:32626", (490_000, 7_390_000, 550_000, 7_430_000), 1000.0)
    chart = _small_chart().assign(label=np.array([2, 0], dtype="int8"))
    full = rasterize_labels(chart, grid).values
    assert (full == 2).sum() == 400 and (full == 0).sum() == 400 and (full == -1).sum() == full.size - 800
    eroded = rasterize_labels(chart, grid, erosion_m=3000).values
    # each 20 km square loses 3 km on every side (all border another class or unlabelled pixels)
    assert (eroded == 2).sum() == 14 * 14 and (eroded == 0).sum() == 14 * 14
    assert np.all((eroded == full) | (eroded == -1))


def test_write_labels_into_the_cube(tmp_path):
    grid = Grid.from_bounds("EPSG:32626", (490_000, 7_390_000, 550_000, 7_430_000), 1000.0)
    charts = []
    for day, ct in (("20210104", "92"), ("20210111", "50")):
        path = tmp_path / f"nic_arctic_{day}_pl_a.shp"
        _small_chart().assign(CT=[ct, "00"], SA=["97", "-9"]).to_file(path, engine="pyogrio")
        charts.append(path)
    times = pd.to_datetime(["2021-01-05T08:10", "2021-01-12T19:00", "2021-01-30T08:00"])
    store = tmp_path / "cube.zarr"
    create_cube(store, grid, times, {"product_id": ["a", "b", "c"]}, chunk=32)
    cfg = ChartsConfig()
    write_labels(store, charts, cfg, progress=False)
    write_labels(store, charts, cfg, progress=False)  # idempotent
    cube = open_cube(store)
    labels = cube["labels"].values
    assert labels.dtype == np.int8
    expected = chart_labels(charts[0], grid, cfg).values
    np.testing.assert_array_equal(labels[0], expected)
    np.testing.assert_array_equal(labels[1], expected)  # same classes, 5/10 of old ice is still old ice
    assert (labels[2] == -1).all()
    assert list(cube["chart_id"].values) == ["nic_arctic_20210104_pl_a", "nic_arctic_20210111_pl_a", ""]
    assert pd.Timestamp(cube["chart_date"].values[1]) == pd.Timestamp("2021-01-11")
    assert pd.isna(cube["chart_date"].values[2])
    assert done(store, "labels").all()
    assert cube["labels"].attrs["scheme"] == "sod4"


def test_write_labels_from_config_finds_the_charts(tmp_path):
    grid = Grid.from_bounds("EPSG:32626", (490_000, 7_390_000, 550_000, 7_430_000), 1000.0)
    (tmp_path / "charts").mkdir()
    _small_chart().to_file(tmp_path / "charts" / "nic_arctic_20210104_pl_a.shp", engine="pyogrio")
    cfg = PipelineConfig.model_validate({"paths": {"charts": ["charts/*.shp", "charts/*.zip"]}}).resolve(tmp_path)
    create_cube(cfg.paths.store, grid, pd.to_datetime(["2021-01-05T08:10"]), chunk=32)
    assert [p.name for p in write_labels_from_config(cfg, progress=False)] == ["nic_arctic_20210104_pl_a.shp"]
    assert set(np.unique(open_cube(cfg.paths.store)["labels"].values)) == {-1, 0, 2}
    cfg.paths.charts = ["nothing/*.zip"]
    with pytest.raises(ChartError, match="no chart files match"):
        write_labels_from_config(cfg, progress=False)
