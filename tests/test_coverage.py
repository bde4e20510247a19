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


def test_footprint_blocks_follow_a_tilted_swath():
    """The blocks a tilted strip reaches, not its bounding box: each block that holds a pixel
    centre inside the strip, and only blocks within the margin of it."""
    import shapely

    grid = Grid("EPSG:32626", 0.0, 0.0, 1000.0, 800.0, 10.0)  # 80 × 100 pixels, blocks of 16
    corners = np.array([[150.0, 790.0], [450.0, 790.0], [850.0, 10.0], [550.0, 10.0]])  # a tilted strip
    blocks = coverage.footprint_blocks(corners[:, 0], corners[:, 1], grid, 16, margin_px=0)
    strip = shapely.Polygon(corners)
    yy, xx = np.mgrid[0:80, 0:100]
    inside = shapely.contains_xy(strip, grid.xmin + (xx + 0.5) * 10, grid.ymax - (yy + 0.5) * 10)
    reached = coverage.covered_blocks(inside, 16)
    assert (blocks >= reached).all() and blocks.sum() < 0.7 * blocks.size
    box = coverage.blocks_window(blocks, 16, grid.shape)
    assert box == (slice(0, 80), slice(0, 96)) and blocks.sum() <= reached.sum() + 4
    assert not coverage.footprint_blocks(corners[:, 0] + 5000, corners[:, 1], grid, 16).any()
    part = grid.window(slice(64, 80), slice(64, 100))
    assert part.bounds == (640.0, 0.0, 1000.0, 160.0) and part.shape == (16, 36)


def test_keep_blocks_reads_nothing_of_the_others():
    """Blocks flagged False become constants: the tasks behind them leave the graph."""
    calls = []

    def source(block, block_info=None):
        calls.append(block_info[None]["chunk-location"])
        return block + 1

    base = dask.array.zeros((6, 8), chunks=(3, 4), dtype=np.float32).map_blocks(source, dtype=np.float32)
    flags = np.array([[True, False], [False, True]])
    kept = coverage.keep_blocks(base, flags, np.float32(np.nan))
    out = kept.blocks[1, 1].compute()
    assert calls == [(1, 1)] and (out == 1).all()
    calls.clear()
    values = kept.compute()
    assert sorted(calls) == [(0, 0), (1, 1)] and np.isnan(values[:3, 4:]).all() and np.isnan(values[3:, :4]).all()
    assert coverage.keep_blocks(base, None, 0) is base and coverage.keep_blocks(base, np.ones((1, 1), bool), 0) is base


def test_glcm_strips_of_a_partly_empty_block_are_exact():
    """A block only partly holding data is computed in strips reduced to the data's columns:
    bit for bit the kernel's result on the whole block, and less work."""
    from seaice_dask.features.glcm import _block_kernel, _data_strips
    from seaice_dask.features.kernels import glcm_levels, max_pairs_per_group
    from seaice_dask.features.reference import FEATURE_CODES, make_layout

    rng = np.random.default_rng(3)
    half, levels, n = 5, 16, 300
    q = rng.integers(0, levels, size=(n + 2 * half, n + 2 * half)).astype(np.int16)
    yy, xx = np.mgrid[0 : q.shape[0], 0 : q.shape[1]]
    q[(xx < 0.3 * yy + 40) | (xx > 0.3 * yy + 120)] = -1  # a tilted swath about 80 pixels wide
    q[150:152, 250] = 3  # an isolated pair far from it
    layout = make_layout((1,), (0, 45, 90, 135), "standard", True)
    kwargs = dict(half=half, levels=levels, layout=layout, feature_codes=np.array([FEATURE_CODES[f] for f in ("contrast", "entropy")]),
                  snap=False, max_pairs=max_pairs_per_group(2 * half + 1, layout))
    strips = _data_strips(q >= 0, half)
    work = sum((r1 - r0 + 2 * half) * (c1 - c0 + 2 * half) for r0, r1, c0, c1 in strips)
    assert work < 0.6 * q.size
    np.testing.assert_array_equal(_block_kernel(q, **kwargs), glcm_levels(q, **kwargs))
    q[:] = -1
    assert _data_strips(q >= 0, half) == [] and np.isnan(_block_kernel(q, **kwargs)).all()


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
    # only flagged blocks are computed and written (dask and NumPy data alike)
    cube.ensure_variable(store, "w", dtype="float32", fill_value=np.float32(np.nan), extra_dims={"band": [0, 1]})
    both = np.stack([values, -values])
    flags = np.array([[False, True]])
    for data in (dask.array.from_array(both, chunks=(1, 5, 11)), both):
        cube.write_slice(store, "w", 0, data, window=window, blocks=flags)
        stored = cube.open_cube(store)["w"].isel(time=0).values
        np.testing.assert_array_equal(stored[:, 64:, 96:], both[:, :, 32:])
        assert np.isnan(stored[:, :, :96]).all()
        assert [p.relative_to(store / "w" / "c").parts for p in (store / "w" / "c").rglob("*") if p.is_file()] == [("0", "0", "2", "3")]


def _bounds(factor: int) -> tuple[float, float, float, float]:
    """The default box widened symmetrically to ``factor`` × its area."""
    xmin, ymin, xmax, ymax = DENMARK_STRAIT_BOUNDS
    grow = (np.sqrt(factor) - 1) / 2
    dx, dy = (xmax - xmin) * grow, (ymax - ymin) * grow
    return xmin - dx, ymin - dy, xmax + dx, ymax + dy


def test_land_does_not_depend_on_the_grids_extent():
    """The default 80 m grid and the one of 4× its area get the same land where they overlap
    (the coasts of Greenland and Iceland; polygons cut near a grid's edge used to bend there)."""
    from seaice_dask.grid import default_grid
    from seaice_dask.landmask import land_mask

    small = default_grid()
    big = Grid.from_bounds(small.crs, _bounds(4), small.resolution)
    r0, c0 = round((big.ymax - small.ymax) / small.resolution), round((small.xmin - big.xmin) / small.resolution)
    land = land_mask(small, chunk=512).values
    assert 0.05 < land.mean() < 0.5
    np.testing.assert_array_equal(land_mask(big, chunk=512).values[r0 : r0 + land.shape[0], c0 : c0 + land.shape[1]], land)


class Tasks(Callback):
    """Names of the tasks dask's local schedulers run (fused tasks join their parts' names)."""

    def __init__(self):
        super().__init__()
        self.names: list[str] = []

    def _pretask(self, key, dsk, state):
        self.names.append(str(key[0] if isinstance(key, tuple) else key))


@pytest.fixture(scope="module")
def large(small_series, tmp_path_factory) -> Path:
    """The small series' inputs on a 4×-area grid through ingest, charts, features, predict (the
    reference's model) and export, on the local threaded scheduler, whose tasks :class:`Tasks`
    records per stage in ``tasks.json``."""
    from seaice_dask.charts import write_labels_from_config
    from seaice_dask.export import export_maps
    from seaice_dask.features.store import write_glcm_features
    from seaice_dask.ingest import ingest
    from seaice_dask.learn.predict import best_model_path, predict

    work = tmp_path_factory.mktemp("large") / "work"
    copy_workdir(small_series.reference, work, ignore=("cube.zarr", "models", "reports", "pipeline.yaml"))
    # blocks of 64 pixels (the reference's are 128): fine enough that many blocks of a time step
    # hold no data, and the common area is compared across two block layouts
    cfg = load_config(write_config(work, grid={**SMALL_SERIES["grid"], "chunk": 64, "bounds": list(_bounds(4))}))
    model = best_model_path(small_series.reference / "models")
    stages = {
        "ingest": lambda: ingest(cfg, progress=False),
        "charts": lambda: write_labels_from_config(cfg, progress=False),
        "features": lambda: write_glcm_features(cube.cube_store(cfg), cfg.features, progress=False),
        "predict": lambda: predict(cfg, model, progress=False),
        "export": lambda: export_maps(cfg),
    }
    names = {}
    for stage, run in stages.items():
        with Tasks() as tasks:
            run()
        names[stage] = tasks.names
    (work / "tasks.json").write_text(json.dumps(names))
    return work


def test_larger_grid_same_data_in_common_area(small_series, large):
    small = cube.open_cube(small_series.reference / "cube.zarr")
    big = cube.open_cube(large / "cube.zarr")
    common = big.sel(y=small["y"], x=small["x"], method="nearest", tolerance=1.0)
    xr.testing.assert_equal(common["valid"].reset_coords(drop=True), small["valid"].reset_coords(drop=True))
    # the same values wherever a pixel holds data (a block without valid pixels is not written,
    # though the footprint's edge may give it an incidence angle or a σ0 of one polarisation)
    valid = small["valid"].values
    for name in ("sigma0_hh", "sigma0_hv", "incidence", "labels"):
        np.testing.assert_array_equal(common[name].values[valid], small[name].values[valid], name)
    # the scenes reach beyond the default box: texture windows at its edges see more data there
    assert int(big["valid"].sum()) > int(small["valid"].sum())
    inner = _inner(SMALL_SERIES["features"]["window"] // 2)
    for name in ("glcm_hh", "glcm_hv"):
        np.testing.assert_array_equal(common[name].values[inner].transpose(1, 0, 2, 3)[:, valid[inner]],
                                      small[name].values[inner].transpose(1, 0, 2, 3)[:, valid[inner]], name)


def _inner(margin: int) -> tuple:
    """Index of (…, y, x) arrays leaving out ``margin`` pixels at the default grid's edges."""
    return (..., slice(margin, -margin), slice(margin, -margin))


def _count(names: list[str], *parts: str) -> int:
    return sum(all(p in name for p in parts) for name in names)


def test_blocks_without_data_are_not_computed_read_or_written(large):
    """Every stage computes, reads and writes the covered blocks of each time step and no other
    (counted tasks and stored chunks); ingest geocodes the blocks the footprint reaches."""
    from seaice_dask.geocode import TiePoints
    from seaice_dask.safe import open_safe

    ds = cube.open_cube(large / "cube.zarr")
    chunk = int(ds["coverage"].attrs["block_size_px"])
    grid = cube.cube_grid(ds)
    windows = coverage.step_windows(ds)
    covered = np.asarray(ds["coverage"].values)
    n_covered = int(covered.sum())
    in_windows = sum(np.prod([s.stop - s.start for s in coverage.window_blocks(w, chunk)]) for w in windows)
    assert n_covered < 0.9 * in_windows and in_windows < ds.sizes["time"] * covered[0].size * 0.6  # the test means something
    tasks = json.loads((large / "tasks.json").read_text())
    # ingest samples the radar only on blocks the footprint reaches: not its bounding box
    reached = sum(int(coverage.footprint_blocks(*TiePoints.from_product(open_safe(scene)).projected(grid.crs), grid, chunk).sum())
                  for scene in sorted((large / "scenes").glob("*.zip")))
    sampled = _count(tasks["ingest"], "resample-") - _count(tasks["ingest"], "resample-inverse")
    assert n_covered <= sampled <= reached < in_windows
    # one texture task and one read per covered block and polarisation; one prediction per covered block
    assert _count(tasks["features"], "halo") == 2 * n_covered  # the halo, fused with the kernel
    assert _count(tasks["features"], "open_dataset", "keep-blocks") == 2 * n_covered
    assert _count(tasks["predict"], "predict_block") == n_covered
    assert _count(tasks["predict"], "stack") == n_covered  # every input of a block in one read
    assert _count(tasks["export"], "class_map_uint8") == n_covered
    valid = ds["valid"].values
    for t in range(ds.sizes["time"]):
        np.testing.assert_array_equal(covered[t], coverage.covered_blocks(valid[t], chunk))
        allowed = set(zip(*np.nonzero(covered[t])))
        for name in ("sigma0_hh", "valid", "labels", "glcm_hh", "class", "proba"):
            chunks = large / "cube.zarr" / name / "c" / str(t)
            written = {tuple(int(i) for i in p.relative_to(chunks).parts[-2:]) for p in chunks.rglob("*") if p.is_file()}
            assert written and written <= allowed, name


def test_same_model_same_classes_and_maps_cover_the_footprint(small_series, large):
    """The reference's model on the larger cube: identical classes where the grids overlap; the
    exported map spans the footprint's box, and its STAC geometry is the footprint."""
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
