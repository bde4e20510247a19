"""Simulator: truth model, forward model, SAFE writer and series, checked against the reader,
xarray-sentinel, the real product's XSD schemas and the simulator's own truth."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from seaice_dask.errors import ConfigError
from seaice_dask.grid import Grid, default_grid
from seaice_dask.simulate import backscatter as bs
from seaice_dask.simulate.safe_writer import (
    SceneSpec,
    descending_heading,
    render_measurements,
    retarget,
    write_pass,
    write_scene,
)
from seaice_dask.simulate.series import noise_errors, pass_direction, plan_acquisitions, simulate_series
from seaice_dask.simulate.truth import SOD4_NAMES, SURFACE_TO_SOD4, Surface, class_fractions, truth_fields, truth_map, weekly_truth
from tests.conftest import EW_GRDM

COARSE = default_grid(2000.0)


def _spec(**kw) -> SceneSpec:
    scale, offset = noise_errors(np.random.default_rng(1))
    args = dict(start=dt.datetime(2021, 1, 15, 8, 22, 3), absolute_orbit=36146, mission="S1A", size="small",
                noise_scale=scale, noise_offset=offset)
    return SceneSpec(**(args | kw))


@pytest.fixture(scope="session")
def scene(tmp_path_factory):
    """One small simulated GRDM product (SAFE folder) and its render truth in radar geometry."""
    spec = _spec()
    out = tmp_path_factory.mktemp("sim")
    path = write_scene(out, spec, grid=default_grid(), fmt="safe")
    truth = render_measurements(retarget(spec), default_grid(), keep_truth=True)
    return spec, path, truth


@pytest.fixture(scope="session")
def sliced(scene, tmp_path_factory):
    """The pass of ``scene`` (same spec and seed) written as two slice products (SAFE folders)."""
    spec, _, _ = scene
    return write_pass(tmp_path_factory.mktemp("slices"), dataclasses.replace(spec, slices=2), grid=default_grid(), fmt="safe")


# --------------------------------------------------------------------------- truth


def test_truth_is_reproducible_and_seed_dependent():
    a = truth_map(COARSE, "2021-01-10", seed=3)
    b = truth_map(COARSE, "2021-01-10", seed=3)
    c = truth_map(COARSE, "2021-01-10", seed=4)
    assert a.dtype == np.int8 and a.dims == ("y", "x") and a.rio.crs.to_epsg() == 32626
    xr.testing.assert_identical(a, b)
    assert (a.values != c.values).mean() > 0.05


def test_truth_land_from_shipped_polygons():
    import geopandas as gpd
    from pyproj import Transformer

    from seaice_dask.data import LAND_POLYGONS

    truth = truth_map(COARSE, "2020-11-01")
    land = gpd.read_file(LAND_POLYGONS)
    assert land.crs.to_epsg() == 4326 and len(land) >= 3
    to_grid = Transformer.from_crs("EPSG:4326", COARSE.crs, always_xy=True)
    greenland_x, greenland_y = to_grid.transform(-31.0, 68.8)  # East Greenland coast inland
    sea_x, sea_y = to_grid.transform(-25.0, 66.9)  # middle of the Denmark Strait
    assert truth.sel(x=greenland_x, y=greenland_y, method="nearest") == -1
    assert truth.sel(x=sea_x, y=sea_y, method="nearest") >= 0
    assert 0.05 < float((truth == -1).mean()) < 0.3


def test_truth_season_edge_advances_and_all_classes_present():
    dates = pd.date_range("2020-10-05", "2021-03-22", freq="14D")
    weekly = weekly_truth(COARSE, dates, seed=0)
    assert weekly.dims == ("time", "y", "x") and weekly.sizes["time"] == len(dates)
    ice = [float(((w > 0).sum() / (w >= 0).sum())) for w in weekly]
    assert ice[-1] > ice[0] + 0.2, ice
    assert np.all(np.diff(ice) > -0.03)
    shares = [class_fractions(w) for w in weekly]
    for name in SOD4_NAMES.values():
        weeks_with_class = sum(s[name] > 0.04 for s in shares)
        assert weeks_with_class >= 0.8 * len(dates), (name, [round(s[name], 3) for s in shares])
    assert shares[0]["first_year_ice"] < shares[-1]["first_year_ice"]


def test_truth_does_not_depend_on_grid_resolution_or_extent():
    fine = truth_map(Grid.from_bounds("EPSG:32626", (400_000, 7_400_000, 500_000, 7_500_000), 500.0), "2021-02-01")
    coarse = truth_map(default_grid(500.0), "2021-02-01").sel(x=fine.x, y=fine.y)
    assert (fine.values == coarse.values).mean() > 0.99


def test_truth_fields_surface_maps_to_sod4():
    ds = truth_fields(COARSE, "2021-01-20", seed=0)
    surface, truth = ds["surface"].values, ds["truth_class"].values
    water = surface >= 0
    np.testing.assert_array_equal(SURFACE_TO_SOD4[surface[water]], truth[water])
    assert set(np.unique(surface)) >= {int(s) for s in Surface}
    assert float(ds["wind_speed"].min()) > 0


def test_lattice_interpolation_kernel_matches_numpy_reference():
    from seaice_dask.simulate.truth import _Lattice

    grid = Grid.from_bounds("EPSG:32626", (310_000, 7_260_000, 420_000, 7_330_000), 730.0)
    lattice = _Lattice.for_grid(grid)
    field = np.random.default_rng(0).standard_normal(lattice.shape)
    np.testing.assert_allclose(lattice.to_grid(field, grid), lattice.to_grid_reference(field, grid), rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------- forward model


def test_render_kernel_matches_numpy_reference():
    rng = np.random.default_rng(2)
    shape = (37, 53)
    surface = rng.integers(-1, 7, shape).astype(np.int8)
    incidence = rng.uniform(19, 46, shape).astype(np.float32)
    wind = rng.uniform(0, 15, shape).astype(np.float32)
    fields = tuple(rng.standard_normal(shape).astype(np.float32) for _ in range(4))
    a_sigma = rng.uniform(300, 2000, shape)
    eta = rng.uniform(0, 5e3, shape).astype(np.float32)
    speckle = rng.gamma(10, 0.1, shape).astype(np.float32)
    for pol in ("hh", "hv"):
        dn, sigma0 = bs.render_dn(surface, incidence, wind, fields, pol, a_sigma, eta, speckle)
        dn_ref, sigma0_ref = bs.render_dn_reference(surface, incidence, wind, fields, pol, a_sigma, eta, speckle)
        np.testing.assert_allclose(sigma0, sigma0_ref, rtol=1e-4)
        assert np.abs(dn.astype(int) - dn_ref).max() <= 1 and (dn == dn_ref).mean() > 0.99


def test_mean_sigma0_follows_the_signatures():
    theta = np.array([20.0, 30.0, 45.0], dtype=np.float32)
    for surface, sig in bs.SIGNATURES.items():
        if surface in (Surface.WATER_CALM, Surface.WATER_WINDY):
            continue
        s = np.full(3, surface, np.int8)
        np.testing.assert_allclose(bs.mean_sigma0_db(s, theta, "hv"), sig.hv30 + sig.hv_slope * (theta - 30), rtol=1e-6)
        np.testing.assert_allclose(bs.mean_sigma0_db(s, theta, "hh"), sig.hh30 + sig.hh_slope * (theta - 30), rtol=1e-6)
    water = np.full(3, Surface.WATER_CALM, np.int8)
    windy = bs.SIGNATURES[Surface.WATER_WINDY]
    np.testing.assert_allclose(
        bs.mean_sigma0_db(water, theta, "hh", np.full(3, 15.0)), windy.hh30 + windy.hh_slope * (theta - 30), rtol=1e-6
    )


#: simulator-reference.md (Lohse et al. 2024 trained class parameters; RCM 2023 for multi-year ice):
#: HH and HV incidence slopes (dB/deg) the rendered classes must follow.
REFERENCE_SLOPES = {
    Surface.NILAS: (-0.289, -0.133),
    Surface.YOUNG_ICE: (-0.133, -0.044),
    Surface.LEVEL_FYI: (-0.333, -0.275),
    Surface.DEFORMED_FYI: (-0.167, -0.060),
    Surface.MULTIYEAR_ICE: (-0.167, None),
}


@pytest.mark.parametrize("surface", list(REFERENCE_SLOPES), ids=lambda s: s.name.lower())
def test_rendered_class_incidence_slopes_follow_the_reference(surface):
    """Slope fitted to speckled, textured DN (no noise) of one class over the EW swath."""
    rng = np.random.default_rng(int(surface))
    shape = (240, 2700)
    incidence = np.broadcast_to(np.linspace(19.0, 46.0, shape[1], dtype=np.float32), shape)
    fields = tuple(rng.standard_normal(shape).astype(np.float32) for _ in range(4))
    speckle = bs.StripNoise(rng, shape[1], "gamma", bs.ENL["GRDM"]).next(shape[0])
    a_sigma = np.full(shape, 500.0, np.float32)
    for pol, reference in zip(("hh", "hv"), REFERENCE_SLOPES[surface]):
        if reference is None:
            continue
        dn, _ = bs.render_dn(np.full(shape, surface, np.int8), incidence, np.zeros(shape), fields, pol,
                             a_sigma, np.zeros(shape, np.float32), speckle)
        sigma0_db = 10 * np.log10(dn.astype(np.float64) ** 2 / 500.0**2)
        slope = np.polyfit(incidence.ravel(), sigma0_db.ravel(), 1)[0]
        assert abs(slope - reference) < 0.01, (surface.name, pol, slope, reference)


@pytest.mark.parametrize("snr", [0.0, 1.0, 4.0])
def test_noise_residual_has_the_variance_of_speckled_signal_plus_noise(snr):
    """Noise-subtracted σ0 = ((σ0 + N)·G − N): variance (σ0 + N)²/ENL, with the cross term that
    independent speckle of signal and noise (variance (σ0² + N²)/ENL) would miss."""
    enl = bs.ENL["GRDM"]
    rng = np.random.default_rng(7)
    shape = (300, 4000)
    a2, noise = 600.0**2, 1e-3  # η_true = N·A²: a −30 dB noise floor
    speckle = bs.StripNoise(rng, shape[1], "gamma", enl).next(shape[0])
    sigma0 = np.full(shape, snr * noise, np.float32)
    dn = bs.dn_from_sigma0(sigma0, np.full(shape, np.sqrt(a2), np.float32), np.full(shape, noise * a2, np.float32), speckle)
    residual = dn.astype(np.float64) ** 2 / a2 - noise
    assert abs(residual.mean() / (noise * (1 + snr)) - snr / (1 + snr)) < 0.01
    expected = (snr * noise + noise) ** 2 / enl
    assert abs(residual.var() / expected - 1) < 0.05, (residual.var(), expected)
    if snr:
        assert residual.var() > 1.25 * ((snr * noise) ** 2 + noise**2) / enl


@pytest.mark.parametrize("enl", [10.7, 2.7])
def test_speckle_has_the_product_enl_and_grd_correlation(enl):
    noise = bs.StripNoise(np.random.default_rng(0), 20_000, "gamma", enl)
    top, bottom = noise.next(30), noise.next(30)
    field = np.concatenate([top, bottom])
    assert abs(field.mean() - 1) < 0.01
    assert abs(field.mean() ** 2 / field.var() / enl - 1) < 0.06
    centred = field - field.mean()
    lag1 = (centred[:, 1:] * centred[:, :-1]).mean() / centred.var()
    assert abs(lag1 - 2 / 3) < 0.03
    # seamless across strips: the row correlation at the strip boundary is the interior one
    across = (centred[29] * centred[30]).mean() / centred.var()
    assert abs(across - 2 / 3) < 0.05


# --------------------------------------------------------------------------- geometry and annotation


def test_retarget_places_the_scene_on_the_target_with_a_descending_heading():
    spec = _spec(centre_lonlat=(-27.0, 67.2))
    product = retarget(spec)
    geo = product.geolocation()
    centre = geo["longitude"].mean(), geo["latitude"].mean()
    assert abs(centre[0] + 27.0) < 1.0 and abs(centre[1] - 67.2) < 0.3
    heading = float(product.xml[("annotation", "hh")].findtext("generalAnnotation/productInformation/platformHeading"))
    assert abs(heading - (-139.3 + descending_heading(67.2) - descending_heading(79.5))) < 1.5
    assert -175 < heading < -160
    ann = product.xml[("annotation", "hh")]
    radius = [np.linalg.norm([float(o.findtext(f"position/{a}")) for a in "xyz"]) for o in ann.iter("orbit")]
    assert 7.0e6 < min(radius) and max(radius) < 7.1e6  # Sentinel-1 orbit, ~700 km altitude
    assert product.name.startswith("S1A_EW_GRDM_1SDH_20210115T0822")
    assert product.files[("measurement", "hh")].startswith("measurement/s1a-ew-grd-hh-20210115t0822")
    assert product.files[("measurement", "hv")].endswith(f"-{spec.absolute_orbit:06d}-{spec.datatake:06x}-002.tiff")


def test_small_and_grdh_annotations_are_consistently_scaled():
    from seaice_dask.preprocess.luts import calibration_window
    from seaice_dask.safe.annotation import parse_calibration, parse_noise

    full, small, grdh = retarget(_spec(size="full")), retarget(_spec(size="small")), retarget(_spec(product="GRDH", size="full"))
    assert small.shape == (round(full.shape[0] / 8 + 0.01), round(full.shape[1] / 8 + 0.01))
    assert abs(grdh.shape[1] / full.shape[1] - 1.6) < 0.001
    gf, gs = full.geolocation(), small.geolocation()
    np.testing.assert_allclose(gs["latitude"], gf["latitude"])
    assert np.abs(gs["pixel"] - gf["pixel"] / 8).max() <= 1
    cf = parse_calibration(full.xml[("calibration", "hh")], "full")
    cs = parse_calibration(small.xml[("calibration", "hh")], "small")
    lines, samples = np.arange(0, small.shape[0], 97), np.arange(0, small.shape[1], 53)
    a_small = calibration_window(cs, "sigma_nought", lines, samples)
    a_full = calibration_window(cf, "sigma_nought", lines * 8 + 3.5, samples * 8 + 3.5)
    np.testing.assert_allclose(a_small, a_full, rtol=5e-3)
    for product in (full, small, grdh):  # noise blocks still tile the image without overlap
        noise = parse_noise(product.xml[("noise", "hv")], "noise")
        cover = np.zeros(product.shape, np.uint8)
        for b in noise.azimuth:
            cover[b.first_line : b.last_line + 1, b.first_sample : b.last_sample + 1] += 1
        assert cover.max() == 1 and cover.mean() > 0.97


def test_written_xml_validates_against_the_real_product_schemas(scene, sliced, realdata):
    from lxml import etree

    support = realdata(EW_GRDM) / "support"
    _, path, _ = scene
    files = [xml for product in (path, *sliced) for xml in sorted((product / "annotation").rglob("*.xml"))]
    assert len(files) == 24
    for xml in files:
        kind = xml.name.split("-")[0]
        schema_name = {"calibration": "calibration", "noise": "noise", "rfi": "rfi"}.get(kind, "product")
        schema = etree.XMLSchema(etree.parse(str(support / f"s1-level-1-{schema_name}.xsd")))
        assert schema.validate(etree.parse(str(xml))), (xml.name, schema.error_log.last_error)


# --------------------------------------------------------------------------- products


def test_scene_opens_with_the_reader(scene):
    from seaice_dask.safe import open_safe

    spec, path, _ = scene
    product = open_safe(path)
    assert product.name == path.stem == spec.name
    assert (product.mission, product.mode, product.relative_orbit, product.absolute_orbit) == ("S1A", "EW", 24, spec.absolute_orbit)
    assert product.polarisations == ("HH", "HV") and product.pixel_spacing == (320.0, 320.0)
    assert product.start_time == np.datetime64(spec.acquisition_start, "ns")
    assert product.pass_direction == "DESCENDING" and product.ipf_version == "003.52"
    dn = product.dn("HV").values
    assert dn.dtype == np.uint16 and dn.shape == product.shape
    assert 0.005 < (dn == 0).mean() < 0.05  # staggered subswath starts, as in real EW GRD
    assert len(product.measurement_gcps("HH")) == len(product.gcps("HH")) == 483
    footprint = product.footprint()
    assert footprint.bounds[1] > 64 and footprint.bounds[3] < 71


def test_zip_product_opens_with_the_reader_and_is_written_atomically(tmp_path):
    from seaice_dask.safe import open_safe

    path = write_scene(tmp_path, _spec(), grid=COARSE, fmt="zip")
    assert path.suffix == ".zip" and [p.name for p in tmp_path.iterdir()] == [path.name]
    product = open_safe(path)
    assert product.shape == (1339, 1311)
    assert write_scene(tmp_path, _spec(), grid=COARSE, fmt="zip") == path


def test_scene_opens_with_xarray_sentinel(scene):
    xarray_sentinel = pytest.importorskip("xarray_sentinel")
    _, path, _ = scene
    root = xarray_sentinel.open_sentinel1_dataset(path)
    assert "EW/HH" in root.attrs["subgroups"] and root.attrs["relative_orbit_number"] == 24
    hh = xarray_sentinel.open_sentinel1_dataset(path, group="EW/HH")
    assert hh.measurement.shape == (1339, 1311)
    np.testing.assert_array_equal(hh.measurement[100:110, 200:210].values, _dn(path, "hh")[100:110, 200:210])
    for group in ("calibration", "gcp", "orbit"):
        assert xarray_sentinel.open_sentinel1_dataset(path, group=f"EW/HH/{group}").sizes


def _dn(path: Path, pol: str) -> np.ndarray:
    import rasterio

    (tiff,) = (path / "measurement").glob(f"*-{pol}-*.tiff")
    with rasterio.open(tiff) as src:
        assert src.profile["tiled"] is False and src.gcps[1].to_epsg() == 4326
        return src.read(1)


def _sigma0_esa(path: Path, pol: str) -> np.ndarray:
    from seaice_dask.preprocess import sigma0
    from seaice_dask.safe import open_safe

    return sigma0(open_safe(path), pol, denoise="esa").values


def test_esa_denoised_hh_recovers_true_class_means(scene):
    _, path, truth = scene
    estimate = _sigma0_esa(path, "HH")
    surface = truth["surface"]
    sod4 = np.where(surface >= 0, SURFACE_TO_SOD4[np.clip(surface, 0, None)], -1)
    for k in SOD4_NAMES:
        pixels = (sod4 == k) & np.isfinite(estimate)
        assert pixels.sum() >= 10_000, SOD4_NAMES[k]
        error_db = 10 * np.log10(estimate[pixels].mean() / truth["sigma0_hh"][pixels].mean())
        assert abs(error_db) < 0.3, (SOD4_NAMES[k], error_db)


def seam_steps_db(estimate: np.ndarray, true: np.ndarray, boundaries: list[int], low_db: float = -28.0, width: int = 12) -> list[float]:
    """Residual step (dB) of denoised sigma0 across each subswath boundary, over pixels whose true
    sigma0 is below ``low_db``: the step of the estimate minus the step of the truth."""
    low = np.isfinite(estimate) & (true < 10 ** (low_db / 10))
    steps = []
    for b in boundaries:
        left, right = slice(b - width, b), slice(b, b + width)
        if min(low[:, left].sum(), low[:, right].sum()) < 500:
            continue  # not enough dark surface on both sides of this boundary
        est = [estimate[:, s][low[:, s]].mean() for s in (left, right)]
        tru = [true[:, s][low[:, s]].mean() for s in (left, right)]
        steps.append(float(10 * np.log10(est[1] / est[0]) - 10 * np.log10(tru[1] / tru[0])))
    return steps


def test_esa_denoised_hv_keeps_visible_subswath_seams(scene):
    from seaice_dask.safe import open_safe

    _, path, truth = scene
    product = open_safe(path)
    boundaries = [sw.first_sample for sw in product.swaths[1:]]
    hv = seam_steps_db(_sigma0_esa(path, "HV"), truth["sigma0_hv"], boundaries)
    hh = seam_steps_db(_sigma0_esa(path, "HH"), truth["sigma0_hh"], boundaries, low_db=-18.0)
    print(f"HV seam steps (dB) at {boundaries}: {np.round(hv, 2)}; HH (< -18 dB): {np.round(hh, 2)}")
    assert hv and max(abs(s) for s in hv) > 0.5, hv
    assert hh and max(abs(s) for s in hh) < 0.3, hh


# --------------------------------------------------------------------------- series


def test_plan_acquisitions_on_relative_orbit_24():
    plan = plan_acquisitions(29, "2020-10-05", "2021-03-22")
    assert len(plan) == 29
    times = [t for t, _, _ in plan]
    assert times[0].date() >= dt.date(2020, 10, 5) and times[-1].date() <= dt.date(2021, 3, 22)
    assert {round((b - a).total_seconds() / 86400) for a, b in zip(times, times[1:])} == {6}
    assert [m for _, m, _ in plan[:4]] in (["S1A", "S1B"] * 2, ["S1B", "S1A"] * 2)
    for t, mission, absolute in plan:
        assert SceneSpec(start=t, absolute_orbit=absolute, mission=mission).relative_orbit == 24
    assert len(plan_acquisitions(5, "2020-10-05", "2021-03-22")) == 5
    with pytest.raises(ConfigError, match="relative orbit 24"):
        plan_acquisitions(40, "2020-10-05", "2021-03-22")


@pytest.mark.slow
def test_simulate_series_small(tmp_path):
    grid = default_grid(1000.0)
    series = simulate_series(tmp_path, n_scenes=3, start="2021-01-01", end="2021-01-28", grid=grid, progress=False)
    assert len(series.scenes) == 3 and all(p.exists() and p.suffix == ".zip" for p in series.scenes)
    assert series.charts and all(p.name.startswith("nic_arctic_") for p in series.charts)
    store = xr.open_zarr(series.truth)
    truth = store["truth_class"]
    np.testing.assert_array_equal(SURFACE_TO_SOD4[np.clip(store["surface"].values, 0, None)][truth.values >= 0], truth.values[truth.values >= 0])
    assert truth.dims == ("time", "y", "x") and truth.shape == (3, *grid.shape) and truth.dtype == np.int8
    assert truth.rio.crs.to_epsg() == 32626
    meta = json.loads(series.metadata.read_text())
    assert [s["start"] for s in meta["scenes"]] == [str(pd.Timestamp(t).isoformat()) for t in truth.time.values.astype("datetime64[us]")]
    assert {s["relative_orbit"] for s in meta["scenes"]} == {24}
    assert meta["grid"] == grid.to_attrs() and meta["seed"] == 0
    again = simulate_series(tmp_path, n_scenes=3, start="2021-01-01", end="2021-01-28", grid=grid, charts=False, progress=False)
    assert again.scenes == series.scenes
    # rendered by two processes while this one draws truth and charts: the same files
    side = simulate_series(tmp_path / "side", n_scenes=3, start="2021-01-01", end="2021-01-28", grid=grid,
                           progress=False, processes=2)
    for a, b in zip(series.scenes + series.charts, side.scenes + side.charts, strict=True):
        with zipfile.ZipFile(a) as za, zipfile.ZipFile(b) as zb:
            assert za.namelist() == zb.namelist() and all(za.read(n) == zb.read(n) for n in za.namelist()), a.name
    xr.testing.assert_identical(xr.open_zarr(side.truth).load(), store.load())
    assert json.loads(side.metadata.read_text()) == meta


# --------------------------------------------------------------------------- slices of a pass


def _manifest(path: Path, tag: str) -> str:
    from lxml import etree

    return etree.parse(str(path / "manifest.safe")).getroot().findtext(f".//{{*}}{tag}")


def _annotation(path: Path, pol: str = "hh"):
    from lxml import etree

    (xml,) = (path / "annotation").glob(f"*-{pol}-*.xml")
    return etree.parse(str(xml)).getroot()


def test_slices_are_consecutive_products_of_one_pass(scene, sliced):
    from seaice_dask.safe import open_safe

    spec, path, _ = scene
    whole, parts = open_safe(path), [open_safe(p) for p in sliced]
    assert [_manifest(p, "sliceNumber") for p in sliced] == ["1", "2"]
    assert {_manifest(p, "totalSlices") for p in sliced} == {"2"} and _manifest(path, "totalSlices") == "1"
    assert {_manifest(p, "segmentStartTime") for p in sliced} == {_manifest(path, "segmentStartTime")}
    assert {_manifest(p, "missionDataTakeID") for p in sliced} == {str(spec.datatake)}
    assert {(p.absolute_orbit, p.relative_orbit, p.mission) for p in parts} == {(spec.absolute_orbit, 24, "S1A")}
    # names: mission, mode, type, start, stop, orbit and data take of each slice, unique ids differ
    fields = [p.name.split("_") for p in parts]
    assert [f[:4] for f in fields] == [whole.name.split("_")[:4]] * 2 and {tuple(f[6:8]) for f in fields} == {(f"{spec.absolute_orbit:06d}", f"{spec.datatake:06X}")}
    assert len({p.name for p in parts} | {whole.name}) == 3
    # times: the pass's span, cut without a gap; each slice's annotation agrees with its manifest
    assert parts[0].start_time == whole.start_time and parts[1].stop_time == whole.stop_time
    line_interval = (whole.stop_time - whole.start_time) / (whole.shape[0] - 1)
    assert abs(parts[1].start_time - parts[0].stop_time) <= line_interval
    for p, product in zip(sliced, parts):
        info = _annotation(p).find("imageAnnotation/imageInformation")
        assert np.datetime64(info.findtext("productFirstLineUtcTime")) == product.start_time
        assert np.datetime64(info.findtext("productLastLineUtcTime")) == product.stop_time
        assert int(info.findtext("numberOfLines")) == product.shape[0]
        duration = (product.stop_time - product.start_time) / (product.shape[0] - 1)
        assert abs(duration / line_interval - 1) < 1e-6
    assert parts[0].shape[0] + parts[1].shape[0] - 1 == whole.shape[0]  # one shared line
    assert parts[0].shape[1] == parts[1].shape[1] == whole.shape[1]


def test_slice_pixels_and_luts_are_those_of_the_pass(scene, sliced):
    from seaice_dask.preprocess import sigma0
    from seaice_dask.safe import open_safe

    _, path, _ = scene
    whole, parts = open_safe(path), [open_safe(p) for p in sliced]
    first = [0, parts[0].shape[0] - 1]
    for pol in ("HH", "HV"):
        dn = whole.dn(pol).values
        for start, part in zip(first, parts):
            np.testing.assert_array_equal(part.dn(pol).values, dn[start : start + part.shape[0]])
        # calibration and noise of each slice evaluate as the pass's on the same lines
        reference = sigma0(whole, pol, denoise="esa").values
        for start, part in zip(first, parts):
            np.testing.assert_allclose(sigma0(part, pol, denoise="esa").values, reference[start : start + part.shape[0]],
                                       rtol=1e-6, equal_nan=True)


def test_slice_geolocation_grids_are_subsets_of_the_pass_grid(scene, sliced):
    from seaice_dask.safe import open_safe

    _, path, _ = scene
    whole = open_safe(path).geolocation_grid("HH")
    start = 0
    for p in sliced:
        product = open_safe(p)
        grid = product.geolocation_grid("HH")
        assert grid.line.values[0] == 0 and grid.line.values[-1] == product.shape[0] - 1
        expected = whole.sel(line=grid.line.values + start)
        for name in ("latitude", "longitude", "incidence_angle", "azimuth_time"):
            np.testing.assert_array_equal(grid[name].values, expected[name].values)
        gcps = product.measurement_gcps("HH")
        assert len(gcps) == grid.sizes["line"] * grid.sizes["pixel"] and max(g.row for g in gcps) == product.shape[0] - 1
        start += product.shape[0] - 1


def test_too_many_slices_for_the_geolocation_grid_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="geolocation"):
        write_pass(tmp_path, _spec(slices=40), grid=COARSE)


# --------------------------------------------------------------------------- orbits and directions


def test_relative_orbit_directions_over_the_denmark_strait():
    centre = (-27.0, 67.17)
    assert pass_direction(24, centre) == "DESCENDING" and pass_direction(89, centre) == "ASCENDING"
    with pytest.raises(ConfigError, match="does not see"):
        pass_direction(50, centre)


def test_node_longitude_agrees_with_the_template_state_vectors():
    """The node longitude of the orbit model, recomputed from the template's 20 state vectors."""
    import gzip
    import math

    from lxml import etree
    from pyproj import Transformer

    from seaice_dask.simulate import series
    from seaice_dask.simulate.safe_writer import TEMPLATE_DIR

    root = etree.fromstring(gzip.open(TEMPLATE_DIR / "annotation-hh.xml.gz").read())
    node_time = pd.Timestamp(root.findtext(".//ascendingNodeTime"))
    to_lonlat = Transformer.from_crs("EPSG:4978", "EPSG:4326", always_xy=True)
    cos_i = math.cos(math.radians(98.18))
    nodes = []
    for orbit in root.iter("orbit"):
        tau = (pd.Timestamp(orbit.findtext("time")) - node_time).total_seconds()
        lon, _, _ = to_lonlat.transform(*(float(orbit.findtext(f"position/{a}")) for a in "xyz"))
        u = 2 * math.pi * tau / series.ORBIT_PERIOD_S
        node = lon - math.degrees(math.atan2(cos_i * math.sin(u), math.cos(u))) + 360 * tau / 86400
        nodes.append((node - series._NODE_LON_TEMPLATE + 180) % 360 - 180)
    assert abs(np.mean(nodes)) < 0.3 and np.std(nodes) < 0.3


def test_plan_acquisitions_on_ascending_relative_orbit_89():
    plan = plan_acquisitions(6, "2021-01-01", "2021-02-28", relative_orbit=89, ascending=True)
    times = [t for t, _, _ in plan]
    assert {t.strftime("%H:%M") for t in times} == {"19:08"}  # evening pass, the descending 24 at 08:22
    assert all(SceneSpec(start=t, absolute_orbit=a, mission=m).relative_orbit == 89 for t, m, a in plan)
    assert {(b - a).total_seconds() % (6 * 86400) for a, b in zip(times, times[1:])} == {0.0}


def _incidence_east_slope(product) -> float:
    """Fitted d(incidence)/d(east, km) over the geolocation grid at the grid centre."""
    from pyproj import Transformer

    geo = product.geolocation()
    x, _ = Transformer.from_crs("EPSG:4326", "EPSG:32626", always_xy=True).transform(geo["longitude"], geo["latitude"])
    return float(np.polyfit(x / 1e3, geo["incidence"], 1)[0])


def test_ascending_pass_heads_north_with_near_range_on_the_other_side():
    descending, ascending = retarget(_spec(centre_lonlat=(-27.0, 67.2))), retarget(_spec(centre_lonlat=(-27.0, 67.2), ascending=True))
    info = "generalAnnotation/productInformation/"
    assert ascending.xml[("annotation", "hv")].findtext(info + "pass") == "Ascending"
    assert descending.xml[("annotation", "hv")].findtext(info + "pass") == "Descending"
    assert -90 < float(ascending.xml[("annotation", "hh")].findtext(info + "platformHeading")) < 0
    assert -180 < float(descending.xml[("annotation", "hh")].findtext(info + "platformHeading")) < -90
    # state vectors: the platform moves north (ECEF z velocity > 0) on the ascending pass
    vz = [float(o.findtext("velocity/z")) for o in ascending.xml[("annotation", "hh")].iter("orbit")]
    assert min(vz) > 0 and max(float(o.findtext("velocity/z")) for o in descending.xml[("annotation", "hh")].iter("orbit")) < 0
    # right-looking both ways: incidence grows westward on the descending pass, eastward on the ascending one
    assert _incidence_east_slope(descending) < -0.03 and _incidence_east_slope(ascending) > 0.03
    geo = ascending.geolocation()
    assert abs(np.mean(geo["longitude"]) + 27.0) < 1.0 and abs(np.mean(geo["latitude"]) - 67.2) < 0.3
    assert ascending.manifest.findtext(".//{*}orbitProperties/{*}pass") == "ASCENDING"
    # the first line comes ~15 min after the node northbound, ~27 min after it southbound
    after_node = []
    for product in (descending, ascending):
        info = product.xml[("annotation", "hh")].find("imageAnnotation/imageInformation")
        seconds = (pd.Timestamp(info.findtext("productFirstLineUtcTime")) - pd.Timestamp(info.findtext("ascendingNodeTime"))).total_seconds()
        assert abs(float(product.manifest.findtext(".//{*}startTimeANX")) / 1e3 - seconds) < 0.01
        after_node.append(seconds)
    arc = 180 - 2 * np.degrees(np.arcsin(np.sin(np.radians(67.2)) / np.sin(np.radians(98.18))))
    assert abs(after_node[0] - after_node[1] - arc / 360 * 12 * 86400 / 175) < 1


def test_ascending_scene_opens_with_the_reader(tmp_path):
    from seaice_dask.safe import open_safe

    spec = _spec(centre_lonlat=(-27.0, 67.2), ascending=True, absolute_orbit=36211)
    product = open_safe(write_scene(tmp_path, spec, grid=COARSE, fmt="zip"))
    assert product.pass_direction == "ASCENDING" and product.relative_orbit == spec.relative_orbit
    grid = product.geolocation_grid("HH")
    near, far = grid.longitude.isel(pixel=0).mean(), grid.longitude.isel(pixel=-1).mean()
    assert near < far  # near range west


def test_cli_simulate_refuses_bad_orbits(tmp_path):
    from typer.testing import CliRunner

    from seaice_dask.cli import app

    bad = CliRunner().invoke(app, ["simulate", "--out", str(tmp_path), "--orbits", "24,x"])
    assert bad.exit_code == 2 and "--orbits" in bad.output
    unseen = CliRunner().invoke(app, ["simulate", "--out", str(tmp_path), "--orbits", "24,50", "--scenes", "2"])
    assert isinstance(unseen.exception, ConfigError) and "relative orbit 50" in str(unseen.exception)


@pytest.mark.slow
def test_simulate_series_of_sliced_passes_on_two_orbits(tmp_path):
    grid = default_grid(2000.0)
    series = simulate_series(tmp_path, n_scenes=4, start="2021-01-01", end="2021-01-28", grid=grid, charts=False,
                             progress=False, slices_per_pass=2, orbits=(24, 89))
    assert len(series.passes) == 4 and all(len(p) == 2 for p in series.passes) and len(series.scenes) == 8
    meta = json.loads(series.metadata.read_text())
    assert meta["relative_orbits"] == [24, 89] and meta["slices_per_pass"] == 2
    directions = {p["relative_orbit"]: p["pass"] for p in meta["passes"]}
    assert directions == {24: "DESCENDING", 89: "ASCENDING"}
    assert [s["slice_number"] for s in meta["scenes"]] == [1, 2] * 4
    for first, second in zip(meta["scenes"][::2], meta["scenes"][1::2]):
        assert first["stop"] == second["start"] and first["absolute_orbit"] == second["absolute_orbit"]
    truth = xr.open_zarr(series.truth)["truth_class"]
    assert [pd.Timestamp(t).isoformat() for t in truth.time.values.astype("datetime64[us]")] == [p["start"] for p in meta["passes"]]


# --------------------------------------------------------------------------- placing passes


def test_scatter_centres_spread_over_the_grid_and_tracks_are_distinct():
    from pyproj import Transformer

    from seaice_dask.simulate.series import nearest_tracks, orbits_seeing, scatter_centres

    grid = default_grid(2000.0)
    big = Grid.from_bounds(grid.crs, (grid.xmin - 600e3, grid.ymin - 600e3, grid.xmax + 600e3, grid.ymax + 600e3), 2000.0)
    centres = scatter_centres(big, 12)
    x, y = Transformer.from_crs("EPSG:4326", big.crs, always_xy=True).transform(*np.array(centres).T)
    assert len(centres) == 12 and len(set(centres)) == 12
    assert (x > big.xmin).all() and (x < big.xmax).all() and (y > big.ymin).all() and (y < big.ymax).all()
    assert np.ptp(x) > 0.6 * (big.xmax - big.xmin) and np.ptp(y) > 0.6 * (big.ymax - big.ymin)
    tracks = nearest_tracks(centres)
    assert len(set(tracks)) == 12
    for centre, track in zip(centres, tracks):
        assert track in {r for _, r, _ in orbits_seeing(centre)}  # its swath covers the centre


def test_centres_are_validated(tmp_path):
    from seaice_dask.simulate.series import parse_centres

    assert parse_centres("-27.5,67;-20,70") == [(-27.5, 67.0), (-20.0, 70.0)]
    assert parse_centres("scatter") == "scatter" and parse_centres(None) is None
    from seaice_dask.config import SimulateConfig

    assert SimulateConfig(orbits=None, centres="scatter").centres == "scatter"
    assert SimulateConfig(centres=[[-27.0, 67.2]]).centres == [(-27.0, 67.2)]
    with pytest.raises(ValueError):
        SimulateConfig(centres="everywhere")
    for bad in ("-27.5", "a,b", "1,2,3"):
        with pytest.raises(ConfigError, match="lon,lat"):
            parse_centres(bad)
    grid = default_grid(2000.0)
    with pytest.raises(ConfigError, match="outside the grid"):
        simulate_series(tmp_path, n_scenes=1, grid=grid, centres=[(-10.0, 67.0)], progress=False)
    with pytest.raises(ConfigError, match="one centre per orbit"):
        simulate_series(tmp_path, n_scenes=2, grid=grid, orbits=(24, 89), centres=[(-27.0, 67.2)], progress=False)


def test_the_grid_centre_as_the_only_centre_is_the_default(tmp_path):
    """An explicit centre at the grid's centre places the pass exactly where the default does."""
    from seaice_dask.simulate.series import _grid_centre

    grid = default_grid(2000.0)
    kw = dict(n_scenes=1, start="2021-01-01", end="2021-01-10", grid=grid, charts=False, progress=False)
    a = simulate_series(tmp_path / "a", **kw)
    b = simulate_series(tmp_path / "b", centres=[_grid_centre(grid)], **kw)
    import zipfile

    assert a.info == b.info
    with zipfile.ZipFile(a.scenes[0]) as za, zipfile.ZipFile(b.scenes[0]) as zb:
        assert za.namelist() == zb.namelist()
        assert all(za.read(n) == zb.read(n) for n in za.namelist())


def test_cli_simulate_refuses_bad_centres(tmp_path):
    from typer.testing import CliRunner

    from seaice_dask.cli import app

    bad = CliRunner().invoke(app, ["simulate", "--out", str(tmp_path), "--centres", "-27;67"])
    assert isinstance(bad.exception, ConfigError) and "lon,lat" in str(bad.exception)
