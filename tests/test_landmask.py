"""Land mask: chunk-wise burning against whole-grid rasterio and point-in-polygon references."""

from __future__ import annotations

import dask.array as da
import geopandas as gpd
import numpy as np
import pytest
import rasterio.features
import shapely
from pyproj import Transformer

from conftest import GSHHG_L1, NE_LAND
from seaice_dask.errors import ConfigError
from seaice_dask.grid import Grid, default_grid
from seaice_dask.landmask import default_land_path, land_mask


@pytest.fixture(scope="module")
def grid() -> Grid:
    return default_grid(1000.0)  # Denmark Strait, 400 × 400


def _whole_grid_reference(path, grid: Grid) -> np.ndarray:
    """Every polygon (long edges densified, as the mask does) burnt onto the whole grid at once."""
    land = gpd.read_file(path)
    land = land.set_geometry(shapely.segmentize(land.geometry.values, 0.25)).to_crs(grid.crs)
    return rasterio.features.rasterize(
        ((g, 1) for g in land.geometry), out_shape=grid.shape, transform=grid.transform, fill=0, dtype="uint8"
    ).astype(bool)


def test_shipped_polygons_match_whole_grid_rasterisation(grid):
    mask = land_mask(grid, chunk=96)
    assert isinstance(mask.data, da.Array) and mask.dtype == bool
    assert mask.dims == ("y", "x") and mask.rio.crs.to_epsg() == 32626
    values = mask.values
    expected = _whole_grid_reference(default_land_path(), grid)
    assert 0.01 < expected.mean() < 0.6  # Greenland's coast is in the box
    np.testing.assert_array_equal(values, expected)


def test_natural_earth_file(grid, realdata):
    path = realdata(NE_LAND)
    np.testing.assert_array_equal(land_mask(grid, path, chunk=128).values, _whole_grid_reference(path, grid))


def test_polar_grid_over_the_pole_matches_point_in_polygon(realdata):
    # 4000 km square centred on the North Pole: the lon/lat clip box must take every longitude
    grid = Grid.from_bounds("EPSG:3413", (-2e6, -2e6, 2e6, 2e6), 20_000.0)
    path = realdata(GSHHG_L1)
    values = land_mask(grid, path, chunk=64).values
    yy, xx = np.meshgrid(grid.y, grid.x, indexing="ij")
    lon, lat = Transformer.from_crs(grid.crs, "EPSG:4326", always_xy=True).transform(xx, yy)
    polys = gpd.read_file(path, bbox=(-180, 55, 180, 90)).geometry.values
    tree = shapely.STRtree(polys)
    points = shapely.points(lon.ravel(), lat.ravel())
    idx_point, _ = tree.query(points, predicate="within")
    expected = np.zeros(points.size, dtype=bool)
    expected[idx_point] = True
    expected = expected.reshape(grid.shape)
    assert expected.mean() > 0.1  # Greenland, Canadian archipelago, Svalbard, Siberia
    # edges are straight in lon/lat for the reference and on the map for the mask
    assert (values == expected).mean() > 0.98


def test_buffer_grows_land(grid):
    plain = land_mask(grid, chunk=200).values
    grown = land_mask(grid, buffer_m=5000.0, chunk=200).values
    assert (grown | ~plain).all()  # grown ⊇ plain
    assert grown.sum() > plain.sum() + 100
    assert land_mask(grid, buffer_m=5000.0).attrs["buffer_m"] == 5000.0


def test_no_land_in_grid_gives_all_sea():
    # open Norwegian Sea, far from the shipped polygons' coasts
    grid = Grid.from_bounds("EPSG:32631", (300e3, 7.4e6, 400e3, 7.5e6), 1000.0)
    assert not land_mask(grid).values.any()


def test_missing_file_is_a_config_error(grid, tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        land_mask(grid, tmp_path / "nope.shp")
    with pytest.raises(ConfigError, match="buffer"):
        land_mask(grid, buffer_m=-1.0)


def test_shipped_arctic_land_keeps_the_denmark_strait_land(grid, realdata):
    # the shipped polygons are Natural Earth north of 45°N; the test copy is the same source
    # clipped to the Denmark Strait: on the default grid both give the same land
    path = realdata(NE_LAND)
    np.testing.assert_array_equal(land_mask(grid, chunk=128).values, land_mask(grid, path, chunk=128).values)


def _point_in_polygon_reference(path, grid: Grid, lat_min: float) -> np.ndarray:
    yy, xx = np.meshgrid(grid.y, grid.x, indexing="ij")
    lon, lat = Transformer.from_crs(grid.crs, "EPSG:4326", always_xy=True).transform(xx, yy)
    tree = shapely.STRtree(gpd.read_file(path, bbox=(-180, lat_min, 180, 90)).geometry.values)
    idx, _ = tree.query(shapely.points(lon.ravel(), lat.ravel()), predicate="within")
    expected = np.zeros(lon.size, dtype=bool)
    expected[idx] = True
    return expected.reshape(grid.shape)


@pytest.mark.parametrize(
    "crs, bounds",
    [
        # NSIDC polar stereographic north: Fram Strait, Svalbard to North-East Greenland
        ("EPSG:3413", (-100e3, -1300e3, 900e3, -500e3)),
        # EASE-Grid 2.0 North: Barents Sea, Novaya Zemlya and Franz Josef Land
        ("EPSG:6931", (600e3, -700e3, 1800e3, 300e3)),
    ],
)
def test_shipped_land_on_polar_grids_matches_point_in_polygon(crs, bounds):
    grid = Grid.from_bounds(crs, bounds, 5000.0)
    values = land_mask(grid, chunk=64).values
    expected = _point_in_polygon_reference(default_land_path(), grid, 45.0)
    assert 0.03 < expected.mean() < 0.6, expected.mean()
    # edges are straight in lon/lat for the reference and densified on the map for the mask
    assert (values == expected).mean() > 0.995


def test_grid_beyond_the_shipped_land_is_refused():
    # the Mediterranean north of Corsica: south of the shipped file's 45°N
    grid = Grid.from_bounds("EPSG:32632", (400e3, 4.6e6, 600e3, 4.8e6), 1000.0)
    with pytest.raises(ConfigError, match=r"EPSG:32632.*beyond the land polygons' extent .*lat 45\.00…90\.00") as err:
        land_mask(grid)
    assert err.value.path == str(default_land_path())


def test_grid_beyond_a_clipped_land_file_is_refused(realdata):
    # the test copy of Natural Earth stops at 13.6°W: a grid over Jan Mayen (8°W) leaves it
    path = realdata(NE_LAND)
    grid = Grid.from_bounds("EPSG:32629", (450e3, 7.8e6, 650e3, 8.0e6), 1000.0)
    with pytest.raises(ConfigError, match=r"beyond the land polygons' extent lon -45\.00…-13\.56") as err:
        land_mask(grid, path)
    assert err.value.path == str(path)
    assert land_mask(grid).values.any()  # the shipped file has Jan Mayen
