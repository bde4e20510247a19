"""Pass assembly: the slices of one satellite pass become one time step of the cube.

ESA cuts every pass into slices of about a minute; a region is usually crossed by two of them.
Rules (pure functions of product metadata, so they are the same on every run):

- **Product identity** is the product name. The same name found twice (a zip and a SAFE, two
  folders) is kept once, with a warning naming both paths.
- **Resolution.** GRDM and GRDH of one slice (same platform, orbit and time range): the class
  listed first in ``download.product`` is kept, with one warning per pass.
- **Pass identity.** Same platform and absolute orbit, and the same data-take segment
  (manifest ``segmentStartTime``) where both slices have one; otherwise slices whose start and
  stop times meet within :data:`CONTIGUOUS_S`. A different orbit or a gap keeps them apart.
- **Time stamp.** The segment start, so it does not move when an earlier slice arrives late;
  without one (or an implausible one), the first slice's start.
- **Conflicts.** Two different products over the same time range of a pass (more than
  :data:`CONTIGUOUS_S` of overlap) cannot both be right: the later-listed one is refused.
- **Merging.** Products without a segment start are grouped by contiguity only, so slices 1
  and 3 of a pass ingested without slice 2 make two time steps; slice 2 then bridges them and
  they become one (:func:`assign_steps`): the earliest-stamped step is rewritten with the whole
  pass, the other is removed from the cube with its exported maps. With a segment start, 1 and
  3 are one step from the start, and 2 just fills it in.
- **Radiometry.** NERSC noise scaling is estimated once per pass from all its slices, and the
  textural correction's local means near a slice boundary take in the neighbouring slice's
  lines (:meth:`Pass.neighbour_lines`), and the class-aware incidence correction takes the
  slices as one image (:func:`~seaice_dask.preprocess.incidence.correct_pass`), so slices meet
  without a radiometric step.
- **Mosaic** (:func:`mosaic`): every grid pixel comes from exactly one product, the earliest
  slice that has valid data there. Consecutive slices share their boundary line, so the mosaic
  has no seam of missing rows and no pixel is counted twice; each slice is multilooked on the
  line pairs of its pass (:meth:`Pass.first_lines`), so the pixels equal the whole pass's.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from seaice_dask.geocode import TiePoints
from seaice_dask.grid import Grid
from seaice_dask.safe.product import PRODUCT_NAME

log = logging.getLogger(__name__)

#: Slices whose stop and next start are this close (s) are contiguous; more overlap is a conflict.
CONTIGUOUS_S = 2.0
#: A segment start further than this (s) before a slice's start, or after it, is not trusted.
SEGMENT_WINDOW_S = (6000.0, 60.0)
#: Product names carry start and stop truncated to whole seconds.
_NAME_RESOLUTION_S = 1.0


def _seconds(a: Any, b: Any) -> float:
    """``a − b`` in seconds."""
    return (pd.Timestamp(a) - pd.Timestamp(b)).total_seconds()


def segment_start(product: Any) -> np.datetime64 | None:
    """The manifest's data-take segment start, if present and plausible for this slice."""
    seg = getattr(product, "segment_start", None)
    if seg is None:
        return None
    before, after = SEGMENT_WINDOW_S
    return seg if -after <= _seconds(product.start_time, seg) <= before else None


@dataclass(frozen=True)
class Pass:
    """The products of one pass in slice order; or one product stamped with its own start
    (``segment=False``, when assembly is off)."""

    products: tuple[Any, ...]
    segment: bool = True

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.products)

    @property
    def time(self) -> np.datetime64:
        """Segment start where every slice agrees on a plausible one, else the first start."""
        segments = {segment_start(p) for p in self.products} if self.segment else {None}
        first = self.products[0]
        stamp = segments.pop() if len(segments) == 1 and None not in segments else first.start_time
        return pd.Timestamp(stamp).as_unit("us").to_datetime64()

    def line_offsets(self) -> list[int]:
        """Per slice, the pass line of its first line (the first slice's is 0), from the start
        times and each slice's line interval."""
        first = self.products[0]
        out = []
        for product in self.products:
            interval = _seconds(product.stop_time, product.start_time) / max(product.shape[0] - 1, 1)
            out.append(round(_seconds(product.start_time, first.start_time) / interval) if interval > 0 else 0)
        return out

    def first_lines(self, looks: int) -> list[int]:
        """Per slice, the lines to leave out so its multilook windows start on the same line
        pairs as its pass's first slice."""
        return [-offset % looks for offset in self.line_offsets()]

    def multilooked_rows(self, looks: int) -> list[int]:
        """Per slice, the pass's multilooked line of its first multilooked line (its lines from
        :meth:`first_lines` on, in ``looks`` × ``looks`` cells on the pass's line pairs)."""
        return [(offset + first) // looks for offset, first in zip(self.line_offsets(), self.first_lines(looks))]

    def neighbour_lines(self, depth: int) -> list[tuple[tuple[Any, int] | None, tuple[Any, int] | None]]:
        """Per slice, where the ``depth`` pass lines just above its first line and just below its
        last are: (neighbouring slice, the first of them in its line numbers); None at the ends
        of the pass. Lines beyond the neighbour are no data, as beyond an image."""
        offsets = self.line_offsets()
        n = len(self.products)
        return [((self.products[k - 1], offsets[k] - depth - offsets[k - 1]) if k > 0 else None,
                 (self.products[k + 1], offsets[k] + q.shape[0] - offsets[k + 1]) if k + 1 < n else None)
                for k, q in enumerate(self.products)]

    def tie_points(self, pol: str) -> list[TiePoints]:
        """Per slice, the tie points of every slice of the pass in this slice's line numbers
        (one inverse map for the pass: slices meet without a gap or an overlap)."""
        parts = [TiePoints.from_product(q, pol) for q in self.products]
        if len(parts) == 1:
            return parts
        offsets = self.line_offsets()
        line = np.concatenate([t.line + o for t, o in zip(parts, offsets)])
        sample = np.concatenate([t.sample for t in parts])
        # a shared boundary line is annotated by both slices: keep one copy of each point
        _, keep = np.unique(np.column_stack([np.round(line), np.round(sample)]), axis=0, return_index=True)
        keep = np.sort(keep)
        lat = np.concatenate([t.latitude for t in parts])[keep]
        lon = np.concatenate([t.longitude for t in parts])[keep]
        return [TiePoints(line[keep] - o, sample[keep], lat, lon, t.shape) for t, o in zip(parts, offsets)]

    def boundary_rows(self, grid: Grid) -> list[np.ndarray]:
        """Per boundary of two consecutive slices, the (fractional) grid row where the boundary
        line crosses each grid column, NaN where it does not: where a seam would show."""
        from scipy.interpolate import LinearNDInterpolator

        ties = self.tie_points(self.products[0].polarisations[0])[0]
        to_grid = LinearNDInterpolator(np.column_stack([ties.line, ties.sample]), np.column_stack(ties.projected(grid.crs)))
        samples = np.linspace(0, max(p.shape[1] for p in self.products) - 1, 4 * grid.shape[1])
        out = []
        for line in self.line_offsets()[1:]:
            x, y = to_grid(np.full(samples.size, line), samples).T
            ok = np.isfinite(x)
            col, row = (x[ok] - grid.xmin) / grid.resolution - 0.5, (grid.ymax - y[ok]) / grid.resolution - 0.5
            order = np.argsort(col)
            out.append(np.interp(np.arange(grid.shape[1]), col[order], row[order], left=np.nan, right=np.nan)
                       if ok.any() else np.full(grid.shape[1], np.nan))
        return out

    def coords(self, denoise: str) -> dict[str, Any]:
        """Per-time coordinates: every product id (``;``-joined, slice order) and the pass's
        platform, orbits and direction."""
        first = self.products[0]
        return {
            "product_id": ";".join(self.names),
            "mission": first.mission,
            "ipf_version": ";".join(dict.fromkeys(str(p.ipf_version) for p in self.products)),
            "relative_orbit": int(first.relative_orbit),
            "denoise": denoise,
            "absolute_orbit": int(first.absolute_orbit),
            "pass_direction": str(first.pass_direction),
        }


def unique_products(products: Sequence[Any]) -> list[Any]:
    """One product per name, the first found; a second copy is dropped with a warning naming both."""
    kept: dict[str, Any] = {}
    for product in products:
        if product.name in kept:
            warnings.warn(f"{product.name} found twice: {kept[product.name].path} and {product.path}; "
                          f"ingesting {kept[product.name].path}", stacklevel=2)
            continue
        kept[product.name] = product
    return list(kept.values())


def _same_slice(a: Any, b: Any) -> bool:
    """Same platform, orbit and time range (within the names' whole-second resolution)."""
    return (a.mission, a.absolute_orbit) == (b.mission, b.absolute_orbit) and (
        abs(_seconds(a.start_time, b.start_time)) <= CONTIGUOUS_S
        and abs(_seconds(a.stop_time, b.stop_time)) <= CONTIGUOUS_S
    )


def prefer_resolution(products: Sequence[Any], order: Sequence[str]) -> list[Any]:
    """Drop the other GRD resolution of a slice present in two (``order``: e.g. ['GRDM', 'GRDH'])."""
    rank = {f"GRD{c}": i for i, c in enumerate(_classes(order))}
    kept: list[Any] = []
    warned: set[tuple[str, int]] = set()
    for product in sorted(products, key=lambda p: (p.start_time, rank.get(f"GRD{p.resolution_class}", len(rank)))):
        twin = next((k for k in kept if k.resolution_class != product.resolution_class and _same_slice(k, product)), None)
        if twin is None:
            kept.append(product)
            continue
        key = (product.mission, int(product.absolute_orbit))
        if key not in warned:
            warned.add(key)
            warnings.warn(f"{product.mission} orbit {product.absolute_orbit}: GRD{twin.resolution_class} and "
                          f"GRD{product.resolution_class} of the same slices; using GRD{twin.resolution_class} "
                          f"(first in download.product)", stacklevel=2)
    return kept


def _classes(order: Sequence[str]) -> list[str]:
    return [str(o).upper().removeprefix("GRD") for o in order]


def _joins(group: list[Any], product: Any) -> bool:
    """Does ``product`` continue the pass ``group`` (slices sorted by start)?"""
    last = group[-1]
    if (last.mission, last.absolute_orbit) != (product.mission, product.absolute_orbit):
        return False
    a, b = segment_start(last), segment_start(product)
    if a is not None and b is not None:
        return a == b
    return _seconds(product.start_time, last.stop_time) <= CONTIGUOUS_S


def group_passes(products: Sequence[Any], *, assemble: bool = True) -> tuple[list[Pass], dict[Any, str]]:
    """Passes of ``products`` in time order, and the refused products with the reason.

    A product overlapping the previous slice of its pass by more than :data:`CONTIGUOUS_S`
    (a different product for the same time range) is refused. ``assemble=False``: one pass per
    product.
    """
    ordered = sorted(products, key=lambda p: (p.start_time, p.name))
    if not assemble:
        return [Pass((p,), segment=False) for p in ordered], {}
    groups: list[list[Any]] = []
    refused: dict[Any, str] = {}
    for product in sorted(ordered, key=lambda p: (p.mission, p.absolute_orbit, p.start_time, p.name)):
        group = groups[-1] if groups and _joins(groups[-1], product) else None
        if group is None:
            groups.append([product])
        elif _seconds(group[-1].stop_time, product.start_time) > CONTIGUOUS_S:
            refused[product] = (f"{product.path}: its pass already holds {group[-1].name} for the same time range "
                                f"({product.start_time} – {product.stop_time}); not ingested")
        else:
            group.append(product)
    passes = [Pass(tuple(g)) for g in groups]
    return sorted(passes, key=lambda p: (p.time, p.names)), refused


@dataclass(frozen=True)
class NamedSlice:
    """A stored product known only by its name (mission, orbit, start and stop to the second)."""

    name: str
    mission: str
    absolute_orbit: int
    start_time: np.datetime64
    stop_time: np.datetime64

    @classmethod
    def parse(cls, name: str) -> NamedSlice | None:
        match = PRODUCT_NAME.match(name)
        if match is None:
            return None
        start, stop = (pd.Timestamp(match[k]).to_datetime64() for k in ("start", "stop"))
        return cls(name, match["mission"], int(match["orbit"]), start, stop)


def stored_names(product_ids: Sequence[Any]) -> list[tuple[str, ...]]:
    """Per time step, the product names its ``product_id`` coordinate lists."""
    return [tuple(n for n in str(v).split(";") if n and n != "nan") for v in product_ids]


def touches(p: Pass, names: Sequence[str], stamp: np.datetime64) -> bool:
    """Does the stored time step (``names``, time ``stamp``) belong to pass ``p``?

    It does when they share a product, have the same time stamp, or when a stored slice (known
    by its name) continues one of the pass's slices on the same orbit within the names' precision.
    """
    if set(names) & set(p.names) or np.datetime64(stamp, "us") == p.time:
        return True
    tolerance = CONTIGUOUS_S + _NAME_RESOLUTION_S
    for stored in filter(None, map(NamedSlice.parse, names)):
        for product in p.products:
            if (stored.mission, stored.absolute_orbit) != (product.mission, int(product.absolute_orbit)):
                continue
            if (abs(_seconds(product.start_time, stored.stop_time)) <= tolerance
                    or abs(_seconds(stored.start_time, product.stop_time)) <= tolerance):
                return True
    return False


def overlapping(product: Any, names: Sequence[str]) -> str | None:
    """A stored product (other than ``product``) covering the same time range, if any."""
    for stored in filter(None, map(NamedSlice.parse, names)):
        if stored.name == product.name or (stored.mission, stored.absolute_orbit) != (product.mission, int(product.absolute_orbit)):
            continue
        overlap = min(_seconds(product.stop_time, stored.start_time), _seconds(stored.stop_time, product.start_time))
        if overlap > CONTIGUOUS_S + _NAME_RESOLUTION_S:
            return stored.name
    return None


def mosaic(parts: Sequence[xr.Dataset]) -> xr.Dataset:
    """One dataset from the geocoded slices of a pass (slice order): each pixel from the first
    slice valid there, lazily (``where`` per block)."""
    out = parts[0]
    for part in parts[1:]:
        take = out["valid"]
        out = xr.Dataset({name: out[name].where(take, part[name]) for name in out.data_vars}, attrs=out.attrs)
        out["valid"] = take | part["valid"]
    out.attrs["product_id"] = ";".join(str(p.attrs.get("product_id", "")) for p in parts)
    return out


@dataclass(frozen=True)
class Step:
    """What ingest does with a pass: write it to a new slot (``t`` None) or rewrite slot ``t``;
    ``absorbs``: other stored slots of the pass (a slice bridged them), removed from the cube."""

    pass_: Pass
    t: int | None
    absorbs: tuple[int, ...] = ()


def assign_steps(
    passes: Sequence[Pass], stored: Sequence[Sequence[str]], times: Sequence[Any], finished: Sequence[bool],
    *, assemble: bool = True,
) -> tuple[list[Step], list[Pass], dict[Any, str]]:
    """Match passes to the cube's time steps: (steps to write, passes already done, refused products).

    A pass joins the stored steps it touches (:func:`touches`; only shared products or the same
    time stamp when ``assemble`` is off) and rewrites the earliest-stamped one when it brings new
    slices or the step is unfinished. Touching several (a slice bridging slices 1 and 3 of a
    pass whose products carry no segment start, or steps of a cube ingested one per product)
    merges them: the earliest keeps the pass, the others are ``absorbs``. Refused: a product
    overlapping a stored one of another name, and a pass that would drop a stored product not
    found now.
    """
    steps: list[Step] = []
    done: list[Pass] = []
    refused: dict[Any, str] = {}
    for p in passes:
        hits = [t for t, (names, stamp) in enumerate(zip(stored, times))
                if (touches(p, names, stamp) if assemble else set(names) & set(p.names) or np.datetime64(stamp, "us") == p.time)]
        if not hits:
            steps.append(Step(p, None))
            continue
        hits.sort(key=lambda t: (np.datetime64(times[t], "us"), t))
        t, names = hits[0], tuple(n for h in hits for n in stored[h])
        where = f"the pass at {pd.Timestamp(times[t])}"
        for q in p.products:
            other = None if q.name in names else overlapping(q, names)
            if other is not None:
                refused[q] = f"{q.path}: {where} already holds {other} for the same time range"
        kept = tuple(q for q in p.products if q not in refused)
        missing = [n for n in names if n not in {q.name for q in kept}]
        if missing and not (len(hits) == 1 and finished[t] and set(p.names) <= set(names)):
            for q in kept:
                refused[q] = (f"{q.path}: belongs to {where}, ingested with {', '.join(missing)}, which is not "
                              "among the scenes found; add it to paths.scenes to rewrite the pass")
            continue
        if len(hits) == 1 and set(p.names) <= set(names) and finished[t]:
            done.append(p)
        else:
            steps.append(Step(replace(p, products=kept), t, tuple(hits[1:])))
    return steps, done, refused
