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
