"""Pass assembly at ingest: slices of one pass become one time step, mosaicked without a seam;
ordering, the overlap rule, late slices, duplicates and refusals. Slices come from the
simulator (a pass rendered once and cut into slice products), ingest runs on a real LocalCluster."""

from __future__ import annotations

import dataclasses
import datetime as dt
import inspect
import json
import re
import shutil
from pathlib import Path

import dask
import numpy as np
import pandas as pd
import pytest

from seaice_dask import cube
from seaice_dask.config import PipelineConfig, dump_config, load_config
from seaice_dask.ingest import ingest, validate_ingest
from seaice_dask.ingest.passes import assign_steps, group_passes, prefer_resolution, unique_products
from seaice_dask.safe import open_safe
from seaice_dask.simulate import safe_writer

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif("slices" not in inspect.signature(safe_writer.SceneSpec).parameters,
                       reason="needs the simulator's slices of a pass (SceneSpec.slices, write_pass)"),
]

START = dt.datetime(2021, 1, 15, 8, 22, 3)
ORBITS = (36146, 36146 + 175 * 2)  # relative orbit 24, twelve days apart


@pytest.fixture(scope="module")
def slices(tmp_path_factory) -> dict[str, list[Path]]:
    """Two passes cut into 2 slices each, and the first pass again as one product (same seed)."""
    out = tmp_path_factory.mktemp("slices")
    spec = safe_writer.SceneSpec(start=START, absolute_orbit=ORBITS[0], seed=0, slices=2)
    later = dataclasses.replace(spec, start=START + dt.timedelta(days=12), absolute_orbit=ORBITS[1])
    whole = dataclasses.replace(spec, slices=1)
    return {
        "pass1": safe_writer.write_pass(out / "sliced", spec),
        "pass2": safe_writer.write_pass(out / "sliced", later),
        "whole": [safe_writer.write_scene(out / "whole", whole)],
    }


#: Plain ESA processing unless a test asks for more: a cube's own incidence-correction estimate
#: would differ between the whole pass and its slices, and these tests compare their geometry.
PLAIN = {"denoise": "esa", "textural_noise": False, "incidence": {"correction": "none"}}


def _config(workdir: Path, scenes: list[Path], bounds=None, resolution_m: float = 800, **preprocess) -> PipelineConfig:
    workdir.mkdir(parents=True, exist_ok=True)
    raw = {
        "paths": {"workdir": str(workdir), "scenes": [str(s) for s in scenes], "store": "cube.zarr"},
        "grid": {"resolution_m": resolution_m, "chunk": 128, "bounds": bounds},
        "preprocess": {**PLAIN, **preprocess},
    }
    return load_config(dump_config(PipelineConfig.model_validate(raw), workdir / "config.yaml"))


@pytest.fixture(scope="module")
def client():
    from dask.distributed import Client, LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=2, processes=True, dashboard_address=":0") as cluster, \
            Client(cluster) as c:
        yield c


def test_slices_group_into_passes_in_time_order(slices):
    products = [open_safe(p) for p in [*slices["pass2"], *slices["pass1"]]]
    passes, refused = group_passes(products)
    assert not refused
    assert [p.names for p in passes] == [tuple(open_safe(s).name for s in slices[k]) for k in ("pass1", "pass2")]
    first = open_safe(slices["pass1"][0])
    assert first.slice_number == 1 and open_safe(slices["pass1"][1]).slice_number == 2
    assert passes[0].time == pd.Timestamp(first.segment_start).as_unit("us").to_datetime64()
    assert passes[0].coords("esa")["absolute_orbit"] == ORBITS[0]
    assert passes[0].coords("esa")["pass_direction"] == "DESCENDING"
    assert len(group_passes(products, assemble=False)[0]) == 4


@dataclasses.dataclass(frozen=True)
class _Meta:
    """Product metadata as ingest planning reads it (no pixels)."""

    name: str
    start_time: np.datetime64
    stop_time: np.datetime64
    absolute_orbit: int = 36146
    mission: str = "S1A"
    resolution_class: str = "M"
    segment_start: np.datetime64 | None = None
    path: str = ""


def _meta(start: str, stop: str, **kw) -> _Meta:
    t0, t1 = np.datetime64(start, "ns"), np.datetime64(stop, "ns")
    name = kw.pop("name", f"S1A_EW_GRD{kw.get('resolution_class', 'M')}_1SDH_{start.replace('-', '').replace(':', '')[:15]}"
                          f"_{stop.replace('-', '').replace(':', '')[:15]}_{kw.get('absolute_orbit', 36146):06d}_03D83A_AAAA")
    return _Meta(name, t0, t1, path=f"/data/{name}.zip", **kw)


def test_time_gap_or_other_orbit_keeps_slices_apart():
    a = _meta("2021-01-15T08:22:03", "2021-01-15T08:23:03")
    b = _meta("2021-01-15T08:23:04.5", "2021-01-15T08:24:04")  # 1.5 s gap: contiguous
    c = _meta("2021-01-15T08:24:09", "2021-01-15T08:25:09")  # 5 s gap: another pass
    d = _meta("2021-01-15T08:23:03", "2021-01-15T08:24:03", absolute_orbit=36147)
    passes, refused = group_passes([c, b, d, a])
    assert not refused
    assert [p.names for p in passes] == [(a.name, b.name), (d.name,), (c.name,)]


def test_same_time_range_is_refused_and_resolution_follows_config():
    a = _meta("2021-01-15T08:22:03", "2021-01-15T08:23:03")
    other = _meta("2021-01-15T08:22:03", "2021-01-15T08:23:03", name=a.name.replace("AAAA", "BBBB"))
    passes, refused = group_passes([a, other])
    assert [p.names for p in passes] == [(a.name,)] and list(refused) == [other]
    assert "already holds" in refused[other] and a.name in refused[other]
    high = _meta("2021-01-15T08:22:03", "2021-01-15T08:23:03", resolution_class="H")
    with pytest.warns(UserWarning, match="GRDM and GRDH"):
        assert prefer_resolution([high, a], ["GRDM", "GRDH"]) == [a]
    with pytest.warns(UserWarning, match="using GRDH"):
        assert prefer_resolution([a, high], ["GRDH", "GRDM"]) == [high]


def test_duplicate_found_twice_is_kept_once_with_both_paths(slices, tmp_path):
    copy = tmp_path / "elsewhere" / slices["pass1"][0].name
    copy.parent.mkdir()
    shutil.copy(slices["pass1"][0], copy)
    with pytest.warns(UserWarning, match="found twice") as caught:
        kept = unique_products([open_safe(slices["pass1"][0]), open_safe(copy)])
    assert len(kept) == 1 and str(copy) in str(caught[0].message) and str(slices["pass1"][0]) in str(caught[0].message)


def test_bridging_slice_merges_steps_or_is_refused_without_its_neighbours():
    a = _meta("2021-01-15T08:22:03", "2021-01-15T08:23:03")
    b = _meta("2021-01-15T08:23:03", "2021-01-15T08:24:03")
    c = _meta("2021-01-15T08:24:03", "2021-01-15T08:25:03")
    passes, _ = group_passes([a, b, c])
    assert [p.names for p in passes] == [(a.name, b.name, c.name)]
    times = [np.datetime64("2021-01-25T08:22:03", "us"), np.datetime64("2021-01-15T08:24:03", "us"),
             np.datetime64("2021-01-15T08:22:03", "us")]  # in ingest order: another pass, then c, then a
    steps, done, refused = assign_steps(passes, [("other",), (c.name,), (a.name,)], times, [True, True, True])
    assert not done and not refused
    assert [(s.pass_.names, s.t, s.absorbs) for s in steps] == [((a.name, b.name, c.name), 2, (1,))]  # earliest stamp kept
    alone, _ = group_passes([b])
    steps, done, refused = assign_steps(alone, [(c.name,), (a.name,)], times[1:], [True, True])
    assert not steps and list(refused) == [b] and a.name in refused[b] and c.name in refused[b]


def test_pass_is_one_time_step_without_seam(slices, tmp_path, client):
    whole = _config(tmp_path / "whole", slices["whole"])
    assert ingest(whole, progress=False).ok
    sliced = _config(tmp_path / "sliced", slices["pass1"], bounds=list(cube.cube_grid(cube.cube_store(whole)).bounds))
    report = ingest(sliced, progress=False)
    assert report.ok, report.failed
    a, b = cube.open_cube(cube.cube_store(sliced)), cube.open_cube(cube.cube_store(whole))
    assert a.sizes["time"] == 1 and not validate_ingest(cube.cube_store(sliced))
    assert str(a["product_id"].values[0]) == ";".join(open_safe(p).name for p in slices["pass1"])
    assert int(a["absolute_orbit"].values[0]) == ORBITS[0] and a["pass_direction"].values[0] == "DESCENDING"
    va, vb = a["valid"].isel(time=0).values, b["valid"].isel(time=0).values
    # no seam: the mosaic is valid exactly where the whole pass is (no missing row, no gap)
    assert (va == vb).all(), int((va != vb).sum())
    for name in ("sigma0_hh", "sigma0_hv"):
        sa, sb = a[name].isel(time=0).values, b[name].isel(time=0).values
        diff = np.abs(sa - sb)[vb]
        assert np.quantile(diff, 0.99) == 0.0  # the same pixels, but for the boundary's neighbours
        rows = vb.sum(axis=1) >= 20  # row medians across the boundary as in the whole pass
        step = [abs(np.median(sa[i][vb[i]]) - np.median(sb[i][vb[i]])) for i in np.flatnonzero(rows)]
        assert max(step) <= 0.2, max(step)


def test_late_slice_joins_its_pass_and_resets_later_stages(slices, tmp_path, client):
    cfg = _config(tmp_path / "late", [slices["pass1"][1], *slices["pass2"]])
    assert ingest(cfg, progress=False).ok
    store = cube.cube_store(cfg)
    before = cube.open_cube(store)
    assert before.sizes["time"] == 2
    t = 0
    cube.mark_done(store, "features", t)
    cube.mark_done(store, "features", 1)
    valid_before = int(before["valid"].isel(time=t).sum())
    late = _config(tmp_path / "late", [*slices["pass1"], *slices["pass2"]])
    report = ingest(late, progress=False)
    assert report.ok and sorted(report.ingested) == sorted(open_safe(p).name for p in slices["pass1"])
    after = cube.open_cube(store)
    assert after.sizes["time"] == 2 and (after["time"].values == before["time"].values).all()
    assert str(after["product_id"].values[t]) == ";".join(open_safe(p).name for p in slices["pass1"])
    assert int(after["valid"].isel(time=t).sum()) > 1.5 * valid_before
    assert cube.done(store, "ingest").all()
    assert list(cube.done(store, "features")) == [False, True]  # only the rewritten step recomputes
    again = ingest(late, progress=False)
    assert not again.ingested and len(again.skipped) == 4


def test_assembly_off_keeps_one_step_per_product(slices, tmp_path, client):
    cfg = _config(tmp_path / "off", slices["pass1"], assemble_passes=False)
    assert ingest(cfg, progress=False).ok
    ds = cube.open_cube(cube.cube_store(cfg))
    assert ds.sizes["time"] == 2
    assert list(ds["time"].values) == [np.datetime64(open_safe(p).start_time, "us") for p in slices["pass1"]]


def test_duplicate_copy_is_ingested_once(slices, tmp_path, client):
    copy = tmp_path / "copy" / slices["pass1"][0].name
    copy.parent.mkdir()
    shutil.copy(slices["pass1"][0], copy)
    cfg = _config(tmp_path / "dup", [*slices["pass1"], copy])
    with pytest.warns(UserWarning, match="found twice") as caught:
        report = ingest(cfg, progress=False)
    assert report.ok and len(report.ingested) == 2
    message = next(str(w.message) for w in caught if "found twice" in str(w.message))
    assert str(copy) in message and str(slices["pass1"][0]) in message
    assert cube.open_cube(cube.cube_store(cfg)).sizes["time"] == 1


@pytest.fixture(scope="module")
def three(tmp_path_factory) -> dict[str, list[Path]]:
    """One pass cut into 3 slices (SAFE folders), the same slices without ``segmentStartTime``
    in their manifests (as products assembled by other processors), and the pass as one product."""
    out = tmp_path_factory.mktemp("three")
    spec = safe_writer.SceneSpec(start=START, absolute_orbit=ORBITS[0], seed=1, slices=3)
    sliced = safe_writer.write_pass(out / "sliced", spec, fmt="safe")
    bare = []
    for path in sliced:
        copy = out / "bare" / path.name
        shutil.copytree(path, copy)
        manifest = copy / "manifest.safe"
        text = manifest.read_text()
        manifest.write_text(re.sub(r"<[\w:]*segmentStartTime>[^<]*</[\w:]*segmentStartTime>", "", text))
        bare.append(copy)
    return {"sliced": sliced, "bare": bare, "whole": [safe_writer.write_scene(out / "whole", dataclasses.replace(spec, slices=1))]}


@pytest.fixture(scope="module")
def three_whole(three, tmp_path_factory, client) -> tuple[Path, list[float]]:
    """The pass of :func:`three` as one product, ingested once for the module's tests (which only
    read it): its store and its grid's bounds, on which the sliced cubes are made."""
    whole = _config(tmp_path_factory.mktemp("three_whole"), three["whole"])
    assert ingest(whole, progress=False).ok
    store = cube.cube_store(whole)
    return store, list(cube.cube_grid(store).bounds)


def _same_as_whole(store, t: int, whole) -> None:
    """Time step ``t`` of ``store`` holds the pixels of the whole pass (one product): valid
    exactly where it is (no seam), the same σ0 but for the neighbours of slice boundaries."""
    a, b = cube.open_cube(store), cube.open_cube(whole)
    va, vb = a["valid"].isel(time=t).values, b["valid"].isel(time=0).values
    assert (va == vb).all(), int((va != vb).sum())
    for name in ("sigma0_hh", "sigma0_hv"):
        diff = np.abs(a[name].isel(time=t).values - b[name].isel(time=0).values)[vb]
        assert np.quantile(diff, 0.99) == 0.0


def test_slices_1_and_3_of_a_segment_are_one_step_that_slice_2_fills(three, three_whole, tmp_path, client):
    whole, bounds = three_whole
    first, second, third = three["sliced"]
    cfg = _config(tmp_path / "gap", [first, third], bounds=bounds)
    assert ingest(cfg, progress=False).ok
    store = cube.cube_store(cfg)
    before = cube.open_cube(store)
    assert before.sizes["time"] == 1  # one segment start: one pass, with a gap where slice 2 is
    assert before.time.values[0] == np.datetime64(open_safe(first).segment_start, "us")
    assert int(before["valid"].isel(time=0).sum()) < int(cube.open_cube(whole)["valid"].sum())
    report = ingest(_config(tmp_path / "gap", three["sliced"], bounds=bounds), progress=False)
    assert report.ok and len(report.ingested) == 3
    after = cube.open_cube(store)
    assert after.sizes["time"] == 1 and after.time.values[0] == before.time.values[0]
    assert str(after["product_id"].values[0]) == ";".join(open_safe(p).name for p in three["sliced"])
    _same_as_whole(store, 0, whole)


def test_bridging_slice_merges_two_steps_and_removes_the_other(three, three_whole, slices, tmp_path, client):
    from seaice_dask.export import COLLECTION_FILE, MAPS_DIR

    whole, bounds = three_whole
    first, second, third = three["bare"]
    assert open_safe(first).segment_start is None
    cfg = _config(tmp_path / "bridge", [first, third, *slices["pass2"]], bounds=bounds)
    assert ingest(cfg, progress=False).ok
    store = cube.cube_store(cfg)
    before = cube.open_cube(store)
    stamps = [np.datetime64(open_safe(p).start_time, "us") for p in (first, third)]
    assert before.sizes["time"] == 3 and list(before.time.values[:2]) == stamps  # a gap: two passes
    later, later_id = before["sigma0_hv"].isel(time=2).values, str(before["product_id"].values[2])
    for t in range(3):
        cube.mark_done(store, "features", t)
    maps = Path(cfg.paths.reports) / MAPS_DIR
    maps.mkdir(parents=True)
    names = {t: pd.Timestamp(s).strftime("%Y%m%dT%H%M%S") for t, s in enumerate(stamps)}
    for stamp in names.values():  # as export writes them
        for file in (f"class_{stamp}.tif", f"class_{stamp}.tif.aux.xml", f"class_{stamp}.qml", f"proba_{stamp}.tif",
                     f"class_{stamp}.json"):
            (maps / file).write_text("x")
    links = [{"rel": "item", "href": f"./class_{s}.json"} for s in names.values()]
    (maps / COLLECTION_FILE).write_text(json.dumps({"type": "Collection", "links": links}))

    report = ingest(_config(tmp_path / "bridge", [*three["bare"], *slices["pass2"]], bounds=bounds), progress=False)
    assert report.ok and sorted(report.ingested) == sorted(open_safe(p).name for p in three["bare"])
    after = cube.open_cube(store)
    assert after.sizes["time"] == 2 and not validate_ingest(store) and not cube.validate_cube(store)
    assert list(after.time.values) == [stamps[0], before.time.values[2]]  # the earliest stamp, the other pass moved
    assert str(after["product_id"].values[0]) == ";".join(open_safe(p).name for p in three["bare"])
    assert str(after["product_id"].values[1]) == later_id == ";".join(open_safe(p).name for p in slices["pass2"])
    np.testing.assert_array_equal(after["sigma0_hv"].isel(time=1).values, later)
    assert list(cube.done(store, "ingest")) == [True, True]
    assert list(cube.done(store, "features")) == [False, True]  # the merged step recomputes, the moved one not
    _same_as_whole(store, 0, whole)
    left = sorted(f.name for f in maps.iterdir())
    assert not [f for f in left if names[1] in f] and len([f for f in left if names[0] in f]) == 5
    assert [link["href"] for link in json.loads((maps / COLLECTION_FILE).read_text())["links"]] == [f"./class_{names[0]}.json"]
    again = ingest(_config(tmp_path / "bridge", [*three["bare"], *slices["pass2"]], bounds=bounds), progress=False)
    assert not again.ingested and cube.open_cube(store).sizes["time"] == 2


#: Per-subswath noise errors like the season simulator's (``series.noise_errors``): NERSC has work to do.
NOISE = {"noise_scale": {"hh": (0.93, 1.03, 0.97, 1.03, 0.97), "hv": (0.87, 1.06, 0.94, 1.06, 0.95)},
         "noise_offset": {"hh": (0.0,) * 5, "hv": (2e-5, -2e-5, 1e-5, -1e-5, 0.0)}}


@pytest.fixture(scope="module")
def noisy(tmp_path_factory) -> dict[str, list[Path]]:
    """A pass with noise errors, as 2 slices and as one product (same seed)."""
    out = tmp_path_factory.mktemp("noisy")
    spec = safe_writer.SceneSpec(start=START, absolute_orbit=ORBITS[0], seed=2, slices=2, **NOISE)
    return {"sliced": safe_writer.write_pass(out / "sliced", spec),
            "whole": [safe_writer.write_scene(out / "whole", dataclasses.replace(spec, slices=1))]}


def test_nersc_noise_scaling_is_estimated_per_pass(noisy):
    from seaice_dask.preprocess.nersc import noise_scaling

    parts, whole = [open_safe(p) for p in noisy["sliced"]], open_safe(noisy["whole"][0])
    # cross-pol, where the noise floor matters: each slice alone has too few noise-dominated blocks
    pooled, reference, *single = dask.compute(noise_scaling(parts, "HV"), noise_scaling(whole, "HV"),
                                              *[noise_scaling(p, "HV") for p in parts])
    # pooled over the slices, scaling and power balancing are the whole pass's; per slice they are not
    error = np.abs(pooled.offset - reference.offset).max()
    assert all(error < 0.2 * np.abs(s.offset - reference.offset).max() for s in single), error
    np.testing.assert_array_equal(pooled.scale, reference.scale)
    assert any(np.abs(s.scale - reference.scale).max() > 0.1 for s in single)
    assert noise_scaling([whole], "HH").key == noise_scaling(whole, "HH").key  # one product: the same graph


def _seam_db(cfg, pol: str, steps: str = "boundary_db") -> float:
    """How much the median σ0 (dB) changes across the slice boundary of the first pass of
    ``cfg``'s cube (its scenes: the pass's slices), all sea pixels as one class."""
    from seaice_dask.diagnostics import seam_steps
    from seaice_dask.ingest.passes import Pass

    ds = cube.open_cube(cube.cube_store(cfg))
    p = Pass(tuple(open_safe(s) for s in cfg.paths.scenes))
    (rows,) = p.boundary_rows(cube.cube_grid(ds))
    values = ds[f"sigma0_{pol}"].isel(time=0).values
    (found,) = seam_steps(values, np.zeros(values.shape, int), rows).values()
    return found[steps]


def test_nersc_pass_has_no_seam_and_one_product_is_unchanged(noisy, tmp_path, client):
    from seaice_dask.geocode import geocode_product

    nersc = dict(denoise="nersc", textural_noise=True)
    whole = _config(tmp_path / "whole", noisy["whole"], **nersc)
    assert ingest(whole, progress=False).ok
    grid = cube.cube_grid(cube.cube_store(whole))
    stored = cube.open_cube(cube.cube_store(whole))
    direct = geocode_product(open_safe(noisy["whole"][0]), grid, denoise="nersc", textural_noise=True,
                             chunk=whole.grid.chunk, multilook=whole.preprocess.multilook).compute()
    for name in ("sigma0_hh", "sigma0_hv"):  # a one-product pass is denoised as it always was, bit for bit
        np.testing.assert_array_equal(stored[name].isel(time=0).values, direct[name].values)
    # the boundary's rows, measured in the pass as one product and as slices: scene structure
    # changes them as much as neighbouring rows (a few tenths of a dB); a seam would add a step
    whole.paths.scenes = [str(s) for s in noisy["sliced"]]  # the boundary of the slices
    reference = {pol: _seam_db(whole, pol) for pol in ("hh", "hv")}
    sliced = _config(tmp_path / "sliced", noisy["sliced"], bounds=list(grid.bounds), **nersc)
    assert ingest(sliced, progress=False).ok
    seams = {pol: abs(_seam_db(sliced, pol) - reference[pol]) for pol in ("hh", "hv")}
    assert max(seams.values()) <= 0.2, (seams, reference)


def test_textural_correction_of_slices_is_the_whole_pass(noisy):
    from seaice_dask.ingest.passes import Pass
    from seaice_dask.preprocess import sigma0_textural
    from seaice_dask.preprocess.textural import WINDOW

    parts, whole = [open_safe(p) for p in noisy["sliced"]], open_safe(noisy["whole"][0])
    p = Pass(tuple(parts))
    reference = sigma0_textural(whole, "HV", "esa", (256, 256)).values
    for q, first, near in zip(parts, p.line_offsets(), p.neighbour_lines(WINDOW // 2)):
        rows = reference[first : first + q.shape[0]]
        alone = sigma0_textural(q, "HV", "esa", (256, 256)).values
        assert not np.array_equal(alone, rows, equal_nan=True)  # a half box at the slice's edge
        np.testing.assert_array_equal(sigma0_textural(q, "HV", "esa", (256, 256), neighbours=near).values, rows)


def _class_correction(product):
    """A class-aware incidence correction fitted to ``product`` (free components: no charts)
    whose cells pick different slopes, so a cell cut at a slice edge can pick another."""
    from seaice_dask.preprocess.incidence import estimate_slopes, scene_samples

    correction = estimate_slopes(scene_samples(product, ["HH", "HV"]), ["HH", "HV"], method="class")
    assert len(np.unique(correction.classes.applied.round(3), axis=0)) > 1
    return correction


def test_class_correction_of_slices_is_the_whole_pass(noisy):
    """The class-aware incidence correction of a sliced pass (the pass corrected as one image:
    cells from the pass's first line, both slices' lines in the cells along the boundary) is the
    whole pass's, bit for bit; corrected one by one, the slices' cells stop at their edges."""
    from seaice_dask.geocode import multilooked_radars
    from seaice_dask.ingest.passes import Pass
    from seaice_dask.preprocess.incidence import cell_pixels, correct_multilooked, correct_pass
    from seaice_dask.preprocess.textural import WINDOW

    parts, whole = [open_safe(p) for p in noisy["sliced"]], open_safe(noisy["whole"][0])
    pols, looks = ["HH", "HV"], 2
    correction, cell = _class_correction(whole), cell_pixels(whole.pixel_spacing[0] * looks)
    options = dict(denoise="esa", multilook=looks, textural_noise=True, radar_chunks=256)
    ml = multilooked_radars(whole, pols, **options)
    (reference,) = dask.compute(correct_multilooked({x: ml[x] for x in pols}, ml["incidence"], correction, cell))
    p = Pass(tuple(parts))
    sliced = [multilooked_radars(q, pols, first_line=n, neighbours=near, **options)
              for q, n, near in zip(parts, p.first_lines(looks), p.neighbour_lines(WINDOW // 2))]
    rows = p.multilooked_rows(looks)
    assert rows[0] == 0 and rows[1] == rows[0] + sliced[0]["incidence"].shape[0]  # the slices tile the pass
    together, alone = dask.compute(
        correct_pass([{x: m[x] for x in pols} for m in sliced], [m["incidence"] for m in sliced], rows, correction, cell),
        [correct_multilooked({x: m[x] for x in pols}, m["incidence"], correction, cell) for m in sliced])
    for pol in pols:
        for k, row in enumerate(rows):
            expected = reference[pol][row : row + together[k][pol].shape[0]]
            np.testing.assert_array_equal(together[k][pol], expected)
            differ = np.flatnonzero((~np.isclose(alone[k][pol], expected, rtol=1e-6, equal_nan=True)).any(axis=1))
            edge = expected.shape[0] - 1 if k == 0 else 0  # the slice's row at the boundary
            assert differ.size and np.abs(differ - edge).max() < 2 * cell, (pol, k, differ)  # cut cells, only there


def test_class_corrected_pass_has_no_seam(noisy, tmp_path, client):
    """Through ingest, with one class-aware correction for both cubes, on a grid fine enough to
    see the cells (400 m; the small scenes' cells are 640 m): the sliced pass is the whole pass
    but within 1.5 grid rows of the boundary, where the slices' edges change the bilinear
    sampling (elsewhere within float rounding of the slices' own line numbers: 1 pixel in 10⁶
    by 2e-6 dB). Corrected one by one, the slices differed up to 3 rows away."""
    from seaice_dask.ingest.passes import Pass

    correction = _class_correction(open_safe(noisy["whole"][0]))
    options = dict(textural_noise=True, incidence={"correction": "class"}, resolution_m=400)
    whole = _config(tmp_path / "whole", noisy["whole"], **options)
    assert ingest(whole, progress=False, incidence=correction).ok
    grid = cube.cube_grid(cube.cube_store(whole))
    sliced = _config(tmp_path / "sliced", noisy["sliced"], bounds=list(grid.bounds), **options)
    assert ingest(sliced, progress=False, incidence=correction).ok
    _same_as_whole(cube.cube_store(sliced), 0, cube.cube_store(whole))
    (boundary,) = Pass(tuple(open_safe(s) for s in noisy["sliced"])).boundary_rows(grid)
    crossed = np.isfinite(boundary)
    far = np.abs(np.arange(grid.shape[0])[:, None] - boundary[None, crossed]) > 1.5
    a, b = cube.open_cube(cube.cube_store(sliced)), cube.open_cube(cube.cube_store(whole))
    for name in ("sigma0_hh", "sigma0_hv"):
        sa, sb = (ds[name].isel(time=0).values[:, crossed] for ds in (a, b))
        np.testing.assert_allclose(sa[far], sb[far], rtol=0, atol=1e-5)
