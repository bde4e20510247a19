"""Radiometric diagnostics against independent per-pixel references; figures are written."""

from __future__ import annotations

import numpy as np

from seaice_dask import diagnostics as dg


def test_local_std_and_uniform_class_match_per_pixel_loops():
    rng = np.random.default_rng(0)
    x = rng.normal(-20, 2, (30, 40))
    x[5, 7] = np.nan
    classes = (np.arange(40)[None, :] >= 20).astype(int) * np.ones((30, 1), int)
    std, uniform = dg.local_std_db(x), dg.uniform_class(classes)
    for i in range(2, 28):
        for j in range(2, 38):
            box = x[i - 2 : i + 3, j - 2 : j + 3]
            expected = np.nan if np.isnan(box).any() else box.std()
            np.testing.assert_allclose(std[i, j], expected, rtol=1e-9, atol=1e-9)
            assert uniform[i, j] == (len(np.unique(classes[i - 2 : i + 3, j - 2 : j + 3])) == 1)


def test_slope_near_far_and_bands_on_a_known_ramp(tmp_path):
    theta = np.linspace(19, 46, 200_000)
    db = -15 - 0.2 * (theta - 35)
    mask = np.ones(theta.size, bool)
    assert abs(dg.class_incidence_slope(db, theta, mask) + 0.2) < 1e-9
    near, far = np.median(db[theta < 25]), np.median(db[theta > 41])
    assert abs(dg.near_far_difference(db, theta, mask) - (near - far)) < 1e-9
    bands = dg.texture_by_band(np.where(theta < 31, 2.0, 1.0), theta, mask)
    assert bands == [2.0, 2.0, 1.0, 1.0, 1.0]
    centres, medians = dg.incidence_profile(db, theta, mask)
    np.testing.assert_allclose(medians, -15 - 0.2 * (centres - 35), atol=0.01)
    hh = dg.plot_incidence_dependence({"before": {"ice": (centres, medians)}, "after": {"ice": (centres, medians * 0)}},
                                      tmp_path / "hh.png")
    hv = dg.plot_texture_by_subswath({"before": {"ice": bands}, "after": {"ice": bands}}, tmp_path / "hv.png")
    assert hh.stat().st_size > 1000 and hv.stat().st_size > 1000


def test_radiometry_by_class_reads_bands_and_recovers_each_class():
    """Known ramps per class (two classes side by side, whole rows), HV of known texture: the
    band-wise reading gives each class's slope, and its texture equals the whole-array check."""
    import xarray as xr

    rng = np.random.default_rng(1)
    ny, nx = 96, 300
    theta = np.broadcast_to(np.linspace(19, 46, nx, dtype=np.float32), (ny, nx))
    labels = np.where(np.arange(ny)[:, None] < 48, 1, 2) * np.ones((1, nx), np.int8)
    slope = np.where(labels == 1, -0.1, -0.3)
    hh = (-15 + slope * (theta - 35)).astype(np.float32)
    hv = (-25 + rng.normal(0, np.where(theta < 31, 2.0, 1.0))).astype(np.float32)
    ds = xr.Dataset({"sigma0_hh": (("time", "y", "x"), hh[None]), "sigma0_hv": (("time", "y", "x"), hv[None]),
                     "incidence": (("time", "y", "x"), theta[None]), "valid": (("time", "y", "x"), np.ones((1, ny, nx), bool))})
    reference = xr.DataArray(labels[None], dims=("time", "y", "x"))
    stats = dg.radiometry_by_class(ds, reference, 0, {1: "a", 2: "b", 3: "absent"}, band_rows=16, every=2)
    assert set(stats) == {"a", "b"}
    assert abs(stats["a"]["hh_slope_db_per_deg"] + 0.1) < 1e-4 and abs(stats["b"]["hh_slope_db_per_deg"] + 0.3) < 1e-4
    assert stats["a"]["pixels"] == 32 * nx  # rows 0-15 and 32-47 of class a are read (and 64-79 of b)
    whole = dg.local_std_db(hv)
    rows = np.r_[0:16, 32:48]  # the bands of class a
    mask = np.concatenate([dg.uniform_class(labels[0:16]), dg.uniform_class(labels[32:48])])
    band_std = np.concatenate([dg.local_std_db(hv[0:16]), dg.local_std_db(hv[32:48])])
    assert stats["a"]["hv_local_std_db_by_band"] == dg.texture_by_band(band_std, theta[rows], mask)
    assert not np.allclose(band_std, whole[rows], equal_nan=True)  # bands are filtered on their own
