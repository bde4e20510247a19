"""Simulated weekly ice charts: NIC-style SIGRID-3 zipped shapefiles drawn from a truth map.

An ice analyst does not trace every floe: a chart generalises the ice cover into coarse
polygons, each with an egg code (total concentration CT, partial concentrations C_a, C_b, C_c of
the thickest ice types S_a, S_b, S_c, their forms F_a, F_b, F_c). This writer does the same:

1. **Generalise.** The truth is summarised on blocks of ``scale_m`` (class shares per block);
   each block takes its majority class, patches under three blocks are merged away, the block map
   is polygonised and the polygons simplified as one coverage (no gaps, no overlaps), so the
   boundaries look drawn rather than pixelated.
2. **Code.** For each polygon, the truth's class shares among its non-land pixels give CT (ice
   share) and the partial concentrations in tenths (thickest first, summing to CT); each sod4
   class is written with a real stage code (young: 81/83/84/85, first-year: 86/87/91/93, old:
   95/96/97) and a plausible form. Under-a-tenth old ice becomes the trace stage ``CN``.
   Majority-land polygons are POLY_TYPE ``L`` with NULL codes (as in CIS charts); ice-free ones
   ``W``. Missing values are ``-9``; total concentrations use 91/92 and, now and then, interval
   codes (e.g. 78 = 7/10–8/10) as real charts do.
3. **Imperfect, like real charts.** A few polygons get a self-intersecting "bow-tie" ring
   (two exterior vertices swapped), and everything is written in a polar stereographic CRS
   (EPSG:3413 by default) rather than the grid's.

The dominant stage of each polygon is the truth's majority ice class inside it, so reading the
charts back with the default dominance rule reproduces the truth away from polygon edges.
"""

from __future__ import annotations

import tempfile
import zipfile
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import rasterio.features
import rasterio.transform
import shapely
import xarray as xr
from affine import Affine

LAND, WATER, YOUNG, FIRST_YEAR, OLD = -1, 0, 1, 2, 3
_CLASSES = np.array([LAND, WATER, YOUNG, FIRST_YEAR, OLD])

#: Stage-of-development codes (SIGRID-3 Table 2) drawn for each sod4 ice class, with weights.
STAGE_CODES: dict[int, tuple[tuple[str, ...], tuple[float, ...]]] = {
    YOUNG: (("81", "83", "84", "85"), (0.25, 0.15, 0.3, 0.3)),
    FIRST_YEAR: (("86", "87", "91", "93"), (0.1, 0.3, 0.4, 0.2)),
    OLD: (("95", "96", "97"), (0.3, 0.2, 0.5)),
}
#: Forms of ice (SIGRID-3 Table 3) drawn for each class; new ice (81) has none (99).
FORM_CODES: dict[int, tuple[str, ...]] = {YOUNG: ("04", "05"), FIRST_YEAR: ("05", "06", "07"), OLD: ("06", "07")}
FIELDS = ("POLY_TYPE", "CT", "CA", "SA", "FA", "CB", "SB", "FB", "CC", "SC", "FC", "CN", "CD")
MISSING = "-9"
#: Default generalisation: 2 km blocks. Operational charts are coarser (polygons of 10-50 km);
#: pass a larger ``scale_m`` to study how much label noise that adds.
DEFAULT_SCALE_M = 2000.0


def _block_shares(labels: np.ndarray, block: int) -> np.ndarray:
    """(len(_CLASSES), ny_b, nx_b) share of each class per ``block`` × ``block`` cell."""
    ny, nx = labels.shape
    pad_y, pad_x = -ny % block, -nx % block
    padded = np.pad(labels, ((0, pad_y), (0, pad_x)), constant_values=-2)  # -2: outside the grid
    cells = padded.reshape(padded.shape[0] // block, block, padded.shape[1] // block, block)
    counts = np.stack([(cells == c).sum(axis=(1, 3)) for c in _CLASSES]).astype(np.float32)
    return counts / np.maximum(counts.sum(axis=0), 1)


def generalise(labels: np.ndarray, transform: Affine, scale_m: float) -> list[tuple[shapely.Geometry, int]]:
    """Coarse analyst-style polygons (map coordinates) with their majority class.

    Block majority at ``scale_m``, patches under three blocks merged into their neighbours,
    polygonisation, then a coverage simplification with half a block as tolerance.
    """
    resolution = abs(transform.a)
    block = max(1, int(round(scale_m / resolution)))
    coarse = _CLASSES[np.argmax(_block_shares(labels, block), axis=0)].astype(np.int16)
    coarse = rasterio.features.sieve(coarse, size=3, connectivity=4)  # no lone blocks
    coarse_transform = transform @ Affine.scale(block)
    polygons = [
        (shapely.geometry.shape(geom), int(value))
        for geom, value in rasterio.features.shapes(coarse, transform=coarse_transform, connectivity=4)
    ]
    geoms = shapely.coverage_simplify(np.array([g for g, _ in polygons]), 0.5 * block * resolution)
    clip = shapely.box(*rasterio.transform.array_bounds(*labels.shape, transform))
    geoms = shapely.intersection(shapely.make_valid(geoms), clip)
    return [(g, v) for g, (_, v) in zip(geoms, polygons, strict=True) if not g.is_empty]


def _concentration_code(ice_share: float, tenths: int, rng: np.random.Generator) -> str:
    if ice_share >= 0.995:
        return "92"
    if tenths >= 10:
        return "91"
    if tenths <= 8 and rng.random() < 0.25:
        return f"{tenths}{tenths + 1}"  # interval code, e.g. 78 = 7/10-8/10 (SIGRID-3 Table 1)
    return f"{tenths}0"


def _tenths(ice: dict[int, float], total_tenths: int) -> dict[int, int]:
    """Partial concentrations in tenths summing to ``total_tenths`` (largest remainders), with
    the largest ice class strictly ahead of the others so the chart's dominant type is the
    truth's majority; classes left without a tenth are dropped."""
    classes = sorted(ice, key=lambda c: (-ice[c], -c))  # largest first; ties: thicker first
    quota = np.array([ice[c] for c in classes]) / sum(ice.values()) * total_tenths
    tenths = np.floor(quota).astype(int)
    for k in np.argsort(-(quota - tenths), kind="stable")[: total_tenths - tenths.sum()]:
        tenths[k] += 1
    for k in range(1, len(tenths)):
        while tenths[k] >= tenths[0] and tenths[k] > 0:
            tenths[k] -= 1
            tenths[0] += 1
    return {c: int(t) for c, t in zip(classes, tenths, strict=True) if t > 0}


def egg_code(shares: dict[int, float], rng: np.random.Generator) -> dict[str, str | None]:
    """SIGRID-3 attributes of one polygon from its non-land class shares (sum 1).

    A polygon where open water is the largest class is written as water (POLY_TYPE ``W``), so
    the dominant class read back from the chart is always the truth's majority class.
    """
    ice = {c: shares.get(c, 0.0) for c in (OLD, FIRST_YEAR, YOUNG)}  # thickest first
    ice_share = sum(ice.values())
    total_tenths = min(10, int(round(ice_share * 10)))
    record: dict[str, str | None] = dict.fromkeys(FIELDS, MISSING)
    if total_tenths == 0 or shares.get(WATER, 0.0) > max(ice.values()):
        # mostly open water: generalised as water, scattered ice under the chart's resolution
        record.update(POLY_TYPE="W", CT="01" if ice_share > 0 else "98")
        return record
    record.update(POLY_TYPE="I", CT=_concentration_code(ice_share, total_tenths, rng))
    partial = _tenths(ice, total_tenths)
    if ice[OLD] > 0 and OLD not in partial:
        record["CN"] = str(rng.choice(STAGE_CODES[OLD][0]))  # trace of old ice (S_o)
    types = [c for c in (OLD, FIRST_YEAR, YOUNG) if c in partial]
    for (conc, stage, form), cls in zip((("CA", "SA", "FA"), ("CB", "SB", "FB"), ("CC", "SC", "FC")), types):
        codes, weights = STAGE_CODES[cls]
        record[stage] = str(rng.choice(codes, p=weights))
        record[form] = "99" if record[stage] == "81" else str(rng.choice(FORM_CODES[cls]))
        if len(types) > 1:
            record[conc] = f"{partial[cls]}0"
    return record


def _bow_tie(polygon: shapely.Polygon, rng: np.random.Generator) -> shapely.Polygon | None:
    """The polygon with two consecutive exterior vertices swapped, if that makes it invalid."""
    ring = np.asarray(polygon.exterior.coords)[:-1]
    if len(ring) < 6:
        return None
    for i in rng.permutation(len(ring) - 1)[:20]:
        swapped = ring.copy()
        swapped[[i, i + 1]] = swapped[[i + 1, i]]
        candidate = shapely.Polygon(np.vstack([swapped, swapped[:1]]), polygon.interiors)
        if not candidate.is_valid:
            return candidate
    return None


def chart_frame(
    truth: xr.DataArray, *, scale_m: float | None = None, crs: str = "EPSG:3413", n_invalid: int = 2, seed: int = 0
) -> gpd.GeoDataFrame:
    """One simulated chart (polygons + SIGRID-3 attributes) from a (y, x) sod4 truth with CRS."""
    import rioxarray  # noqa: F401  (registers the .rio accessor)

    rng = np.random.default_rng(seed)
    labels = np.asarray(truth.values, dtype=np.int8)
    if labels.size and (labels.min() < LAND or labels.max() > OLD):
        raise ValueError(f"truth holds values outside the sod4 ids -1..3: {np.unique(labels).tolist()}")
    transform = truth.rio.transform()
    resolution = abs(transform.a)
    if scale_m is None:
        scale_m = max(4 * resolution, DEFAULT_SCALE_M)
    polygons = generalise(labels, transform, scale_m)
    ids = rasterio.features.rasterize(
        [(g, i + 1) for i, (g, _) in enumerate(polygons)], out_shape=labels.shape, transform=transform, dtype="int32"
    )
    pairs = ids.ravel().astype(np.int64) * len(_CLASSES) + (labels.ravel() - _CLASSES[0])  # classes are consecutive
    counts = np.bincount(pairs, minlength=(len(polygons) + 1) * len(_CLASSES)).reshape(-1, len(_CLASSES))
    records = []
    for i, (_, majority) in enumerate(polygons):
        sea = counts[i + 1, 1:]
        if majority == LAND or sea.sum() == 0:
            records.append({**dict.fromkeys(FIELDS), "POLY_TYPE": "L"})
        else:
            records.append(egg_code(dict(zip(_CLASSES[1:].tolist(), sea / sea.sum(), strict=True)), rng))
    frame = gpd.GeoDataFrame(pd.DataFrame.from_records(records, columns=list(FIELDS)),
                             geometry=[g for g, _ in polygons], crs=truth.rio.crs)  # fmt: skip
    frame = frame.set_geometry(shapely.segmentize(frame.geometry.values, 2 * scale_m)).to_crs(crs)
    geoms = list(frame.geometry.values)
    for row in rng.permutation(np.flatnonzero((frame["POLY_TYPE"] == "I").to_numpy())):
        tie = _bow_tie(geoms[row], rng) if n_invalid > 0 and geoms[row].geom_type == "Polygon" else None
        if tie is not None:
            geoms[row] = tie
            n_invalid -= 1
    frame = frame.set_geometry(gpd.GeoSeries(geoms, index=frame.index, crs=frame.crs))
    frame.insert(0, "AREA", frame.geometry.area.round(1))
    frame.insert(1, "PERIMETER", frame.geometry.length.round(1))
    return frame


def write_weekly_charts(
    truth: xr.DataArray,
    out_dir: Path,
    *,
    seed: int = 0,
    scale_m: float | None = None,
    crs: str = "EPSG:3413",
    n_invalid: int = 2,
) -> list[Path]:
    """Write one NIC-style chart ``nic_arctic_YYYYMMDD_pl_a.zip`` per date of ``truth``.

    ``truth`` is (time, y, x) int8 sod4 ids (−1 land) with a rioxarray CRS, ``time`` one date per
    weekly chart. ``scale_m`` sets the analyst's generalisation (default
    :data:`DEFAULT_SCALE_M`, at least 4 pixels); ``crs`` the charts' CRS; ``n_invalid`` the number of
    self-intersecting polygons per chart. Each zip holds ``.shp/.shx/.dbf/.prj/.cpg``; it is
    written under a temporary name and renamed. Returns the paths in time order.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, when in enumerate(pd.to_datetime(truth["time"].values)):
        name = f"nic_arctic_{when:%Y%m%d}_pl_a"
        frame = chart_frame(
            truth.isel(time=i), scale_m=scale_m, crs=crs, n_invalid=n_invalid, seed=int(seed) * 100_003 + i
        )
        target = out_dir / f"{name}.zip"
        with tempfile.TemporaryDirectory(dir=out_dir, prefix=".chart-") as tmp:
            shp = Path(tmp) / f"{name}.shp"
            frame.to_file(shp, driver="ESRI Shapefile", engine="pyogrio", encoding="UTF-8")
            members = sorted(Path(tmp).glob(f"{name}.*"))
            staged = Path(tmp) / "chart.zip"
            with zipfile.ZipFile(staged, "w", compression=zipfile.ZIP_DEFLATED) as archive:
                for member in members:
                    archive.write(member, member.name)
            staged.replace(target)  # same folder, so the rename is atomic
        paths.append(target)
    return paths
