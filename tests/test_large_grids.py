"""Grids for large regions in polar CRSs: passes placed over a grid four times the default box
(EPSG:3413), ingested onto it and onto an EASE-Grid 2.0 North grid (EPSG:6931). Geocoding is
checked against the products' own geolocation grid points taken into the grid by pyproj, the
values against the simulator's truth, land against point-in-polygon (where the passes are), chart labels against the
truth they were drawn from."""

from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import shapely
from pyproj import Transformer

from seaice_dask import cube
from seaice_dask.config import PipelineConfig
from seaice_dask.grid import Grid
from seaice_dask.ingest import ingest

pytestmark = pytest.mark.slow

#: 800 km × 800 km over the East Greenland coast and the Denmark Strait, four default boxes.
POLAR_STEREO = Grid.from_bounds("EPSG:3413", (400e3, -2800e3, 1200e3, -2000e3), 1000.0)
#: The same region on EASE-Grid 2.0 North.
EASE_NORTH = Grid.from_bounds("EPSG:6931", (-1550e3, -2650e3, -750e3, -1850e3), 1000.0)
START, END = "2021-01-04", "2021-01-12"


@pytest.fixture(scope="module")
def season(tmp_path_factory) -> Path:
    """Two small passes from the tracks nearest two centres scattered over the 3413 grid."""
    from seaice_dask.simulate.series import simulate_series

    out = tmp_path_factory.mktemp("polar")
    simulate_series(out, n_scenes=2, start=START, end=END, grid=POLAR_STEREO, orbits=None, centres="scatter",
                    progress=False)
    return out


def _config(season: Path, store: Path, grid: Grid, correction: str) -> PipelineConfig:
    raw = {
        "paths": {"workdir": str(season), "scenes": ["scenes/*.zip"], "charts": ["charts/*.zip"], "store": str(store)},
        "grid": {"crs": grid.crs, "bounds": list(grid.bounds), "resolution_m": grid.resolution, "chunk": 256},
        "preprocess": {"denoise": "esa", "textural_noise": False, "incidence": {"correction": correction}},
    }
    return PipelineConfig.model_validate(raw).resolve(season)


@pytest.fixture(scope="module", params=["3413", "6931"])
def ingested(request, season, tmp_path_factory):
    """The season ingested onto each grid; on 3413 with the class-aware incidence pre-pass."""
    grid, correction = (POLAR_STEREO, "class") if request.param == "3413" else (EASE_NORTH, "none")
    cfg = _config(season, tmp_path_factory.mktemp(request.param) / "cube.zarr", grid, correction)
    report = ingest(cfg, progress=False)
    assert report.ok and len(report.ingested) == 2, report.summary()
    return cfg, grid


def test_passes_are_placed_on_distinct_tracks_over_their_centres(season):
    from seaice_dask.safe import open_safe
    from seaice_dask.simulate.series import orbits_seeing, scatter_centres

    meta = json.loads((season / "simulation.json").read_text())
    centres = scatter_centres(POLAR_STEREO, 2)
    assert len(meta["passes"]) == 2 and len({p["relative_orbit"] for p in meta["passes"]}) == 2
    for scene in meta["scenes"]:
        centre = min(centres, key=lambda c: np.hypot(c[0] - scene["centre_lonlat"][0], c[1] - scene["centre_lonlat"][1]))
        # the nearest swath centre line to that centre, flown in the direction that sees it
        _, orbit, direction = orbits_seeing(tuple(centre))[0]
        assert (scene["relative_orbit"], scene["pass"]) == (orbit, direction)
        geo = open_safe(season / scene["path"]).geolocation_grid("hh").load()
        x, y = Transformer.from_crs("EPSG:4326", POLAR_STEREO.crs, always_xy=True).transform(
            geo["longitude"].values.ravel(), geo["latitude"].values.ravel())
        cx, cy = Transformer.from_crs("EPSG:4326", POLAR_STEREO.crs, always_xy=True).transform(*centre)
        # the footprint is centred on its centre (± 25 km along track, small product ~400 km)
        assert np.hypot(x.mean() - cx, y.mean() - cy) < 40e3
    assert meta["grid"] == POLAR_STEREO.to_attrs()


def test_geocoding_matches_the_geolocation_grid_points(ingested):
    """The ingested incidence at each tie point's pixel (pyproj, independent of the geocoder)
    is the tie point's own incidence: a shift of half a pixel in range would show."""
    from seaice_dask.safe import open_safe

    cfg, grid = ingested
    ds = cube.open_cube(cfg.paths.store)
    assert ds["sigma0_hh"].rio.crs.to_epsg() == int(grid.crs.split(":")[1])
    to_grid = Transformer.from_crs("EPSG:4326", grid.crs, always_xy=True)
    for t, product_id in enumerate(ds["product_id"].values):
        (path,) = Path(cfg.paths.workdir, "scenes").glob(f"{product_id}*")
        geo = open_safe(path).geolocation_grid("hh").load()
        x, y = to_grid.transform(geo["longitude"].values.ravel(), geo["latitude"].values.ravel())
        col = np.floor((x - grid.xmin) / grid.resolution).astype(int)
        row = np.floor((grid.ymax - y) / grid.resolution).astype(int)
        inside = (col >= 1) & (col < grid.shape[1] - 1) & (row >= 1) & (row < grid.shape[0] - 1)
        got = ds["incidence"].isel(time=t).values[row[inside], col[inside]]
        expected = geo["incidence_angle"].values.ravel()[inside]
        ok = np.isfinite(got)
        assert ok.sum() > 20
        # tie points lie on the swath edges too, where a pixel holds half a swath: the median
        assert np.median(np.abs(got[ok] - expected[ok])) < 0.03
        assert np.quantile(np.abs(got[ok] - expected[ok]), 0.9) < 0.08


def _truth_on(grid: Grid, when) -> dict[str, np.ndarray]:
    """The simulation's truth (drawn on the 3413 grid) on ``grid``: GDAL nearest-neighbour
    reprojection when ``grid`` is in another CRS."""
    from rasterio.enums import Resampling

    from seaice_dask.simulate.truth import truth_fields

    if grid.crs == POLAR_STEREO.crs:
        truth = truth_fields(grid, when, seed=0, domain=POLAR_STEREO)
        return {k: truth[k].values for k in ("truth_class", "surface", "wind_speed")}
    truth = truth_fields(POLAR_STEREO, when, seed=0, domain=POLAR_STEREO)
    target = grid.wrap(np.zeros(grid.shape, np.float32))
    out = {}
    for k in ("truth_class", "surface", "wind_speed"):
        source = truth[k].astype(np.float32).rio.write_nodata(np.nan)
        out[k] = source.rio.reproject_match(target, resampling=Resampling.nearest).values
    out["truth_class"] = np.where(np.isfinite(out["truth_class"]), out["truth_class"], -9).astype(np.int8)
    out["surface"] = np.where(np.isfinite(out["surface"]), out["surface"], -1).astype(np.int8)
    return out


def test_values_and_land_match_the_truth(ingested, season):
    """Per class, uncorrected HH matches the forward model's mean at each pixel's incidence (the
    6931 cube; the 3413 one is corrected to 35°); land is the shipped polygons' point-in-polygon land."""
    from seaice_dask.data import LAND_POLYGONS
    from seaice_dask.simulate.backscatter import mean_sigma0_db

    cfg, grid = ingested
    ds = cube.open_cube(cfg.paths.store)
    uncorrected = cfg.preprocess.incidence.correction == "none"
    checked = 0
    for t in range(ds.sizes["time"]) if uncorrected else ():
        truth = _truth_on(grid, ds["time"].values[t])
        one = ds.isel(time=t).load()
        valid = one["valid"].values & ~one["land"].values
        expected = mean_sigma0_db(truth["surface"], one["incidence"].values, "HH", truth["wind_speed"])
        got = one["sigma0_hh"].values
        for cls in range(4):
            sel = valid & (truth["truth_class"] == cls) & np.isfinite(expected)
            if sel.sum() >= 500:
                assert abs(np.median(got[sel] - expected[sel])) < 0.75, (t, cls)
                checked += 1
    assert checked >= 2 or not uncorrected

    land = ds["land"].values
    # land is burnt where the passes are (no stage looks at it elsewhere)
    chunk = int(ds["coverage"].attrs["block_size_px"])
    covered = np.kron(ds["coverage"].values.any(axis=0), np.ones((chunk, chunk), bool))[: grid.shape[0], : grid.shape[1]]
    assert covered.mean() > 0.1
    yy, xx = np.meshgrid(grid.y, grid.x, indexing="ij")
    lon, lat = Transformer.from_crs(grid.crs, "EPSG:4326", always_xy=True).transform(xx, yy)
    tree = shapely.STRtree(gpd.read_file(LAND_POLYGONS, bbox=(-60, 55, 0, 80)).geometry.values)
    idx, _ = tree.query(shapely.points(lon.ravel(), lat.ravel()), predicate="within")
    reference = np.zeros(lon.size, bool)
    reference[idx] = True
    reference = reference.reshape(grid.shape)
    assert 0.05 < reference[covered].mean() < 0.6
    assert (land == reference)[covered].mean() > 0.995


def test_class_prepass_runs_on_the_polar_grid(ingested):
    from seaice_dask.preprocess.incidence import ATTR, IncidenceCorrection

    cfg, grid = ingested
    attrs = cube.cube_attrs(cfg.paths.store)
    if grid is not POLAR_STEREO:  # the 6931 cube was ingested without the correction
        assert ATTR not in attrs or IncidenceCorrection.from_attrs(attrs[ATTR]).method == "none"
        return
    recorded = IncidenceCorrection.from_attrs(attrs[ATTR])
    assert recorded.method == "class" and recorded.source == "charts"
    slopes = recorded.classes.slope_db_per_deg[:, 0]  # HH, dB/deg: ice ~ -0.1 … -0.3, open water steeper
    assert (slopes < 0).all() and (slopes > -1.2).all() and np.median(slopes) > -0.4


@pytest.mark.parametrize("grid", [POLAR_STEREO, EASE_NORTH], ids=["3413", "6931"])
def test_chart_labels_on_polar_grids_follow_the_truth(season, grid):
    """The weekly SIGRID-3 charts (drawn from the truth on the 3413 grid at 1 km, written in
    lon/lat) clipped and burnt onto either grid agree with the truth on that grid."""
    from seaice_dask.charts.labels import chart_labels
    from seaice_dask.charts.read import chart_date

    charts = sorted((season / "charts").glob("*.zip"))
    assert charts
    labels = chart_labels(charts[0], grid)
    truth = _truth_on(grid, str(chart_date(charts[0])))["truth_class"]
    both = (labels.values >= 0) & (truth >= 0)
    assert both.mean() > 0.3
    assert (labels.values[both] == truth[both]).mean() > 0.8


def test_incidence_prepass_does_not_depend_on_the_grid_extent(season, tmp_path):
    """The class-aware estimate from the same scenes on the 4× grid and on its central quarter
    is the same model: every sample counts, looked up on a lattice fixed in the CRS."""
    from seaice_dask.ingest.prepass import estimate_season_slopes
    from seaice_dask.safe import open_safe

    quarter = Grid.from_bounds(POLAR_STEREO.crs, (600e3, -2600e3, 1000e3, -2200e3), POLAR_STEREO.resolution)
    estimates = []
    for grid in (POLAR_STEREO, quarter):
        cfg = _config(season, tmp_path / "unused.zarr", grid, "class")
        products = [open_safe(p) for p in sorted((season / "scenes").glob("*.zip"))]
        estimates.append(estimate_season_slopes(cfg, products, grid).to_attrs())
    assert estimates[0] == estimates[1]


def test_incidence_prepass_refuses_a_land_file_short_of_the_footprints(season, tmp_path, realdata):
    # Iceland alone (from the test copy of Natural Earth): the scenes reach beyond its extent
    from seaice_dask.errors import ConfigError
    from seaice_dask.ingest.prepass import estimate_season_slopes
    from seaice_dask.safe import open_safe
    from tests.conftest import NE_LAND

    iceland = gpd.read_file(realdata(NE_LAND), bbox=(-25.0, 63.0, -13.0, 67.0))
    iceland.to_file(tmp_path / "iceland.geojson", driver="GeoJSON")
    cfg = _config(season, tmp_path / "unused.zarr", POLAR_STEREO, "class")
    cfg.paths.land = tmp_path / "iceland.geojson"
    products = [open_safe(p) for p in sorted((season / "scenes").glob("*.zip"))]
    with pytest.raises(ConfigError, match="pre-pass looks land up over the scenes' whole footprints.*extent"):
        estimate_season_slopes(cfg, products, POLAR_STEREO)
