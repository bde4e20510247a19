"""Radiometric diagnostics of a cube against class labels: incidence dependence and local texture.

Used by ``benchmarks/bench_incidence.py`` (before and after a correction, against the truth) and
by ``evaluate``'s report (the cube as stored, against the chart labels of a test date): HH against
incidence per class (does one ice type keep one σ0 across the swath?) and HV local texture per
subswath (does a surface look rougher where the noise floor is high?).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from scipy.ndimage import uniform_filter

from seaice_dask.coverage import crop, step_windows

#: EW subswath boundaries in incidence (deg, simulator-reference.md); the bands of the texture check.
SUBSWATH_EDGES_DEG = (18.9, 28.5, 33.8, 39.0, 43.2, 46.4)
#: Incidence bands of the acceptance check: < 25, 25–31, 31–36, 36–41, > 41°.
TEXTURE_BANDS_DEG = (0.0, 25.0, 31.0, 36.0, 41.0, 90.0)
NEAR_DEG, FAR_DEG = 25.0, 41.0


def class_incidence_slope(sigma0_db: np.ndarray, incidence: np.ndarray, mask: np.ndarray) -> float:
    """Least-squares slope (dB/deg) of σ0_dB against θ over the finite pixels of ``mask``."""
    ok = mask & np.isfinite(sigma0_db) & np.isfinite(incidence)
    if ok.sum() < 100:
        return float("nan")
    return float(np.polyfit(incidence[ok].astype(np.float64), sigma0_db[ok].astype(np.float64), 1)[0])


def near_far_difference(sigma0_db: np.ndarray, incidence: np.ndarray, mask: np.ndarray) -> float:
    """Median σ0_dB at θ < 25° minus the median at θ > 41° (NaN if either side is empty)."""
    ok = mask & np.isfinite(sigma0_db)
    near, far = ok & (incidence < NEAR_DEG), ok & (incidence > FAR_DEG)
    if near.sum() < 100 or far.sum() < 100:
        return float("nan")
    return float(np.median(sigma0_db[near]) - np.median(sigma0_db[far]))


def local_std_db(sigma0_db: np.ndarray, size: int = 5) -> np.ndarray:
    """Standard deviation of σ0_dB in a ``size`` × ``size`` window (NaN where any value is missing)."""
    x = np.where(np.isfinite(sigma0_db), sigma0_db, 0.0).astype(np.float64)
    finite = uniform_filter(np.isfinite(sigma0_db).astype(np.float64), size, mode="constant")
    mean = uniform_filter(x, size, mode="constant")
    var = uniform_filter(x * x, size, mode="constant") - mean**2
    return np.where(finite > 1 - 1e-9, np.sqrt(np.maximum(var, 0.0)), np.nan)


def uniform_class(classes: np.ndarray, size: int = 5) -> np.ndarray:
    """True where the whole ``size`` × ``size`` window holds one class (texture, not edges)."""
    c = classes.astype(np.float64)
    mean = uniform_filter(c, size, mode="nearest")
    var = uniform_filter(c * c, size, mode="nearest") - mean**2
    return var < 1e-9


def texture_by_band(local_std: np.ndarray, incidence: np.ndarray, mask: np.ndarray,
                    bands: tuple[float, ...] = TEXTURE_BANDS_DEG) -> list[float]:
    """Median local std (dB) of ``mask`` pixels in each incidence band (NaN if < 100 pixels)."""
    out = []
    for lo, hi in zip(bands[:-1], bands[1:]):
        sel = mask & (incidence >= lo) & (incidence < hi) & np.isfinite(local_std)
        out.append(float(np.median(local_std[sel])) if sel.sum() >= 100 else float("nan"))
    return out


def incidence_profile(sigma0_db: np.ndarray, incidence: np.ndarray, mask: np.ndarray,
                      bin_deg: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """(bin centres, median σ0_dB) over 1° incidence bins with ≥ 100 pixels of ``mask``."""
    ok = mask & np.isfinite(sigma0_db) & np.isfinite(incidence)
    bins = np.floor(incidence[ok] / bin_deg).astype(np.int64)
    values = sigma0_db[ok]
    centres, medians = [], []
    for b in np.unique(bins):
        sel = bins == b
        if sel.sum() >= 100:
            centres.append((b + 0.5) * bin_deg)
            medians.append(float(np.median(values[sel])))
    return np.array(centres), np.array(medians)


def radiometry_by_class(ds: Any, reference: Any, t: int, class_names: Mapping[int, str], pols: tuple[str, str] = ("hh", "hv"),
                        band_rows: int = 512, every: int = 4) -> dict[str, dict[str, Any]]:
    """Per class of ``reference`` (labels or truth, (time, y, x)) on date index ``t`` of the cube
    ``ds``: co-pol (``pols[0]``) slope, near−far difference and incidence profile, and the
    cross-pol local texture per incidence band (pixels whose 5 × 5 window is one class).

    Reads one band of ``band_rows`` grid rows in every ``every`` (a quarter of the date by
    default, whole swath widths) of the date's window of covered blocks, one band at a time, so
    a full-size date never sits in memory.
    """
    window = step_windows(ds)[t]
    if window is None:  # the date covers nothing
        return {}
    ds, reference = crop(ds, window), crop(reference, window)
    pooled: dict[str, list[np.ndarray]] = {k: [] for k in ("hh", "theta", "cls", "hv_std", "uniform")}
    ny = ds.sizes["y"]
    for start in range(0, ny, band_rows * every):
        rows = slice(start, min(start + band_rows, ny))
        sl = ds[[f"sigma0_{pols[0]}", f"sigma0_{pols[1]}", "incidence", "valid"]].isel(time=t, y=rows).load()
        cls = np.asarray(reference.isel(time=t, y=rows).values)
        valid = sl["valid"].values & (cls >= 0)
        keep = valid & np.isfinite(sl["incidence"].values)
        pooled["hh"].append(sl[f"sigma0_{pols[0]}"].values[keep])
        pooled["theta"].append(sl["incidence"].values[keep])
        pooled["cls"].append(cls[keep])
        pooled["hv_std"].append(local_std_db(np.where(valid, sl[f"sigma0_{pols[1]}"].values, np.nan))[keep])
        pooled["uniform"].append(uniform_class(np.where(valid, cls, -9))[keep])
    stats = class_statistics(*(np.concatenate(pooled[k]) for k in ("hh", "theta", "cls", "hv_std", "uniform")), class_names)
    return {name: s for name, s in stats.items() if s["pixels"] >= 100}


def class_statistics(copol_db: np.ndarray, incidence: np.ndarray, classes: np.ndarray, crosspol_std: np.ndarray,
                     uniform: np.ndarray, class_names: Mapping[int, str]) -> dict[str, dict[str, Any]]:
    """Per class of ``classes`` (pixel vectors, all alike): pixel count, co-pol slope, near−far
    difference and incidence profile, and the cross-pol local std per incidence band over the
    pixels whose window is one class (``uniform``)."""
    out = {}
    for value, name in class_names.items():
        mask = classes == value
        out[name] = {
            "pixels": int(mask.sum()),
            "hh_slope_db_per_deg": class_incidence_slope(copol_db, incidence, mask),
            "hh_near_minus_far_db": near_far_difference(copol_db, incidence, mask),
            "hh_profile": incidence_profile(copol_db, incidence, mask),
            "hv_local_std_db_by_band": texture_by_band(crosspol_std, incidence, mask & uniform),
        }
    return out


def seam_steps(sigma0_db: np.ndarray, classes: np.ndarray, boundary_row: np.ndarray,
               inside: range = range(4, 12), min_pixels: int = 50) -> dict[int, dict[str, float]]:
    """Per class: how much the median σ0 (dB) changes across a slice boundary, and inside a slice.

    Rows follow the boundary: row ``d`` holds, per grid column, the pixel ``d`` rows from the one
    the boundary crosses (``boundary_row``, :meth:`~seaice_dask.ingest.passes.Pass.boundary_rows`).
    ``boundary_db``: |median(row −1) − median(row +1)|, the rows on either side; ``inside_db``
    and ``inside_max_db``: the median and largest of the same difference between rows two apart
    within one slice (rows ±``inside``), which is what neighbouring rows differ by without a seam.
    Classes with fewer than ``min_pixels`` pixels in a row are left out.
    """
    cols = np.flatnonzero(np.isfinite(boundary_row))
    base = np.round(boundary_row[cols]).astype(int)

    def row(d: int, k: int) -> np.ndarray:
        r = base + d
        ok = (r >= 0) & (r < sigma0_db.shape[0])
        values, labels = sigma0_db[r[ok], cols[ok]], classes[r[ok], cols[ok]]
        return values[(labels == k) & np.isfinite(values)]

    def step(k: int, a: int, b: int) -> float:
        va, vb = row(a, k), row(b, k)
        return float(abs(np.median(va) - np.median(vb))) if min(va.size, vb.size) >= min_pixels else np.nan

    out = {}
    for k in np.unique(classes[np.isfinite(sigma0_db)]):
        if k < 0 or np.isnan(boundary := step(int(k), -1, 1)):
            continue
        within = np.array([step(int(k), s * (d - 1), s * (d + 1)) for s in (-1, 1) for d in inside])
        within = within[np.isfinite(within)]
        out[int(k)] = {"boundary_db": boundary, "inside_db": float(np.median(within)) if within.size else np.nan,
                       "inside_max_db": float(within.max()) if within.size else np.nan}
    return out


def _case_panels(cases: Mapping[str, Any], path: str | Path, ylabel: str, draw: Callable[[Any, str, Any], None]) -> Path:
    """One panel per case, a shared y axis: ``draw(ax, case, per_class)`` draws each; saved to ``path``."""
    from matplotlib.figure import Figure

    from seaice_dask.report import save_figure

    fig = Figure(figsize=(5 * len(cases), 4))
    axes = fig.subplots(1, len(cases), sharey=True, squeeze=False)
    for ax, (case, per_class) in zip(axes[0], cases.items()):
        draw(ax, case, per_class)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(ylabel)
    axes[0][-1].legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_incidence_dependence(profiles: Mapping[str, Mapping[str, tuple[np.ndarray, np.ndarray]]], path: str | Path,
                              pol: str = "HH") -> Path:
    """One panel per case (e.g. "before", "after"): median σ0 against incidence, one line per class."""

    def draw(ax: Any, case: str, per_class: Mapping[str, tuple[np.ndarray, np.ndarray]]) -> None:
        for name, (centres, medians) in per_class.items():
            ax.plot(centres, medians, marker=".", label=name)
        for edge in SUBSWATH_EDGES_DEG[1:-1]:
            ax.axvline(edge, color="0.85", lw=0.8, zorder=0)
        ax.set(title=f"{pol} {case}", xlabel="incidence angle (deg)")

    return _case_panels(profiles, path, f"median sigma0 {pol} (dB)", draw)


def plot_texture_by_subswath(texture: Mapping[str, Mapping[str, list[float]]], path: str | Path, pol: str = "HV",
                             bands: tuple[float, ...] = TEXTURE_BANDS_DEG) -> Path:
    """One panel per case: median 5 × 5 local std (dB) per incidence band, one line per class."""
    labels = [f"<{bands[1]:g}" if lo == bands[0] else (f">{lo:g}" if hi == bands[-1] else f"{lo:g}-{hi:g}")
              for lo, hi in zip(bands[:-1], bands[1:])]

    def draw(ax: Any, case: str, per_class: Mapping[str, list[float]]) -> None:
        for name, values in per_class.items():
            ax.plot(labels, values, marker="o", label=name)
        ax.set(title=f"{pol} local texture, {case}", xlabel="incidence band (deg)")

    return _case_panels(texture, path, f"median 5x5 local std of {pol} (dB)", draw)


__all__ = [
    "class_statistics",
    "SUBSWATH_EDGES_DEG",
    "TEXTURE_BANDS_DEG",
    "class_incidence_slope",
    "incidence_profile",
    "local_std_db",
    "near_far_difference",
    "plot_incidence_dependence",
    "plot_texture_by_subswath",
    "radiometry_by_class",
    "texture_by_band",
    "uniform_class",
]
