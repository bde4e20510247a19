"""Fast GLCM kernel: exact incremental sliding window in Numba (``nogil`` so dask threads overlap).

Same definitions and layout as :mod:`seaice_dask.features.reference` (read its docstring for the
formulas); the tests pin the two together. How it stays fast and exact:

* every feature is a function of a few running sums over the valid pairs of a group (an angle, or
  all angles pooled in ``snap`` mode), with ``T`` pairs and ``S`` the symmetric counts (ΣS = 2T):
  ``D2 = Σ (a−b)²``, ``AD = Σ |a−b|``, ``HOM = Σ 1/(1+(a−b)²)``, ``SI = Σ (a+b)``, ``SI2 = Σ (a²+b²)``
  (so ``Σ_S i j = SI2 − D2``), plus ``Q = Σ S²``, ``E = Σ S ln S`` and ``max S``;
  e.g. standard contrast ``D2/T``, entropy ``ln 2T − E/2T``, correlation
  ``((SI2 − D2)·2T − SI²) / (SI2·2T − SI²)``;
* the pair sums are box sums: per image row, column sums over the window's rows are updated by one
  row entering and one leaving; along the row, the window sums by one column entering and one
  leaving — O(1) per pixel;
* ``Q``, ``E`` and ``max S`` need the counts: per group one L×L matrix of integer counts, updated
  by the ``w − |dy|`` pairs of the column entering and leaving (O(w) per pixel), ``Q`` and ``E``
  by their exact change, ``max S`` through a histogram of count values;
* all running sums are integers (``HOM`` and ``E`` in fixed point, 2⁻³² resolution: error
  < 1e-9), so a pixel's result depends only on its window, never on where a sweep started:
  results are bit-identical for any chunking.
"""

from __future__ import annotations

import numpy as np
from numba import literally, njit

from seaice_dask.features.reference import ALL_FEATURES, FEATURE_CODES, Layout

#: Fixed-point scale of the ``HOM`` and ``E`` running sums.
FIXED_ONE = float(2**32)

_CONTRAST, _DISSIMILARITY, _HOMOGENEITY, _ASM, _ENERGY, _ENTROPY, _CORRELATION, _MEAN, _VARIANCE, _MAX = (
    FEATURE_CODES[n] for n in ALL_FEATURES
)
# Pair-sum columns of the per-code table.
_N, _D2, _AD, _HOM, _SI, _SI2 = range(6)


def pair_tables(levels: int) -> np.ndarray:
    """The six pair sums (int64; HOM in fixed point) of every pair code ``min(a,b)·L + max(a,b)``."""
    a, b = np.divmod(np.arange(levels * levels, dtype=np.int64), levels)
    d = a - b
    return np.stack(
        [
            np.ones_like(a),
            d * d,
            np.abs(d),
            np.round(FIXED_ONE / (1.0 + d * d)).astype(np.int64),
            a + b,
            a * a + b * b,
        ],
        axis=1,
    )


def entropy_tables(max_count: int) -> tuple[np.ndarray, np.ndarray]:
    """``F[s] = round(s ln s · 2³²)`` for ``s = 0 … max_count``, and at ``2·s + diagonal`` the
    exact change of ``E = Σ_S S ln S`` when a pair is added to an entry holding ``s``: off the
    diagonal ``S[a, b]`` and ``S[b, a]`` both grow by 1 (``2 (F[s+1] − F[s])``), on it ``S[a, a]``
    grows by 2 (``F[s+2] − F[s]``)."""
    s = np.arange(max_count + 3, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        values = np.where(s > 0, s * np.log(s), 0.0)
    slogs = np.round(values * FIXED_ONE).astype(np.int64)
    delta = np.zeros((2, max_count + 1), dtype=np.int64)
    delta[0] = 2 * (slogs[1 : max_count + 2] - slogs[: max_count + 1])
    delta[1] = slogs[2 : max_count + 3] - slogs[: max_count + 1]
    return slogs[: max_count + 1], np.ascontiguousarray(delta.T).ravel()


def max_pairs_per_group(window: int, layout: Layout) -> int:
    """Most pairs one group's matrix can hold in a full window (sizes the count tables)."""
    per_offset = [(window - abs(int(dy))) * (window - abs(int(dx))) for dy, dx in layout.offsets]
    totals = np.zeros(layout.n_groups, dtype=np.int64)
    np.add.at(totals, layout.group_of_offset, per_offset)
    return int(totals.max())


# A column of pairs is stored as codes ``2·(min(a,b)·L + max(a,b)) + (a == b)`` (−1: no pair);
# a diagonal entry ``S[a, a]`` moves by 2 per pair, an off-diagonal one by 1 (in S[a,b] and S[b,a]).
# Q = Σ S² changes by 4s + 2·step when an entry holding s grows by step (by 4s − 2·step when it
# shrinks), counting both S[a,b] and S[b,a] off the diagonal.


# Indices in the hot loops are unsigned: Numba then skips its negative-index wraparound.
_U = np.uint64


@njit(nogil=True, cache=True, inline="always")
def _add_column(column, ylo, yhi, counts, delta_e, hist, max_count, need_max):
    """Add the pairs of one column to one group's counts; returns (ΔQ, ΔE, new max count)."""
    dq = 0
    de = 0
    for y in range(_U(ylo), _U(yhi) + _U(1)):
        code = column[y]
        if code < 0:
            continue
        k = _U(code >> 1)
        diag = code & 1
        step = diag + 1
        s = counts[k]
        counts[k] = s + step
        dq += 4 * s + 2 * step
        de += delta_e[_U(2 * s + diag)]
        if need_max:
            hist[_U(s)] -= 1
            hist[_U(s + step)] += 1
            max_count = max(max_count, s + step)
    return dq, de, max_count


@njit(nogil=True, cache=True, inline="always")
def _slide_column(codes, o, x_out, x_in, ylo, yhi, counts, g, delta_e, hist, max_count, need_max):
    """Remove the pairs of offset ``o`` at column ``x_out`` and add those at ``x_in`` (same rows)
    from group ``g``'s counts. Returns (ΔQ, ΔE, new max count)."""
    dq = 0
    de = 0
    for y in range(_U(ylo), _U(yhi) + _U(1)):
        old = codes[o, y, x_out]
        new = codes[o, y, x_in]
        if old >= 0:
            k = _U(old >> 1)
            diag = old & 1
            step = diag + 1
            s = counts[g, k]
            s2 = s - step
            counts[g, k] = s2
            dq -= 4 * s - 2 * step
            de -= delta_e[_U(2 * s2 + diag)]
            if need_max:
                hist[g, _U(s)] -= 1
                hist[g, _U(s2)] += 1
                if s == max_count and hist[g, _U(s)] == 0:
                    # the entry just lowered holds s2; with step 2, an entry at s − 1 may exist
                    if step == 2 and hist[g, _U(s - 1)] > 0:
                        max_count = s - 1
                    else:
                        max_count = s2
        if new >= 0:
            k = _U(new >> 1)
            diag = new & 1
            step = diag + 1
            s = counts[g, k]
            counts[g, k] = s + step
            dq += 4 * s + 2 * step
            de += delta_e[_U(2 * s + diag)]
            if need_max:
                hist[g, _U(s)] -= 1
                hist[g, _U(s + step)] += 1
                max_count = max(max_count, s + step)
    return dq, de, max_count


@njit(nogil=True, cache=True, inline="always")
def _features(lin, q_sum, e_sum, max_count, slogs, snap, values):
    """Write all ten features of one group (``lin`` = its six pair sums) into ``values``, indexed
    by feature code (computing them all is cheaper than branching on the requested ones)."""
    t = lin[_N]
    d2 = float(lin[_D2])
    si = float(lin[_SI])
    si2 = float(lin[_SI2])
    # exact integers: SI2·2T − SI² is 0 exactly when the variance is 0
    var_num = lin[_SI2] * 2 * t - lin[_SI] * lin[_SI]
    inv_t = 1.0 / t
    if snap:  # SNAP divides the symmetric counts by the number of pairs T
        scale = 2.0 * inv_t
        inv_n2 = inv_t * inv_t
        values[_ENTROPY] = (2 * slogs[t] - e_sum) / FIXED_ONE * inv_t
        values[_MEAN] = si * inv_t
        values[_VARIANCE] = si2 * inv_t
        values[_MAX] = max_count * inv_t
        values[_CORRELATION] = (si2 - d2) / si2 if si2 > 0 else np.nan
    else:  # proper probabilities: divide by ΣS = 2T
        scale = inv_t
        inv_n2 = 0.25 * inv_t * inv_t
        values[_ENTROPY] = (slogs[2 * t] - e_sum) / FIXED_ONE * (0.5 * inv_t)
        values[_MEAN] = si * (0.5 * inv_t)
        values[_VARIANCE] = var_num * inv_n2
        values[_MAX] = max_count * (0.5 * inv_t)
        values[_CORRELATION] = (
            ((lin[_SI2] - lin[_D2]) * 2 * t - lin[_SI] * lin[_SI]) / var_num if var_num > 0 else 1.0
        )
    values[_CONTRAST] = d2 * scale
    values[_DISSIMILARITY] = lin[_AD] * scale
    values[_HOMOGENEITY] = lin[_HOM] / FIXED_ONE * scale
    values[_ASM] = q_sum * inv_n2
    values[_ENERGY] = np.sqrt(q_sum * inv_n2)


@njit(nogil=True, cache=True)
def glcm_block(
    q, half, levels, offsets, group_of_offset, slot_of_group, n_slots, feature_codes, snap,
    pair_sums, slogs, delta_e, out,
):  # fmt: skip
    """GLCM features of every pixel of a block padded by ``half`` (= window // 2) on each side.

    ``q``: (H, W) integer levels, −1 = no-data. ``out``: (n_features, n_slots, H − 2·half,
    W − 2·half), fully written (NaN where no group of a slot has a valid pair).
    """
    need_counts = need_max = False
    for f in range(feature_codes.shape[0]):
        c = feature_codes[f]
        need_counts |= c == _ASM or c == _ENERGY or c == _ENTROPY or c == _MAX
        need_max |= c == _MAX
    # one compiled sweep per case: the count updates and max tracking drop out where not needed
    if need_max:
        _sweep(q, half, levels, offsets, group_of_offset, slot_of_group, n_slots, feature_codes, snap,
               pair_sums, slogs, delta_e, out, True, True)  # fmt: skip
    elif need_counts:
        _sweep(q, half, levels, offsets, group_of_offset, slot_of_group, n_slots, feature_codes, snap,
               pair_sums, slogs, delta_e, out, True, False)  # fmt: skip
    else:
        _sweep(q, half, levels, offsets, group_of_offset, slot_of_group, n_slots, feature_codes, snap,
               pair_sums, slogs, delta_e, out, False, False)  # fmt: skip


@njit(nogil=True, cache=True)
def _sweep(
    q, half, levels, offsets, group_of_offset, slot_of_group, n_slots, feature_codes, snap,
    pair_sums, slogs, delta_e, out, need_counts, need_max,
):  # fmt: skip
    """The body of :func:`glcm_block`, compiled for constant ``need_counts`` and ``need_max``."""
    literally(need_counts)
    literally(need_max)
    height, width = q.shape
    ny = height - 2 * half
    nx = width - 2 * half
    n_off = offsets.shape[0]
    n_groups = slot_of_group.shape[0]
    n_feat = feature_codes.shape[0]

    # pair code of every first pixel (−1: no pair); a column of it is read strided, which stays
    # in cache because the next pixel reads the neighbouring column
    codes = np.full((n_off, height, width), -1, dtype=np.int32)
    for o in range(n_off):
        dy = offsets[o, 0]
        dx = offsets[o, 1]
        for y in range(max(0, -dy), height - max(0, dy)):
            for x in range(max(0, -dx), width - max(0, dx)):
                a = q[y, x]
                b = q[y + dy, x + dx]
                if a >= 0 and b >= 0:
                    codes[o, y, x] = 2 * (min(a, b) * levels + max(a, b)) + (a == b)
    # the window of pixel (r, c) holds the first pixels of offset o at rows
    # r − half + y_lo[o] … r + half − y_hi[o] and columns c − half + x_lo[o] … c + half − x_hi[o]
    y_lo = np.maximum(0, -offsets[:, 0])
    y_hi = np.maximum(0, offsets[:, 0])
    x_lo = np.maximum(0, -offsets[:, 1])
    x_hi = np.maximum(0, offsets[:, 1])
    # pair sums by ``(code >> 1) + 1``: row 0 (code −1, no pair) is zeros
    sums1 = np.zeros((pair_sums.shape[0] + 1, 6), dtype=np.int64)
    sums1[1:] = pair_sums
    colsum = np.zeros((n_off, width, 6), dtype=np.int64)
    glin = np.zeros((n_groups, 6), dtype=np.int64)
    counts = np.zeros((n_groups, levels * levels), dtype=np.int64)
    hist = np.zeros((n_groups, slogs.shape[0] + 2), dtype=np.int64)
    q_sum = np.zeros(n_groups, dtype=np.int64)
    e_sum = np.zeros(n_groups, dtype=np.int64)
    max_count = np.zeros(n_groups, dtype=np.int64)
    values = np.empty(len(ALL_FEATURES), dtype=np.float64)
    acc = np.zeros((n_slots, n_feat), dtype=np.float64)
    n_acc = np.zeros(n_slots, dtype=np.int64)

    for i in range(ny):
        r = i + half
        # column sums of the pair sums over this window's first-pixel rows
        for o in range(n_off):
            ylo = r - half + y_lo[o]
            yhi = r + half - y_hi[o]
            if i == 0:
                for x in range(width):
                    for y in range(ylo, yhi + 1):
                        code = codes[o, y, x]
                        if code >= 0:
                            for s in range(6):
                                colsum[o, x, s] += pair_sums[code >> 1, s]
            else:
                for x in range(width):
                    k_in = (codes[o, yhi, x] >> 1) + 1
                    k_out = (codes[o, ylo - 1, x] >> 1) + 1
                    for s in range(6):
                        colsum[o, x, s] += sums1[k_in, s] - sums1[k_out, s]
        glin[:, :] = 0
        if need_counts:
            counts[:, :] = 0
            hist[:, :] = 0
            q_sum[:] = 0
            e_sum[:] = 0
            max_count[:] = 0
        for j in range(nx):
            c = j + half
            for o in range(n_off):
                g = group_of_offset[o]
                ylo = r - half + y_lo[o]
                yhi = r + half - y_hi[o]
                xlo = c - half + x_lo[o]
                xhi = c + half - x_hi[o]
                if j == 0:
                    for x in range(xlo, xhi + 1):
                        for s in range(6):
                            glin[g, s] += colsum[o, x, s]
                        if need_counts:
                            dq, de, mc = _add_column(
                                codes[o, :, x], ylo, yhi, counts[g], delta_e, hist[g], max_count[g], need_max
                            )
                            q_sum[g] += dq
                            e_sum[g] += de
                            max_count[g] = mc
                else:
                    for s in range(6):
                        glin[g, s] += colsum[o, xhi, s] - colsum[o, xlo - 1, s]
                    if need_counts:
                        dq, de, mc = _slide_column(
                            codes, _U(o), _U(xlo - 1), _U(xhi), ylo, yhi, counts, _U(g), delta_e, hist,
                            max_count[g], need_max,
                        )  # fmt: skip
                        q_sum[g] += dq
                        e_sum[g] += de
                        max_count[g] = mc
            for slot in range(n_slots):
                n_acc[slot] = 0
                for f in range(n_feat):
                    acc[slot, f] = 0.0
            for g in range(n_groups):
                if glin[g, _N] == 0:
                    continue
                _features(glin[g], q_sum[g], e_sum[g], max_count[g], slogs, snap, values)
                slot = slot_of_group[g]
                n_acc[slot] += 1
                for f in range(n_feat):
                    acc[slot, f] += values[feature_codes[f]]
            for slot in range(n_slots):
                for f in range(n_feat):
                    if n_acc[slot] > 0:
                        out[f, slot, i, j] = acc[slot, f] / n_acc[slot]
                    else:
                        out[f, slot, i, j] = np.nan


def glcm_levels(
    levels_padded: np.ndarray,
    *,
    half: int,
    levels: int,
    layout: Layout,
    feature_codes: np.ndarray,
    snap: bool,
    max_pairs: int,
    dtype: type = np.float32,
) -> np.ndarray:
    """NumPy-facing wrapper of :func:`glcm_block`: builds the tables, allocates the output
    ``(feature, slot, y, x)`` (float32; float64 for tests of the arithmetic itself)."""
    q = np.ascontiguousarray(levels_padded, dtype=np.int16)
    sums = pair_tables(levels)
    slogs, delta_e = entropy_tables(2 * max_pairs)
    ny, nx = q.shape[0] - 2 * half, q.shape[1] - 2 * half
    out = np.empty((feature_codes.size, layout.n_slots, max(ny, 0), max(nx, 0)), dtype=dtype)
    if ny > 0 and nx > 0:
        glcm_block(
            q, half, levels, layout.offsets, layout.group_of_offset, layout.slot_of_group,
            layout.n_slots, feature_codes.astype(np.int64), snap, sums, slogs, delta_e, out,
        )  # fmt: skip
    return out
