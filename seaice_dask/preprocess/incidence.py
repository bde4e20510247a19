"""Incidence-angle correction of sigma0 and its season-wide slope estimate.

Sea-ice backscatter in dB falls about linearly with incidence angle over the EW swath
(Mäkynen & Karvonen 2017; Mahmud et al. 2018, "Incidence angle dependence of HH-polarized C- and
L-band wintertime backscatter over Arctic sea ice", IEEE TGRS 56(11)). The linear correction
brings every pixel to a reference angle θ_ref:

    σ0_dB(θ_ref) = σ0_dB(θ) − s · (θ − θ_ref)        (per polarisation; s in dB/deg, negative)

It is applied in radar geometry, in linear units as the factor 10^(−s·(θ − θ_ref)/10), before
multilooking, geocoding and the GLCM, so the texture quantiser sees one dB scale across the swath.

Slope estimate (``slopes_db_per_deg: null``): one slope per polarisation for the whole season,
from a cheap pre-pass over decimated radar samples of every scene (:func:`scene_samples`): ESA-
denoised σ0 averaged over blocks of :data:`BLOCK` (lines × samples), on sea (land mask) only.

* With class labels (ice charts), the slope of the ice classes: a fixed-effects fit, one common
  slope and one intercept per class, to the median σ0_dB of every (class, 1° incidence bin) cell,
  weighted by the cell's pixel count (after Mahmud et al. 2018 and Park et al. 2020, The
  Cryosphere 14, who correct with one slope estimated over the ice classes). The per-class
  intercepts keep the ice-type mix, which changes across the swath, out of the slope.
  Medians per cell make it robust to speckle, texture and outliers.
* Without labels, a mixture of parallel lines in (HH, HV) dB (:func:`mixture_slopes`): latent
  classes with their own mean levels, one slope per polarisation, fitted by EM. It keeps the
  ice-type mix out of the slope as the labelled fit does, but weighs every class (water too)
  by its share of the samples.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from seaice_dask.errors import CubeError

#: Default reference incidence angle (degrees), mid-swath of EW.
REFERENCE_DEG = 35.0
#: Decimation of the pre-pass: every BLOCK[0]-th line, averaged over BLOCK[1] samples.
BLOCK = (32, 16)
#: Incidence bin width (degrees) and fewest samples per (class, bin) cell of the robust fit.
BIN_DEG, MIN_CELL = 1.0, 30
#: Class ids that are sea ice in the sod4 / ai4arctic schemes used for labelled estimates.
ICE_CLASSES = (1, 2, 3)
#: Unsupervised fallback: mixture classes, EM iterations, samples used.
MIXTURE_CLASSES, MIXTURE_ITERATIONS, MIXTURE_SAMPLES = 4, 40, 60_000
#: Cube / model attribute holding the correction (a JSON-able dict).
ATTR = "incidence_correction"


@dataclass(frozen=True)
class IncidenceCorrection:
    """The correction applied to a cube: ``none`` or ``linear`` with per-polarisation slopes."""

    method: str = "none"  # "none" | "linear"
    reference_deg: float = REFERENCE_DEG
    slopes_db_per_deg: Mapping[str, float] = field(default_factory=dict)  # lower-case pol → s
    source: str = ""  # "config", "charts" or "unsupervised"

    def factor(self, pol: str, incidence_deg: Any) -> Any:
        """Linear multiplier 10^(−s·(θ − θ_ref)/10) for ``pol`` (1 without correction)."""
        if self.method == "none":
            return 1.0
        slope = self.slopes_db_per_deg[pol.lower()]
        return 10.0 ** (-slope * (incidence_deg - self.reference_deg) / 10.0)

    def to_attrs(self) -> dict[str, Any]:
        if self.method == "none":
            return {"method": "none"}
        return {"method": "linear", "reference_deg": float(self.reference_deg),
                "slopes_db_per_deg": {k: round(float(v), 6) for k, v in sorted(self.slopes_db_per_deg.items())},
                "source": self.source}

    @classmethod
    def from_attrs(cls, attrs: Mapping[str, Any] | None) -> IncidenceCorrection:
        """Inverse of :meth:`to_attrs`; a missing record means no correction (older cubes)."""
        if not attrs or attrs.get("method", "none") == "none":
            return cls()
        return cls("linear", float(attrs["reference_deg"]), dict(attrs["slopes_db_per_deg"]), attrs.get("source", ""))

    def same_as(self, other: IncidenceCorrection) -> bool:
        """Equal method, reference and slopes (to 1e-6 dB/deg); the source does not matter."""
        a, b = self.to_attrs(), other.to_attrs()
        a.pop("source", None), b.pop("source", None)
        return a == b


def correct_db(sigma0_db: Any, incidence_deg: Any, slope: float, reference_deg: float = REFERENCE_DEG) -> Any:
    """σ0_dB(θ_ref) = σ0_dB(θ) − s·(θ − θ_ref) (NumPy, dask or xarray)."""
    return sigma0_db - slope * (incidence_deg - reference_deg)


def check_compatible(recorded: IncidenceCorrection, wanted: IncidenceCorrection, path: Any) -> None:
    """Refuse to mix corrections in one cube (CubeError naming the store)."""
    if not recorded.same_as(wanted):
        raise CubeError(
            f"the cube was made with incidence correction {recorded.to_attrs()}, the config asks for "
            f"{wanted.to_attrs()}; use a new store or the same correction", path,
        )


# --------------------------------------------------------------------------- robust fit


def _cells(values_db: np.ndarray, incidence: np.ndarray, classes: np.ndarray):
    """Median σ0_dB, mean θ and count per (class, incidence bin) cell with ≥ MIN_CELL samples."""
    ok = np.isfinite(values_db) & np.isfinite(incidence) & (classes >= 0)
    v, t, c = values_db[ok], incidence[ok], classes[ok]
    bins = np.floor(t / BIN_DEG).astype(np.int64)
    key = c.astype(np.int64) * 10_000 + bins
    order = np.argsort(key, kind="stable")
    key, v, t = key[order], v[order], t[order]
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    stops = np.r_[starts[1:], key.size]
    rows = [(key[a] // 10_000, np.median(v[a:b]), t[a:b].mean(), b - a) for a, b in zip(starts, stops) if b - a >= MIN_CELL]
    if not rows:
        return np.empty(0, np.int64), np.empty(0), np.empty(0), np.empty(0)
    cls, med, theta, n = (np.array(x) for x in zip(*rows))
    return cls, med, theta, n.astype(np.float64)


def fit_slope(values_db: np.ndarray, incidence_deg: np.ndarray, classes: np.ndarray | None = None) -> float:
    """Common slope (dB/deg) of σ0_dB against θ with one intercept per class (module doc).

    ``classes``: int per sample (< 0 ignored); None = one class. NaN if no class spans two bins.
    """
    values_db, incidence_deg = np.ravel(values_db), np.ravel(incidence_deg)
    classes = np.zeros(values_db.shape, np.int64) if classes is None else np.ravel(classes)
    cls, med, theta, n = _cells(values_db, incidence_deg, classes)
    # within-class centring removes the intercepts; weighted least squares on what is left
    num = den = 0.0
    for k in np.unique(cls):
        sel = cls == k
        if sel.sum() < 2:
            continue
        w = n[sel]
        t0 = np.average(theta[sel], weights=w)
        v0 = np.average(med[sel], weights=w)
        num += float((w * (theta[sel] - t0) * (med[sel] - v0)).sum())
        den += float((w * (theta[sel] - t0) ** 2).sum())
    return num / den if den > 0 else float("nan")


def class_slopes(values_db: np.ndarray, incidence_deg: np.ndarray, classes: np.ndarray) -> dict[int, float]:
    """:func:`fit_slope` of each class on its own."""
    classes = np.ravel(classes)
    return {int(k): fit_slope(np.ravel(values_db)[classes == k], np.ravel(incidence_deg)[classes == k])
            for k in np.unique(classes[classes >= 0])}


def mixture_slopes(values_db: np.ndarray, incidence_deg: np.ndarray, reference_deg: float = REFERENCE_DEG,
                   classes: int = MIXTURE_CLASSES, iterations: int = MIXTURE_ITERATIONS) -> np.ndarray:
    """Common slope per column of ``values_db`` (n, pols) from a mixture of parallel lines.

    Model: σ0_dB,j = μ_cj + s_j·(θ − θ_ref) + ε, ε ~ N(0, v_cj), class c latent (diagonal
    Gaussian mixture whose means move with θ along one slope per polarisation), fitted by EM
    from the pooled least-squares line. Unlike clustering detrended values, the classes cannot
    absorb the slope: near- and far-range pixels of one class share one μ_c.
    """
    ok = np.isfinite(values_db).all(axis=1) & np.isfinite(incidence_deg)
    v, t = values_db[ok], incidence_deg[ok] - reference_deg
    if v.shape[0] > MIXTURE_SAMPLES:  # a deterministic spread-out subset is plenty for 2k parameters
        keep = np.linspace(0, v.shape[0] - 1, MIXTURE_SAMPLES).astype(np.int64)
        v, t = v[keep], t[keep]
    n, d = v.shape
    slope = np.array([np.polyfit(t, v[:, j], 1)[0] for j in range(d)])
    r = v - t[:, None] * slope
    mean = np.quantile(r, (np.arange(classes) + 0.5) / classes, axis=0)  # (classes, d)
    var = np.tile(r.var(axis=0), (classes, 1))
    weight = np.full(classes, 1.0 / classes)
    for _ in range(iterations):
        r = v - t[:, None] * slope
        loglik = -0.5 * ((r[:, None, :] - mean) ** 2 / var + np.log(var)).sum(axis=2) + np.log(weight)
        p = np.exp(loglik - loglik.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        nk = p.sum(axis=0) + 1e-12
        weight = nk / n
        t_c = (p * t[:, None]).sum(axis=0) / nk
        for j in range(d):
            v_c = (p * v[:, [j]]).sum(axis=0) / nk
            w = p / var[:, j]
            slope[j] = (w * (t[:, None] - t_c) * (v[:, [j]] - v_c)).sum() / (w * (t[:, None] - t_c) ** 2).sum()
        r = v - t[:, None] * slope
        mean = (p.T @ r) / nk[:, None]
        var = np.maximum((p.T @ r**2) / nk[:, None] - mean**2, 1e-2)
    return slope


def estimate_slopes(samples: Mapping[str, np.ndarray], pols: Sequence[str], reference_deg: float = REFERENCE_DEG) -> IncidenceCorrection:
    """Season slopes from pooled pre-pass ``samples`` (:func:`scene_samples` concatenated).

    ``samples`` holds ``incidence``, ``sigma0_<pol>`` (dB) and optionally ``labels`` (chart
    class, −1 unlabelled). With any labelled ice, the slopes are those of the ice classes;
    otherwise of unsupervised classes (module doc).
    """
    theta = samples["incidence"]
    labels = samples.get("labels")
    pols = [p.lower() for p in pols]
    if labels is not None and np.isin(labels, ICE_CLASSES).sum() >= 10 * MIN_CELL:
        classes = np.where(np.isin(labels, ICE_CLASSES), labels, -1)
        slopes = {p: fit_slope(samples[f"sigma0_{p}"], theta, classes) for p in pols}
        return IncidenceCorrection("linear", reference_deg, slopes, "charts")
    values = np.column_stack([samples[f"sigma0_{p}"] for p in pols])
    slopes = dict(zip(pols, map(float, mixture_slopes(values, theta, reference_deg))))
    return IncidenceCorrection("linear", reference_deg, slopes, "unsupervised")


# --------------------------------------------------------------------------- pre-pass


def scene_samples(product: Any, pols: Sequence[str], grid: Any = None, land: np.ndarray | None = None,
                  labels: np.ndarray | None = None, block: tuple[int, int] = BLOCK) -> dict[str, np.ndarray]:
    """Decimated radar samples of one scene for the slope estimate (cheap: reads 1/block[0] lines).

    Every ``block[0]``-th line is read and calibrated with the ESA noise LUT; σ0 (linear) and
    θ are averaged over runs of ``block[1]`` samples, then σ0 goes to dB. With ``grid`` and
    ``land``/``labels`` maps on it, each sample takes its map cell's value (land samples dropped,
    ``labels`` returned). Returns 1-D arrays ``incidence``, ``sigma0_<pol>`` (and ``labels``).
    """
    from pyproj import Transformer

    from seaice_dask.preprocess.calibrate import _tie_grid_window
    from seaice_dask.preprocess.luts import calibration_window, noise_window
    from seaice_dask.safe.measurement import read_rows

    step, width = block
    n_lines, n_samples = product.shape
    lines = np.arange(step // 2, n_lines, step)
    samples = np.arange(n_samples)
    m = n_samples // width

    def blocks(a: np.ndarray) -> np.ndarray:
        return a[:, : m * width].reshape(a.shape[0], m, width).mean(axis=2)

    out: dict[str, np.ndarray] = {}
    dn_zero = np.zeros((lines.size, m), bool)
    for pol in pols:
        dn = read_rows(product.measurement_path(pol), lines).astype(np.float64)
        a2 = calibration_window(product.calibration(pol), "sigma_nought", lines, samples) ** 2
        power = (dn**2 - noise_window(product.noise(pol), lines, samples)) / a2
        dn_zero |= blocks((dn == 0).astype(np.float64)) > 0
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = blocks(power)
            out[f"sigma0_{pol.lower()}"] = np.where(mean > 0, 10 * np.log10(mean), np.nan)
    geo = product.geolocation_grid(pols[0]).load()
    out["incidence"] = blocks(_tie_grid_window(geo, lines, samples, "incidence_angle"))
    keep = ~dn_zero
    if grid is not None and (land is not None or labels is not None):
        lat = blocks(_tie_grid_window(geo, lines, samples, "latitude"))
        lon = blocks(_tie_grid_window(geo, lines, samples, "longitude"))
        x, y = Transformer.from_crs("EPSG:4326", grid.crs, always_xy=True).transform(lon, lat)
        col = np.floor((x - grid.xmin) / grid.resolution).astype(np.int64)
        row = np.floor((grid.ymax - y) / grid.resolution).astype(np.int64)
        inside = (col >= 0) & (col < grid.shape[1]) & (row >= 0) & (row < grid.shape[0])
        keep &= inside
        r, c = np.clip(row, 0, grid.shape[0] - 1), np.clip(col, 0, grid.shape[1] - 1)
        if land is not None:
            keep &= ~np.asarray(land)[r, c]
        if labels is not None:
            out["labels"] = np.where(inside, np.asarray(labels)[r, c], -1).astype(np.int64)
    return {k: v[keep] for k, v in out.items()}


def concat_samples(parts: Sequence[Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Pool the samples of several scenes (keys present in all of them)."""
    keys = set.intersection(*(set(p) for p in parts)) if parts else set()
    return {k: np.concatenate([p[k] for p in parts]) for k in sorted(keys)}


__all__ = [
    "ATTR",
    "REFERENCE_DEG",
    "IncidenceCorrection",
    "check_compatible",
    "class_slopes",
    "concat_samples",
    "correct_db",
    "estimate_slopes",
    "fit_slope",
    "scene_samples",
    "mixture_slopes",
]
