"""Fast GLCM kernel: exact incremental sliding window in Numba (``nogil`` so dask threads overlap).

Same definitions and layout as :mod:`seaice_dask.features.reference` (read its docstring for the
formulas); the tests pin the two together. How it stays fast and exact:

* every feature is a function of a few running sums over the valid pairs of a group (an angle, or
  all angles pooled in ``snap`` mode), with ``T`` pairs and ``S`` the symmetric counts (ΣS = 2T):
  ``D2 = Σ (a−b)²``, ``AD = Σ |a−b|``, ``HOM = Σ 1/(1+(a−b)²)``, ``SI = Σ (a+b)``, ``SI2 = Σ (a²+b²)``
  (so ``Σ_S i j = SI2 − D2``), plus ``Q = Σ S²``, ``E = Σ S ln S`` and ``max S``;
  e.g. standard contrast ``D2/T``, entropy ``ln 2T − E/2T``, correlation
  ``((SI2 − D2)·2T − SI²) / (SI2·2T − SI²)``;
* the pair sums are box sums, computed a whole image row at a time in float64 (exact: integers
  < 2⁵³) so that the loops vectorise: column sums over the window's rows change by the row
  entering and the row leaving, window sums along the row by the column entering and the column
  leaving — O(1) per pixel;
* ``Q``, ``E`` and ``max S`` need the counts: per group one table over the pair codes, swept along
  the row one group at a time (so its table stays in L1 cache) and updated by the ``w − |dy|``
  pairs of the column entering and leaving (O(w) per pixel). An entry holds its state
  ``2·pairs + diagonal``, which indexes the exact increments of ``Q`` and ``E`` (one table
  lookup, no arithmetic); ``max S`` comes from the number of entries holding at least c pairs,
  walked from the previous pixel's maximum. Pairs touching no-data go to one extra entry whose
  share is taken out per pixel, so the hot loop has no branch;
* pair codes are built once per block, column-major (a sliding step reads a column
  contiguously), as int16 where they fit;
* features are then computed for the whole row, one branch-free loop per feature;
* all sums are integers (``HOM`` and ``E`` in fixed point, 2⁻³² resolution: error < 1e-9), so a
  pixel's result depends only on its window, never on where a sweep started: results are
  bit-identical for any chunking.

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
# Rows of the per-row buffer of one group's sums (float64: every sum is an exact integer < 2⁵³),
# and the pair sums' order in the column sums (the first six rows).
_R_N, _R_D2, _R_AD, _R_HOM, _R_SI, _R_SI2, _R_Q, _R_ENT, _R_MAX, _R_INV = range(10)


def entropy_table(max_count: int) -> np.ndarray:
    """``F[s] = round(s ln s · 2³²)`` for ``s = 0 … max_count`` (int64)."""
    s = np.arange(max_count + 1, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        values = np.where(s > 0, s * np.log(s), 0.0)
    return np.round(values * FIXED_ONE).astype(np.int64)


def increment_tables(max_pairs: int) -> np.ndarray:
    """``(state, 2)`` int64: the exact changes of ``Q = Σ S²`` and ``E = Σ S ln S`` (fixed point)
    when a pair is added to an entry in state ``v`` (see :func:`_slide_column`). The entry then
    holds ``S = v // 2`` (off the diagonal, counted twice in the sums: ``S[a, b]`` and ``S[b, a]``)
    or ``S = 2 · (v // 2)`` (diagonal), and moves to state ``v + 2``."""
    v = np.arange(2 * max_pairs + 2)
    diag = v & 1
    s_before, s_after = (v >> 1) << diag, ((v >> 1) + 1) << diag
    weight = 2 - diag
    slogs = entropy_table(2 * max_pairs + 2)
    return np.stack([weight * (s_after**2 - s_before**2), weight * (slogs[s_after] - slogs[s_before])], axis=1)


def max_pairs_per_group(window: int, layout: Layout) -> int:
    """Most pairs one group's matrix can hold in a full window (sizes the count tables)."""
    per_offset = [(window - abs(int(dy))) * (window - abs(int(dx))) for dy, dx in layout.offsets]
    totals = np.zeros(layout.n_groups, dtype=np.int64)
    np.add.at(totals, layout.group_of_offset, per_offset)
    return int(totals.max())


# A pair is stored as the code ``2·(min(a,b)·L + max(a,b)) + (a == b)`` (no pair: ``2·L²``, an
# extra entry), which also indexes its entry in the count table. An entry holds its state
# ``2 · pairs + (a == b)``, so an update is ±2 and the state itself indexes the increments of
# ``Q`` and ``E``: the count table starts from ``code & 1``.

# Indices in the hot loops are unsigned: Numba then skips its negative-index wraparound.
_U = np.uint64


@njit(nogil=True, cache=True, error_model="numpy", inline="always")
def _pair_sums(level_a, level_b):
    """The six pair sums (``_R_N`` … ``_R_SI2``; zeros without a pair) of one pair of levels."""
    a = np.float64(level_a)
    b = np.float64(level_b)
    valid = 1.0 if (a >= 0) & (b >= 0) else 0.0
    d = abs(a - b)
    hm = np.rint(FIXED_ONE / (1.0 + d * d))  # HOM in fixed point
    return valid, valid * d * d, valid * d, valid * hm, valid * (a + b), valid * (a * a + b * b)


@njit(nogil=True, cache=True, error_model="numpy", inline="always")
def _move_row_pairs(q, y_in, y_out, remove, dy, dx, colsum):
    """Column sums ``colsum`` (6, W): add the pair sums of the pairs starting in image row
    ``y_in`` and, with ``remove``, take out those of row ``y_out``."""
    for x in range(max(0, -dx), q.shape[1] - max(0, dx)):
        x_a = _U(x)
        x_b = _U(x + dx)
        n, d2, ad, hm, si, si2 = _pair_sums(q[_U(y_in), x_a], q[_U(y_in + dy), x_b])
        if remove:
            n_out, d2_out, ad_out, hm_out, si_out, si2_out = _pair_sums(q[_U(y_out), x_a], q[_U(y_out + dy), x_b])
            n -= n_out
            d2 -= d2_out
            ad -= ad_out
            hm -= hm_out
            si -= si_out
            si2 -= si2_out
        colsum[_R_N, x_a] += n
        colsum[_R_D2, x_a] += d2
        colsum[_R_AD, x_a] += ad
        colsum[_R_HOM, x_a] += hm
        colsum[_R_SI, x_a] += si
        colsum[_R_SI2, x_a] += si2


@njit(nogil=True, cache=True, error_model="numpy", inline="always")
def _box_sums(colsum, lo, hi, rows):
    """Add to ``rows[:6, j]`` the sums of ``colsum[:, j + lo … j + hi]``: six running sums, one
    column entering and one leaving per pixel (exact: all values are integers)."""
    n = d2 = ad = hm = si = si2 = 0.0
    for j in range(rows.shape[1]):
        for x in range(lo + j if j == 0 else hi + j, hi + j + 1):
            n += colsum[_R_N, x]
            d2 += colsum[_R_D2, x]
            ad += colsum[_R_AD, x]
            hm += colsum[_R_HOM, x]
            si += colsum[_R_SI, x]
            si2 += colsum[_R_SI2, x]
        if j > 0:
            x = lo + j - 1
            n -= colsum[_R_N, x]
            d2 -= colsum[_R_D2, x]
            ad -= colsum[_R_AD, x]
            hm -= colsum[_R_HOM, x]
            si -= colsum[_R_SI, x]
            si2 -= colsum[_R_SI2, x]
        rows[_R_N, j] += n
        rows[_R_D2, j] += d2
        rows[_R_AD, j] += ad
        rows[_R_HOM, j] += hm
        rows[_R_SI, j] += si
        rows[_R_SI2, j] += si2


@njit(nogil=True, cache=True, error_model="numpy", inline="always")
def _update(counts, code, add, inc, at_least, dq, de, need_max):
    """Add (``add``) or remove one pair with ``code`` from a count table, updating ``Q`` (``dq``)
    and ``E`` (``de``), and for ``max S`` the number ``at_least[2c + diagonal]`` of entries (off
    or on the diagonal) holding at least ``c`` pairs."""
    v = counts[_U(code)]
    if add:
        counts[_U(code)] = v + 2
        dq += inc[_U(v), 0]
        de += inc[_U(v), 1]
        if need_max:
            at_least[_U(v + 2)] += 1
    else:
        counts[_U(code)] = v - 2
        dq -= inc[_U(v - 2), 0]
        de -= inc[_U(v - 2), 1]
        if need_max:
            at_least[_U(v)] -= 1
    return dq, de


@njit(nogil=True, cache=True, error_model="numpy", inline="always")
def _add_column(codes, o, x, ylo, yhi, counts, inc, at_least, dq, de, need_max):
    """Add the pairs ``codes[o, x, ylo … yhi]`` to a group's count table (see :func:`_update`)."""
    for y in range(_U(ylo), _U(yhi) + _U(1)):
        dq, de = _update(counts, codes[o, x, y], True, inc, at_least, dq, de, need_max)
    return dq, de


@njit(nogil=True, cache=True, error_model="numpy", inline="always")
def _slide_column(codes, o, x_out, x_in, ylo, yhi, counts, inc, at_least, dq, de, need_max):
    """Remove the pairs of column ``x_out`` and add those of ``x_in`` (rows ``ylo … yhi``)."""
    for y in range(_U(ylo), _U(yhi) + _U(1)):
        dq, de = _update(counts, codes[o, x_out, y], False, inc, at_least, dq, de, need_max)
        dq, de = _update(counts, codes[o, x_in, y], True, inc, at_least, dq, de, need_max)
    return dq, de


@njit(nogil=True, cache=True, error_model="numpy", inline="always")
def _held(at_least, state, gaps):
    """How many entries of the parity of ``state`` hold at least its pairs, the no-pair entry
    (even, holding ``gaps`` pairs) aside."""
    return at_least[_U(state)] - (gaps >= state >> 1) * (1 - (state & 1))


@njit(nogil=True, cache=True, error_model="numpy", inline="always")
def _highest_state(at_least, state, gaps):
    """The highest state of one parity (even: off the diagonal) that an entry holds, walking from
    ``state`` (the previous pixel's): :func:`_held` falls with the state, so few steps are needed."""
    while _held(at_least, state + 2, gaps) > 0:
        state += 2
    while state > 1 and _held(at_least, state, gaps) == 0:
        state -= 2
    return state


@njit(nogil=True, cache=True, error_model="numpy", inline="always")
def _feature(code, rows, j, snap):
    """Feature ``code`` of one group at pixel ``j`` of a row (``rows``: its sums, see ``_R_*``)."""
    t = rows[_R_N, j]
    inv_t = rows[_R_INV, j]
    if snap:  # SNAP divides the symmetric counts by the number of pairs T
        scale = 2.0 * inv_t
        inv_n2 = inv_t * inv_t
        half_t = inv_t
    else:  # proper probabilities: divide by ΣS = 2T
        scale = inv_t
        inv_n2 = 0.25 * inv_t * inv_t
        half_t = 0.5 * inv_t
    if code == _CONTRAST:
        return rows[_R_D2, j] * scale
    if code == _DISSIMILARITY:
        return rows[_R_AD, j] * scale
    if code == _HOMOGENEITY:
        return rows[_R_HOM, j] / FIXED_ONE * scale
    if code == _ASM:
        return rows[_R_Q, j] * inv_n2
    if code == _ENERGY:
        return np.sqrt(rows[_R_Q, j] * inv_n2)
    if code == _ENTROPY:
        return rows[_R_ENT, j] / FIXED_ONE * half_t
    if code == _MEAN:
        return rows[_R_SI, j] * half_t
    if code == _MAX:
        return rows[_R_MAX, j] * half_t
    if snap:
        si2 = rows[_R_SI2, j]
        if code == _VARIANCE:
            return si2 * inv_t
        return (si2 - rows[_R_D2, j]) / si2 if si2 > 0 else np.nan
    # exact integers: SI2·2T − SI² is 0 exactly when the variance is 0
    si = rows[_R_SI, j]
    var_num = rows[_R_SI2, j] * 2 * t - si * si
    if code == _VARIANCE:
        return var_num * inv_n2
    return ((rows[_R_SI2, j] - rows[_R_D2, j]) * 2 * t - si * si) / var_num if var_num > 0 else 1.0


@njit(nogil=True, cache=True, error_model="numpy", inline="always")
def _accumulate_one(code, rows, snap, acc):
    """Add feature ``code`` (a constant after inlining, so the loop is branch-free and vectorises)
    of one group to ``acc`` along a row; pixels where the group has no pair add nothing."""
    for j in range(acc.shape[0]):
        v = _feature(code, rows, j, snap)
        acc[j] += v if rows[_R_N, j] > 0 else 0.0


@njit(nogil=True, cache=True, error_model="numpy")
def _accumulate(code, rows, snap, acc):
    """:func:`_accumulate_one` with the branch on ``code`` taken once per row."""
    if code == _CONTRAST:
        _accumulate_one(_CONTRAST, rows, snap, acc)
    elif code == _DISSIMILARITY:
        _accumulate_one(_DISSIMILARITY, rows, snap, acc)
    elif code == _HOMOGENEITY:
        _accumulate_one(_HOMOGENEITY, rows, snap, acc)
    elif code == _ASM:
        _accumulate_one(_ASM, rows, snap, acc)
    elif code == _ENERGY:
        _accumulate_one(_ENERGY, rows, snap, acc)
    elif code == _ENTROPY:
        _accumulate_one(_ENTROPY, rows, snap, acc)
    elif code == _CORRELATION:
        _accumulate_one(_CORRELATION, rows, snap, acc)
    elif code == _MEAN:
        _accumulate_one(_MEAN, rows, snap, acc)
    elif code == _VARIANCE:
        _accumulate_one(_VARIANCE, rows, snap, acc)
    else:
        _accumulate_one(_MAX, rows, snap, acc)


@njit(nogil=True, cache=True, error_model="numpy")
def glcm_block(
    q, half, levels, offsets, group_of_offset, slot_of_group, n_slots, feature_codes, snap,
    slogs, inc, code_type, out,
):  # fmt: skip
    """GLCM features of every pixel of a block padded by ``half`` (= window // 2) on each side.

    ``q``: (H, W) integer levels, −1 = no-data. ``out``: (n_features, n_slots, H − 2·half,
    W − 2·half), fully written (NaN where no group of a slot has a valid pair). ``code_type``: an
    empty array of the integer type for pair codes (int16 where ``2 L² + 1`` fits: less cache).
    """
    need_counts = need_max = False
    for f in range(feature_codes.shape[0]):
        c = feature_codes[f]
        need_counts |= c == _ASM or c == _ENERGY or c == _ENTROPY or c == _MAX
        need_max |= c == _MAX
    # one compiled sweep per case: the count updates and max tracking drop out where not needed
    if need_max:
        _sweep(q, half, levels, offsets, group_of_offset, slot_of_group, n_slots, feature_codes, snap,
               slogs, inc, code_type, out, True, True)  # fmt: skip
    elif need_counts:
        _sweep(q, half, levels, offsets, group_of_offset, slot_of_group, n_slots, feature_codes, snap,
               slogs, inc, code_type, out, True, False)  # fmt: skip
    else:
        _sweep(q, half, levels, offsets, group_of_offset, slot_of_group, n_slots, feature_codes, snap,
               slogs, inc, code_type, out, False, False)  # fmt: skip


@njit(nogil=True, cache=True, error_model="numpy")
def _sweep(
    q, half, levels, offsets, group_of_offset, slot_of_group, n_slots, feature_codes, snap,
    slogs, inc, code_type, out, need_counts, need_max,
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
    # the window of output pixel (i, j) holds the first pixels of offset o at rows
    # i + y_lo[o] … i + 2·half − y_hi[o] and columns j + x_lo[o] … j + 2·half − x_hi[o]
    y_lo = np.maximum(0, -offsets[:, 0])
    y_hi = np.maximum(0, offsets[:, 0])
    x_lo = np.maximum(0, -offsets[:, 1])
    x_hi = np.maximum(0, offsets[:, 1])

    # pair code of every first pixel, column-major: a sliding step reads a column contiguously
    q_t = q.T.copy() if need_counts else q[:0, :0].copy()
    # (no pair: the extra entry ``no_pair``, whose share of Q, E and max S is taken out per pixel,
    # so that the hot loop has no branch)
    no_pair = 2 * levels * levels
    codes = np.full((n_off if need_counts else 0, width, height), no_pair, dtype=code_type.dtype)
    for o in range(codes.shape[0]):
        dy = offsets[o, 0]
        dx = offsets[o, 1]
        for x in range(max(0, -dx), width - max(0, dx)):
            for y in range(max(0, -dy), height - max(0, dy)):
                a = np.int32(q_t[x, y])
                b = np.int32(q_t[x + dx, y + dy])
                code = 2 * (min(a, b) * levels + max(a, b)) + (a == b)
                codes[o, x, y] = code if (a >= 0) & (b >= 0) else no_pair
    # pair sums in float64: exact (integers ≤ pairs · 2³² < 2⁵³), and the row loops vectorise
    colsum = np.zeros((n_off, 6, width), dtype=np.float64)
    counts_start = (np.arange(no_pair + 1) & 1).astype(np.int32)
    counts = counts_start.copy()
    at_least = np.zeros(inc.shape[0] + 2, dtype=np.int64)
    rows = np.zeros((n_groups, 10, nx), dtype=np.float64)
    pixel = np.zeros((3, nx), dtype=np.int64)  # Q, E and the no-pair entry's pairs along the row
    # the offsets of group g: member[first_member[g] : first_member[g + 1]]
    member = np.argsort(group_of_offset, kind="mergesort")
    first_member = np.zeros(n_groups + 1, dtype=np.int64)
    for o in range(n_off):
        first_member[group_of_offset[o] + 1] += 1
    first_member = np.cumsum(first_member)
    acc = np.zeros((n_feat, n_slots, nx), dtype=np.float64)
    n_acc = np.zeros((n_slots, nx), dtype=np.float64)

    for i in range(ny):
        rows[:, :, :] = 0.0
        for o in range(n_off):
            dy = offsets[o, 0]
            dx = offsets[o, 1]
            g = group_of_offset[o]
            r_lo = i + y_lo[o]
            r_hi = i + 2 * half - y_hi[o]
            # column sums over the window's rows: one row enters, one leaves
            if i == 0:
                for y in range(r_lo, r_hi + 1):
                    _move_row_pairs(q, y, 0, False, dy, dx, colsum[o])
            else:
                _move_row_pairs(q, r_hi, r_lo - 1, True, dy, dx, colsum[o])
            # window sums along the row: one column enters, one leaves (exact: integers)
            _box_sums(colsum[o], x_lo[o], 2 * half - x_hi[o], rows[g])
        for g in range(n_groups):
            for j in range(nx):
                rows[g, _R_INV, j] = 1.0 / max(rows[g, _R_N, j], 1.0)
        # counts: one group at a time along the row, so only its table is hot in cache
        for g in range(n_groups if need_counts else 0):
            counts[:] = counts_start
            at_least[:] = 0
            dq = de = top_off = 0
            top_diag = 1
            for j in range(nx):
                for m in range(first_member[g], first_member[g + 1]):
                    o = member[m]
                    r_lo = i + y_lo[o]
                    r_hi = i + 2 * half - y_hi[o]
                    x_in = j + 2 * half - x_hi[o]
                    if j == 0:
                        for x in range(x_lo[o], x_in + 1):
                            dq, de = _add_column(
                                codes, _U(o), _U(x), r_lo, r_hi, counts, inc, at_least, dq, de, need_max
                            )  # fmt: skip
                    else:
                        dq, de = _slide_column(
                            codes, _U(o), _U(j - 1 + x_lo[o]), _U(x_in), r_lo, r_hi, counts, inc, at_least,
                            dq, de, need_max,
                        )  # fmt: skip
                pixel[0, j] = dq
                pixel[1, j] = de
                pixel[2, j] = counts[no_pair] >> 1
                if need_max:  # max S: c pairs off the diagonal, 2c on it
                    top_off = _highest_state(at_least, top_off, pixel[2, j])
                    top_diag = _highest_state(at_least, top_diag, pixel[2, j])
                    rows[g, _R_MAX, j] = max(top_off >> 1, (top_diag >> 1) << 1)
            for j in range(nx):
                # take out the no-pair entry: off the diagonal, holding ``gaps`` pairs
                gaps = pixel[2, j]
                t = np.int64(rows[g, _R_N, j])
                rows[g, _R_Q, j] = pixel[0, j] - 2 * gaps * gaps
                rows[g, _R_ENT, j] = (2 * slogs[t] if snap else slogs[2 * t]) - (pixel[1, j] - 2 * slogs[gaps])
        # features, vectorised along the row; angle averages over the groups that have pairs
        acc[:, :, :] = 0.0
        n_acc[:, :] = 0.0
        for g in range(n_groups):
            for j in range(nx):
                n_acc[slot_of_group[g], j] += 1.0 if rows[g, _R_N, j] > 0 else 0.0
        for f in range(n_feat):
            for g in range(n_groups):
                _accumulate(feature_codes[f], rows[g], snap, acc[f, slot_of_group[g]])
        for f in range(n_feat):
            for slot in range(n_slots):
                for j in range(nx):
                    n = n_acc[slot, j]
                    out[f, slot, i, j] = acc[f, slot, j] / n if n > 0 else np.nan


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
    slogs = entropy_table(2 * max_pairs)
    ny, nx = q.shape[0] - 2 * half, q.shape[1] - 2 * half
    out = np.empty((feature_codes.size, layout.n_slots, max(ny, 0), max(nx, 0)), dtype=dtype)
    if ny > 0 and nx > 0:
        glcm_block(
            q, half, levels, layout.offsets, layout.group_of_offset, layout.slot_of_group,
            layout.n_slots, feature_codes.astype(np.int64), snap, slogs, increment_tables(max_pairs),
            np.empty(0, dtype=np.int16 if 2 * levels * levels < 2**15 else np.int32), out,
        )  # fmt: skip
    return out
