"""Scene-estimated thermal-noise scaling and power balancing per subswath ("nersc" denoising).

After Park et al. 2018, "Efficient thermal noise removal for Sentinel-1 TOPSAR cross-polarization
channel", IEEE TGRS 56(3), 1555–1565: the annotated noise η is too weak or too strong by a factor
that differs per subswath (k_s), and a residual constant per subswath leaves steps at the
subswath boundaries, removed by "power balancing" offsets o_s:

    σ0 = (DN² − k_s · η) / A_σ² + o_s          for pixels of subswath s.

Park et al. fit k_s and o_s once per instrument/IPF over many scenes; here they are estimated
from the scene itself (no coefficient tables), assuming the scene signal is smooth in range over
short azimuth blocks. With P = DN²/A² and N = η/A² averaged over the valid pixels of subswath s
in blocks of :data:`BLOCK_LINES` lines and :data:`BIN_SAMPLES` samples:

    P̄_b(x) = a_b + c_b · (x − x̄) + k_b · N̄_b(x)      (least squares per block b)
    k_s = median_b k_b

k_s is kept only where it is identifiable — standard error 1.48·MAD/√n_blocks below
:data:`MAX_SCALE_ERROR` and within :data:`SCALE_LIMITS` — otherwise k_s = 1 (ESA). Co-pol
channels, where the signal dwarfs the noise, usually stay at 1, as in Park et al. (cross-pol).
Power balancing then makes neighbouring subswaths continuous: the difference of the means of
P − k_s·N over the :data:`BOUNDARY_BINS` bins each side of their boundary, per block where both
have data, gives the step Δ_s as its median over the blocks (robust, like k_s, to the surface's
own steps where a coast or an ice edge follows the boundary), and o_{s+1} = o_s − Δ_s, anchored
so the width-weighted mean offset is zero.

Everything stays lazy: one pass reduces the block sums, one small task fits the coefficients,
and every σ0 block depends on that task.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import dask
import dask.array as da
import numba
import numpy as np
import xarray as xr

from seaice_dask.errors import ProductError
from seaice_dask.preprocess.luts import calibration_window, noise_window, rectangle_index
from seaice_dask.safe import CalibrationLUT, NoiseLUT, Product, Subswath

#: Credible range of a noise scaling factor (Park et al. 2018 report 0.84–1.5 for EW).
SCALE_LIMITS = (0.5, 2.0)
#: Largest standard error of a scene-estimated k_s that is still used.
MAX_SCALE_ERROR = 0.15
#: Azimuth block height (lines) and range bin width (samples) of the estimation.
BLOCK_LINES, BIN_SAMPLES = 64, 8
#: Fewest valid pixels in a (block, bin) cell, and fewest cells per block fit / blocks per swath.
MIN_CELL_PIXELS, MIN_BINS, MIN_BLOCKS = BLOCK_LINES * BIN_SAMPLES // 4, 16, 5
#: Bins on each side of a subswath boundary compared for power balancing.
BOUNDARY_BINS = 3
_SUMS = 4  # per swath: ΣP, ΣN, count, Σx


@dataclass(frozen=True, eq=False)
class NoiseScaling:
    """Per-subswath noise scaling ``scale`` (k_s) and power-balancing ``offset`` (o_s, linear σ0)."""

    swaths: tuple[str, ...]
    scale: np.ndarray
    offset: np.ndarray
    scale_error: np.ndarray  # standard error of the estimated k_s (NaN: too few blocks)
    estimated: np.ndarray  # bool: k_s comes from the scene (else 1, the ESA value)

    def to_dataset(self) -> xr.Dataset:
        return xr.Dataset(
            {"scale": ("swath", self.scale, {"long_name": "noise scaling factor", "units": "1"}),
             "offset": ("swath", self.offset, {"long_name": "power balancing offset", "units": "m2 m-2"}),
             "scale_error": ("swath", self.scale_error, {"long_name": "standard error of scale", "units": "1"}),
             "estimated": ("swath", self.estimated, {"long_name": "scale estimated from the scene"})},
            coords={"swath": list(self.swaths)},
        )


def _swath_rectangles(swaths: tuple[Subswath, ...], lines: np.ndarray, samples: np.ndarray):
    """(subswath index, rectangle index) of every annotated swath bound (inclusive rectangle)
    overlapping lines × samples, in annotation order."""
    for index, swath in enumerate(swaths):
        for first_line, first_sample, last_line, last_sample in swath.bounds:
            rows = (lines >= first_line) & (lines <= last_line)
            cols = (samples >= first_sample) & (samples <= last_sample)
            if rows.any() and cols.any():
                yield index, rectangle_index(rows, cols)


def swath_labels(swaths: tuple[Subswath, ...], lines: np.ndarray, samples: np.ndarray) -> np.ndarray:
    """Index of the subswath of every pixel of lines × samples (−1 outside all), from the
    annotated swath bounds (inclusive rectangles; where they overlap, the later one)."""
    labels = np.full((lines.size, samples.size), -1, np.int8)
    for index, rectangle in _swath_rectangles(swaths, lines, samples):
        labels[rectangle] = index
    return labels


def swath_field(swaths: tuple[Subswath, ...], values: np.ndarray, outside: float, lines: np.ndarray,
                samples: np.ndarray) -> np.ndarray:
    """``values[s]`` on the pixels of subswath s (as labelled by :func:`swath_labels`), ``outside``
    elsewhere, as float64 on lines × samples: rectangle fills, no per-pixel lookup."""
    field = np.full((lines.size, samples.size), outside, np.float64)
    for index, rectangle in _swath_rectangles(swaths, lines, samples):
        field[rectangle] = values[index]
    return field


def block_sums_reference(dn, cal: CalibrationLUT, noise: NoiseLUT, swaths, block_info=None) -> np.ndarray:
    """NumPy reference of :func:`_block_sums` (tests pin them together bit for bit): per
    BLOCK_LINES sub-block and swath, ΣP, ΣN, count, Σsample in bins of BIN_SAMPLES."""
    (r0, r1), (c0, c1) = block_info[0]["array-location"]
    lines, samples = np.arange(r0, r1), np.arange(c0, c1)
    a2 = np.square(calibration_window(cal, "sigma_nought", lines, samples))
    fields = (
        np.square(dn, dtype=np.float64) / a2,
        noise_window(noise, lines, samples) / a2,
        np.ones(a2.shape),
        np.broadcast_to(samples.astype(np.float64), a2.shape),
    )
    labels = swath_labels(swaths, lines, samples)
    labels[dn == 0] = -1
    n_sub, n_bins = -(-lines.size // BLOCK_LINES), -(-samples.size // BIN_SAMPLES)
    size = n_sub * len(swaths) * _SUMS * n_bins
    sub = (np.arange(lines.size) // BLOCK_LINES)[:, None]
    col = (np.arange(samples.size) // BIN_SAMPLES)[None, :]
    inside = labels >= 0
    cell = ((sub * len(swaths) + labels) * _SUMS * n_bins + col)[inside]  # flat (sub, swath, 0, bin)
    out = np.zeros(size)
    for k, field in enumerate(fields):
        out += np.bincount(cell + k * n_bins, field[inside], minlength=size)
    return out.reshape(n_sub * len(swaths) * _SUMS, n_bins)


@numba.njit(cache=True, nogil=True)
def _sums_kernel(dn, a2, eta, labels, first_sample, n_swaths, out):  # pragma: no cover - compiled
    for i in range(dn.shape[0]):
        row0 = i // BLOCK_LINES * n_swaths
        for j in range(dn.shape[1]):
            s = labels[i, j]
            if s < 0 or dn[i, j] == 0:
                continue
            r, b = (row0 + s) * _SUMS, j // BIN_SAMPLES
            value = np.float64(dn[i, j])
            out[r, b] += value * value / a2[i, j]
            out[r + 1, b] += eta[i, j] / a2[i, j]
            out[r + 2, b] += 1.0
            out[r + 3, b] += np.float64(first_sample + j)


def _block_sums(dn, cal: CalibrationLUT, noise: NoiseLUT, swaths, block_info=None) -> np.ndarray:
    """Per BLOCK_LINES sub-block and swath: ΣP, ΣN, count, Σsample in bins of BIN_SAMPLES
    (P = DN²/A², N = η/A² over the pixels with DN > 0 of each subswath). Compiled, one pass over
    the pixels in their order, so the sums equal :func:`block_sums_reference`'s ``bincount``s bit
    for bit at a seventh of the time."""
    (r0, r1), (c0, c1) = block_info[0]["array-location"]
    lines, samples = np.arange(r0, r1), np.arange(c0, c1)
    a2 = np.square(calibration_window(cal, "sigma_nought", lines, samples))
    eta = noise_window(noise, lines, samples)
    n_sub, n_bins = -(-lines.size // BLOCK_LINES), -(-samples.size // BIN_SAMPLES)
    out = np.zeros((n_sub * len(swaths) * _SUMS, n_bins))
    _sums_kernel(np.ascontiguousarray(dn), a2, eta, swath_labels(swaths, lines, samples), int(c0), len(swaths), out)
    return out


def _fit_scale(p_mean: np.ndarray, n_mean: np.ndarray, x: np.ndarray) -> float:
    """k of the least-squares fit P̄ = a + c·(x − x̄) + k·N̄."""
    design = np.column_stack([np.ones(x.size), x - x.mean(), n_mean])
    return float(np.linalg.lstsq(design, p_mean, rcond=None)[0][2])


def fit_noise_scaling(sums: np.ndarray, swaths: tuple[Subswath, ...]) -> NoiseScaling:
    """k_s and o_s (module doc) from the stacked block sums of :func:`noise_scaling`."""
    n = len(swaths)
    cells = sums.reshape(-1, n, _SUMS, sums.shape[-1])  # (blocks, swath, sum, bin)
    scale, offset = np.ones(n), np.zeros(n)
    error, estimated = np.full(n, np.nan), np.zeros(n, bool)
    for s in range(n):
        per_block = []
        for p_sum, n_sum, count, x_sum in cells[:, s]:
            ok = count >= MIN_CELL_PIXELS
            if ok.sum() >= MIN_BINS:
                per_block.append(_fit_scale(p_sum[ok] / count[ok], n_sum[ok] / count[ok], x_sum[ok] / count[ok]))
        if len(per_block) >= MIN_BLOCKS:
            k = np.asarray(per_block)
            median = float(np.median(k))
            error[s] = 1.4826 * float(np.median(np.abs(k - median))) / np.sqrt(k.size)
            if error[s] <= MAX_SCALE_ERROR and SCALE_LIMITS[0] <= median <= SCALE_LIMITS[1]:
                scale[s], estimated[s] = median, True
    for s in range(n - 1):
        offset[s + 1] = offset[s] - _boundary_step(cells[:, s], cells[:, s + 1], scale[s], scale[s + 1])
    widths = np.array([sw.last_sample - sw.first_sample + 1 for sw in swaths], dtype=np.float64)
    offset -= np.average(offset, weights=widths)
    return NoiseScaling(tuple(sw.name for sw in swaths), scale, offset, error, estimated)


def _boundary_step(near: np.ndarray, far: np.ndarray, k_near: float, k_far: float) -> float:
    """Median over blocks of the mean scaled-denoised σ0 just after minus just before the boundary
    of two adjacent subswaths (the BOUNDARY_BINS bins on each side, in blocks where both have
    data); 0 if none. The median, as for k_s: a pooled mean took the surface's own steps as noise
    steps wherever a coast or an ice edge runs along the boundary (a simulated March scene's co-pol
    got offsets of −5·10⁻³, i.e. 2.5 dB too little backscatter on level first-year ice in EW5,
    against true noise offsets of 10⁻⁵)."""
    def side(cells, k, last):
        p_sum, n_sum, count, x_sum = (cells[:, i] for i in range(_SUMS))
        filled = count >= MIN_CELL_PIXELS
        x = x_sum / np.maximum(count, 1)
        if last:
            edge = np.where(filled, x, -np.inf).max(axis=1, keepdims=True)
        else:
            edge = np.where(filled, x, np.inf).min(axis=1, keepdims=True)
        near_edge = filled & (np.abs(x - edge) < BOUNDARY_BINS * BIN_SAMPLES)
        return ((p_sum - k * n_sum) * near_edge).sum(axis=1), (count * near_edge).sum(axis=1)

    before, n_before = side(near, k_near, last=True)
    after, n_after = side(far, k_far, last=False)
    both = (n_before > 0) & (n_after > 0)
    if not both.any():
        return 0.0
    return float(np.median(after[both] / n_after[both] - before[both] / n_before[both]))


def _scaling_sums(product: Product, pol: str, chunks: tuple[int, int]) -> da.Array:
    """Lazy block sums (:func:`_block_sums`) of one product, stacked along the first axis."""
    if not product.swaths:
        raise ProductError("no subswath bounds annotated: 'nersc' denoising needs them", product.path)
    aligned = tuple(max(step, int(c) // step * step) for c, step in zip(chunks, (BLOCK_LINES, BIN_SAMPLES)))
    dn = product.dn(pol, chunks=aligned).data
    per_swath = len(product.swaths) * _SUMS
    return da.map_blocks(
        _block_sums,
        dn,
        dask.delayed(product.calibration(pol), pure=True, traverse=False),
        dask.delayed(product.noise(pol), pure=True, traverse=False),
        product.swaths,
        chunks=(
            tuple(-(-r // BLOCK_LINES) * per_swath for r in dn.chunks[0]),
            tuple(-(-c // BIN_SAMPLES) for c in dn.chunks[1]),
        ),
        dtype=np.float64,
        meta=np.empty((0, 0), np.float64),
    )


def noise_scaling(product: Product | Sequence[Product], pol: str, chunks: tuple[int, int] = (1024, 1024)):
    """Lazy (``dask.delayed``) :class:`NoiseScaling` of ``pol`` estimated from the scene;
    ``.compute()`` it to inspect, or let ``sigma0(..., denoise="nersc")`` use it lazily.

    Several products (the slices of one pass, in order): their block sums are pooled and fitted
    once, so every slice is denoised with the pass's k_s and o_s. Estimated per slice, a slice
    of a minute has half the blocks of the pass and its own estimation error, which shows as a
    step in σ0 where two slices meet. One product gives the same graph, and bytes, as before.

    The DN is read in ``chunks`` rounded down to multiples of the sub-block (BLOCK_LINES ×
    BIN_SAMPLES), so the cells never straddle two chunks and the estimate does not depend on
    the chunking (the usual sizes, powers of two, are multiples already and share their reads)."""
    products = [product] if isinstance(product, Product) else list(product)
    names = {tuple(sw.name for sw in p.swaths) for p in products}
    if len(names) > 1:
        raise ProductError(f"slices of one pass with different subswaths {sorted(names)}", products[-1].path)
    sums = [_scaling_sums(p, pol, chunks) for p in products]
    if len(sums) == 1:
        stacked = sums[0]
    else:  # range bins align from sample 0: a narrower slice has empty cells beyond its width
        width = max(a.shape[1] for a in sums)
        stacked = da.concatenate([da.pad(a, ((0, 0), (0, width - a.shape[1]))) for a in sums], axis=0)
    return dask.delayed(fit_noise_scaling, pure=True)(stacked, products[0].swaths)


def nersc_power_reference(
    dn: np.ndarray, eta: np.ndarray, a2: np.ndarray, scaling: NoiseScaling, swaths, lines, samples
) -> tuple[np.ndarray, np.ndarray]:
    """NumPy reference of :func:`denoised_power` with a ``scaling`` (tests pin them together):
    σ0 = (DN² − k_s·η)/A² + o_s on one window (pixels outside every subswath: k = 1, o = 0), not
    NaN where DN = 0, and the noise it subtracted, k_s·η (DN² units)."""
    scaled = swath_field(swaths, scaling.scale, 1.0, lines, samples)
    scaled *= eta
    power = np.square(dn, dtype=np.float64)
    power -= scaled
    power /= a2
    power += swath_field(swaths, scaling.offset, 0.0, lines, samples)
    return power, scaled


@numba.njit(cache=True, nogil=True)
def _denoise_kernel(dn, eta, a2, labels, scale, offset, balance, value, noise):  # pragma: no cover - compiled
    for i in range(dn.shape[0]):
        for j in range(dn.shape[1]):
            s = labels[i, j]
            scaled = eta[i, j] * scale[s] if s >= 0 else eta[i, j]
            noise[i, j] = scaled / a2[i, j]
            if dn[i, j] == 0:
                value[i, j] = np.nan
                continue
            d = np.float64(dn[i, j])
            v = (d * d - scaled) / a2[i, j]
            if balance:
                v += offset[s] if s >= 0 else 0.0
            value[i, j] = v


def denoised_power(dn: np.ndarray, eta: np.ndarray, a2: np.ndarray, scaling: NoiseScaling | None, swaths,
                   lines: np.ndarray, samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Noise-subtracted σ0 of one window, not floored: (DN² − η)/A² (``scaling`` None: ESA) or
    (DN² − k_s·η)/A² + o_s (NERSC; pixels outside every subswath: k = 1, o = 0), float64 and NaN
    where DN = 0; and the noise it subtracted, η/A² or k_s·η/A², float32. Compiled, one pass
    over the pixels with the arithmetic of :func:`nersc_power_reference` (the same values)."""
    value = np.empty(dn.shape)
    noise = np.empty(dn.shape, np.float32)
    if scaling is None:
        labels, scale, offset = np.full(dn.shape, -1, np.int8), np.ones(1), np.zeros(1)
    else:
        labels, scale, offset = swath_labels(swaths, lines, samples), scaling.scale, scaling.offset
    _denoise_kernel(np.ascontiguousarray(dn), eta, a2, labels, np.asarray(scale, np.float64),
                    np.asarray(offset, np.float64), scaling is not None, value, noise)
    return value, noise
