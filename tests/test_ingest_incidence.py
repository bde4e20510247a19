"""Ingest with incidence-angle and textural noise correction: season slopes estimated once from
the charts' ice classes, recorded in the cube, reused on resume; mixing corrections is refused,
naming the cube's and the config's settings."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from seaice_dask import cube
from seaice_dask.config import PipelineConfig
from seaice_dask.errors import ConfigError, CubeError
from seaice_dask.grid import default_grid
from seaice_dask.ingest import ingest
from seaice_dask.preprocess.incidence import IncidenceCorrection

pytestmark = pytest.mark.slow

GRID = {"resolution_m": 1000, "chunk": 128}
#: No incidence correction (the default is ``class``).
UNCORRECTED = {"correction": "none"}


@pytest.fixture(scope="module")
def season(tmp_path_factory) -> Path:
    """Three small simulated scenes with weekly charts."""
    from seaice_dask.simulate.series import simulate_series

    out = tmp_path_factory.mktemp("season")
    simulate_series(out, n_scenes=3, start="2021-01-05", end="2021-02-10", grid=default_grid(1000.0), progress=False)
    return out


def _config(season: Path, store: str, **preprocess) -> PipelineConfig:
    raw = {"paths": {"workdir": str(season), "scenes": ["scenes/*.zip"], "charts": ["charts/*.zip"], "store": store},
           "grid": GRID, "preprocess": preprocess}
    return PipelineConfig.model_validate(raw).resolve(season)


def test_estimated_correction_is_recorded_reused_and_not_mixed(season):
    corrected = _config(season, "corrected.zarr", incidence={"correction": "linear"}, textural_noise=True)
    report = ingest(corrected, progress=False)
    assert report.ok and len(report.ingested) == 3, report.summary()
    attrs = cube.cube_attrs(corrected.paths.store)
    recorded = IncidenceCorrection.from_attrs(attrs["incidence_correction"])
    assert recorded.method == "linear" and recorded.source == "charts" and attrs["textural_noise"] is True
    # the simulator's ice classes fall by 0.13-0.33 dB/deg in HH and 0.04-0.28 in HV (the pre-pass
    # reads ESA-denoised HV, whose per-subswath noise errors blur its slope on three small scenes)
    assert -0.33 < recorded.slopes_db_per_deg["hh"] < -0.13 and -0.3 < recorded.slopes_db_per_deg["hv"] < 0.0

    plain = _config(season, "plain.zarr", incidence=UNCORRECTED, textural_noise=True)
    assert ingest(plain, progress=False).ok
    assert cube.cube_attrs(plain.paths.store)["incidence_correction"] == {"method": "none"}
    a, b = cube.open_cube(corrected.paths.store), cube.open_cube(plain.paths.store)
    theta = b.incidence.values
    shift = (a.sigma0_hh - b.sigma0_hh).values
    expected = -recorded.slopes_db_per_deg["hh"] * (theta - 35.0)
    ok = np.isfinite(shift)
    assert ok.sum() > 50_000 and np.median(np.abs(shift[ok] - expected[ok])) < 0.02

    again = ingest(corrected, progress=False)  # resume: nothing new, the recorded slopes stay
    assert again.ok and len(again.skipped) == 3 and not again.ingested
    assert cube.cube_attrs(corrected.paths.store)["incidence_correction"] == attrs["incidence_correction"]

    for other in (_config(season, "corrected.zarr", incidence=UNCORRECTED, textural_noise=True),
                  _config(season, "corrected.zarr", incidence={"correction": "linear", "slopes_db_per_deg": {"hh": -0.2, "hv": -0.1}},
                          textural_noise=True),
                  _config(season, "corrected.zarr", incidence={"correction": "linear"}, textural_noise=False)):
        with pytest.raises(CubeError, match="corrected.zarr"):
            ingest(other, progress=False)


def test_given_slopes_must_cover_the_polarisations(season, tmp_path):
    cfg = _config(season, str(tmp_path / "c.zarr"), incidence={"correction": "linear", "slopes_db_per_deg": {"hh": -0.2}})
    with pytest.raises(ConfigError, match="hv"):
        ingest(cfg, progress=False)


def test_class_correction_through_ingest(season, tmp_path):
    """``correction: class``: a GIA model fitted to the pre-pass with the charts, recorded in the
    cube; every pixel's shift from the uncorrected cube is −b·(θ − 35°) with b one of its
    components' slopes (bilinear between cells: within their range)."""
    cfg = _config(season, str(tmp_path / "class.zarr"), incidence={"correction": "class"}, textural_noise=True)
    assert ingest(cfg, progress=False).ok
    recorded = IncidenceCorrection.from_attrs(cube.cube_attrs(cfg.paths.store)["incidence_correction"])
    assert recorded.method == "class" and recorded.source == "charts" and len(recorded.classes.weight) >= 3
    hh_slopes = recorded.classes.slope_db_per_deg[:, 0]
    plain = _config(season, str(tmp_path / "plain.zarr"), incidence=UNCORRECTED, textural_noise=True)
    assert ingest(plain, progress=False).ok
    a, b = cube.open_cube(cfg.paths.store), cube.open_cube(plain.paths.store)
    theta = b.incidence.values
    slope = -((a.sigma0_hh - b.sigma0_hh).values / (theta - 35.0))
    ok = np.isfinite(slope) & (np.abs(theta - 35.0) > 3)
    assert ok.sum() > 50_000
    # multilooking and resampling average pixels of slightly different θ: a little slack
    assert np.quantile(slope[ok], 0.005) > hh_slopes.min() - 0.01 and np.quantile(slope[ok], 0.995) < hh_slopes.max() + 0.01
    assert np.unique(np.round(slope[ok], 2)).size > 3  # class-dependent, not one slope
    again = ingest(cfg, progress=False)  # resume: the recorded model stays
    assert again.ok and not again.ingested
    with pytest.raises(ConfigError, match="slopes_db_per_deg"):
        ingest(_config(season, str(tmp_path / "c2.zarr"), incidence={"correction": "class", "slopes_db_per_deg": {"hh": -0.2, "hv": -0.1}}),
               progress=False)


def test_a_cube_of_plain_esa_processing_is_refused_by_the_defaults(season, tmp_path):
    """A cube made with plain ESA processing (ESA denoising, no textural noise, no incidence
    correction: the defaults before the seed's) is refused by a config that leaves the
    preprocessing at its defaults (the seed's), with both settings named and the two ways out;
    the cube's settings, given in the config, still extend it."""
    old = {"denoise": "esa", "textural_noise": False, "incidence": UNCORRECTED}
    store = str(tmp_path / "old.zarr")
    assert ingest(_config(season, store, **old), progress=False).ok
    with pytest.raises(CubeError) as err:
        ingest(_config(season, store), progress=False)
    message = str(err.value)
    assert "old.zarr" in message
    assert "made with denoise esa, textural noise off, incidence correction none;" in message
    assert "asks for denoise nersc, textural noise on, incidence correction class (reference 35°)" in message
    assert "new store path (paths.store)" in message
    assert ("preprocess.denoise: esa, preprocess.textural_noise: false, preprocess.incidence.correction: none"
            in message)
    assert cube.cube_attrs(store)["incidence_correction"] == {"method": "none"}  # nothing written
    with pytest.raises(CubeError, match="made with denoise esa.*asks for denoise nersc, textural noise off"):
        ingest(_config(season, store, **{**old, "denoise": "nersc"}), progress=False)
    again = ingest(_config(season, store, **old), progress=False)
    assert again.ok and len(again.skipped) == 3


def test_pre_pass_skips_an_unusable_chart_naming_it(season, tmp_path, caplog):
    """Charts are rasterised on the workers; one that cannot be read leaves its scene unlabelled
    and is named in a warning, the estimate still comes from the other charts."""
    import shutil

    from seaice_dask.ingest.prepass import estimate_season_slopes
    from seaice_dask.safe import open_safe

    import pandas as pd

    from seaice_dask.charts.read import chart_date

    charts = tmp_path / "charts"
    shutil.copytree(season / "charts", charts)
    products = [open_safe(p) for p in sorted((season / "scenes").glob("*.zip"))]
    first = pd.Timestamp(products[0].start_time).date()
    broken = min(charts.glob("*.zip"), key=lambda c: abs((chart_date(c) - first).days))  # the first scene's
    broken.write_bytes(b"not a zip")
    cfg = _config(season, str(tmp_path / "cube.zarr"), incidence={"correction": "linear"})
    cfg = cfg.model_copy(update={"paths": cfg.paths.model_copy(update={"charts": [str(charts / "*.zip")]})})
    with caplog.at_level("WARNING", logger="seaice_dask.ingest.prepass"):
        correction = estimate_season_slopes(cfg, products, default_grid(1000.0))
    assert correction.method == "linear" and correction.source == "charts"
    warnings = [r.getMessage() for r in caplog.records if "chart unusable" in r.getMessage()]
    assert len(warnings) == 1 and str(broken) in warnings[0], warnings
