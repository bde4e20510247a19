"""Incidence-angle correction of sigma0 and its season-wide slope estimate.

Sea-ice backscatter in dB falls about linearly with incidence angle over the EW swath
(Mäkynen & Karvonen 2017; Mahmud et al. 2018, "Incidence angle dependence of HH-polarized C- and
L-band wintertime backscatter over Arctic sea ice", IEEE TGRS 56(11)). The linear correction
brings every pixel to a reference angle θ_ref:

    σ0_dB(θ_ref) = σ0_dB(θ) − s · (θ − θ_ref)        (per polarisation; s in dB/deg, negative)

It is applied in radar geometry, in linear units as the factor 10^(−s·(θ − θ_ref)/10), to the
multilooked σ0 before geocoding and the GLCM (:func:`correct_multilooked`; θ is smooth over a
multilook cell, and a quarter of the pixels are left), so the texture quantiser sees one dB scale
across the swath.

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

Class-aware correction (``correction: class``), after the Gaussian incidence-angle (GIA)
classifier of Lohse et al. 2020 ("Mapping sea-ice types from Sentinel-1 considering the surface-
type dependent effect of incidence angle", Annals of Glaciology 61(83)) and the per-type slopes
of Mäkynen & Karvonen 2017 / Aldenhoff et al.: one global slope cannot fit ice types whose slopes
span 0.2 dB/deg (level first-year ice falls twice as fast as young or multi-year ice). A
:class:`ClassModel` of K surface components, each with its own mean at θ_ref, slope and
variance per polarisation (diagonal Gaussian, means linear in θ), is fitted by EM (a mixture of
linear regressions, :func:`fit_class_model`) to the pre-pass samples, semi-supervised by the
chart classes (each class gets :data:`SPLIT` components, so level and deformed first-year ice get
their own). At ingest, no labels: per cell of 640 m × 640 m (:data:`CELL_M`), the
cell's mean (HH, HV) dB at its θ picks the most probable sea-ice (or, without charts, free)
component k̂ under the GIA likelihood, its applied slope b_k̂ is interpolated bilinearly between
cell centres to every pixel, and

    σ0_dB(θ_ref) = σ0_dB(θ) − b_k̂ · (θ − θ_ref).

The applied slope is the component's own for sea-ice components and the common ice slope (the
``linear`` estimate) for the others: open water's fitted slopes (−0.55 to −0.6 dB/deg on
simulated scenes, −0.7 to −0.9 for CMOD-like calm water) differ from the ice slopes by up to
0.45 dB/deg, so a cell of young ice taken for wind-roughened water (an ambiguity of HH) would
move by 6 dB at the swath edges, and the correction would bake the membership's mistakes into
the classifier's inputs. On 4 simulated full scenes this took the best model's accuracy from
0.813 (own slopes for water) to 0.859 (0.845 without corrections). Water components shape the fit
(they keep water's samples out of the ice components) but are never picked: broad and steep, they
cross level first-year ice in mid-swath and nilas at far range, and cells of those that took the
water component's (common) slope were under-corrected by up to 2 dB at the swath ends. Every cell,
water too, takes the slope of its most probable ice component (:attr:`ClassModel.assignable`).

The likelihood moves each component's mean with θ, so near- and far-range pixels of one type get
the same component: no iteration is needed. The most probable component rather than the
posterior-weighted slope Σ_k p_k·b_k: open water's components are broad and steep (−0.6 to −0.9
dB/deg), and their small share of every ice pixel's posterior steepened young ice's slope from
−0.13 to −0.2 at near range (young-ice HH slope after correction +0.09 with the weighted slope,
+0.07 with the most probable one, on a simulated January scene). Cells of :data:`CELL_M` = 640 m on
the ground (8 × 8 multilooked pixels of EW GRDM at 2 looks; :func:`cell_pixels` for other pixel
sizes): narrow leads take the slope of the ice around them. A fixed count of pixels would make the
cells grow with the pixels: on the demo's 320 m single-look pixels 8 × 8 was 2.6 km, the size of a
multi-year floe, so floe edges and the first-year ice around them took one slope, and the demo's
best model scored 0.856 against 0.865 with 640 m cells (plain ESA processing: 0.863). The cells are
laid out from the first multilooked line of the pass, not of each slice: the slices of a pass are
corrected as one image (:func:`correct_pass`), so the cells along a slice boundary are the whole
pass's and the slices meet without a radiometric step."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numba
import numpy as np

from seaice_dask.errors import CubeError
from seaice_dask.halo import overlap, trim

#: Default reference incidence angle (degrees), mid-swath of EW.
REFERENCE_DEG = 35.0
#: Decimation of the pre-pass: every BLOCK[0]-th line, averaged over BLOCK[1] samples.
BLOCK = (32, 16)
#: Incidence bin width (degrees) and fewest samples per (class, bin) cell of the robust fit.
BIN_DEG, MIN_CELL = 1.0, 30
#: ln(10)/10: the natural log of a power ratio per dB, 10^(x/10) = exp(x·LN_PER_DB).
LN_PER_DB = math.log(10.0) / 10.0
#: Class ids that are sea ice in the sod4 / ai4arctic schemes used for labelled estimates.
ICE_CLASSES = (1, 2, 3)
#: Unsupervised fallback: mixture classes, EM iterations, samples used.
MIXTURE_CLASSES, MIXTURE_ITERATIONS, MIXTURE_SAMPLES = 4, 40, 60_000
#: Cube / model attribute holding the correction (a JSON-able dict).
ATTR = "incidence_correction"
#: Class-aware correction: side (multilooked pixels, at 80 m) of the cells whose mean picks the component;
#: EM iterations; smallest component weight kept; variance floor (dB²).
CELL, CLASS_ITERATIONS, MIN_WEIGHT, MIN_VARIANCE = 8, 25, 0.01, 0.05
#: Side (m) of the cells on the ground: :data:`CELL` multilooked pixels of 80 m (EW GRDM, 2 looks).
CELL_M = 640.0
#: Components per chart class at the start of the class-model fit (quantiles of the cross-pol level).
#: Chart classes lump surfaces (level and deformed first-year ice, and the other stages of a
#: polygon): with 3, level first-year ice shared a component on some seasons, whose HV slope was
#: too shallow, and a third of its near-range cells took young ice's slope (bench_incidence --seed 1).
SPLIT = 4
#: Samples the class model is fitted to (a deterministic spread-out subset of the pre-pass).
CLASS_SAMPLES = 40_000
#: σ0_dB below which (or with no power left) the class model sees the floor (dark water's HV).
DB_FLOOR = -35.0


@dataclass(frozen=True)
class ClassModel:
    """K surface components, per polarisation (columns, in ``pols`` order): mean σ0_dB at θ_ref,
    slope (dB/deg) and variance (dB²); ``weight`` the prior share of each component."""

    pols: tuple[str, ...]
    weight: np.ndarray  # (K,)
    mean_db: np.ndarray  # (K, d)
    slope_db_per_deg: np.ndarray  # (K, d)
    variance_db2: np.ndarray  # (K, d)
    #: Slope (K, d) the correction applies to pixels of each component: its own slope for ice
    #: components, the common ice slope for the others (None: its own slope everywhere).
    applied_slope_db_per_deg: np.ndarray | None = None
    #: (K,) bool: components a cell may take its slope from (the sea-ice and free ones); None: all
    #: (records written before water components left the assignment).
    assignable: np.ndarray | None = None

    @property
    def applied(self) -> np.ndarray:
        return self.slope_db_per_deg if self.applied_slope_db_per_deg is None else self.applied_slope_db_per_deg

    def to_attrs(self) -> list[dict[str, Any]]:
        def per_pol(row: np.ndarray) -> dict[str, float]:
            return {p: round(float(v), 6) for p, v in zip(self.pols, row)}

        assignable = np.ones(self.weight.size, bool) if self.assignable is None else self.assignable
        return [{"weight": round(float(w), 6), "mean_db": per_pol(m), "slope_db_per_deg": per_pol(b),
                 "variance_db2": per_pol(v), "applied_slope_db_per_deg": per_pol(a), "assignable": bool(g)}
                for w, m, b, v, a, g in zip(self.weight, self.mean_db, self.slope_db_per_deg, self.variance_db2,
                                            self.applied, assignable)]

    @classmethod
    def from_attrs(cls, components: Sequence[Mapping[str, Any]]) -> ClassModel:
        pols = tuple(components[0]["mean_db"])

        def table(key: str) -> np.ndarray:  # records without applied slopes apply their own
            return np.array([[c.get(key, c["slope_db_per_deg"])[p] for p in pols] for c in components], np.float64)

        assignable = np.array([c.get("assignable", True) for c in components], bool)
        return cls(pols, np.array([c["weight"] for c in components], np.float64), table("mean_db"),
                   table("slope_db_per_deg"), table("variance_db2"), table("applied_slope_db_per_deg"),
                   None if assignable.all() else assignable)

    def effective_slopes(self, values_db: np.ndarray, incidence_deg: np.ndarray, reference_deg: float) -> np.ndarray:
        """Applied slopes b_k̂ (n, d) of each sample's most probable assignable component
        k̂ = argmax_k p_k: ``values_db`` (n, d) in ``pols`` order at ``incidence_deg`` (n,), p_k the
        posterior of component k under the GIA likelihood N(μ_k + b_k·(θ − θ_ref), v_k).
        Values with no power (NaN) sit at :data:`DB_FLOOR`; samples without θ get the prior mean
        slope Σ_k w_k·b_k."""
        slopes = self.applied[self.most_probable(_clip_db(values_db), incidence_deg - reference_deg)]
        slopes[~np.isfinite(incidence_deg)] = self.weight @ self.applied
        return slopes

    def most_probable(self, values_db: np.ndarray, theta: np.ndarray) -> np.ndarray:
        """Index of each sample's most probable assignable component (``theta``: θ − θ_ref): one
        compiled pass over the samples, ranked as :meth:`most_probable_reference` ranks them (NaN
        included) without its (n, K, d) temporaries."""
        n, d = values_db.shape
        out = np.empty(n, np.int64)
        assignable = np.ones(len(self.weight), bool) if self.assignable is None else self.assignable
        _most_probable_kernel(np.ascontiguousarray(values_db, np.float64), np.ascontiguousarray(theta, np.float64),
                              np.log(self.weight + 1e-300), self.mean_db, self.slope_db_per_deg, self.variance_db2,
                              np.log(self.variance_db2), assignable, out)
        return out

    def most_probable_reference(self, values_db: np.ndarray, theta: np.ndarray) -> np.ndarray:
        """NumPy reference of :meth:`most_probable`: argmax over the log-likelihoods."""
        with np.errstate(invalid="ignore"):
            loglik = _log_likelihood(self, values_db, theta)
        if self.assignable is not None:
            loglik[:, ~self.assignable] = -np.inf
        return np.argmax(np.nan_to_num(loglik, nan=-np.inf), axis=1)


@dataclass(frozen=True)
class IncidenceCorrection:
    """The correction applied to a cube: ``none``, ``linear`` with per-polarisation slopes, or
    ``class`` with a :class:`ClassModel` (``slopes_db_per_deg`` then holds the common slopes, for
    the record)."""

    method: str = "none"  # "none" | "linear" | "class"
    reference_deg: float = REFERENCE_DEG
    slopes_db_per_deg: Mapping[str, float] = field(default_factory=dict)  # lower-case pol → s
    source: str = ""  # "config", "charts" or "unsupervised"
    classes: ClassModel | None = None  # method "class" only

    def factor(self, pol: str, incidence_deg: Any) -> Any:
        """Linear multiplier 10^(−s·(θ − θ_ref)/10) for ``pol`` (1 without correction; the
        common slope for ``class``, whose per-pixel factor is :func:`class_correct_block`'s)."""
        if self.method == "none":
            return 1.0
        # as exp(−s·ln(10)/10 · (θ − θ_ref)): a vectorised exp costs a third of a power, and
        # keeps the dtype of θ (float32 on multilooked blocks; within 3e-7 of 10^(…))
        rate = -float(self.slopes_db_per_deg[pol.lower()]) * LN_PER_DB
        return np.exp(rate * (incidence_deg - self.reference_deg))

    def to_attrs(self) -> dict[str, Any]:
        if self.method == "none":
            return {"method": "none"}
        attrs = {"method": self.method, "reference_deg": float(self.reference_deg),
                 "slopes_db_per_deg": {k: round(float(v), 6) for k, v in sorted(self.slopes_db_per_deg.items())},
                 "source": self.source}
        if self.classes is not None:
            attrs["components"] = self.classes.to_attrs()
        return attrs

    @classmethod
    def from_attrs(cls, attrs: Mapping[str, Any] | None) -> IncidenceCorrection:
        """Inverse of :meth:`to_attrs`; a missing record means no correction (older cubes)."""
        if not attrs or attrs.get("method", "none") == "none":
            return cls()
        classes = ClassModel.from_attrs(attrs["components"]) if attrs.get("components") else None
        return cls(attrs["method"], float(attrs["reference_deg"]), dict(attrs["slopes_db_per_deg"]),
                   attrs.get("source", ""), classes)

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
            f"{wanted.to_attrs()}; use a new store path (paths.store), or the cube's slopes (or none given, "
            f"preprocess.incidence.slopes_db_per_deg: null, to reuse its estimate)", path,
        )


# --------------------------------------------------------------------------- applying it


def _upsample_axis(cells: np.ndarray, n: int, cell: int, axis: int) -> np.ndarray:
    """Linear interpolation along ``axis`` from cell centres to the ``n`` pixels (cell i covers
    pixels i·cell … (i+1)·cell − 1); constant beyond the first and last centre. Keeps the dtype."""
    u = (np.arange(n) + 0.5) / cell - 0.5
    i0 = np.clip(np.floor(u).astype(np.int64), 0, cells.shape[axis] - 1)
    i1 = np.minimum(i0 + 1, cells.shape[axis] - 1)
    f = (np.clip(u - np.floor(u), 0.0, 1.0) * (np.floor(u) >= 0)).astype(cells.dtype)
    shape = [1] * cells.ndim
    shape[axis] = n
    f = f.reshape(shape)
    lower = np.take(cells, i0, axis=axis)
    return lower + (np.take(cells, i1, axis=axis) - lower) * f


def slope_exponents_reference(slopes: np.ndarray, theta: np.ndarray, cell: int, reference_deg: float) -> np.ndarray:
    """NumPy reference of :func:`slope_exponents`: the cells' slopes (d, hc, wc) bilinear between
    cell centres onto the pixels of ``theta`` (h, w), times (θ − θ_ref)·(−ln 10 / 10), float32."""
    h, w = theta.shape
    pixels = _upsample_axis(_upsample_axis(slopes, w, cell, 2), h, cell, 1)
    return pixels * ((theta - np.float32(reference_deg)) * np.float32(-LN_PER_DB))


@numba.njit(cache=True, nogil=True)
def _axis_weights(n, n_cells, cell):  # pragma: no cover - compiled
    """Per pixel of an axis: the lower and upper cell and the float32 weight of the upper one, as
    :func:`_upsample_axis` computes them."""
    lower, upper = np.empty(n, np.int64), np.empty(n, np.int64)
    weight = np.empty(n, np.float32)
    for k in range(n):
        u = (k + 0.5) / cell - 0.5
        fl = np.floor(u)
        lower[k] = min(max(int(fl), 0), n_cells - 1)
        upper[k] = min(lower[k] + 1, n_cells - 1)
        weight[k] = np.float32(min(max(u - fl, 0.0), 1.0) if fl >= 0 else 0.0)
    return lower, upper, weight


@numba.njit(cache=True, nogil=True)
def _exponents_kernel(slopes, theta, cell, reference, out):  # pragma: no cover - compiled
    d, hc, wc = slopes.shape
    h, w = theta.shape
    x0, x1, fx = _axis_weights(w, wc, cell)
    y0, y1, fy = _axis_weights(h, hc, cell)
    ref, scale = np.float32(reference), np.float32(-LN_PER_DB)
    for p in range(d):
        for i in range(h):
            r0, r1, f = y0[i], y1[i], fy[i]
            for j in range(w):
                a, b = slopes[p, r0, x0[j]], slopes[p, r0, x1[j]]
                c, e = slopes[p, r1, x0[j]], slopes[p, r1, x1[j]]
                lower = a + (b - a) * fx[j]
                upper = c + (e - c) * fx[j]
                out[p, i, j] = (lower + (upper - lower) * f) * ((theta[i, j] - ref) * scale)


def slope_exponents(slopes: np.ndarray, theta: np.ndarray, cell: int, reference_deg: float) -> np.ndarray:
    """ln of the correction factor of every pixel: the cells' slopes (d, hc, wc) interpolated
    bilinearly between cell centres (constant beyond the outer ones), times
    (θ − θ_ref)·(−ln 10 / 10). One compiled pass in float32, bit for bit as
    :func:`slope_exponents_reference` (the two interpolations along x, then along y), without its
    full-size temporaries."""
    out = np.empty((slopes.shape[0], *theta.shape), np.float32)
    _exponents_kernel(np.ascontiguousarray(slopes, np.float32), np.ascontiguousarray(theta, np.float32), cell,
                      float(reference_deg), out)
    return out


@numba.njit(cache=True, nogil=True)
def _cell_sums(values, cell, total, count):  # pragma: no cover - compiled
    """total/count += the finite values of each ``cell`` × ``cell`` tile of (d, h, w), and their number."""
    d, h, w = values.shape
    for p in range(d):
        for i in range(h):
            ci = i // cell
            for j in range(w):
                v = values[p, i, j]
                if np.isfinite(v):
                    total[p, ci, j // cell] += v
                    count[p, ci, j // cell] += 1


def _cell_mean(values: np.ndarray, cell: int) -> np.ndarray:
    """Mean (float64) of the finite values of each ``cell`` × ``cell`` tile of (d, h, w), NaN where
    none; partial tiles at the far edges average what they have. One compiled pass, no copies."""
    d, h, w = values.shape
    total = np.zeros((d, -(-h // cell), -(-w // cell)))
    count = np.zeros(total.shape, np.int64)
    _cell_sums(np.ascontiguousarray(values), cell, total, count)
    with np.errstate(invalid="ignore", divide="ignore"):
        return total / count


def class_correct_block(sigma0: np.ndarray, incidence_deg: np.ndarray, classes: ClassModel,
                        reference_deg: float = REFERENCE_DEG, cell: int = CELL) -> np.ndarray:
    """Class-aware correction (module doc) of one block: ``sigma0`` (d, h, w) linear, polarisations
    in ``classes.pols`` order, NaN = no data; ``incidence_deg`` (h, w). Returns float32 (d, h, w).

    Cells are the ``cell`` × ``cell`` tiles from the block's first pixel (callers align blocks to
    multiples of ``cell``): NaN-aware mean σ0 and θ per cell → dB → the applied slope of the most
    probable component (:meth:`ClassModel.effective_slopes`), bilinear between cell centres, then
    σ0·10^(−s·(θ − θ_ref)/10) with each pixel's own θ. Pure NumPy: the posterior runs on cells
    (1/64 of the multilooked pixels) and the per-pixel work is float32.
    """
    d, h, w = sigma0.shape
    sigma0 = np.asarray(sigma0, np.float32)
    theta = np.asarray(incidence_deg, np.float32)
    mean = _cell_mean(sigma0, cell)
    theta_cells = _cell_mean(theta[None], cell)[0]
    with np.errstate(invalid="ignore", divide="ignore"):  # all-NaN cells (outside the footprint) → NaN
        db = 10 * np.log10(np.where(mean > 0, mean, np.nan))
    db = np.where(np.isnan(mean), np.nan, np.where(np.isnan(db), DB_FLOOR, db))  # no power: floor
    slopes = classes.effective_slopes(db.reshape(d, -1).T, theta_cells.ravel(), reference_deg)
    slopes = slopes.T.reshape(d, *theta_cells.shape).astype(np.float32)
    factor = slope_exponents(slopes, theta, cell, reference_deg)
    np.exp(factor, out=factor)
    return np.multiply(sigma0, factor, out=factor)


def cell_pixels(pixel_m: float) -> int:
    """Side, in multilooked pixels of ``pixel_m`` metres, of the cells of :data:`CELL_M` (at least 2)."""
    return max(2, round(CELL_M / pixel_m))


def _aligned_chunks(n: int, size: int, cell: int = CELL) -> tuple[int, ...]:
    """Chunks of about ``size`` along an axis of ``n``: multiples of ``cell`` but the last, which
    is at least ``cell`` (the overlap depth; dask would otherwise rechunk and lose the alignment)."""
    size = max(cell, size // cell * cell)
    chunks = [size] * (n // size)
    rest = n - sum(chunks)
    if rest and rest < cell and chunks:
        chunks[-1] += rest
    elif rest:
        chunks.append(rest)
    return tuple(chunks)


def _class_correct_stacked(values: np.ndarray, angles: np.ndarray, classes: ClassModel, reference_deg: float,
                           cell: int) -> np.ndarray:
    """:func:`class_correct_block` of a block with a halo of one ``cell``, the halo trimmed."""
    return trim(class_correct_block(values, angles[0], classes, reference_deg, cell), (0, cell, cell))


def correct_multilooked(sigma0: Mapping[str, Any], incidence_deg: Any, correction: IncidenceCorrection,
                        cell: int = CELL) -> dict[str, Any]:
    """The correction of multilooked radar-geometry σ0 (linear dask arrays by polarisation, same
    chunks as ``incidence_deg``), lazily: ``linear`` pixel by pixel, ``class`` by
    :func:`class_correct_block` over blocks aligned to ``cell`` pixels (:func:`cell_pixels` of the
    multilooked pixel size; :data:`CELL` at 80 m) with one cell of overlap
    (:func:`~seaice_dask.halo.overlap`, NaN beyond the image), so no pixel depends on the chunking. Applied after
    multilooking (θ is smooth over a multilook cell, and a quarter of the pixels are left).
    """
    import dask.array as da

    if correction.method == "none":
        return dict(sigma0)
    if correction.method == "linear":
        return {p: (a * correction.factor(p, incidence_deg)).astype(np.float32) for p, a in sigma0.items()}
    classes = correction.classes
    pols = list(sigma0)
    if classes is None or [p.lower() for p in pols] != list(classes.pols):
        raise ValueError(f"class model for {classes and classes.pols}, σ0 given for {pols}")
    theta = incidence_deg.rechunk(tuple(_aligned_chunks(n, c[0], cell) for n, c in zip(incidence_deg.shape, incidence_deg.chunks)))
    stacked = da.stack([sigma0[p].rechunk(theta.chunks) for p in pols]).rechunk({0: len(pols)})
    halo = {1: cell, 2: cell}
    corrected = da.map_blocks(
        _class_correct_stacked, overlap(stacked, halo, np.nan), overlap(theta[None], halo, np.nan),
        chunks=stacked.chunks, dtype=np.float32, meta=np.empty((0, 0, 0), np.float32),
        classes=classes, reference_deg=correction.reference_deg, cell=cell,
    )
    return {p: corrected[i] for i, p in enumerate(pols)}


def _on_pass_lines(parts: Sequence[Any], rows: Sequence[int], width: int) -> Any:
    """The slices' multilooked arrays stacked on the pass's lines (``rows``: each one's first):
    a line two slices hold is the earlier one's, lines none holds and columns beyond a narrower
    slice are NaN."""
    import dask.array as da

    def nan(shape: tuple[int, int]) -> Any:
        return da.full(shape, np.nan, dtype=np.float32)

    pieces, end = [], rows[0]
    for part, row in zip(parts, rows):
        if row > end:
            pieces.append(nan((row - end, width)))
            end = row
        part = part[end - row :]
        if part.shape[1] < width:
            part = da.concatenate([part, nan((part.shape[0], width - part.shape[1]))], axis=1)
        pieces.append(part)
        end += part.shape[0]
    return da.concatenate(pieces, axis=0)


def correct_pass(sigma0: Sequence[Mapping[str, Any]], incidence_deg: Sequence[Any], rows: Sequence[int],
                 correction: IncidenceCorrection, cell: int = CELL) -> list[dict[str, Any]]:
    """:func:`correct_multilooked` of the slices of one pass, as one image: per slice, its
    multilooked σ0 by polarisation and its θ, and ``rows`` the pass's multilooked line of its
    first line (ascending; :meth:`~seaice_dask.ingest.passes.Pass.multilooked_rows`).

    The ``class`` correction's cells are laid out from the pass's first line, and a cell that
    straddles a slice boundary averages the lines of both slices, as in the whole pass: corrected
    one by one, each slice's cells start at its own first line and stop at its edge, so the cells
    along the boundary are cut, pick their component from part of their pixels, and the slopes
    near the edge are interpolated towards the prior mean slope of the empty cells beyond it
    (a step of up to a few tenths of a dB across the boundary). So the slices are stacked on the pass's lines
    (:func:`_on_pass_lines`), corrected lazily as one array and cut apart again: each slice gets
    its rows of the whole pass's correction (bit for bit where the stacked σ0 and θ are the whole
    pass's). ``linear`` and ``none`` work pixel by pixel and correct each slice on its own."""
    if correction.method != "class" or len(sigma0) < 2:
        return [correct_multilooked(s, t, correction, cell) for s, t in zip(sigma0, incidence_deg)]
    width = max(t.shape[1] for t in incidence_deg)
    pols = list(sigma0[0])
    stacked = correct_multilooked({p: _on_pass_lines([s[p] for s in sigma0], rows, width) for p in pols},
                                  _on_pass_lines(incidence_deg, rows, width), correction, cell)
    return [{p: stacked[p][row - rows[0] : row - rows[0] + t.shape[0], : t.shape[1]] for p in pols}
            for t, row in zip(incidence_deg, rows)]


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


def _clip_db(values_db: np.ndarray) -> np.ndarray:
    """σ0_dB with no power left (NaN from ≤ 0, or below the floor) at :data:`DB_FLOOR`: dark water's
    cross-pol lies under the noise floor, and the membership must still see it as dark."""
    return np.where(np.isnan(values_db) | (values_db < DB_FLOOR), DB_FLOOR, values_db)


def fit_class_model(values_db: np.ndarray, incidence_deg: np.ndarray, labels: np.ndarray | None = None,
                    pols: Sequence[str] = ("hh", "hv"), reference_deg: float = REFERENCE_DEG,
                    iterations: int = CLASS_ITERATIONS, common_slope_db_per_deg: Sequence[float] | None = None) -> ClassModel:
    """GIA components (module doc) of samples ``values_db`` (n, d) at ``incidence_deg`` by EM.

    Component k has, per polarisation j, mean μ_kj + b_kj·(θ − θ_ref) and variance v_kj (a
    mixture of linear regressions). With chart ``labels`` (< 0 unlabelled): every chart class with
    ≥ 10·MIN_CELL samples gets :data:`SPLIT` components, started at quantiles of its cross-pol
    level, so a class that lumps surface types (level and deformed first-year ice) gets one
    component per type; labelled samples belong to their class's components only
    (semi-supervised, after the trained classes of Lohse et al. 2020), unlabelled ones to any.
    This keeps components from wandering into another class's region, where a few outliers or
    the noise floor would give them implausible slopes. Without labels, :data:`MIXTURE_CLASSES`
    + 2 free components started at quantiles of the summed dB. Components whose weight falls
    below :data:`MIN_WEIGHT` are dropped as they go. M-step: weighted least squares.

    ``common_slope_db_per_deg`` (d,): the slope applied to the components of chart classes that
    are not sea ice (:data:`ICE_CLASSES`), whose own slope stays in their likelihood only.
    """
    values_db = _clip_db(np.asarray(values_db, np.float64).reshape(len(incidence_deg), -1))
    ok = np.isfinite(incidence_deg)
    v, t = values_db[ok], np.asarray(incidence_deg, np.float64)[ok] - reference_deg
    lab = np.full(t.size, -1) if labels is None else np.asarray(labels)[ok]
    if t.size > CLASS_SAMPLES:  # a deterministic spread-out subset is plenty for ~50 parameters
        keep = np.linspace(0, t.size - 1, CLASS_SAMPLES).astype(np.int64)
        v, t, lab = v[keep], t[keep], lab[keep]
    start, group = np.full(t.size, -1), []
    for c in np.unique(lab[lab >= 0]):
        sel = lab == c
        if sel.sum() < 10 * MIN_CELL:
            continue
        start[sel] = len(group) + np.searchsorted(np.quantile(v[sel, -1], np.arange(1, SPLIT) / SPLIT), v[sel, -1])
        group += [int(c)] * SPLIT
    if not group:
        total = v.sum(axis=1)
        group = [-1] * (MIXTURE_CLASSES + 2)
        start = np.searchsorted(np.quantile(total, np.arange(1, len(group)) / len(group)), total)
    groups = np.array(group)
    resp = np.zeros((t.size, groups.size))
    resp[start >= 0, start[start >= 0]] = 1.0
    for _ in range(iterations):
        model = _m_step(v, t, resp, pols)
        kept = model.weight >= MIN_WEIGHT  # spurious components leave
        groups = groups[kept]
        resp = _posterior(model, v, t)[:, kept] * ((lab[:, None] < 0) | (lab[:, None] == groups))
        resp /= np.maximum(resp.sum(axis=1, keepdims=True), 1e-300)
    model = _m_step(v, t, resp, pols)
    if common_slope_db_per_deg is None:
        return model
    not_ice = (groups >= 0) & ~np.isin(groups, ICE_CLASSES)  # free components (−1) keep theirs
    applied = np.where(not_ice[:, None], np.asarray(common_slope_db_per_deg, np.float64)[None, :], model.slope_db_per_deg)
    return replace(model, applied_slope_db_per_deg=applied, assignable=~not_ice if not_ice.any() and not not_ice.all() else None)


def _m_step(v: np.ndarray, t: np.ndarray, resp: np.ndarray, pols: Sequence[str]) -> ClassModel:
    """Weighted least squares per component and polarisation."""
    nk = resp.sum(axis=0) + 1e-9
    tk = resp.T @ t / nk
    vk = resp.T @ v / nk[:, None]
    s_tt = np.maximum(resp.T @ t**2 - nk * tk**2, 1e-9)  # Σ r (t − t̄_k)² per component
    s_tv = resp.T @ (t[:, None] * v) - (nk * tk)[:, None] * vk
    slope = s_tv / s_tt[:, None]
    mean = vk - slope * tk[:, None]
    z = v[:, None, :] - mean - slope * t[:, None, None]
    variance = np.maximum((resp[:, :, None] * z**2).sum(axis=0) / nk[:, None], MIN_VARIANCE)
    return ClassModel(tuple(p.lower() for p in pols), nk / nk.sum(), mean, slope, variance)


def _log_likelihood(model: ClassModel, v: np.ndarray, t: np.ndarray) -> np.ndarray:
    """log(w_k) + log N(v; μ_k + b_k·t, v_k) per sample and component, up to a constant (n, K)."""
    z = v[:, None, :] - model.mean_db - model.slope_db_per_deg * t[:, None, None]
    return np.log(model.weight + 1e-300) - 0.5 * (z**2 / model.variance_db2 + np.log(model.variance_db2)).sum(axis=2)


@numba.njit(cache=True, nogil=True)
def _most_probable_kernel(v, t, log_weight, mean, slope, variance, log_variance, assignable, out):  # pragma: no cover - compiled
    """out[i] = argmax_k log(w_k) − ½·Σ_p ((v_ip − μ_kp − b_kp·t_i)²/v_kp + log v_kp), in
    :func:`_log_likelihood`'s order of operations; the ranks of ``most_probable_reference``:
    NaN lowest, components not assignable just above, first maximum wins."""
    n, d = v.shape
    lowest = -1.7976931348623157e308  # what np.nan_to_num makes of −inf
    for i in range(n):
        best, best_k = -np.inf, 0
        for k in range(mean.shape[0]):
            if not assignable[k]:
                ll = lowest
            else:
                total = 0.0
                for p in range(d):
                    z = (v[i, p] - mean[k, p]) - slope[k, p] * t[i]
                    term = z * z / variance[k, p] + log_variance[k, p]
                    total = term if p == 0 else total + term
                ll = log_weight[k] - 0.5 * total
                if np.isnan(ll):
                    ll = -np.inf
                elif np.isinf(ll):
                    ll = lowest if ll < 0 else -lowest
            if k == 0 or ll > best:
                best, best_k = ll, k
        out[i] = best_k


def _posterior(model: ClassModel, v: np.ndarray, t: np.ndarray) -> np.ndarray:
    loglik = _log_likelihood(model, v, t)
    p = np.exp(loglik - loglik.max(axis=1, keepdims=True))
    return p / p.sum(axis=1, keepdims=True)


def estimate_slopes(samples: Mapping[str, np.ndarray], pols: Sequence[str], reference_deg: float = REFERENCE_DEG,
                    method: str = "linear") -> IncidenceCorrection:
    """Season correction from pooled pre-pass ``samples`` (:func:`scene_samples` concatenated).

    ``samples`` holds ``incidence``, ``sigma0_<pol>`` (dB) and optionally ``labels`` (chart
    class, −1 unlabelled). ``linear``: with any labelled ice, the slopes are those of the ice
    classes; otherwise of unsupervised classes (module doc). ``class``: those common slopes (for
    the record) and the :class:`ClassModel` of :func:`fit_class_model`.
    """
    theta = samples["incidence"]
    labels = samples.get("labels")
    pols = [p.lower() for p in pols]
    if method == "class":
        common = estimate_slopes(samples, pols, reference_deg)
        values = np.column_stack([samples[f"sigma0_{p}"] for p in pols])
        common_slopes = [common.slopes_db_per_deg[p] for p in pols]
        return IncidenceCorrection("class", reference_deg, common.slopes_db_per_deg, common.source,
                                   fit_class_model(values, theta, labels, pols, reference_deg,
                                                   common_slope_db_per_deg=common_slopes))
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
    "cell_pixels",
    "ClassModel",
    "class_correct_block",
    "class_slopes",
    "correct_multilooked",
    "correct_pass",
    "fit_class_model",
    "concat_samples",
    "correct_db",
    "estimate_slopes",
    "fit_slope",
    "scene_samples",
    "mixture_slopes",
]
