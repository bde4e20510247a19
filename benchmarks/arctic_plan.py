"""The Arctic on paper: a season of every EW GRDM product north of 60°N on an 80 m EPSG:3413 grid.

No pipeline stage runs here: the script projects the per-scene costs measured on the 2-core
development machine (benchmarks/README.md, ``bench_season`` 29 scenes and ``bench_ingest``)
onto the Arctic, from stated assumptions, and counts the two things geometry decides:

* **products a day**: the arc of each orbit north of 60°N (circular orbit, inclination 98.18°,
  175 orbits in 12 days: the Sentinel-1 reference orbit), cut into slices of the template
  product's length (64.3 s of a real EW GRDM product, ~440 km of ground track), for two
  satellites (S1A + S1C), keeping only slices whose footprint holds sea (the shipped Natural
  Earth land): EW is the sea-ice mode of the observation scenario; land north of 60°N is IW or
  not acquired.
* **blocks a scene touches** on the 80 m grid, for chunk sizes 256 … 2048: the re-targeted
  template footprint placed at several positions over the Arctic. With the coverage index (issue
  22) a stage computes only those blocks, so its cost per scene is the measured per-scene cost
  × blocks touched / blocks of the default 5000 × 5000 grid (one scene wide).

Usage: ``python -m benchmarks.arctic_plan [--chunk 512] [--days 182] [--efficiency 0.8]``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import math

import numpy as np

from benchmarks.common import write_results

#: Worker CPU-seconds per full scene on the default 80 m grid (5000 × 5000, 512 chunks), from
#: ``bench_season --scenes 29`` (benchmarks/README.md: ingest 547 s, features 687 s, predict
#: 485 s, export 93 s of worker CPU for 29 scenes, 2 single-threaded workers on 2 cores).
CPU_S_PER_SCENE = {"ingest": 547 / 29, "features": 687 / 29, "predict": 485 / 29, "export": 93 / 29}
#: Bytes a scene adds to the store: ingest measured (``bench_ingest``: 233 MiB for σ0 HH, HV,
#: incidence, valid); features and predictions scaled by their raw bytes per pixel (10 GLCM
#: float32; class int8 + 4 probabilities float32) against ingest's 13, at ingest's compression.
INGEST_BYTES_PER_SCENE = 233 * 2**20
RAW_BYTES_PER_PX = {"ingest": 13, "features": 40, "predict": 17}
#: Exported per scene (the demo's 1000 × 1000 export: 56 KB class COG, 2.2 MB probabilities),
#: scaled to 25 M pixels.
EXPORT_BYTES_PER_SCENE = 25 * (56e3 + 2.2e6)
#: Peak memory of one single-threaded worker in the 29-scene run (predict 1.11 GiB, evaluate
#: 2.81 GiB is not in a daily run).
PEAK_WORKER_GIB = 1.11
#: Measured parallel efficiency from 1 to 2 workers (``bench_scaling``: features 0.82, predict 0.86).
EFFICIENCY = 0.8

EARTH_KM = 6371.0
ORBITS_PER_DAY = 175 / 12
SATELLITES = ("S1A", "S1C")  # S1A + S1C, 180° apart in the same orbit plane since 2025
SWATH_KM = 400.0
DEFAULT_GRID_PX = 5000 * 5000  # every pixel of the default grid is computed in the measured runs
#: Scheduler time per task of the distributed scheduler (Dask documentation, best practices:
#: "avoid very large graphs", roughly 1 ms of overhead per task).
SCHEDULER_S_PER_TASK = 1e-3
#: Tasks per block and stage (read, compute, write), an assumption: the stages chunk their
#: graphs on the grid's blocks, one task per step.
TASKS_PER_BLOCK = 3
STAGES = 4
#: Days a season cluster works through in its hour, at a day per 10 minutes.
DAYS_PER_HOUR = 6


def _slice_seconds() -> float:
    from seaice_dask.simulate.safe_writer import TEMPLATE_START, TEMPLATE_STOP

    return (TEMPLATE_STOP - TEMPLATE_START).total_seconds()


def _arc_deg(lat: float) -> float:
    """Degrees of argument of latitude an orbit spends north of ``lat``."""
    from seaice_dask.simulate.safe_writer import INCLINATION_DEG

    u = math.degrees(math.asin(math.sin(math.radians(lat)) / math.sin(math.radians(INCLINATION_DEG))))
    return 180.0 - 2 * u


def slice_centres(lat_min: float = 60.0) -> list[tuple[float, float, int, int]]:
    """(lon, lat, relative orbit, slice) of every EW slice of one 12-day cycle north of ``lat_min``:
    the swath centre (425.6 km right of the nadir track) at each slice's mid time."""
    from pyproj import Geod

    from seaice_dask.simulate.safe_writer import INCLINATION_DEG, ORBIT_PERIOD_S
    from seaice_dask.simulate.series import _NODE_LON_TEMPLATE, _SWATH_CENTRE_KM

    geod = Geod(ellps="WGS84")
    arc = _arc_deg(lat_min)
    seconds = arc / 360 * ORBIT_PERIOD_S
    n = math.ceil(seconds / _slice_seconds())
    u0 = 90.0 - arc / 2
    out = []
    inc = math.radians(INCLINATION_DEG)
    for r in range(175):
        node = _NODE_LON_TEMPLATE - r * 360.0 * 12 / 175
        for k in range(n):
            u = math.radians(u0 + (k + 0.5) * arc / n)
            lat = math.degrees(math.asin(math.sin(inc) * math.sin(u)))
            lon = node + math.degrees(math.atan2(math.cos(inc) * math.sin(u), math.cos(u))) \
                - 360.0 * (math.degrees(u) / 360 * ORBIT_PERIOD_S) / 86400
            # the track heading from the next point, then the swath centre to its right
            u2 = u + 1e-4
            lat2 = math.degrees(math.asin(math.sin(inc) * math.sin(u2)))
            lon2 = node + math.degrees(math.atan2(math.cos(inc) * math.sin(u2), math.cos(u2))) \
                - 360.0 * (math.degrees(u2) / 360 * ORBIT_PERIOD_S) / 86400
            heading, _, _ = geod.inv(lon, lat, lon2, lat2)
            clon, clat, _ = geod.fwd(lon, lat, heading + 90.0, _SWATH_CENTRE_KM * 1e3)
            out.append((((clon + 180) % 360) - 180, clat, r + 1, k))
    return out


def sea_slices(centres: list[tuple[float, float, int, int]]) -> np.ndarray:
    """Which slices hold sea: any of 9 points (centre, ±150 km across and along) off the land."""
    import geopandas as gpd
    import shapely
    from pyproj import CRS, Transformer

    from seaice_dask.data import LAND_POLYGONS

    laea = CRS.from_epsg(6931)
    land = gpd.read_file(LAND_POLYGONS, bbox=(-180, 50, 180, 90)).to_crs(laea)
    tree = shapely.STRtree(land.geometry.values)
    lon, lat = np.array([(c[0], c[1]) for c in centres]).T
    x, y = Transformer.from_crs("EPSG:4326", laea, always_xy=True).transform(lon, lat)
    offsets = [(dx, dy) for dx in (-150e3, 0, 150e3) for dy in (-150e3, 0, 150e3)]
    sea = np.zeros(len(centres), bool)
    for dx, dy in offsets:
        points = shapely.points(x + dx, y + dy)
        on_land = np.zeros(len(centres), bool)
        idx, _ = tree.query(points, predicate="within")
        on_land[idx] = True
        sea |= ~on_land
    return sea


def footprint_blocks(chunks: list[int], resolution: float = 80.0, n_places: int = 24) -> dict[int, dict[str, float]]:
    """Blocks of an EPSG:3413 grid that one EW GRDM footprint touches, per chunk size, averaged
    over ``n_places`` scenes re-targeted over the Arctic (their own lattice offsets)."""
    import shapely
    from pyproj import Transformer

    from seaice_dask.simulate.safe_writer import SceneSpec, retarget

    rng = np.random.default_rng(0)
    to_grid = Transformer.from_crs("EPSG:4326", "EPSG:3413", always_xy=True)
    stats: dict[int, list[tuple[int, float]]] = {c: [] for c in chunks}
    for _ in range(n_places):
        centre = (float(rng.uniform(-180, 180)), float(rng.uniform(66, 80)))
        spec = SceneSpec(start=dt.datetime(2021, 1, 15, 8), absolute_orbit=36146, size="full", centre_lonlat=centre)
        geo = retarget(spec).geolocation("hh")
        x, y = to_grid.transform(geo["longitude"], geo["latitude"])
        footprint = shapely.convex_hull(shapely.multipoints(np.stack([x, y], 1)))  # tie points: a near-rectangle
        for c in chunks:
            size = c * resolution
            x0, y0, x1, y1 = footprint.bounds
            cols = np.arange(math.floor(x0 / size), math.ceil(x1 / size))
            rows = np.arange(math.floor(y0 / size), math.ceil(y1 / size))
            cells = [shapely.box(i * size, j * size, (i + 1) * size, (j + 1) * size) for i in cols for j in rows]
            touched = int(np.count_nonzero(shapely.intersects(cells, footprint)))
            stats[c].append((touched, footprint.area / (touched * size * size)))
    return {c: {"blocks": float(np.mean([s[0] for s in v])), "valid_share": float(np.mean([s[1] for s in v]))}
            for c, v in stats.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunk", type=int, default=1024, help="grid.chunk of the plan (256, 512, 1024 or 2048)")
    parser.add_argument("--days", type=int, default=182, help="season length (1 October … 31 March)")
    parser.add_argument("--efficiency", type=float, default=EFFICIENCY, help="parallel efficiency of the cluster")
    args = parser.parse_args()

    centres = slice_centres(60.0)
    sea = sea_slices(centres)
    per_cycle = int(sea.sum())
    products_day = per_cycle / 12 * len(SATELLITES)
    arc = _arc_deg(60.0)
    slices_per_arc = len(centres) // 175

    blocks = footprint_blocks([256, 512, 1024, 2048])
    scale = blocks[args.chunk]["blocks"] * args.chunk**2 / DEFAULT_GRID_PX

    from pyproj import Transformer

    # the grid: the 60°N circle on EPSG:3413, snapped to the 80 m lattice
    to_grid = Transformer.from_crs("EPSG:4326", "EPSG:3413", always_xy=True)
    xs, ys = to_grid.transform(np.arange(-180, 180, 0.5), np.full(720, 60.0))
    half = max(np.abs(xs).max(), np.abs(ys).max())
    side_px = 2 * math.ceil(half / 80.0)
    grid_px = side_px**2

    rows = []
    season_scenes = products_day * args.days
    total_cpu_h = 0.0
    for stage, cpu_s in CPU_S_PER_SCENE.items():
        per_scene = cpu_s * scale
        cpu_h = per_scene * season_scenes / 3600
        total_cpu_h += cpu_h
        rows.append({"stage": stage, "cpu_s_per_scene_measured": round(cpu_s, 1),
                     "cpu_s_per_scene_arctic": round(per_scene, 1),
                     "cpu_h_per_day": round(per_scene * products_day / 3600, 1),
                     "cpu_h_season": round(cpu_h), "cpu_h_season_without_skipping":
                     round(cpu_s * grid_px / 25e6 * (season_scenes / slices_per_arc) / 3600)})
    rows.append({"stage": "total", "cpu_h_per_day": round(total_cpu_h / args.days, 1), "cpu_h_season": round(total_cpu_h),
                 "cpu_h_season_without_skipping": sum(r["cpu_h_season_without_skipping"] for r in rows)})

    store_scene = {k: INGEST_BYTES_PER_SCENE * v / RAW_BYTES_PER_PX["ingest"] * scale for k, v in RAW_BYTES_PER_PX.items()}
    store_day = sum(store_scene.values()) * products_day
    export_day = EXPORT_BYTES_PER_SCENE * scale * products_day
    cpu_day_s = total_cpu_h * 3600 / args.days
    cores_day = math.ceil(cpu_day_s / 600 / args.efficiency)
    threads = 4
    gib_per_core = math.ceil(PEAK_WORKER_GIB * 1.8)
    clusters_season = math.ceil(args.days / DAYS_PER_HOUR)
    tasks_day = products_day * blocks[args.chunk]["blocks"] * STAGES * TASKS_PER_BLOCK
    day_cluster = {"cores": cores_day, "workers": math.ceil(cores_day / threads), "threads_per_worker": threads,
                   "memory_per_worker_gib": threads * gib_per_core, "schedulers": 1,
                   "tasks": round(tasks_day), "scheduler_busy_share": round(tasks_day * SCHEDULER_S_PER_TASK / 600, 2),
                   "store_write_mb_s": round(store_day / 600 / 1e6), "export_write_mb_s": round(export_day / 600 / 1e6)}
    cluster = {
        "day in 10 min": day_cluster,
        "season in 1 h": {**day_cluster, "clusters": clusters_season, "days_per_cluster": DAYS_PER_HOUR,
                          "cores": clusters_season * cores_day, "workers": clusters_season * day_cluster["workers"],
                          "schedulers": clusters_season, "tasks": round(tasks_day * args.days),
                          "store_write_mb_s": clusters_season * day_cluster["store_write_mb_s"],
                          "export_write_mb_s": clusters_season * day_cluster["export_write_mb_s"]},
    }
    chunk_rows = [{"chunk": c, "blocks_per_scene": round(v["blocks"], 1), "valid_share_of_computed": round(v["valid_share"], 3),
                   "cpu_vs_default_grid": round(v["blocks"] * c * c / DEFAULT_GRID_PX, 2),
                   "scheduler_busy_share_day_in_10_min":
                       round(products_day * v["blocks"] * STAGES * TASKS_PER_BLOCK * SCHEDULER_S_PER_TASK / 600, 2),
                   "MiB_per_float32_chunk": round(c * c * 4 / 2**20, 2)} for c, v in blocks.items()]

    assumptions = {
        "orbit": "Sentinel-1 reference orbit: sun-synchronous, inclination 98.18°, 175 orbits per 12-day repeat cycle",
        "constellation": "S1A + S1C (S1B lost December 2021; S1C in the S1B slot since 2025): 2 satellites",
        "mode": "EW over the Arctic seas and sea ice (the observation scenario's sea-ice mode); land north of 60°N "
                "(Greenland's interior, Siberia, Canada) in IW or not acquired: a slice counts when its footprint holds sea",
        "slice": f"{_slice_seconds():.1f} s (the template EW GRDM product), swath {SWATH_KM:.0f} km",
        "arc_north_of_60N_deg": round(arc, 1),
        "slices_per_arc": slices_per_arc,
        "per_scene_costs": "benchmarks/README.md: bench_season 29 scenes (worker CPU), bench_ingest (store bytes), "
                           "2 single-threaded workers, 2 cores",
        "cost_per_scene_on_the_arctic_grid": "measured per-scene cost × blocks a footprint touches / 100 blocks "
                                             "of the default grid (the coverage index computes only those)",
        "without_skipping": "every block of the grid at each time step (one time step per pass: a pass north of 60°N "
                            f"is {slices_per_arc} slices)",
        "efficiency": args.efficiency,
        "memory": f"{gib_per_core} GiB per core: the measured peak of a single-threaded worker ({PEAK_WORKER_GIB} GiB) + 80 %",
        "chunking": f"grid.chunk {args.chunk} (y, x), one time step per chunk; features and predictions on the same chunks",
        "scheduler": f"distributed scheduler, ~{SCHEDULER_S_PER_TASK * 1e3:g} ms per task (Dask best practices), "
                     f"{TASKS_PER_BLOCK} tasks per block and stage (assumed), {STAGES} stages; workers of {threads} "
                     "threads (the Numba kernels release the GIL); a season in 1 h runs as "
                     f"{clusters_season} independent day clusters of {DAYS_PER_HOUR} days each (one scheduler cannot "
                     "take a season's tasks in an hour)",
    }
    grid_info = {"crs": "EPSG:3413", "resolution_m": 80.0, "side_px": side_px, "pixels": grid_px,
                 "pixels_vs_default_grid": round(grid_px / 25e6, 1)}
    summary = {
        "products_per_cycle": per_cycle, "slices_per_cycle_all": len(centres), "sea_share": round(per_cycle / len(centres), 3),
        "products_per_day": round(products_day, 1), "products_per_season": round(season_scenes),
        "store_bytes_per_scene": {k: round(v) for k, v in store_scene.items()},
        "store_tb_per_day": round(store_day / 1e12, 3), "store_tb_season": round(store_day * args.days / 1e12, 1),
        "export_tb_season": round(export_day * args.days / 1e12, 2),
        "cluster": cluster,
    }
    print(f"Arctic plan: {products_day:.0f} EW GRDM products a day north of 60°N "
          f"({per_cycle} of {len(centres)} slices per 12-day cycle hold sea, × {len(SATELLITES)} satellites / 12 days); "
          f"{season_scenes:.0f} in {args.days} days; grid {side_px} × {side_px} px ({grid_px / 25e6:.0f}× the default)")
    write_results("arctic_plan", rows, chunks=chunk_rows, summary=summary, grid=grid_info, assumptions=assumptions)
    print()
    for r in chunk_rows:
        print(r)
    print()
    for k, v in summary.items():
        print(f"{k}: {v}")


if __name__ == "__main__":
    main()
