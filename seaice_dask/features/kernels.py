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
* ``Q``, ``E`` and ``max S`` need the counts: per group a table over the pair codes, swept along
  the row one group at a time (so its tables stay in L1 cache) and updated by the ``w − |dy|``
  pairs of the column entering and leaving (O(w) per pixel). Two tables (lanes) sweep the two
  halves of the row side by side: where codes repeat (smooth ice, few grey levels), one table's
  updates wait on each other through memory, and two independent chains keep the core busy.
  An entry holds its state ``2·pairs + diagonal`` (int16), which indexes the exact increments
  of ``Q`` and ``E`` (one lookup in one table holding both, where a window's sums fit in one
  int64; no arithmetic); ``max S`` comes from the
  number of entries holding at least c pairs, walked from the previous pixel's maximum. Pairs
  touching no-data go to one extra entry whose share is taken out per pixel, so the hot loop has
  no branch;
* a row is computed only between the first and last pixel whose window can hold data (from the
  first and last column of data of every image row), and the column sums change only in the
  columns where the rows entering and leaving hold data: beyond a swath edge, and in blocks it
  only partly covers, pixels whose window holds no data cost (almost) nothing and are NaN;
* pair codes are built once per block, column-major (a sliding step reads a column
  contiguously), as int16 where they fit;
* features are then computed along the row, one branch-free loop per feature;
* all sums are integers (``HOM`` and ``E`` in fixed point, 2⁻³² resolution: error < 1e-9), so a
  pixel's result depends only on its window, never on where a sweep started: results are
  bit-identical for any chunking.

"""

from __future__ import annotations

import numpy as np
from numba import literally, njit
from numba.extending import overload

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
    when a pair is added to an entry in state ``v`` (see :func:`_update`). The entry then
    holds ``S = v // 2`` (off the diagonal, counted twice in the sums: ``S[a, b]`` and ``S[b, a]``)
    or ``S = 2 · (v // 2)`` (diagonal), and moves to state ``v + 2``."""
    v = np.arange(2 * max_pairs + 2)
    diag = v & 1
    s_before, s_after = (v >> 1) << diag, ((v >> 1) + 1) << diag
    weight = 2 - diag
    slogs = entropy_table(2 * max_pairs + 2)
    return np.stack([weight * (s_after**2 - s_before**2), weight * (slogs[s_after] - slogs[s_before])], axis=1)


def packed_increments(max_pairs: int) -> tuple[np.ndarray, int] | None:
    """Both increments of :func:`increment_tables` in one int64, ``E``'s plus ``Q``'s shifted by
    ``shift`` bits, and ``shift``; None where a window's sums would not fit (larger windows).

    The running sum of the packed increments is ``E + Q · 2^shift`` exactly: every state on the
    way is a real set of at most ``max_pairs`` pairs, so ``0 ≤ E < 2^shift`` (``E ≤ 2T ln 2T ·
    2³²`` plus rounding, ``ΣS = 2T``) and ``Q ≤ (2T)²``. One lookup and one addition per update
    instead of two.
    """
    total = 2 * max_pairs
    shift = int(np.ceil(total * np.log(max(total, 2)) * FIXED_ONE + total + 1)).bit_length()
    if total * total >= 2 ** (63 - shift):
        return None
    inc = increment_tables(max_pairs)
    return inc[:, 1] + (inc[:, 0] << shift), shift


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

# Indices in the hot loops are unsigned: Numba then skips its negative-index wraparound (which
# also keeps the row loops from vectorising).
_U = np.uint64
#: Count tables swept side by side, each along its own stretch of the row: where pair codes
#: repeat, one table's updates wait on each other through memory; two independent chains keep
#: the core busy (four measured no faster: their pointers no longer fit the registers). The
#: sweep is written out for exactly this many.
LANES = 2


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
def _move_row_pairs(q, y_in, y_out, remove, dy, dx, colsum, x_first, x_last):
    """Column sums ``colsum`` (6, W): add the pair sums of the pairs starting in image row
    ``y_in`` and, with ``remove``, take out those of row ``y_out``, in columns ``x_first …
    x_last`` (every valid pair of the two rows lies there; elsewhere the change is 0)."""
    for x in range(x_first, x_last + 1):
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
def _pair_columns(first, last, y, dy, dx, width):
    """The columns ``x`` where a pair ``(y, x), (y + dy, x + dx)`` can be valid, from the first
    and last column holding data in each row (``width, −1`` where there is none)."""
    x_first = max(first[y], first[y + dy] - dx)
    x_last = min(last[y], last[y + dy] - dx)
    return (x_first, x_last) if x_first <= x_last else (width, -1)


@njit(nogil=True, cache=True, error_model="numpy", inline="always")
def _box_sums(colsum, lo, hi, rows, j_first, j_last):
    """Add to ``rows[:6, j]`` (``j = j_first … j_last``) the sums of ``colsum[:, j + lo … j + hi]``:
    six running sums, one column entering and one leaving per pixel (exact: all values are
    integers)."""
    n = d2 = ad = hm = si = si2 = 0.0
    for j in range(j_first, j_last + 1):
        for x in range(lo + j if j == j_first else hi + j, hi + j + 1):
            n += colsum[_R_N, x]
            d2 += colsum[_R_D2, x]
            ad += colsum[_R_AD, x]
            hm += colsum[_R_HOM, x]
            si += colsum[_R_SI, x]
            si2 += colsum[_R_SI2, x]
        if j > j_first:
            x = lo + j - 1
            n -= colsum[_R_N, x]
            d2 -= colsum[_R_D2, x]
            ad -= colsum[_R_AD, x]
            hm -= colsum[_R_HOM, x]
            si -= colsum[_R_SI, x]
            si2 -= colsum[_R_SI2, x]
        rows[_R_N, _U(j)] += n
        rows[_R_D2, _U(j)] += d2
        rows[_R_AD, _U(j)] += ad
        rows[_R_HOM, _U(j)] += hm
        rows[_R_SI, _U(j)] += si
        rows[_R_SI2, _U(j)] += si2


def _increments(inc, state):
    """The increments of ``Q`` and ``E`` for a pair added to an entry in ``state``: from the
    packed table (1-D, ``E`` and ``Q`` in one sum, see :func:`packed_increments`) or from both
    columns of :func:`increment_tables` (2-D)."""


@overload(_increments, inline="always")
def _increments_typed(inc, state):
    if inc.ndim == 1:
        return lambda inc, state: (inc[state], 0)
    return lambda inc, state: (inc[state, 0], inc[state, 1])


def _unpacked(inc, dq, de, shift):
    """``Q`` and ``E`` from the running sums of :func:`_increments`."""


@overload(_unpacked, inline="always")
def _unpacked_typed(inc, dq, de, shift):
    if inc.ndim == 1:
        return lambda inc, dq, de, shift: (dq >> shift, dq & ((1 << shift) - 1))
    return lambda inc, dq, de, shift: (dq, de)


@njit(nogil=True, cache=True, error_model="numpy", inline="always")
def _update(counts, code, add, inc, at_least, dq, de, need_max):
    """Add (``add``) or remove one pair with ``code`` from a count table, updating ``Q`` (``dq``)
    and ``E`` (``de``), and for ``max S`` the number ``at_least[2c + diagonal]`` of entries (off
    or on the diagonal) holding at least ``c`` pairs."""
    v = counts[_U(code)]
    if add:
        counts[_U(code)] = v + 2
        d_q, d_e = _increments(inc, _U(v))
        dq += d_q
        de += d_e
        if need_max:
            at_least[_U(v + 2)] += 1
    else:
        counts[_U(code)] = v - 2
        d_q, d_e = _increments(inc, _U(v - 2))
        dq -= d_q
        de -= d_e
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
def _fill(codes, member, m_first, m_last, y_lo, y_hi, x_lo, x_hi, i, j, half, counts, counts_start, inc,
          at_least, need_max):  # fmt: skip
    """Start a count table over the window of pixel ``(i, j)``: the pairs of the group's offsets
    ``member[m_first : m_last]``; returns its ``Q`` and ``E``."""
    counts[:] = counts_start
    if need_max:
        at_least[:] = 0
    dq = de = 0
    for m in range(m_first, m_last):
        o = member[m]
        for x in range(j + x_lo[o], j + 2 * half - x_hi[o] + 1):
            dq, de = _add_column(
                codes, _U(o), _U(x), i + y_lo[o], i + 2 * half - y_hi[o], counts, inc, at_least, dq, de, need_max
            )  # fmt: skip
    return dq, de


@njit(nogil=True, cache=True, error_model="numpy", inline="always")
def _swap(counts, code_out, code_in, inc, at_least, dq, de, need_max):
    """Remove the pair ``code_out`` and add ``code_in`` (see :func:`_update`)."""
    dq, de = _update(counts, code_out, False, inc, at_least, dq, de, need_max)
    return _update(counts, code_in, True, inc, at_least, dq, de, need_max)


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
def _record(j, dq, de, inc, shift, counts, no_pair, at_least, top_off, top_diag, pixel, rows, need_max):
    """Keep pixel ``j``'s ``Q``, ``E``, the no-pair entry's pairs and (``need_max``) ``max S``;
    returns the highest states, where the next pixel's walk starts."""
    gaps = counts[no_pair] >> 1
    q_sum, e_sum = _unpacked(inc, dq, de, shift)
    pixel[0, j] = q_sum
    pixel[1, j] = e_sum
    pixel[2, j] = gaps
    if need_max:  # max S: c pairs off the diagonal, 2c on it
        top_off = _highest_state(at_least, top_off, gaps)
        top_diag = _highest_state(at_least, top_diag, gaps)
        rows[_R_MAX, j] = max(top_off >> 1, (top_diag >> 1) << 1)
    return top_off, top_diag


@njit(nogil=True, cache=True, error_model="numpy")
def _accumulate(code, rows, snap, acc, j_first, j_last):
    """Add feature ``code`` of one group to ``acc`` along a row (pixels ``j_first … j_last``;
    ``rows``: the group's sums, see ``_R_*``); pixels where the group has no pair add nothing.

    One branch-free loop per feature, so that each vectorises. SNAP divides the symmetric counts
    by the number of pairs T, proper probabilities by ΣS = 2T: ``scale``, ``inv_n2`` and
    ``half_t`` below are ``2/T, 1/T², 1/T`` (snap) or ``1/T, 1/(4T²), 1/(2T)``."""
    s_scale, s_n2, s_half = (2.0, 1.0, 1.0) if snap else (1.0, 0.25, 0.5)
    n = rows[_R_N]
    inv = rows[_R_INV]
    lo, hi = _U(j_first), _U(j_last + 1)
    if code == _CONTRAST or code == _DISSIMILARITY or code == _HOMOGENEITY:
        x = rows[_R_D2] if code == _CONTRAST else rows[_R_AD] if code == _DISSIMILARITY else rows[_R_HOM]
        unit = 1.0 / FIXED_ONE if code == _HOMOGENEITY else 1.0  # HOM in fixed point
        for j in range(lo, hi):
            acc[j] += x[j] * unit * (s_scale * inv[j]) if n[j] > 0 else 0.0
    elif code == _ASM:
        q = rows[_R_Q]
        for j in range(lo, hi):
            acc[j] += q[j] * (s_n2 * inv[j] * inv[j]) if n[j] > 0 else 0.0
    elif code == _ENERGY:
        q = rows[_R_Q]
        for j in range(lo, hi):
            acc[j] += np.sqrt(q[j] * (s_n2 * inv[j] * inv[j])) if n[j] > 0 else 0.0
    elif code == _ENTROPY or code == _MEAN or code == _MAX:
        x = rows[_R_ENT] if code == _ENTROPY else rows[_R_SI] if code == _MEAN else rows[_R_MAX]
        unit = 1.0 / FIXED_ONE if code == _ENTROPY else 1.0  # E in fixed point
        for j in range(lo, hi):
            acc[j] += x[j] * unit * (s_half * inv[j]) if n[j] > 0 else 0.0
    elif snap:  # variance and correlation of SNAP's formulas
        si2, d2 = rows[_R_SI2], rows[_R_D2]
        if code == _VARIANCE:
            for j in range(lo, hi):
                acc[j] += si2[j] * inv[j] if n[j] > 0 else 0.0
        else:
            for j in range(lo, hi):
                v = (si2[j] - d2[j]) / si2[j] if si2[j] > 0 else np.nan
                acc[j] += v if n[j] > 0 else 0.0
    else:  # exact integers: SI2·2T − SI² is 0 exactly when the variance is 0
        si, si2, d2 = rows[_R_SI], rows[_R_SI2], rows[_R_D2]
        if code == _VARIANCE:
            for j in range(lo, hi):
                acc[j] += (si2[j] * 2 * n[j] - si[j] * si[j]) * (s_n2 * inv[j] * inv[j]) if n[j] > 0 else 0.0
        else:
            for j in range(lo, hi):
                var_num = si2[j] * 2 * n[j] - si[j] * si[j]
                v = ((si2[j] - d2[j]) * 2 * n[j] - si[j] * si[j]) / var_num if var_num > 0 else 1.0
                acc[j] += v if n[j] > 0 else 0.0


def sweep_variant(feature_codes: np.ndarray) -> tuple[bool, bool]:
    """Which counts the features need: ``(need_counts, need_max)``. The sweep is compiled once
    for each ``need_max`` (:data:`_SWEEPS`; about 15 s of one core each, on first use):
    tracking the maximum in the hot loop behind a flag known only at run time makes the whole
    sweep several times slower. ``need_counts`` is a flag at run time: the count tables are only
    built and swept where needed."""
    codes = set(np.asarray(feature_codes).tolist())
    need_max = _MAX in codes
    return need_max or bool(codes & {_ASM, _ENERGY, _ENTROPY}), need_max


def glcm_block(
    q, half, levels, offsets, group_of_offset, slot_of_group, n_slots, feature_codes, snap,
    slogs, inc, shift, code_type, count_type, out,
):  # fmt: skip
    """GLCM features of every pixel of a block padded by ``half`` (= window // 2) on each side.

    ``q``: (H, W) integer levels, −1 = no-data. ``out``: (n_features, n_slots, H − 2·half,
    W − 2·half), fully written (NaN where no group of a slot has a valid pair). ``inc``, ``shift``:
    the increments of ``Q`` and ``E``, packed (1-D, :func:`packed_increments`) or not (2-D,
    :func:`increment_tables`; ``shift`` unused). ``code_type``,
    ``count_type``: empty arrays of the integer types for pair codes (int16 where ``2 L² + 1``
    fits) and count-table states (int16 where ``2 · max pairs + 1`` fits): less cache.
    """
    need_counts, need_max = sweep_variant(feature_codes)
    _SWEEPS[need_max](q, half, levels, offsets, group_of_offset, slot_of_group, n_slots, feature_codes, snap,
                      slogs, inc, shift, code_type, count_type, out, need_counts)  # fmt: skip


# One entry point per ``need_max``, each its own dispatcher, so that only the one called is
# compiled (a call with a literal flag from Python would type-check again on every call).
@njit(nogil=True, cache=True, error_model="numpy")
def _sweep_no_max(q, half, levels, offsets, group_of_offset, slot_of_group, n_slots, feature_codes, snap,
                  slogs, inc, shift, code_type, count_type, out, need_counts):  # fmt: skip
    _sweep(q, half, levels, offsets, group_of_offset, slot_of_group, n_slots, feature_codes, snap,
           slogs, inc, shift, code_type, count_type, out, need_counts, False)  # fmt: skip


@njit(nogil=True, cache=True, error_model="numpy")
def _sweep_max(q, half, levels, offsets, group_of_offset, slot_of_group, n_slots, feature_codes, snap,
               slogs, inc, shift, code_type, count_type, out, need_counts):  # fmt: skip
    _sweep(q, half, levels, offsets, group_of_offset, slot_of_group, n_slots, feature_codes, snap,
           slogs, inc, shift, code_type, count_type, out, need_counts, True)  # fmt: skip


@njit(nogil=True, cache=True, error_model="numpy")
def _sweep(
    q, half, levels, offsets, group_of_offset, slot_of_group, n_slots, feature_codes, snap,
    slogs, inc, shift, code_type, count_type, out, need_counts, need_max,
):  # fmt: skip
    """The body of :func:`glcm_block`, compiled for a constant ``need_max``."""
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
    # the first and last column holding data in every row (width, −1: none): pixels whose window
    # holds no data are NaN without work, and the column sums change only where rows hold data
    first = np.full(height, width, dtype=np.int64)
    last = np.full(height, -1, dtype=np.int64)
    for y in range(height):
        for x in range(width):
            if q[y, x] >= 0:
                first[y] = min(first[y], x)
                last[y] = x

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
    # one count table per lane (see LANES)
    counts_start = (np.arange(no_pair + 1) & 1).astype(count_type.dtype)
    counts = np.empty((LANES, no_pair + 1), dtype=count_type.dtype)
    at_least = np.zeros((LANES, inc.shape[0] + 2), dtype=np.int64)
    counts0, counts1 = counts[0], counts[1]
    at_least0, at_least1 = at_least[0], at_least[1]
    rows = np.zeros((n_groups, 10, nx), dtype=np.float64)
    pixel = np.zeros((3, nx), dtype=np.int64)  # Q, E and the no-pair entry's pairs along the row
    # the offsets of group g, in order: member[first_member[g] : first_member[g + 1]]
    first_member = np.zeros(n_groups + 1, dtype=np.int64)
    for o in range(n_off):
        first_member[group_of_offset[o] + 1] += 1
    first_member = np.cumsum(first_member)
    member = np.empty(n_off, dtype=np.int64)
    filled = first_member[:-1].copy()
    for o in range(n_off):
        member[filled[group_of_offset[o]]] = o
        filled[group_of_offset[o]] += 1
    acc = np.zeros((n_feat, n_slots, nx), dtype=np.float64)
    n_acc = np.zeros((n_slots, nx), dtype=np.float64)

    for i in range(ny):
        # column sums over the window's rows: one row enters, one leaves
        for o in range(n_off):
            dy = offsets[o, 0]
            dx = offsets[o, 1]
            r_lo = i + y_lo[o]
            r_hi = i + 2 * half - y_hi[o]
            if i == 0:
                for y in range(r_lo, r_hi + 1):
                    x_first, x_last = _pair_columns(first, last, y, dy, dx, width)
                    _move_row_pairs(q, y, 0, False, dy, dx, colsum[o], x_first, x_last)
            else:
                in_first, in_last = _pair_columns(first, last, r_hi, dy, dx, width)
                out_first, out_last = _pair_columns(first, last, r_lo - 1, dy, dx, width)
                _move_row_pairs(q, r_hi, r_lo - 1, True, dy, dx, colsum[o],
                                min(in_first, out_first), max(in_last, out_last))  # fmt: skip
        # the pixels whose window can hold data: j_first … j_last (empty: 0, −1)
        x_first = width
        x_last = -1
        for y in range(i, i + 2 * half + 1):
            x_first = min(x_first, first[y])
            x_last = max(x_last, last[y])
        j_first = max(x_first - 2 * half, 0)
        j_last = min(x_last, nx - 1)
        if j_first > j_last:
            j_first, j_last = 0, -1
        for g in range(n_groups):
            for r in range(_R_SI2 + 1):  # the box sums add into these rows
                rows[g, r, j_first : j_last + 1] = 0.0
        # window sums along the row: one column enters, one leaves (exact: integers)
        for o in range(n_off if j_last >= 0 else 0):
            _box_sums(colsum[o], x_lo[o], 2 * half - x_hi[o], rows[group_of_offset[o]], j_first, j_last)
        for g in range(n_groups):
            for j in range(_U(j_first), _U(j_last + 1)):
                rows[g, _R_INV, j] = 1.0 / max(rows[g, _R_N, j], 1.0)
        # counts: one group at a time along the row, so only its tables are hot in cache; the
        # lanes sweep pixels start0 … start0 + seg − 1 and start1 … j_last (overlapping by ≤ 1)
        n = j_last - j_first + 1
        seg = (n + LANES - 1) // LANES
        start0 = j_first
        start1 = j_first + n - seg
        for g in range(n_groups if need_counts and n > 0 else 0):
            m_first = first_member[g]
            m_last = first_member[g + 1]
            rows_g = rows[g]
            dq0, de0 = _fill(codes, member, m_first, m_last, y_lo, y_hi, x_lo, x_hi, i, start0, half, counts0,
                             counts_start, inc, at_least0, need_max)  # fmt: skip
            dq1, de1 = _fill(codes, member, m_first, m_last, y_lo, y_hi, x_lo, x_hi, i, start1, half, counts1,
                             counts_start, inc, at_least1, need_max)  # fmt: skip
            top_off0 = top_off1 = 0
            top_diag0 = top_diag1 = 1
            for step in range(seg):
                if step > 0:
                    for m in range(m_first, m_last):
                        o = _U(member[m])
                        x_out = step - 1 + x_lo[o]
                        x_in = step + 2 * half - x_hi[o]
                        out0, in0 = _U(start0 + x_out), _U(start0 + x_in)
                        out1, in1 = _U(start1 + x_out), _U(start1 + x_in)
                        for y in range(_U(i + y_lo[o]), _U(i + 2 * half - y_hi[o]) + _U(1)):
                            dq0, de0 = _swap(counts0, codes[o, out0, y], codes[o, in0, y], inc, at_least0, dq0, de0,
                                             need_max)  # fmt: skip
                            dq1, de1 = _swap(counts1, codes[o, out1, y], codes[o, in1, y], inc, at_least1, dq1, de1,
                                             need_max)  # fmt: skip
                top_off0, top_diag0 = _record(start0 + step, dq0, de0, inc, shift, counts0, no_pair, at_least0,
                                              top_off0, top_diag0, pixel, rows_g, need_max)  # fmt: skip
                top_off1, top_diag1 = _record(start1 + step, dq1, de1, inc, shift, counts1, no_pair, at_least1,
                                              top_off1, top_diag1, pixel, rows_g, need_max)  # fmt: skip
            for j in range(_U(j_first), _U(j_last + 1)):
                # take out the no-pair entry: off the diagonal, holding ``gaps`` pairs
                gaps = pixel[2, j]
                t = np.int64(rows[g, _R_N, j])
                rows[g, _R_Q, j] = pixel[0, j] - 2 * gaps * gaps
                rows[g, _R_ENT, j] = (2 * slogs[t] if snap else slogs[2 * t]) - (pixel[1, j] - 2 * slogs[gaps])
        # features, vectorised along the row; angle averages over the groups that have pairs
        acc[:, :, :] = 0.0
        n_acc[:, :] = 0.0
        for g in range(n_groups):
            for j in range(_U(j_first), _U(j_last + 1)):
                n_acc[slot_of_group[g], j] += 1.0 if rows[g, _R_N, j] > 0 else 0.0
        for f in range(n_feat):
            for g in range(n_groups):
                _accumulate(feature_codes[f], rows[g], snap, acc[f, slot_of_group[g]], j_first, j_last)
        for f in range(n_feat):
            for slot in range(n_slots):
                out[f, slot, i, :j_first] = np.nan
                out[f, slot, i, j_last + 1 :] = np.nan
                for j in range(_U(j_first), _U(j_last + 1)):
                    n_j = n_acc[slot, j]
                    out[f, slot, i, j] = acc[f, slot, j] / n_j if n_j > 0 else np.nan


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
    inc, shift = packed_increments(max_pairs) or (increment_tables(max_pairs), 0)
    ny, nx = q.shape[0] - 2 * half, q.shape[1] - 2 * half
    out = np.empty((feature_codes.size, layout.n_slots, max(ny, 0), max(nx, 0)), dtype=dtype)
    if ny > 0 and nx > 0:
        glcm_block(
            q, half, levels, layout.offsets, layout.group_of_offset, layout.slot_of_group,
            layout.n_slots, feature_codes.astype(np.int64), snap, slogs, inc, shift,
            np.empty(0, dtype=np.int16 if 2 * levels * levels < 2**15 else np.int32),
            np.empty(0, dtype=np.int16 if 2 * max_pairs + 1 < 2**15 else np.int32), out,
        )  # fmt: skip
    return out


#: The compiled sweep for each ``need_max`` of :func:`sweep_variant`.
_SWEEPS = {False: _sweep_no_max, True: _sweep_max}
