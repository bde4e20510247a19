"""GLCM arithmetic: fast kernel and NumPy reference against scikit-image, SNAP identities, NaN rules."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from skimage.feature import graycomatrix, graycoprops

from seaice_dask.features.kernels import glcm_levels, max_pairs_per_group
from seaice_dask.features.reference import (
    ALL_FEATURES,
    FEATURE_CODES,
    glcm_reference,
    make_layout,
    window_features,
)

ANGLES = (0, 45, 90, 135)
SKIMAGE_PROPS = ("contrast", "dissimilarity", "homogeneity", "ASM", "energy", "entropy", "correlation", "mean", "variance")
ALL_CODES = np.array([FEATURE_CODES[f] for f in ALL_FEATURES])


def fast(q: np.ndarray, window: int, levels: int, layout, mode: str = "standard") -> np.ndarray:
    """Kernel output (feature, slot, y, x) in float64 for an unpadded image of levels."""
    half = window // 2
    return glcm_levels(
        np.pad(q, half, constant_values=-1), half=half, levels=levels, layout=layout,
        feature_codes=ALL_CODES, snap=mode == "snap", max_pairs=max_pairs_per_group(window, layout),
        dtype=np.float64,
    )  # fmt: skip


def skimage_features(window: np.ndarray, levels: int, distance: int) -> np.ndarray:
    """scikit-image's features per angle, then averaged (max_prob from the same matrices)."""
    p = graycomatrix(window, [distance], np.deg2rad(ANGLES), levels=levels, symmetric=True, normed=True)
    values = {prop: graycoprops(p, prop)[0].mean() for prop in SKIMAGE_PROPS}
    values["max_prob"] = p.max(axis=(0, 1))[0].mean()
    return np.array([values[f] for f in ALL_FEATURES])


def centre(out: np.ndarray) -> np.ndarray:
    return out[:, 0, out.shape[2] // 2, out.shape[3] // 2]


@st.composite
def windows(draw):
    levels = draw(st.sampled_from([8, 32, 64]))
    window = draw(st.sampled_from([5, 11, 25]))
    distance = draw(st.sampled_from([1, 2, 4]))
    kind = draw(st.sampled_from(["random", "random", "smooth", "flat", "two-level"]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if kind == "flat":
        q = np.full((window, window), rng.integers(levels))
    elif kind == "two-level":
        a, b = rng.choice(levels, 2, replace=False)
        q = np.where(rng.random((window, window)) < rng.uniform(0.05, 0.95), a, b)
    elif kind == "smooth":  # few distinct levels close together, many repeated pairs
        q = np.clip(rng.integers(levels) + np.cumsum(rng.integers(-1, 2, (window, window)), axis=1), 0, levels - 1)
    else:
        q = rng.integers(0, levels, (window, window))
    return q.astype(np.uint8), levels, window, distance


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(windows())
def test_every_feature_equals_scikit_image(case):
    q, levels, window, distance = case
    expected = skimage_features(q, levels, distance)
    layout = make_layout([distance], ANGLES, "standard", True)
    np.testing.assert_allclose(centre(fast(q.astype(np.int16), window, levels, layout)), expected, rtol=0, atol=1e-6)
    reference = window_features(q.astype(np.int64), levels=levels, layout=layout)[:, 0]
    np.testing.assert_allclose(reference, expected, rtol=0, atol=1e-6)


def test_known_values_of_a_two_level_window():
    # one horizontal pair (0, 1) and nothing else: contrast 1, homogeneity 1/2, entropy ln 2
    q = np.full((5, 5), -1, dtype=np.int16)
    q[2, 2], q[2, 3] = 0, 1
    out = centre(fast(q, 5, 8, make_layout([1], ANGLES, "standard", True)))
    got = dict(zip(ALL_FEATURES, out, strict=True))
    assert got["contrast"] == 1.0 and got["homogeneity"] == 0.5 and got["max_prob"] == 0.5
    assert got["entropy"] == pytest.approx(np.log(2), abs=1e-9)
    assert got["correlation"] == pytest.approx(-1.0) and got["mean"] == 0.5


@pytest.mark.parametrize("mode,average", [("standard", True), ("standard", False), ("snap", True)])
@pytest.mark.parametrize("levels,window,distances", [(8, 5, (1, 2)), (32, 7, (1,)), (64, 5, (4,)), (200, 5, (1,))])
def test_kernel_pinned_to_reference_with_nodata(mode, average, levels, window, distances):
    rng = np.random.default_rng(levels + window)
    q = rng.integers(0, levels, (19, 23)).astype(np.int16)
    q[rng.random(q.shape) < 0.25] = -1
    q[:4, :5] = -1  # a no-data corner: windows without any valid pair
    layout = make_layout(distances, ANGLES, mode, average)
    got = fast(q, window, levels, layout, mode)
    want = glcm_reference(q, window=window, levels=levels, layout=layout, mode=mode)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9)


def partly_covered(ny: int, nx: int, levels: int, seed: int) -> np.ndarray:
    """Levels of a block that a swath covers in part: no data beyond a slanted edge, in the first
    rows, in a hole and scattered; lone valid pixels and one lone pair out in the empty part."""
    rng = np.random.default_rng(seed)
    # smooth levels (few distinct pair codes, repeated down the columns) left, random right
    smooth = np.clip(levels // 2 + np.cumsum(rng.integers(-1, 2, (ny, nx)), axis=0) // 3, 0, levels - 1)
    q = np.where(np.arange(nx) < nx // 2, smooth, rng.integers(0, levels, (ny, nx))).astype(np.int16)
    yy, xx = np.mgrid[0:ny, 0:nx]
    q[xx < 0.9 * yy - 8] = -1  # beyond the swath edge
    q[:12] = -1  # rows without data
    q[20:26, 30:41] = -1  # a hole wider than the window
    q[rng.random(q.shape) < 0.08] = -1
    q[32, 2] = q[38, 9] = 1  # lone valid pixels: no pair
    q[44, 20:22] = (0, levels - 1)  # a lone horizontal pair
    return q


@pytest.mark.parametrize("mode,average", [("standard", True), ("standard", False), ("snap", True)])
@pytest.mark.parametrize("window", [5, 11])
def test_kernel_pinned_to_reference_on_a_partly_covered_block(mode, average, window):
    levels = 16
    q = partly_covered(48, 64, levels, seed=window)
    layout = make_layout([1], ANGLES, mode, average)
    got = fast(q, window, levels, layout, mode)
    want = glcm_reference(q, window=window, levels=levels, layout=layout, mode=mode)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9)
    # where the window holds a valid pair the features are computed, whether or not the centre
    # pixel itself holds data; windows in the empty part are NaN
    assert np.isfinite(got[:, :, 25, 35]).all() and q[25, 35] == -1
    assert np.isnan(got[:, :, 40, 0]).all() and np.isnan(got[:, :, :6]).all()


def test_blocks_without_data_and_single_columns():
    levels, window = 8, 5
    layout = make_layout([1], ANGLES, "standard", True)
    assert np.isnan(fast(np.full((12, 30), -1, dtype=np.int16), window, levels, layout)).all()
    q = np.full((12, 30), -1, dtype=np.int16)
    q[:, 17] = np.arange(12) % levels  # one column of data: only vertical pairs
    got = fast(q, window, levels, layout)
    want = glcm_reference(q, window=window, levels=levels, layout=layout)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9)
    assert np.isfinite(got[:, 0, :, 15:20]).all() and np.isnan(got[:, 0, :, :15]).all()


def test_nodata_pairs_are_skipped_like_an_extra_level():
    """Independent check: put no-data on an extra level, drop it from scikit-image's matrices."""
    rng = np.random.default_rng(3)
    levels, window = 16, 11
    q = rng.integers(0, levels, (window, window))
    q[rng.random(q.shape) < 0.3] = -1
    p = graycomatrix(np.where(q < 0, levels, q).astype(np.uint8), [1], np.deg2rad(ANGLES), levels=levels + 1,
                     symmetric=True)[:levels, :levels].astype(np.float64)  # fmt: skip
    p /= p.sum(axis=(0, 1), keepdims=True)
    expected = [graycoprops(p, prop)[0].mean() for prop in ("contrast", "ASM", "entropy", "correlation")]
    out = centre(fast(q.astype(np.int16), window, levels, make_layout([1], ANGLES, "standard", True)))
    got = [out[FEATURE_CODES[f]] for f in ("contrast", "ASM", "entropy", "correlation")]
    np.testing.assert_allclose(got, expected, atol=1e-9)


def test_windows_without_a_valid_pair_are_nan_and_empty_angles_are_left_out():
    q = np.full((9, 9), -1, dtype=np.int16)
    q[4, 4] = 3  # a lone valid pixel: no pair anywhere
    q[0, 0], q[0, 1] = 2, 5  # one horizontal pair: only the 0° matrix has counts
    out = fast(q, 3, 8, make_layout([1], ANGLES, "standard", True))
    assert np.isnan(out[:, 0, 4, 4]).all()
    assert np.isnan(out[:, 0, 7:, 7:]).all()
    assert out[FEATURE_CODES["contrast"], 0, 0, 0] == 9.0  # the 0° value alone, not (9 + 3·NaN)/4


def test_snap_identities_against_the_pooled_scikit_image_matrix():
    rng = np.random.default_rng(7)
    levels, window = 32, 11
    for trial in range(20):
        q = rng.integers(0, levels if trial % 2 else 4, (window, window)).astype(np.uint8)
        counts = graycomatrix(q, [1], np.deg2rad(ANGLES), levels=levels, symmetric=True).sum(axis=3, keepdims=True)
        p = counts.astype(np.float64) / counts.sum()
        std = {prop: graycoprops(p, prop)[0, 0] for prop in SKIMAGE_PROPS}
        i = np.arange(levels)[:, None]
        j = np.arange(levels)[None, :]
        e_ii, e_ij = np.sum(p[..., 0, 0] * i * i), np.sum(p[..., 0, 0] * i * j)
        snap = dict(zip(ALL_FEATURES, centre(fast(q.astype(np.int16), window, levels, make_layout([1], ANGLES, "snap", True), "snap")), strict=True))  # fmt: skip
        for f in ("contrast", "dissimilarity", "homogeneity", "energy", "mean"):
            assert snap[f] == pytest.approx(2 * std[f], abs=1e-6), f
        assert snap["ASM"] == pytest.approx(4 * std["ASM"], abs=1e-6)
        assert snap["entropy"] == pytest.approx(2 * std["entropy"] - 2 * np.log(2), abs=1e-6)
        assert snap["max_prob"] == pytest.approx(2 * p.max(), abs=1e-6)
        assert snap["variance"] == pytest.approx(2 * (std["variance"] + std["mean"] ** 2), abs=1e-6)
        assert snap["correlation"] == pytest.approx(e_ij / e_ii, abs=1e-6)


def test_standard_offsets_follow_scikit_image_and_snap_its_own():
    standard = make_layout([1, 2, 4], ANGLES, "standard", False).offsets.tolist()
    assert standard[:4] == [[0, 1], [1, 1], [1, 0], [1, -1]]  # 45° is down-right in scikit-image
    assert standard[4:8] == [[0, 2], [1, 1], [2, 0], [1, -1]]  # round(2·sin 45°) = 1
    assert make_layout([2], ANGLES, "snap", True).offsets.tolist() == [[0, 2], [2, -2], [2, 0], [2, 2]]
