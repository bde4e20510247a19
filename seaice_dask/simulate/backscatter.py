"""Forward model: surface types → sigma0 → digital numbers with speckle and thermal noise.

Per surface type and polarisation the mean backscatter is linear in incidence angle,
``σ0_dB(θ) = σ0_dB(30°) + slope · (θ − 30°)``, with the trained class parameters of Lohse et al.
(2024, Ann. Glaciol., CIRFA-22) and the literature slopes collected in
``simulator-reference.md``. Open water blends a calm and a wind-roughened signature with the
10 m wind speed (CMOD5.N-like behaviour; HV of calm water lies below the noise floor).

Within-class variability is a texture field in dB, ``sd · T`` with ``T`` a unit-variance mix of
four Gaussian fields (short ~2 px, medium ~8 px, long ~40 px, and range-elongated streaks) whose
weights depend on the surface: smooth multi-year floes and level ice, short-scale deformed ice,
streaky windy water. Speckle is multiplicative Gamma noise with the product's equivalent number
of looks (ENL), correlated over ~2 pixels as in GRD products: independent Gamma(k) samples
smoothed by the separable kernel w = [¼, ½, ¼]; the mean of a weighted sum of independent unit-mean
Gamma(k) variables has variance Σw²/k, so k = ENL · Σw² keeps the target ENL.

Digital numbers follow the Sentinel-1 calibration model (ESA S1-RS-MDA-52-7441 §6.3; MPC-0392):

    DN² = (A_σ² · σ0 + η_true) · speckle,
    η_true = η_annotated · scale[subswath] + offset[subswath] · A_σ²,

where A_σ and η_annotated are the annotation LUTs interpolated with the reader's kernels and
the per-subswath ``scale``/``offset`` mimic the noise-scaling errors found in real data (Park et al.
2018; Korosov et al. 2022), so ESA denoising leaves subswath seams in HV.

Thermal noise is a random process, not a constant: in every look the receiver adds a circular
complex Gaussian field of power η_true to the surface's circular Gaussian field, so each look's
intensity is exponential with mean A²σ0 + η_true and the multilooked intensity is that mean times
one unit-mean Gamma(ENL) speckle. The noise's mean is what the (scaled) annotation describes, and
after subtracting it the residual has variance (A²σ0 + η_true)²/ENL, not (A²σ0)²/ENL: the
"textural noise" of cross-polarised images (Park et al. 2019, IEEE TGRS 57(6), 4040–4049), which
makes dark surfaces look rougher where the noise floor is high. (Speckling signal and noise
independently would miss the cross term 2·A²σ0·η_true/ENL of that variance.)
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np
from scipy.ndimage import gaussian_filter

from seaice_dask.simulate.truth import Surface

#: Equivalent number of looks of EW GRD products (ESA product definition).
ENL = {"GRDM": 10.7, "GRDH": 2.7}

#: 3-tap smoothing kernel giving GRD-like speckle correlation (lag-1 correlation 2/3).
_KERNEL = np.array([0.25, 0.5, 0.25], dtype=np.float32)
_KERNEL_VAR = float((_KERNEL**2).sum() ** 2)  # Σw² of the separable 2-D kernel


@dataclass(frozen=True)
class Signature:
    """Mean sigma0 (dB) at 30° incidence, slope (dB/deg) and within-class sd (dB) for HH and HV."""

    hh30: float
    hh_slope: float
    hh_sd: float
    hv30: float
    hv_slope: float
    hv_sd: float


#: Class signatures (simulator-reference.md; Lohse et al. 2024; Mäkynen & Karvonen 2017). The
#: sea-ice rows take level, slope and sd from the trained class parameters (Lohse et al. 2024),
#: whose 30° and 35° levels they reproduce; multi-year ice takes the RCM slope (−0.167 dB/°).
SIGNATURES: dict[Surface, Signature] = {
    Surface.LAND: Signature(-8.0, -0.10, 2.0, -16.0, -0.08, 2.0),  # snow-covered land / ice sheet
    Surface.WATER_CALM: Signature(-22.0, -0.87, 1.0, -36.0, -0.10, 0.6),
    Surface.WATER_WINDY: Signature(-14.0, -0.74, 1.5, -30.5, -0.05, 1.0),
    Surface.NILAS: Signature(-24.8, -0.289, 1.50, -32.9, -0.133, 1.14),
    Surface.YOUNG_ICE: Signature(-11.9, -0.133, 0.93, -27.1, -0.044, 0.88),
    Surface.LEVEL_FYI: Signature(-15.6, -0.333, 1.05, -30.7, -0.275, 1.31),
    Surface.DEFORMED_FYI: Signature(-10.1, -0.167, 0.75, -20.4, -0.060, 1.37),
    Surface.MULTIYEAR_ICE: Signature(-9.5, -0.167, 1.0, -18.0, -0.10, 1.1),
}

#: Texture mix per surface: weights of the (short, medium, long, streak) fields, normalised.
TEXTURE_WEIGHTS: dict[Surface, tuple[float, float, float, float]] = {
    Surface.LAND: (0.3, 0.5, 0.8, 0.0),
    Surface.WATER_CALM: (0.2, 0.2, 1.0, 0.0),
    Surface.WATER_WINDY: (0.2, 0.5, 0.3, 1.0),
    Surface.NILAS: (0.2, 0.3, 1.0, 0.0),
    Surface.YOUNG_ICE: (0.6, 1.0, 0.3, 0.0),
    Surface.LEVEL_FYI: (0.3, 0.4, 1.0, 0.0),
    Surface.DEFORMED_FYI: (1.0, 0.5, 0.2, 0.0),
    Surface.MULTIYEAR_ICE: (0.1, 0.3, 1.0, 0.0),
}

#: Wind speeds (m/s) between which water goes from the calm to the windy signature.
WIND_CALM_M_S, WIND_ROUGH_M_S = 3.0, 9.0


def _table(pol: str) -> np.ndarray:
    """(n_surfaces, 3) array of (σ0 at 30°, slope, sd), row = surface id + 1 (land first)."""
    pol = pol.lower()
    if pol not in ("hh", "hv"):
        raise ValueError(f"the simulator renders HH and HV only, not {pol!r}")
    rows = [SIGNATURES[s] for s in sorted(SIGNATURES, key=int)]
    return np.array([[getattr(r, f"{pol}30"), getattr(r, f"{pol}_slope"), getattr(r, f"{pol}_sd")] for r in rows], dtype=np.float32)


def _weights() -> np.ndarray:
    w = np.array([TEXTURE_WEIGHTS[s] for s in sorted(TEXTURE_WEIGHTS, key=int)], dtype=np.float32)
    return w / np.sqrt((w**2).sum(axis=1, keepdims=True))


def mean_sigma0_db(surface: np.ndarray, incidence_deg: np.ndarray, pol: str, wind_m_s: np.ndarray | None = None) -> np.ndarray:
    """Class-mean sigma0 (dB) of each pixel: linear in incidence, water blended by wind speed."""
    table = _table(pol)
    idx = surface.astype(np.intp) + 1
    theta = incidence_deg.astype(np.float32) - np.float32(30.0)
    out = table[idx, 0] + table[idx, 1] * theta
    if wind_m_s is not None:
        water = (surface == Surface.WATER_CALM) | (surface == Surface.WATER_WINDY)
        if water.any():
            calm = table[Surface.WATER_CALM + 1]
            windy = table[Surface.WATER_WINDY + 1]
            w = np.clip((wind_m_s[water] - WIND_CALM_M_S) / (WIND_ROUGH_M_S - WIND_CALM_M_S), 0, 1).astype(np.float32)
            t = theta[water]
            out[water] = (1 - w) * (calm[0] + calm[1] * t) + w * (windy[0] + windy[1] * t)
    return out


def texture_mix(surface: np.ndarray, fields: tuple[np.ndarray, ...]) -> np.ndarray:
    """Unit-variance texture ``T = Σ w_k[surface] · field_k`` (the same for HH and HV)."""
    idx = surface.astype(np.intp) + 1
    weights = _weights()
    mix = weights[:, 0][idx] * fields[0]
    for k in range(1, 4):
        mix += weights[:, k][idx] * fields[k]
    return mix


def texture_db(surface: np.ndarray, mix: np.ndarray, pol: str) -> np.ndarray:
    """Within-class texture (dB) of ``pol``: the class sd times the texture mix."""
    return _table(pol)[:, 2][surface.astype(np.intp) + 1] * mix


class StripNoise:
    """Correlated random rows produced strip by strip (top to bottom), seamless across strips.

    ``kind="gamma"``: unit-mean speckle with the given ENL; ``kind="normal"``: unit-variance
    Gaussian field. Independent samples are smoothed by the separable kernel [¼, ½, ¼]; the two
    raw rows under the kernel's upper arm are carried from one strip to the next.
    """

    def __init__(self, rng: np.random.Generator, width: int, kind: str = "gamma", enl: float = 1.0):
        self.rng, self.width, self.kind = rng, width, kind
        self.shape_k = np.float32(enl * _KERNEL_VAR)
        self._carry = self._raw(2)

    def _raw(self, n: int) -> np.ndarray:
        if self.kind == "gamma":
            size = (n, self.width)
            halves = round(2 * float(self.shape_k))
            if halves >= 1 and abs(2 * float(self.shape_k) - halves) < 0.02:
                # Gamma(m/2) = Σ_{m//2} Exp(1) + Z²/2 (m odd): about twice as fast as standard_gamma
                out = np.zeros(size, np.float32)
                for _ in range(halves // 2):
                    out += self.rng.standard_exponential(size, dtype=np.float32)
                if halves % 2:
                    z = self.rng.standard_normal(size, dtype=np.float32)
                    out += np.float32(0.5) * z * z
                return out / np.float32(halves / 2)
            return self.rng.standard_gamma(self.shape_k, size=size, dtype=np.float32) / self.shape_k
        return self.rng.standard_normal((n, self.width), dtype=np.float32) / np.float32(np.sqrt(_KERNEL_VAR))

    def next(self, n: int) -> np.ndarray:
        raw = np.concatenate([self._carry, self._raw(n)])
        self._carry = raw[-2:]
        rows = _KERNEL[0] * raw[:-2] + _KERNEL[1] * raw[1:-1] + _KERNEL[2] * raw[2:]
        padded = np.pad(rows, ((0, 0), (1, 1)), mode="edge")
        return _KERNEL[0] * padded[:, :-2] + _KERNEL[1] * padded[:, 1:-1] + _KERNEL[2] * padded[:, 2:]


class CoarseField:
    """A smooth unit-variance Gaussian field stored at 1/``factor`` resolution, read by windows.

    ``sigma`` is the Gaussian filter width in coarse pixels (per axis, line then sample); windows
    are bilinear interpolations at full-resolution pixel centres.
    """

    def __init__(self, rng: np.random.Generator, shape: tuple[int, int], factor: int, sigma: tuple[float, float]):
        self.factor = factor
        coarse_shape = (shape[0] // factor + 2, shape[1] // factor + 2)
        field = gaussian_filter(rng.standard_normal(coarse_shape).astype(np.float32), sigma, mode="wrap")
        self.data = (field - field.mean()) / field.std()

    def window(self, lines: np.ndarray, samples: np.ndarray) -> np.ndarray:
        f = self.factor
        fy = np.clip((lines + 0.5) / f - 0.5, 0, self.data.shape[0] - 1.001)
        fx = np.clip((samples + 0.5) / f - 0.5, 0, self.data.shape[1] - 1.001)
        iy, ix = fy.astype(np.intp), fx.astype(np.intp)
        wy = (fy - iy).astype(np.float32)[:, None]
        wx = (fx - ix).astype(np.float32)[None, :]
        rows = self.data[iy] * (1 - wy) + self.data[iy + 1] * wy
        return rows[:, ix] * (1 - wx) + rows[:, ix + 1] * wx


class TextureFields:
    """The four texture fields of one scene (short, medium, long, streak), read strip by strip."""

    def __init__(self, rng: np.random.Generator, shape: tuple[int, int]):
        self.short = StripNoise(rng, shape[1], kind="normal")
        self.medium = CoarseField(rng, shape, 4, (2.0, 2.0))
        self.long = CoarseField(rng, shape, 8, (5.0, 5.0))
        self.streak = CoarseField(rng, shape, 4, (0.7, 6.0))

    def next(self, lines: np.ndarray, samples: np.ndarray) -> tuple[np.ndarray, ...]:
        return (
            self.short.next(lines.size),
            self.medium.window(lines, samples),
            self.long.window(lines, samples),
            self.streak.window(lines, samples),
        )


def dn_from_sigma0(sigma0: np.ndarray, a_sigma: np.ndarray, eta_true: np.ndarray, speckle: np.ndarray) -> np.ndarray:
    """DN = round(√((A² · σ0 + η_true) · speckle)), clipped to 1 … 65535 (uint16)."""
    power = (a_sigma.astype(np.float32) ** 2 * sigma0 + eta_true.astype(np.float32)) * speckle
    return np.clip(np.rint(np.sqrt(power)), 1, 65535).astype(np.uint16)


def render_dn_reference(surface, incidence, wind, fields, pol, a_sigma, eta_true, speckle):
    """NumPy reference of :func:`render_dn`: (DN uint16, noise-free σ0 float32)."""
    db = mean_sigma0_db(surface, incidence, pol, wind) + texture_db(surface, texture_mix(surface, fields), pol)
    sigma0 = np.power(np.float32(10.0), db / np.float32(10.0))
    return dn_from_sigma0(sigma0, a_sigma, eta_true, speckle), sigma0


@numba.njit(parallel=True, cache=True)
def _render_kernel(surface, incidence, wind, f0, f1, f2, f3, table, weights, wind_lo, wind_hi,
                   a_sigma, eta, speckle, dn_out, sigma0_out):  # pragma: no cover - compiled
    calm_row, windy_row = 1 + 0, 1 + 1  # Surface.WATER_CALM / WATER_WINDY rows (land is row 0)
    for i in numba.prange(surface.shape[0]):
        for j in range(surface.shape[1]):
            s = surface[i, j] + 1
            t = incidence[i, j] - 30.0
            if s == calm_row or s == windy_row:
                w = min(max((wind[i, j] - wind_lo) / (wind_hi - wind_lo), 0.0), 1.0)
                db = (1 - w) * (table[calm_row, 0] + table[calm_row, 1] * t) + w * (table[windy_row, 0] + table[windy_row, 1] * t)
            else:
                db = table[s, 0] + table[s, 1] * t
            mix = weights[s, 0] * f0[i, j] + weights[s, 1] * f1[i, j] + weights[s, 2] * f2[i, j] + weights[s, 3] * f3[i, j]
            sigma0 = np.float32(10.0) ** ((db + table[s, 2] * mix) / np.float32(10.0))
            a = a_sigma[i, j]
            power = (a * a * sigma0 + eta[i, j]) * speckle[i, j]
            value = np.rint(np.sqrt(power))
            dn_out[i, j] = np.uint16(min(max(value, 1.0), 65535.0))
            sigma0_out[i, j] = sigma0


def render_dn(surface, incidence, wind, fields, pol, a_sigma, eta_true, speckle):
    """DN and noise-free σ0 of a window in one compiled pass (same result as :func:`render_dn_reference`).

    ``surface`` int8 ids, ``incidence`` (deg), ``wind`` (m/s), the four texture ``fields``, the
    calibration ``a_sigma`` and true noise ``eta_true`` (DN²), unit-mean ``speckle`` of signal plus noise.
    """
    f32 = lambda a: np.ascontiguousarray(a, dtype=np.float32)  # noqa: E731
    dn = np.empty(surface.shape, np.uint16)
    sigma0 = np.empty(surface.shape, np.float32)
    _render_kernel(
        np.ascontiguousarray(surface, dtype=np.int8), f32(incidence), f32(wind), *(f32(f) for f in fields),
        _table(pol), _weights(), np.float32(WIND_CALM_M_S), np.float32(WIND_ROUGH_M_S),
        f32(a_sigma), f32(eta_true), f32(speckle), dn, sigma0,
    )
    return dn, sigma0


__all__ = [
    "ENL",
    "SIGNATURES",
    "TEXTURE_WEIGHTS",
    "CoarseField",
    "Signature",
    "StripNoise",
    "TextureFields",
    "dn_from_sigma0",
    "render_dn",
    "render_dn_reference",
    "mean_sigma0_db",
    "texture_db",
    "texture_mix",
]
