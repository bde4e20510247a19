"""A simulated season: Sentinel-1 passes on one or more relative orbits, weekly ice charts and the truth.

Acquisition times follow the real orbit: Sentinel-1 repeats its ground track every 12 days
(175 orbits), S1B flying six days behind S1A in the same plane, so a relative orbit is seen
every 6 days by the pair. Relative orbit = (absolute − 73) mod 175 + 1 for S1A, (absolute − 27)
mod 175 + 1 for S1B (ESA). S1A times are counted from the template product (absolute orbit 46117),
S1B orbit numbers from a real S1B product (orbit 30148 on 2021-12-23 05:11:22 UTC).

Which relative orbits see the box, and in which direction, follows from the ground tracks of a
circular sun-synchronous orbit: each orbit's ascending node lies 360°·12/175 west of the previous
one, the node of orbit 46117 at −109.37° E (the template's 20 state vectors, sd 0.18°; the same
model puts the real S1A orbit 4739 of 2015-02-22 within 0.45° of its state vectors), and the EW
swath centre lies 425.6 km right of the nadir track (the template). Over the Denmark Strait
relative orbit 24 is descending (near range east of the box), 89 ascending (near range west).

Passes are centred on the grid unless ``centres`` place them elsewhere: each orbit (or, with
``orbits=None``, the track passing nearest each centre) is flown over its own centre, so that a
grid larger than a scene is covered by passes from different tracks (:func:`scatter_centres`).
"""

from __future__ import annotations

import datetime as dt
import json
import math
import multiprocessing
import os
import shutil
import warnings
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from seaice_dask.errors import ConfigError
from seaice_dask.grid import Grid, default_grid, write_crs
from seaice_dask.simulate.safe_writer import (
    INCLINATION_DEG,
    ORBIT_OFFSET,
    ORBIT_PERIOD_S,
    TEMPLATE_ABSOLUTE_ORBIT,
    TEMPLATE_START,
    SceneSpec,
    argument_of_latitude,
    ascending_heading,
    ascending_lead_s,
    descending_heading,
    write_pass,
)
from seaice_dask.simulate.truth import truth_fields, weekly_truth

_S1B_REF = (30148, dt.datetime(2021, 12, 23, 5, 11, 22))
_TEMPLATE_CENTRE_LAT = 79.5  # latitude of the template scene centre (descending pass)
_NODE_LON_TEMPLATE = -109.37  # longitude (deg E) of the ascending node of template orbit 46117
_SWATH_CENTRE_KM = 425.6  # EW swath centre, right of the nadir track (template)
_HALF_SWATH_KM = 200.0  # an orbit "sees" a point within this distance of its swath centre line


@dataclass
class SimulatedSeries:
    """Paths written by :func:`simulate_series`."""

    scenes: list[Path]  # every product (slice), by start time
    charts: list[Path]
    truth: Path
    metadata: Path | None = None
    info: list[dict] = field(default_factory=list)  # one per product, as ``scenes``
    passes: list[list[Path]] = field(default_factory=list)  # the products of each pass, slice order


def _relative(mission: str, absolute: int) -> int:
    return (absolute - ORBIT_OFFSET[mission]) % 175 + 1


def _with_relative(mission: str, estimate: int, relative: int) -> int:
    """The absolute orbit nearest ``estimate`` whose relative orbit is ``relative``."""
    return estimate + ((relative - _relative(mission, estimate) + 87) % 175 - 87)


def swath_offset_km(relative_orbit: int, ascending: bool, lonlat: tuple[float, float]) -> float:
    """Cross-track distance (km, positive right of the track) of ``lonlat`` from the centre line
    of the EW swath of ``relative_orbit``'s ascending or descending pass at that latitude."""
    from pyproj import Geod

    absolute = _with_relative("S1A", TEMPLATE_ABSOLUTE_ORBIT, relative_orbit)
    node = _NODE_LON_TEMPLATE - (absolute - TEMPLATE_ABSOLUTE_ORBIT) * 360.0 * 12 / 175
    u = math.radians(argument_of_latitude(lonlat[1], ascending))
    inertial = math.degrees(math.atan2(math.cos(math.radians(INCLINATION_DEG)) * math.sin(u), math.cos(u)))
    nadir_lon = node + inertial - 360.0 * (math.degrees(u) / 360 * ORBIT_PERIOD_S) / 86400
    heading = (ascending_heading if ascending else descending_heading)(lonlat[1])
    geod = Geod(ellps="WGS84")
    lon, lat, _ = geod.fwd(nadir_lon, lonlat[1], heading + 90.0, _SWATH_CENTRE_KM * 1e3)
    azimuth, _, distance = geod.inv(lon, lat, *lonlat)
    return distance / 1e3 * math.sin(math.radians(azimuth - heading))


def pass_direction(relative_orbit: int, lonlat: tuple[float, float]) -> str:
    """'ASCENDING' or 'DESCENDING': the pass of ``relative_orbit`` whose EW swath covers ``lonlat``."""
    if not 1 <= relative_orbit <= 175:
        raise ConfigError(f"relative orbits are 1 … 175, got {relative_orbit}")
    offsets = {d: abs(swath_offset_km(relative_orbit, d == "ASCENDING", lonlat)) for d in ("DESCENDING", "ASCENDING")}
    direction = min(offsets, key=offsets.get)
    if offsets[direction] > _HALF_SWATH_KM:
        seen = [f"{r} {d[:3].lower()}" for _, r, d in orbits_seeing(lonlat)]
        raise ConfigError(
            f"relative orbit {relative_orbit} does not see ({lonlat[0]:.1f}° E, {lonlat[1]:.1f}° N): its EW swath "
            f"passes {offsets[direction]:.0f} km away; orbits whose swath covers it: {', '.join(seen)}"
        )
    return direction


def orbits_seeing(lonlat: tuple[float, float]) -> list[tuple[float, int, str]]:
    """(|cross-track offset| km, relative orbit, direction) of every pass whose EW swath covers
    ``lonlat``, the nearest swath centre line first."""
    seen = (
        (abs(swath_offset_km(r, d == "ASCENDING", lonlat)), r, d)
        for r in range(1, 176)
        for d in ("DESCENDING", "ASCENDING")
    )
    return sorted(s for s in seen if s[0] <= _HALF_SWATH_KM)


def nearest_tracks(centres: Sequence[tuple[float, float]]) -> list[int]:
    """One relative orbit per centre, each a different track: the one whose EW swath centre
    line passes nearest the centre among those not taken by an earlier centre."""
    taken: list[int] = []
    for lonlat in centres:
        free = [r for _, r, _ in orbits_seeing(lonlat) if r not in taken]
        if not free:
            raise ConfigError(f"no relative orbit left whose EW swath covers ({lonlat[0]:.2f}° E, {lonlat[1]:.2f}° N); "
                              f"taken: {taken}")
        taken.append(free[0])
    return taken


def scatter_centres(grid: Grid, n: int) -> list[tuple[float, float]]:
    """``n`` pass centres (lon, lat) spread over ``grid``: the centres of an r × c partition of
    the grid (r·c ≥ n, as square as the grid), row by row from the north-west, the first ``n``."""
    from pyproj import Transformer

    if n < 1:
        raise ConfigError(f"scatter needs at least one centre, got {n}")
    width, height = grid.xmax - grid.xmin, grid.ymax - grid.ymin
    cols = max(1, round(math.sqrt(n * width / height)))
    rows = math.ceil(n / cols)
    cols = math.ceil(n / rows)
    cells = [(grid.xmin + (j + 0.5) * width / cols, grid.ymax - (i + 0.5) * height / rows)
             for i in range(rows) for j in range(cols)][:n]
    lon, lat = Transformer.from_crs(grid.crs, "EPSG:4326", always_xy=True).transform(*np.array(cells).T)
    return [(round(float(a), 4), round(float(b), 4)) for a, b in zip(lon, lat)]


def parse_centres(text: str | None) -> list[tuple[float, float]] | str | None:
    """``"lon,lat;lon,lat"`` → [(lon, lat), …]; ``"scatter"`` and None pass through."""
    if text is None or text == "scatter":
        return text
    try:
        points = [tuple(float(v) for v in p.split(",")) for p in text.split(";")]
    except ValueError:
        points = []
    if not points or any(len(p) != 2 for p in points):
        raise ConfigError(f"pass centres: 'lon,lat;lon,lat' or 'scatter', got {text!r}")
    return points


def _check_centres(grid: Grid, centres: Sequence[tuple[float, float]]) -> None:
    """Refuse a pass centre outside the grid: its scenes would miss it."""
    from pyproj import Transformer

    to_grid = Transformer.from_crs("EPSG:4326", grid.crs, always_xy=True)
    for lon, lat in centres:
        x, y = to_grid.transform(lon, lat)
        if not (grid.xmin <= x <= grid.xmax and grid.ymin <= y <= grid.ymax):
            raise ConfigError(f"pass centre ({lon}° E, {lat}° N) lies outside the grid {grid.crs} {grid.bounds}")


def plan_acquisitions(
    n_scenes: int,
    start: str | dt.date,
    end: str | dt.date,
    *,
    relative_orbit: int = 24,
    centre_lat: float = 67.2,
    ascending: bool = False,
) -> list[tuple[dt.datetime, str, int]]:
    """``n_scenes`` evenly spread S1A/S1B passes over ``relative_orbit`` in [start, end].

    Returns (first-line time, mission, absolute orbit) per pass, sorted by time. An ascending pass
    reaches ``centre_lat`` earlier in its orbit than a descending one, by the arc between the two
    crossings of that latitude.
    """
    t0, t1 = pd.Timestamp(start).to_pydatetime(), pd.Timestamp(end).to_pydatetime() + dt.timedelta(days=1)
    if t1 <= t0:
        raise ConfigError(f"end {end} is before start {start}")
    along_s = (_TEMPLATE_CENTRE_LAT - centre_lat) / 360 * ORBIT_PERIOD_S
    along = dt.timedelta(seconds=along_s - (ascending_lead_s(centre_lat) if ascending else 0.0))
    first = _with_relative("S1A", TEMPLATE_ABSOLUTE_ORBIT + math.floor((t0 - TEMPLATE_START).total_seconds() / ORBIT_PERIOD_S), relative_orbit)
    candidates = []
    for k in range(first - 2 * 175, first + 175 * (int((t1 - t0).days / 12) + 3), 175):
        t_a = TEMPLATE_START + dt.timedelta(seconds=(k - TEMPLATE_ABSOLUTE_ORBIT) * ORBIT_PERIOD_S) + along
        t_b = t_a + dt.timedelta(days=6)
        b_estimate = _S1B_REF[0] + round((t_b - _S1B_REF[1]).total_seconds() / ORBIT_PERIOD_S)
        candidates += [(t_a, "S1A", k), (t_b, "S1B", _with_relative("S1B", b_estimate, relative_orbit))]
    candidates = sorted(c for c in candidates if t0 <= c[0] < t1)
    if n_scenes < 1 or n_scenes > len(candidates):
        raise ConfigError(
            f"{n_scenes} scenes requested but relative orbit {relative_orbit} is seen only "
            f"{len(candidates)} times between {start} and {end} (every 6 days)"
        )
    picks = np.unique(np.round(np.linspace(0, len(candidates) - 1, n_scenes)).astype(int))
    return [candidates[i] for i in picks]


def noise_errors(rng: np.random.Generator) -> tuple[dict[str, tuple[float, ...]], dict[str, tuple[float, ...]]]:
    """Per-subswath (EW1…EW5) noise scales and offsets of one scene, HH and HV.

    HV scales alternate around 1 within 0.85–1.10, EW1 worst (simulator-reference.md: real S1A HV
    0.99–1.06, S1B 0.84–0.90; offsets up to 2.4e-4), so ESA denoising leaves seams; HH errors are
    half as large.
    """
    low_high = [(0.85, 0.90), (1.03, 1.08), (0.92, 0.97), (1.03, 1.08), (0.93, 0.97)]
    hv = np.array([rng.uniform(a, b) for a, b in low_high])
    hh = 1 + (hv - 1) / 2
    return (
        {"hh": tuple(np.round(hh, 4)), "hv": tuple(np.round(hv, 4))},
        {p: tuple(np.round(rng.uniform(-3e-5, 3e-5, 5), 7)) for p in ("hh", "hv")},
    )


def _grid_centre(grid: Grid) -> tuple[float, float]:
    """Grid centre in lon/lat."""
    from pyproj import Transformer

    lon, lat = Transformer.from_crs(grid.crs, "EPSG:4326", always_xy=True).transform(
        (grid.xmin + grid.xmax) / 2, (grid.ymin + grid.ymax) / 2
    )
    return float(lon), float(lat)


def _scene_centre(lonlat: tuple[float, float], heading: float, along_km: float) -> tuple[float, float]:
    """``lonlat`` moved ``along_km`` along the track heading."""
    from pyproj import Geod

    lon, lat, _ = Geod(ellps="WGS84").fwd(lonlat[0], lonlat[1], heading, along_km * 1000.0)
    return float(lon), float(lat)


def _write_truth(path: Path, grid: Grid, times: list[dt.datetime], seed: int, progress) -> Path:
    """truth.zarr at each acquisition time, written atomically: ``truth_class`` (time, y, x) int8
    (sod4, −1 land) and ``surface`` (the forward model's :class:`~seaice_dask.simulate.truth.Surface`)."""
    fields = [truth_fields(grid, t, seed, grid)[["truth_class", "surface"]] for t in progress(times, "truth maps")]
    ds = write_crs(xr.concat(fields, dim="time"), grid.crs).set_coords("spatial_ref")
    for name in ("truth_class", "surface"):
        ds[name].encoding["coordinates"] = "spatial_ref"
    ds.attrs.update({"grid_" + k: v for k, v in grid.to_attrs().items()} | {"seed": seed})
    chunks = {"time": 1, "y": min(1024, grid.shape[0]), "x": min(1024, grid.shape[1])}
    tmp = path.with_name(path.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    with warnings.catch_warnings():  # consolidated metadata: not in the v3 spec yet, but read by xarray
        warnings.filterwarnings("ignore", message="Consolidated metadata", category=UserWarning)
        ds.chunk(chunks).to_zarr(tmp, mode="w", consolidated=True)
    shutil.rmtree(path, ignore_errors=True)
    tmp.rename(path)
    return path


def _progress_factory(enabled: bool):
    def wrap(items, description: str, total: int | None = None):
        if not enabled:
            return items
        from rich.progress import track

        return track(items, description=description, total=total, transient=False)

    return wrap


#: Passes per rendering process, at least: starting one (spawn, imports) costs about two passes.
PASSES_PER_PROCESS = 4


def render_processes(n_passes: int) -> int:
    """Processes that render ``n_passes`` by default: one per :data:`PASSES_PER_PROCESS` passes,
    at most one per CPU."""
    return max(1, min(os.cpu_count() or 1, n_passes // PASSES_PER_PROCESS))


def simulate_series(
    out: str | Path,
    *,
    n_scenes: int = 29,
    start: str | dt.date = "2020-10-05",
    end: str | dt.date = "2021-03-22",
    size: str = "small",
    product: str = "GRDM",
    seed: int = 0,
    grid: Grid | None = None,
    fmt: str = "zip",
    charts: bool = True,
    progress: bool = True,
    slices_per_pass: int = 1,
    orbits: Sequence[int] | None = (24,),
    centres: Sequence[tuple[float, float]] | str | None = None,
    processes: int = 1,
) -> SimulatedSeries:
    """Simulate a season: ``out/scenes/*.zip|.SAFE``, ``out/charts/``, ``out/truth.zarr``, ``out/simulation.json``.

    ``truth.zarr`` holds ``truth_class`` (time, y, x) int8 (sod4 ids, −1 land) and ``surface``
    (finer surface types of :class:`~seaice_dask.simulate.truth.Surface`) with the grid's CRS,
    one time step per pass at its first-line time.

    ``n_scenes`` passes in all, shared out over the relative ``orbits`` (the first ones take the
    remainder); each orbit's passes (S1A and S1B, ~6 days apart) are evenly spread over
    [start, end], ascending or descending as the orbit crosses the grid (:func:`pass_direction`).
    Each pass is rendered once and written as ``slices_per_pass`` consecutive slice products
    (:mod:`~seaice_dask.simulate.slices`). The truth is drawn on ``grid`` (default: the Denmark
    Strait grid) at each pass; weekly SIGRID-3 charts are derived from the truth every 7 days from
    ``start``. Existing products are kept (re-running resumes an interrupted simulation).

    ``centres`` places the passes on a grid larger than a scene: (lon, lat) pass centres inside
    the grid, one per orbit, or ``"scatter"`` for :func:`scatter_centres` (one per orbit, or one
    per pass when ``orbits`` is None); each orbit's passes are centred (± 25 km along track) on
    its own centre instead of the grid's. ``orbits=None`` flies each centre by the track passing
    nearest it, a different track for each (:func:`nearest_tracks`).

    ``processes`` > 1 render the passes side by side (spawned processes: a script calling this
    needs the usual ``if __name__ == "__main__":`` guard; :func:`render_processes` suggests a
    number) while this one draws the truth and the charts; every file is the same whatever
    their number.
    """
    out = Path(out)
    grid = grid or default_grid()
    track = _progress_factory(progress)
    if isinstance(centres, str):
        if centres != "scatter":
            raise ConfigError(f"centres: a list of (lon, lat) or 'scatter', got {centres!r}")
        centres = scatter_centres(grid, n_scenes if orbits is None else len(orbits))
    points = [(float(lon), float(lat)) for lon, lat in centres] if centres is not None else [_grid_centre(grid)]
    _check_centres(grid, points)
    if orbits is None:
        orbits = nearest_tracks(points)
    orbits = tuple(int(r) for r in orbits)
    if not orbits or len(set(orbits)) != len(orbits) or n_scenes < len(orbits):
        raise ConfigError(f"orbits {list(orbits)}: give distinct relative orbits and at least one pass ({n_scenes}) per orbit")
    if centres is None:
        points = points * len(orbits)
    elif len(points) != len(orbits):
        raise ConfigError(f"{len(points)} pass centres for {len(orbits)} orbits {list(orbits)}: give one centre per orbit")
    ascending = {r: pass_direction(r, c) == "ASCENDING" for r, c in zip(orbits, points)}
    counts = [n_scenes // len(orbits) + (k < n_scenes % len(orbits)) for k in range(len(orbits))]
    plan = sorted(
        (t, mission, absolute, ascending[r], c)
        for r, c, count in zip(orbits, points, counts)
        for t, mission, absolute in plan_acquisitions(
            count, start, end, relative_orbit=r, centre_lat=c[1], ascending=ascending[r]
        )
    )
    rng = np.random.default_rng([seed, 5])
    (out / "scenes").mkdir(parents=True, exist_ok=True)
    specs = []
    for t, mission, absolute, up, centre in plan:
        scale, offset = noise_errors(rng)
        heading = (ascending_heading if up else descending_heading)(centre[1])
        specs.append(
            SceneSpec(
                start=t,
                absolute_orbit=absolute,
                mission=mission,
                product=product,
                size=size,
                centre_lonlat=_scene_centre(centre, heading, float(rng.uniform(-25, 25))),
                noise_scale=scale,
                noise_offset=offset,
                seed=seed,
                slices=slices_per_pass,
                ascending=up,
            )
        )
    label = f"simulating {len(specs)} {product} passes" + (f" × {slices_per_pass} slices" if slices_per_pass > 1 else "")
    render = partial(write_pass, out / "scenes", grid=grid, fmt="zip" if fmt == "zip" else "safe")
    with ExitStack() as stack:
        mapper = map  # lazy: one process renders the passes after the truth and charts
        if processes > 1:  # spawned: a forked child would inherit the caller's threads and locks
            mapper = stack.enter_context(ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("spawn"))).map
        rendering = mapper(render, specs)
        truth_path = _write_truth(out / "truth.zarr", grid, [s.acquisition_start for s in specs], seed, track)
        chart_paths: list[Path] = []
        if charts:
            from seaice_dask.simulate.charts import write_weekly_charts

            chart_grid = Grid.from_bounds(grid.crs, grid.bounds, max(grid.resolution, 500.0))
            weeks = pd.date_range(pd.Timestamp(start), pd.Timestamp(end), freq="7D")
            weekly = weekly_truth(chart_grid, list(weeks), seed, domain=grid)
            chart_paths = list(write_weekly_charts(weekly, out / "charts", seed=seed))
        passes = list(track(rendering, label, total=len(specs)))
    info = [_product_info(out, path, spec, k) for spec, paths in zip(specs, passes, strict=True)
            for k, path in enumerate(paths, start=1)]
    scenes = [path for paths in passes for path in paths]

    from seaice_dask import __version__

    meta = {
        "generator": f"seaice-dask {__version__} simulator",
        "seed": seed,
        "product": product,
        "size": size,
        "grid": grid.to_attrs(),
        "relative_orbits": list(orbits),
        "slices_per_pass": slices_per_pass,
        "scenes": info,
        "passes": [
            {
                "start": spec.acquisition_start.isoformat(),
                "mission": spec.mission,
                "absolute_orbit": spec.absolute_orbit,
                "relative_orbit": spec.relative_orbit,
                "pass": spec.pass_direction,
                "products": [p.name.removesuffix(".zip").removesuffix(".SAFE") for p in paths],
            }
            for spec, paths in zip(specs, passes)
        ],
        "charts": [str(p.relative_to(out)) for p in chart_paths],
        "truth": str(truth_path.relative_to(out)),
    }
    meta_path = out / "simulation.json"
    tmp = meta_path.with_name(meta_path.name + ".tmp")
    tmp.write_text(json.dumps(meta, indent=2))
    tmp.replace(meta_path)
    return SimulatedSeries(
        scenes=scenes, charts=chart_paths, truth=truth_path, metadata=meta_path, info=info, passes=passes
    )


def _product_info(out: Path, path: Path, spec: SceneSpec, number: int) -> dict:
    """simulation.json entry of one written product (slice ``number`` of ``spec``'s pass)."""
    from seaice_dask.safe import open_safe

    product = open_safe(path)
    return {
        "path": str(path.relative_to(out)),
        "product": product.name,
        "mission": spec.mission,
        "start": pd.Timestamp(product.start_time).isoformat(),
        "stop": pd.Timestamp(product.stop_time).isoformat(),
        "absolute_orbit": spec.absolute_orbit,
        "relative_orbit": spec.relative_orbit,
        "pass": spec.pass_direction,
        "datatake": spec.datatake,
        "slice_number": number,
        "total_slices": spec.slices,
        "pass_start": spec.acquisition_start.isoformat(),
        "centre_lonlat": list(spec.centre_lonlat),
        "noise_scale": {k: [float(x) for x in v] for k, v in spec.noise_scale.items()},
        "noise_offset": {k: [float(x) for x in v] for k, v in spec.noise_offset.items()},
    }


__all__ = [
    "SimulatedSeries",
    "nearest_tracks",
    "noise_errors",
    "orbits_seeing",
    "parse_centres",
    "pass_direction",
    "plan_acquisitions",
    "scatter_centres",
    "simulate_series",
    "swath_offset_km",
]
