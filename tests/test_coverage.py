"""The coverage index: blocks without data are never computed, read or written, on grids larger
than the data (the small series' scenes on a grid of 4× the default area)."""

from __future__ import annotations

import json
from pathlib import Path

import dask
import numpy as np
import pytest
import rasterio
import xarray as xr
from dask.callbacks import Callback

from seaice_dask import coverage, cube
from seaice_dask.config import load_config
from seaice_dask.grid import DENMARK_STRAIT_BOUNDS, Grid
from tests.smallseries import SMALL_SERIES, copy_workdir, write_config

pytestmark = pytest.mark.slow


def test_covered_blocks_and_windows():
    valid = np.zeros((10, 13), dtype=bool)
    valid[4, 5] = valid[9, 12] = True
    covered = coverage.covered_blocks(valid, 4)
    assert covered.tolist() == [[False] * 4, [False, True, False, False], [False, False, False, True]]
    lazy = coverage.covered_blocks(dask.array.from_array(valid, chunks=4), 4)
    np.testing.assert_array_equal(lazy, covered)
    assert coverage.blocks_window(covered, 4, valid.shape) == (slice(4, 10), slice(4, 13))
    assert coverage.blocks_window(np.zeros_like(covered), 4, valid.shape) is None
    assert coverage.window_blocks((slice(4, 10), slice(4, 13)), 4) == (slice(1, 3), slice(1, 4))


def test_bounds_window_is_chunk_aligned_and_clipped():
    grid = Grid("EPSG:32626", 0.0, 0.0, 1000.0, 800.0, 10.0)  # 80 × 100 pixels
    assert coverage.bounds_window((205, 405, 455, 595), grid, 32, margin_px=0) == (slice(0, 64), slice(0, 64))
    assert coverage.bounds_window((650, -50, 2000, 90), grid, 32, margin_px=0) == (slice(64, 80), slice(64, 100))
    assert coverage.bounds_window((2000, 0, 3000, 100), grid, 32) is None
    part = grid.window(slice(64, 80), slice(64, 100))
    assert part.bounds == (640.0, 0.0, 1000.0, 160.0) and part.shape == (16, 36)


def test_write_slice_window_round_trip(tmp_path):
    grid = Grid("EPSG:32626", 0.0, 0.0, 1000.0, 800.0, 10.0)
    store = tmp_path / "c.zarr"
    cube.create_cube(store, grid, ["2021-01-01"], chunk=32)
    cube.ensure_variable(store, "v", dtype="float32", fill_value=np.float32(np.nan))
    values = np.arange(16 * 36, dtype=np.float32).reshape(16, 36)
    window = (slice(64, 80), slice(64, 100))
    cube.write_slice(store, "v", 0, dask.array.from_array(values, chunks=7), window=window)
    stored = cube.open_cube(store)["v"].isel(time=0).values
    np.testing.assert_array_equal(stored[64:, 64:], values)
    assert np.isnan(stored[:64]).all() and np.isnan(stored[:, :64]).all()
    written = sorted(p.name for p in (store / "v" / "c" / "0").rglob("*") if p.is_file())
    assert len(written) == 2  # the two blocks of the window: the rest stays absent


def _bounds(factor: int) -> tuple[float, float, float, float]:
    """The default box widened symmetrically to ``factor`` × its area."""
    xmin, ymin, xmax, ymax = DENMARK_STRAIT_BOUNDS
    grow = (np.sqrt(factor) - 1) / 2
    dx, dy = (xmax - xmin) * grow, (ymax - ymin) * grow
    return xmin - dx, ymin - dy, xmax + dx, ymax + dy


class Tasks(Callback):
    """Names of the tasks dask's local schedulers run (fused tasks join their parts' names)."""

    def __init__(self):
        super().__init__()
        self.names: list[str] = []

    def _pretask(self, key, dsk, state):
        self.names.append(str(key[0] if isinstance(key, tuple) else key))

    def count(self, *parts: str) -> int:
        return sum(all(p in name for p in parts) for name in self.names)


@pytest.fixture(scope="module")
def large(small_series, tmp_path_factory) -> Path:
    """The small series' inputs on a 4×-area grid, ingested, labelled and with features (on the
    local threaded scheduler, whose tasks :class:`Tasks` counts)."""
    from seaice_dask.charts import write_labels_from_config
    from seaice_dask.features.store import write_glcm_features
    from seaice_dask.ingest import ingest

    work = tmp_path_factory.mktemp("large") / "work"
    copy_workdir(small_series.reference, work, ignore=("cube.zarr", "models", "reports", "pipeline.yaml"))
    cfg = load_config(write_config(work, grid={**SMALL_SERIES["grid"], "bounds": list(_bounds(4))}))
    ingest(cfg, progress=False)
    write_labels_from_config(cfg, progress=False)
    tasks = Tasks()
    with tasks:
        write_glcm_features(cube.cube_store(cfg), cfg.features, progress=False)
    # texture computed and stored per block; sigma0 blocks read
    (work / "glcm_tasks.json").write_text(json.dumps({"computed": tasks.count("overlap", "store-map"),
                                                      "read": tasks.count("open_dataset", "concatenate")}))
    return work


def test_larger_grid_same_data_in_common_area(small_series, large):
    small = cube.open_cube(small_series.reference / "cube.zarr")
    big = cube.open_cube(large / "cube.zarr")
    common = big.sel(y=small["y"], x=small["x"], method="nearest", tolerance=1.0)
    for name in ("sigma0_hh", "sigma0_hv", "incidence", "valid", "labels"):
        xr.testing.assert_equal(common[name].reset_coords(drop=True), small[name].reset_coords(drop=True))
    # the scenes reach beyond the default box: texture windows at its edges see more data there
    assert int(big["valid"].sum()) > int(small["valid"].sum())
    inner = _inner(SMALL_SERIES["features"]["window"] // 2)
    for name in ("glcm_hh", "glcm_hv"):
        xr.testing.assert_equal(common[name][inner].reset_coords(drop=True), small[name][inner].reset_coords(drop=True))


def _inner(margin: int) -> tuple:
    """Index of (…, y, x) arrays leaving out ``margin`` pixels at the default grid's edges."""
    return (..., slice(margin, -margin), slice(margin, -margin))


def test_blocks_without_data_are_not_computed_or_written(large):
    ds = cube.open_cube(large / "cube.zarr")
    chunk = int(ds["coverage"].attrs["block_size_px"])
    windows = coverage.step_windows(ds)
    n_blocks = np.prod(coverage.block_counts((ds.sizes["y"], ds.sizes["x"]), chunk))
    in_windows = sum(np.prod([s.stop - s.start for s in coverage.window_blocks(w, chunk)]) for w in windows)
    assert in_windows < ds.sizes["time"] * n_blocks * 0.6  # the test means something
    # one texture task and one read per block of each polarisation's windows, none elsewhere
    assert json.loads((large / "glcm_tasks.json").read_text()) == {"computed": 2 * in_windows, "read": 2 * in_windows}
    covered = np.asarray(ds["coverage"].values)
    valid = ds["valid"].values
    for t in range(ds.sizes["time"]):
        np.testing.assert_array_equal(covered[t], coverage.covered_blocks(valid[t], chunk))
        rows, cols = coverage.window_blocks(windows[t], chunk)
        in_window = {(by, bx) for by in range(rows.start, rows.stop) for bx in range(cols.start, cols.stop)}
        # the store's chunks follow the data; texture reaches half a window beyond it
        for name, allowed in (("sigma0_hh", set(zip(*np.nonzero(covered[t])))), ("labels", in_window),
                              ("glcm_hh", in_window)):
            chunks = large / "cube.zarr" / name / "c" / str(t)
            written = {tuple(int(i) for i in p.relative_to(chunks).parts[-2:]) for p in chunks.rglob("*") if p.is_file()}
            assert written and written <= allowed, name


def test_same_model_same_classes_and_maps_cover_the_footprint(small_series, large):
    """The reference's model on the larger cube: identical classes where the grids overlap; the
    exported map spans the footprint's box, and its STAC geometry is the footprint."""
    from seaice_dask.export import export_maps
    from seaice_dask.learn.predict import best_model_path, predict

    cfg = load_config(large / "pipeline.yaml")
    model = best_model_path(small_series.reference / "models")
    predict(cfg, model, progress=False)
    export_maps(cfg)
    small = cube.open_cube(small_series.reference / "cube.zarr")
    big = cube.open_cube(large / "cube.zarr")
    common = big["class"].sel(y=small["y"], x=small["x"], method="nearest", tolerance=1.0)
    smooth = int(big["class"].attrs["smoothing_window_px"])
    inner = _inner(SMALL_SERIES["features"]["window"] // 2 + smooth // 2)
    np.testing.assert_array_equal(common.values[inner], small["class"].values[inner])
    assert (small["class"].values[inner] >= 0).mean() > 0.3
    for t, path in enumerate(sorted((large / "reports" / "maps").glob("class_*.tif"))):
        with rasterio.open(path) as src:
            data = src.read(1)
            assert (data[[0, -1], :] != 255).any(axis=1).all() and (data[:, [0, -1]] != 255).any(axis=0).all()
            assert src.shape[0] * src.shape[1] < big.sizes["y"] * big.sizes["x"] / 2
        item = json.loads(path.with_suffix(".json").read_text())
        assert item["geometry"]["type"] == "Polygon" and item["properties"]["proj:shape"] == list(data.shape)


def test_time_step_covering_nothing(small_series, tmp_path):
    """A grid in a corner of the scenes' bounding box that their swath misses: the passes are
    ingested (their boxes overlap the grid) and cover nothing; every stage passes over them."""
    import shapely

    from seaice_dask.charts import write_labels_from_config
    from seaice_dask.export import export_maps
    from seaice_dask.features.store import write_glcm_features
    from seaice_dask.geocode import TiePoints
    from seaice_dask.ingest import ingest, validate_ingest
    from seaice_dask.learn.predict import best_model_path, predict
    from seaice_dask.safe import open_safe

    scene = sorted((small_series.reference / "scenes").glob("*.zip"))[0]
    x, y = TiePoints.from_product(open_safe(scene)).projected("EPSG:32626")
    swath = shapely.MultiPoint(np.column_stack([x, y])).convex_hull.buffer(1000)
    side = 12_000
    corners = [(x.min(), y.min()), (x.min(), y.max() - side), (x.max() - side, y.min()), (x.max() - side, y.max() - side)]
    box = next(b for b in (shapely.box(cx, cy, cx + side, cy + side) for cx, cy in corners) if not b.intersects(swath))
    copy_workdir(small_series.reference, tmp_path / "w", ignore=("cube.zarr", "models", "reports", "pipeline.yaml"))
    cfg = load_config(write_config(tmp_path / "w", grid={**SMALL_SERIES["grid"], "bounds": list(box.bounds)}))
    report = ingest(cfg, progress=False)
    assert report.ingested and not report.failed
    store = cube.cube_store(cfg)
    assert not cube.read_coverage(store).any() and validate_ingest(store) == []
    write_labels_from_config(cfg, progress=False)
    write_glcm_features(store, cfg.features, progress=False)
    predict(cfg, best_model_path(small_series.reference / "models"), progress=False)
    maps = export_maps(cfg)
    for stage in ("labels", "features", "predict"):
        assert cube.done(store, stage).all(), stage
    assert maps.class_maps == [] and not (store / "sigma0_hh" / "c").exists()
