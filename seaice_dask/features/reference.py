"""Plain NumPy reference of the GLCM texture features: one co-occurrence matrix per window.

Slow on purpose (a Python loop over pixels, float64 arithmetic straight from the definitions);
it pins the fast kernels in :mod:`seaice_dask.features.kernels` and is itself pinned to
scikit-image in the tests. Only this module defines the conventions (offsets, feature names,
output layout); the kernels and the xarray wrapper reuse them.

Definitions (Haralick, Shanmugam & Dinstein 1973, "Textural features for image
classification", IEEE SMC-3(6); scikit-image ``graycomatrix``/``graycoprops``). Let ``S`` be the
symmetric co-occurrence counts of one offset (each valid pair ``(a, b)`` adds 1 to ``S[a, b]``
and 1 to ``S[b, a]``), ``P = S / ΣS``, ``μ = Σ i P(i, j)`` and ``σ² = Σ (i − μ)² P(i, j)``
(equal for rows and columns since ``P`` is symmetric):

=============  =====================================  =============================================
feature        ``standard`` (scikit-image)            ``snap`` (ESA SNAP GLCM operator)
=============  =====================================  =============================================
contrast       Σ P (i − j)²                           2 × standard of the pooled matrix
dissimilarity  Σ P |i − j|                            2 × standard
homogeneity    Σ P / (1 + (i − j)²)                   2 × standard
ASM            Σ P²                                   4 × standard
energy         √ASM                                   2 × standard
entropy        −Σ P ln P                              2H − 2 ln 2
correlation    Σ P (i − μ)(j − μ) / σ²; 1 if σ = 0    Σ P i j / Σ P i²; NaN if Σ P i² = 0
mean           μ                                      2μ
variance       σ²                                     2 (σ² + μ²) = 2 Σ P i²
max_prob       max P                                  2 max P
=============  =====================================  =============================================

``snap`` reproduces the arithmetic of SNAP's GLCM operator (``GLCMOp``, derived from its public
description and behaviour, not its code): the pairs of all selected angles are pooled into ONE
symmetric count matrix, which is divided by the number of pairs rather than by its sum (so its
"probabilities" add up to 2); GLCM mean and variance are the averages of the row and column
moments of that matrix, taken about the row/column means (which are therefore twice the true
mean), and its correlation divides by the square root of the product of those variances. The
right-hand column follows from these definitions with ``P`` the properly normalised pooled matrix.
SNAP adds 1e-15 inside its logarithm (ignored here: < 1e-12 effect) and writes its no-data value
where we write NaN. Its diagonal offsets use the full displacement ``(d, ±d)``, whereas
scikit-image rounds ``d·sin θ`` and ``d·cos θ``; each mode uses its own convention.

No-data: quantised level ``-1`` (NaN input, or beyond the image edge). Pairs touching it are
skipped; an offset with no valid pair in the window gives NaN; averages over angles use the angles
that have pairs; a window with no valid pair at all gives NaN.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

#: Feature names in output order, as in scikit-image's ``graycoprops`` (plus ``max_prob``).
ALL_FEATURES: tuple[str, ...] = (
    "contrast",
    "dissimilarity",
    "homogeneity",
    "ASM",
    "energy",
    "entropy",
    "correlation",
    "mean",
    "variance",
    "max_prob",
)
FEATURE_CODES: dict[str, int] = {name: code for code, name in enumerate(ALL_FEATURES)}

MODES = ("standard", "snap")


def _round_half_away(value: float) -> int:
    """C ``round`` (half away from zero), as scikit-image's Cython loop uses."""
    return int(math.copysign(math.floor(abs(value) + 0.5), value))


def offset(distance: int, angle_deg: float, mode: str) -> tuple[int, int]:
    """Pixel offset ``(dy, dx)`` (rows down, columns right) of the second pixel of a pair.

    ``standard``: scikit-image's ``(round(d sin θ), round(d cos θ))`` (so 45° is down-right);
    ``snap``: SNAP's offsets ``0° → (0, d)``, ``45° → (d, −d)``, ``90° → (d, 0)``, ``135° → (d, d)``.
    """
    if mode == "snap":
        table = {0: (0, distance), 45: (distance, -distance), 90: (distance, 0), 135: (distance, distance)}
        if angle_deg not in table:
            raise ValueError(f"snap mode supports the angles 0, 45, 90, 135, not {angle_deg}")
        return table[angle_deg]
    theta = math.radians(angle_deg)
    return _round_half_away(math.sin(theta) * distance), _round_half_away(math.cos(theta) * distance)


@dataclass(frozen=True)
class Layout:
    """Which offsets exist, which co-occurrence matrix (group) each feeds, which output slot each
    group is averaged into.

    ``standard`` + averaged: one group per offset, one slot per distance (angles averaged);
    ``standard`` not averaged: one group and one slot per offset (``distance × angle``);
    ``snap``: one pooled group per distance, one slot per distance.
    """

    offsets: np.ndarray  # (n_offsets, 2) int64: dy, dx
    group_of_offset: np.ndarray  # (n_offsets,) int64
    slot_of_group: np.ndarray  # (n_groups,) int64
    n_slots: int

    @property
    def n_groups(self) -> int:
        return int(self.slot_of_group.size)


def make_layout(
    distances: Sequence[int], angles: Sequence[float], mode: str, average_angles: bool
) -> Layout:
    """Offsets and their grouping for ``distances × angles`` (distance-major order)."""
    offsets, group_of_offset, slot_of_group = [], [], []
    for di, d in enumerate(distances):
        for ai, a in enumerate(angles):
            offsets.append(offset(int(d), a, mode))
            if mode == "snap":
                group_of_offset.append(di)
            else:
                group_of_offset.append(len(slot_of_group))
                slot_of_group.append(di if average_angles else di * len(angles) + ai)
        if mode == "snap":
            slot_of_group.append(di)
    n_slots = len(distances) if (mode == "snap" or average_angles) else len(distances) * len(angles)
    return Layout(
        np.asarray(offsets, dtype=np.int64).reshape(-1, 2),
        np.asarray(group_of_offset, dtype=np.int64),
        np.asarray(slot_of_group, dtype=np.int64),
        n_slots,
    )


def cooccurrence(window_levels: np.ndarray, levels: int, dy: int, dx: int) -> np.ndarray:
    """Symmetric co-occurrence counts ``S`` (levels × levels, int64) of one offset in one window.

    Pairs are ``(q[y, x], q[y + dy, x + dx])`` with both pixels inside the window and both levels
    valid (``>= 0``).
    """
    q = np.asarray(window_levels)
    h, w = q.shape
    first = q[max(0, -dy) : h - max(0, dy), max(0, -dx) : w - max(0, dx)]
    second = q[max(0, dy) : h + min(0, dy), max(0, dx) : w + min(0, dx)]
    ok = (first >= 0) & (second >= 0)
    a, b = first[ok].astype(np.int64), second[ok].astype(np.int64)
    counts = np.bincount(a * levels + b, minlength=levels * levels).reshape(levels, levels)
    return counts + counts.T


def standard_features(counts: np.ndarray, features: Sequence[str] = ALL_FEATURES) -> np.ndarray:
    """Features of one symmetric count matrix, scikit-image definitions; NaN if it is empty."""
    total = counts.sum()
    if total == 0:
        return np.full(len(features), np.nan)
    p = counts / total
    i, j = np.indices(p.shape, dtype=np.float64)
    mu = np.sum(i * p)
    var = np.sum(p * (i - mu) ** 2)
    nz = p[p > 0]
    values = {
        "contrast": np.sum(p * (i - j) ** 2),
        "dissimilarity": np.sum(p * np.abs(i - j)),
        "homogeneity": np.sum(p / (1.0 + (i - j) ** 2)),
        "ASM": np.sum(p**2),
        "energy": np.sqrt(np.sum(p**2)),
        "entropy": -np.sum(nz * np.log(nz)),
        "correlation": 1.0 if var < 1e-30 else np.sum(p * (i - mu) * (j - mu)) / var,
        "mean": mu,
        "variance": var,
        "max_prob": p.max(),
    }
    return np.array([values[f] for f in features], dtype=np.float64)


def snap_features(counts: np.ndarray, features: Sequence[str] = ALL_FEATURES) -> np.ndarray:
    """Features of one pooled symmetric count matrix with SNAP's arithmetic (see module doc)."""
    n_pairs = counts.sum() / 2
    if n_pairs == 0:
        return np.full(len(features), np.nan)
    p = counts / n_pairs  # sums to 2
    row, col = np.indices(p.shape, dtype=np.float64)
    mean_row, mean_col = np.sum(p * row), np.sum(p * col)
    var_row = np.sum(p * (row - mean_row) ** 2)
    var_col = np.sum(p * (col - mean_col) ** 2)
    nz = p[p > 0]
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = np.sum(p * (row - mean_row) * (col - mean_col)) / np.sqrt(var_row * var_col)
    values = {
        "contrast": np.sum(p * (row - col) ** 2),
        "dissimilarity": np.sum(p * np.abs(row - col)),
        "homogeneity": np.sum(p / (1.0 + (row - col) ** 2)),
        "ASM": np.sum(p**2),
        "energy": np.sqrt(np.sum(p**2)),
        "entropy": -np.sum(nz * np.log(nz)),
        "correlation": corr,
        "mean": (mean_row + mean_col) / 2,
        "variance": (var_row + var_col) / 2,
        "max_prob": p.max(),
    }
    return np.array([values[f] for f in features], dtype=np.float64)


def window_features(
    window_levels: np.ndarray,
    *,
    levels: int,
    layout: Layout,
    features: Sequence[str] = ALL_FEATURES,
    mode: str = "standard",
) -> np.ndarray:
    """Features ``(feature, slot)`` of one window of levels (−1 = no-data), from scratch."""
    group_counts = np.zeros((layout.n_groups, levels, levels), dtype=np.int64)
    for (dy, dx), g in zip(layout.offsets, layout.group_of_offset, strict=True):
        group_counts[g] += cooccurrence(window_levels, levels, int(dy), int(dx))
    compute = snap_features if mode == "snap" else standard_features
    sums = np.zeros((len(features), layout.n_slots))
    n = np.zeros(layout.n_slots)
    for g in range(layout.n_groups):
        if group_counts[g].sum() > 0:  # groups without a valid pair do not enter the average
            sums[:, layout.slot_of_group[g]] += compute(group_counts[g], features)
            n[layout.slot_of_group[g]] += 1
    with np.errstate(invalid="ignore"):
        return np.where(n > 0, sums / np.maximum(n, 1), np.nan)


def glcm_reference(
    levels_image: np.ndarray,
    *,
    window: int,
    levels: int,
    layout: Layout,
    features: Sequence[str] = ALL_FEATURES,
    mode: str = "standard",
) -> np.ndarray:
    """Features of every pixel of a quantised image: ``(feature, slot, y, x)`` float64.

    ``levels_image`` holds levels ``0..levels-1`` and ``-1`` for no-data; pixels beyond the edge
    count as no-data. One matrix per window and group, built from scratch.
    """
    half = window // 2
    q = np.pad(np.asarray(levels_image, dtype=np.int64), half, constant_values=-1)
    ny, nx = np.asarray(levels_image).shape
    out = np.full((len(features), layout.n_slots, ny, nx), np.nan)
    for y in range(ny):
        for x in range(nx):
            out[:, :, y, x] = window_features(
                q[y : y + window, x : x + window], levels=levels, layout=layout, features=features, mode=mode
            )
    return out
