"""Pass assembly at ingest: slices of one pass become one time step, mosaicked without a seam;
ordering, the overlap rule, late slices, duplicates and refusals. Slices come from the
simulator (a pass rendered once and cut into slice products), ingest runs on a real LocalCluster."""

from __future__ import annotations

import dataclasses
import datetime as dt
import inspect
import shutil
from pathlib import Path

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


def _config(workdir: Path, scenes: list[Path], bounds=None, **preprocess) -> PipelineConfig:
    workdir.mkdir(parents=True, exist_ok=True)
    raw = {
        "paths": {"workdir": str(workdir), "scenes": [str(s) for s in scenes], "store": "cube.zarr"},
        "grid": {"resolution_m": 800, "chunk": 128, "bounds": bounds},
        "preprocess": preprocess,
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
