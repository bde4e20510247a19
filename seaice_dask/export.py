"""GIS outputs of a run: class maps that GIS tools show as classes, QGIS styles, probabilities, STAC.

Per predicted date, under ``<paths.reports>/maps/``:

* ``class_<stamp>.tif``: Cloud-Optimised GeoTIFF, uint8, nodata 255 (land, invalid, no inputs),
  a colour table, overviews by mode (class ids are categories: averaging them would invent
  classes), and beside it ``class_<stamp>.tif.aux.xml`` with the GDAL category names and a
  thematic raster attribute table (value, class name, RGB). The GeoTIFF format has no tag for
  category names; GDAL, QGIS and ArcGIS read them from this sidecar.
* ``class_<stamp>.qml``: a QGIS paletted-renderer style with the class names; QGIS applies a
  ``.qml`` of the same base name as the default style of the layer.
* ``proba_<stamp>.tif`` (``export.probabilities``): one band per class, the probability in
  percent as uint8 (scale 0.01 gives the probability; nodata 255), band descriptions = class
  names, overviews by average.
* ``class_<stamp>.json``: a STAC Item (datetime, bbox and geometry in lon/lat, projection
  extension, model, learner, a link to ``scores.json``; assets class map, style, probabilities),
  and ``collection.json``: the STAC Collection of the run.

The palette is the chart scheme's (:attr:`ClassScheme.colours`), the one the figures use.
Everything is written under a temporary name and renamed.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import os
import time as clock
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import dask
import dask.array as da
import numpy as np
import pandas as pd
import pystac
import rasterio
import shapely
from jinja2 import Environment, PackageLoader, StrictUndefined
from pyproj import CRS, Transformer
from pystac.extensions.projection import ProjectionExtension

from seaice_dask.charts.schemes import ClassScheme, get_scheme
from seaice_dask.config import PipelineConfig
from seaice_dask.coverage import Window, crop, keep_blocks, step_blocks, step_windows
from seaice_dask.cube import cube_grid, cube_store, done, open_cube
from seaice_dask.errors import CubeError
from seaice_dask.grid import Grid
from seaice_dask.learn.predict import PROBA_FILL, PROBA_SCALE, proba_percent

log = logging.getLogger(__name__)

#: Pixel value of land, invalid and unclassified pixels in the uint8 GeoTIFFs (the cube's packed
#: probabilities use the same, so that their percent bands are written as they are stored).
NODATA = PROBA_FILL
#: COG tile size; small enough that the demo's 1000² maps get overviews.
BLOCKSIZE = 256
MAPS_DIR = "maps"
COLLECTION_FILE = "collection.json"
SCORES_FILE = "scores.json"
STAGE = "predict"  # the cube stage whose slices are exported
MEDIA_QML = "text/xml"

_templates = Environment(
    loader=PackageLoader("seaice_dask", "templates"), undefined=StrictUndefined, autoescape=True,
    keep_trailing_newline=True,
)


@dataclass(frozen=True)
class ClassPalette:
    """Class ids, names and ``#rrggbb`` colours, in id order."""

    values: tuple[int, ...]
    names: tuple[str, ...]
    colours: tuple[str, ...]

    @classmethod
    def from_scheme(cls, scheme: str | ClassScheme, values: Sequence[int] | None = None) -> ClassPalette:
        """The scheme's palette, restricted to ``values`` (all its classes by default)."""
        scheme = get_scheme(scheme)
        ids = sorted(scheme.classes) if values is None else sorted(int(v) for v in values)
        unknown = set(ids) - set(scheme.classes)
        if unknown:
            raise CubeError(f"class ids {sorted(unknown)} are not in the {scheme.name} scheme")
        return cls(tuple(ids), tuple(scheme.classes[i] for i in ids), tuple(scheme.colours[i] for i in ids))

    def rgb(self) -> list[tuple[int, int, int]]:
        return [tuple(int(c[i : i + 2], 16) for i in (1, 3, 5)) for c in self.colours]  # type: ignore[misc]


def class_map_uint8(cls: np.ndarray) -> np.ndarray:
    """int class ids (−1: none) → uint8 with :data:`NODATA` for negative ids (uint8: as is)."""
    cls = np.asarray(cls)
    if cls.dtype == np.uint8:
        return cls
    if cls.size and cls.max() >= NODATA:
        raise CubeError(f"class id {int(cls.max())} does not fit below the nodata value {NODATA}")
    out = cls.astype(np.uint8)
    out[cls < 0] = NODATA
    return out


def _overview_count(shape: tuple[int, int]) -> int:
    """Halvings until the larger side fits in one tile; at least one (GIS tools ask for some)."""
    return max(1, math.ceil(math.log2(max(shape) / BLOCKSIZE)))


def _tmp(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def _write_cog(path: Path, data: np.ndarray, grid: Grid, resampling: str, fill: Any) -> Path:
    """Write ``data`` (bands, y, x) uint8 as a COG under a temp name; ``fill(dst)`` adds metadata."""
    bands, ny, nx = data.shape
    if (ny, nx) != grid.shape:
        raise CubeError(f"map shape {(ny, nx)} differs from the grid {grid.shape}", path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp(path)
    # deflate (every GIS reads it) at level 1: a 4-band 5000² probability map compresses ~3× faster
    # than at the default level 6, for files ~7 % larger; GDAL compresses tiles on every core
    with rasterio.open(
        tmp, "w", driver="COG", height=ny, width=nx, count=bands, dtype="uint8", crs=grid.crs,
        transform=grid.transform, nodata=NODATA, compress="deflate", level=1, blocksize=BLOCKSIZE,
        overview_resampling=resampling, overview_count=_overview_count(grid.shape), num_threads="ALL_CPUS",
    ) as dst:
        dst.write(data)
        fill(dst)
    return tmp


def category_aux_xml(palette: ClassPalette) -> bytes:
    """GDAL PAM sidecar of band 1: category names and a thematic raster attribute table."""
    root = ET.Element("PAMDataset")
    band = ET.SubElement(root, "PAMRasterBand", band="1")
    names = ET.SubElement(band, "CategoryNames")
    by_value = dict(zip(palette.values, palette.names, strict=True))
    for value in range(max(palette.values) + 1):  # GDAL category names are indexed by pixel value
        ET.SubElement(names, "Category").text = by_value.get(value, "")
    rat = ET.SubElement(band, "GDALRasterAttributeTable", tableType="thematic")
    # field types: 0 integer, 2 string; usages: 5 min-max (the value), 2 name, 6–8 red/green/blue
    columns = [("Value", 0, 5), ("Class_Name", 2, 2), ("Red", 0, 6), ("Green", 0, 7), ("Blue", 0, 8)]
    for index, (name, kind, usage) in enumerate(columns):
        defn = ET.SubElement(rat, "FieldDefn", index=str(index))
        ET.SubElement(defn, "Name").text = name
        ET.SubElement(defn, "Type").text = str(kind)
        ET.SubElement(defn, "Usage").text = str(usage)
    for row, (value, name, rgb) in enumerate(zip(palette.values, palette.names, palette.rgb(), strict=True)):
        r = ET.SubElement(rat, "Row", index=str(row))
        for cell in (value, name, *rgb):
            ET.SubElement(r, "F").text = str(cell)
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8")


def write_class_cog(
    cls: np.ndarray, grid: Grid, path: str | Path, palette: ClassPalette, tags: dict[str, str] | None = None
) -> Path:
    """A (y, x) class map (−1: none) as a paletted uint8 COG plus its category sidecar."""
    path = Path(path)
    colormap = {v: (*rgb, 255) for v, rgb in zip(palette.values, palette.rgb(), strict=True)}
    colormap[NODATA] = (0, 0, 0, 0)

    def fill(dst: Any) -> None:
        dst.write_colormap(1, colormap)
        dst.set_band_description(1, "sea-ice class")
        dst.update_tags(**(tags or {}))

    tmp = _write_cog(path, class_map_uint8(cls)[None], grid, "mode", fill)
    aux = path.with_name(path.name + ".aux.xml")
    aux_tmp = _tmp(aux)
    aux_tmp.write_bytes(category_aux_xml(palette))
    tmp.replace(path)
    aux_tmp.replace(aux)
    return path


def write_proba_cog(
    proba: np.ndarray, grid: Grid, path: str | Path, palette: ClassPalette, tags: dict[str, str] | None = None
) -> Path:
    """Class probabilities (K, y, x), NaN where none (or :func:`proba_percent`'s uint8), as a
    K-band uint8 percent COG."""
    path = Path(path)
    if proba.shape[0] != len(palette.values):
        raise CubeError(f"{proba.shape[0]} probability bands for {len(palette.values)} classes", path)

    def fill(dst: Any) -> None:
        for band, name in enumerate(palette.names, start=1):
            dst.set_band_description(band, f"probability of {name}")
        dst.scales = (PROBA_SCALE,) * len(palette.names)
        dst.update_tags(**(tags or {}), units="1 (value × scale)")

    _write_cog(path, proba_percent(proba), grid, "average", fill).replace(path)
    return path


def write_qml(path: str | Path, palette: ClassPalette) -> Path:
    """QGIS style (paletted renderer, class names as labels, nodata transparent)."""
    path = Path(path)
    entries = [{"value": v, "name": n, "colour": c} for v, n, c in zip(palette.values, palette.names, palette.colours, strict=True)]
    text = _templates.get_template("class_map.qml.j2").render(entries=entries, nodata=NODATA)
    tmp = _tmp(path)
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return path


def lonlat_footprint(grid: Grid, footprint: shapely.Polygon | None = None,
                     points_per_side: int = 16) -> tuple[list[float], dict[str, Any]]:
    """(bbox, GeoJSON polygon) in lon/lat of ``footprint`` (grid CRS; default the grid's outline),
    its edges densified (they curve in lon/lat)."""
    shape = footprint if footprint is not None else shapely.box(*grid.bounds)
    ring_xy = np.asarray(shape.exterior.coords)[:-1]
    nxt = np.roll(ring_xy, -1, axis=0)
    t = np.linspace(0.0, 1.0, points_per_side, endpoint=False)[None, :, None]
    dense = (ring_xy[:, None, :] + t * (nxt - ring_xy)[:, None, :]).reshape(-1, 2)
    lon, lat = Transformer.from_crs(grid.crs, "EPSG:4326", always_xy=True).transform(dense[:, 0], dense[:, 1])
    ring = [[round(float(a), 7), round(float(b), 7)] for a, b in zip(lon, lat, strict=True)]
    ring.append(ring[0])
    bbox = [float(np.min(lon)), float(np.min(lat)), float(np.max(lon)), float(np.max(lat))]
    return bbox, {"type": "Polygon", "coordinates": [ring]}


def data_extent(has_data: np.ndarray, grid: Grid) -> tuple[Grid, tuple[slice, slice], shapely.Polygon] | None:
    """Where a map of ``grid`` holds data: the grid of its bounding box, that box as (rows, cols),
    and its footprint, the convex hull (grid CRS) of the outer pixel corners of each row's data
    (a pass's swath is convex; land inside it does not cut it). None when it holds none."""
    rows = np.flatnonzero(has_data.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(has_data.any(axis=0))
    box = (slice(int(rows[0]), int(rows[-1]) + 1), slice(int(cols[0]), int(cols[-1]) + 1))
    first = has_data[rows].argmax(axis=1)
    last = has_data.shape[1] - 1 - has_data[rows, ::-1].argmax(axis=1)
    r = grid.resolution
    left, right = grid.xmin + first * r, grid.xmin + (last + 1) * r
    top = grid.ymax - rows * r
    points = np.concatenate([np.column_stack([x, y]) for x in (left, right) for y in (top, top - r)])
    return grid.window(*box), box, shapely.MultiPoint(points).convex_hull


def class_map_item(
    item_id: str,
    when: dt.datetime,
    grid: Grid,
    assets: dict[str, pystac.Asset],
    properties: dict[str, Any],
    footprint: shapely.Polygon | None = None,
) -> pystac.Item:
    """STAC Item of one class map on ``grid``: lon/lat ``footprint`` (grid CRS; default the
    grid's outline), projection of the grid, the given assets."""
    bbox, geometry = lonlat_footprint(grid, footprint)
    item = pystac.Item(item_id, geometry=geometry, bbox=bbox, datetime=when, properties=dict(properties))
    proj = ProjectionExtension.ext(item, add_if_missing=True)
    proj.epsg = CRS.from_user_input(grid.crs).to_epsg()
    proj.shape = list(grid.shape)
    proj.transform = list(grid.transform)[:6]
    proj.bbox = list(grid.bounds)
    for key, asset in assets.items():
        item.add_asset(key, asset)
    return item


def stac_validator() -> pystac.validation.JsonSchemaSTACValidator:
    """A pystac validator that needs no network: pystac's core schemas plus the bundled extensions."""
    from pystac.validation import JsonSchemaSTACValidator

    from seaice_dask.data import STAC_SCHEMAS

    validator = JsonSchemaSTACValidator()
    for uri, path in STAC_SCHEMAS.items():
        validator.schema_cache[uri] = json.loads(path.read_text())
    return validator


@dataclass
class ExportReport:
    """Files written by :func:`export_maps`."""

    class_maps: list[str] = field(default_factory=list)
    styles: list[str] = field(default_factory=list)
    probabilities: list[str] = field(default_factory=list)
    items: list[str] = field(default_factory=list)
    collection: str = ""
    index: str = ""  # reports/index.html, when the pipeline wrote one
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _write_stac(collection: pystac.Collection, items: list[pystac.Item]) -> None:
    from seaice_dask.report import write_json

    for obj in (collection, *items):
        write_json(obj.to_dict(include_self_link=False, transform_hrefs=True), obj.get_self_href())


def _map_bytes(ds: Any, t: int, with_proba: bool, window: Window, blocks: np.ndarray | None) -> list[da.Array]:
    """Lazy uint8 rasters of date ``t`` on its ``window``: the class map and (``with_proba``) the
    percent bands. Converted where the blocks are read (4× less to move than float32
    probabilities); blocks without data (``blocks`` False) are nodata, not read."""
    names = ["class", "proba"] if with_proba else ["class"]
    convert = {"class": class_map_uint8, "proba": proba_percent}
    return [keep_blocks(crop(ds[name].isel(time=t), window).data.map_blocks(convert[name], dtype=np.uint8),
                        blocks, np.uint8(NODATA)) for name in names]


#: Per-time-step coordinates copied into each STAC Item.
ORBIT_COORDS = ("relative_orbit", "absolute_orbit", "pass_direction")


def export_maps(cfg: PipelineConfig, *, client: Any = None, progress: bool = False) -> ExportReport:
    """GIS files for every predicted date of the cube, and the run's STAC catalogue.

    Rasters are read and converted to uint8 on the workers (``client``; else the local
    scheduler), the next date while the current one is compressed and written here: files are
    written by this process, so ``paths.reports`` need not be shared with the workers.
    """
    from rich.progress import track

    start = clock.perf_counter()
    store = cube_store(cfg)
    ds = open_cube(store)
    if "class" not in ds.data_vars:
        raise CubeError("no class maps in the cube (run `seaice-dask predict` first)", store)
    grid = cube_grid(ds)
    windows, blocks = step_windows(ds), step_blocks(ds)
    indices = [t for t in np.flatnonzero(done(store, STAGE)).tolist() if windows[t] is not None]
    attrs = ds["class"].attrs
    with_proba = cfg.export.probabilities and "proba" in ds.data_vars
    class_ids = ds["proba"]["class_id"].values if "proba" in ds.data_vars else attrs.get("flag_values")
    palette = ClassPalette.from_scheme(cfg.charts.scheme, class_ids)
    out = Path(cfg.paths.reports) / MAPS_DIR
    scores = Path(cfg.paths.reports) / SCORES_FILE
    stamps = pd.DatetimeIndex(ds["time"].values)
    products = ds["product_id"].values if "product_id" in ds.coords else None
    report = ExportReport()
    items = []
    properties = {
        "seaice:model": str(attrs.get("model", "")),
        "seaice:learner": str(attrs.get("learner", "")),
        "seaice:class_scheme": cfg.charts.scheme,
        "seaice:classes": [{"value": v, "name": n, "colour": c} for v, n, c in zip(palette.values, palette.names, palette.colours, strict=True)],
    }

    def fetch(i: int) -> Any:
        rasters = _map_bytes(ds, indices[i], with_proba, windows[indices[i]], blocks[indices[i]])
        return client.compute(rasters) if client is not None else rasters

    ahead = fetch(0) if indices else None
    for i, t in enumerate(track(indices, description="export", disable=not progress, transient=True)):
        current = ahead
        ahead = fetch(i + 1) if i + 1 < len(indices) else None
        rasters = client.gather(current) if client is not None else dask.compute(*current)
        stamp = _stamp(stamps[t])
        extent = data_extent(rasters[0] != NODATA, grid.window(*windows[t]))
        if extent is None:
            log.warning("%s: no classified pixel; no map written", stamp)
            continue
        map_grid, box, footprint = extent
        rasters = [r[..., box[0], box[1]] for r in rasters]
        when = stamps[t].to_pydatetime().replace(tzinfo=dt.UTC)
        tags = {"date": when.isoformat(), "model": properties["seaice:model"], "learner": properties["seaice:learner"]}
        class_path = write_class_cog(rasters[0], map_grid, out / f"class_{stamp}.tif", palette, tags)
        style_path = write_qml(out / f"class_{stamp}.qml", palette)
        report.class_maps.append(str(class_path))
        report.styles.append(str(style_path))
        assets = {
            "class_map": pystac.Asset(f"./{class_path.name}", title="sea-ice class map", media_type=pystac.MediaType.COG, roles=["data"]),
            "style": pystac.Asset(f"./{style_path.name}", title="QGIS style", media_type=MEDIA_QML, roles=["style"]),
            "categories": pystac.Asset(f"./{class_path.name}.aux.xml", title="GDAL category names and attribute table", media_type=pystac.MediaType.XML, roles=["metadata"]),
        }
        if with_proba:
            proba_path = write_proba_cog(rasters[1], map_grid, out / f"proba_{stamp}.tif", palette, tags)
            report.probabilities.append(str(proba_path))
            assets["probabilities"] = pystac.Asset(
                f"./{proba_path.name}", title="class probabilities (percent, scale 0.01)", media_type=pystac.MediaType.COG, roles=["data"],
            )
        props = dict(properties)
        if products is not None:
            props["seaice:source_product"] = str(products[t])
        for name in ORBIT_COORDS:  # which track the map comes from (several orbits share a cube)
            if name in ds.coords:
                value = ds[name].values[t]
                props[f"seaice:{name}"] = value.item() if hasattr(value, "item") else str(value)
        item = class_map_item(f"{cfg.name}_class_{stamp}", when, map_grid, assets, props, footprint)
        item.set_self_href(str(out / f"class_{stamp}.json"))
        if scores.is_file():
            item.add_link(pystac.Link("related", f"../{SCORES_FILE}", media_type=pystac.MediaType.JSON, title="scores of the run"))
        items.append(item)
    collection = run_collection(cfg.name, items)
    collection.set_self_href(str(out / COLLECTION_FILE))
    for item in items:
        href = item.get_self_href()
        collection.add_item(item)
        item.set_self_href(href)  # add_item may re-home the item: keep it beside its map
    _write_stac(collection, items)
    report.items = [str(item.get_self_href()) for item in items]
    report.collection = str(out / COLLECTION_FILE)
    report.seconds = clock.perf_counter() - start
    return report


def _stamp(when: Any) -> str:
    """The time stamp in the files of a date: ``class_<stamp>.tif`` and the others."""
    return pd.Timestamp(when).strftime("%Y%m%dT%H%M%S")


def remove_maps(reports: str | Path, when: Any) -> list[Path]:
    """Delete the files :func:`export_maps` wrote for the date ``when`` (its class and probability
    maps, style, categories and STAC Item) and the collection's link to the Item; returns the
    files deleted. For a time step that no longer exists (merged into its pass at ingest)."""
    out = Path(reports) / MAPS_DIR
    stamp = _stamp(when)
    files = [f for prefix in ("class", "proba") for f in sorted(out.glob(f"{prefix}_{stamp}.*"))]
    for f in files:
        f.unlink()
    collection = out / COLLECTION_FILE
    if collection.is_file():
        from seaice_dask.report import write_json

        data = json.loads(collection.read_text())
        links = [link for link in data.get("links", []) if link.get("href") != f"./class_{stamp}.json"]
        if len(links) != len(data.get("links", [])):
            write_json({**data, "links": links}, collection)
    return files


def run_collection(name: str, items: Sequence[pystac.Item]) -> pystac.Collection:
    """STAC Collection of one run's class maps: the union of their footprints and dates."""
    if items:
        boxes = np.array([item.bbox for item in items])
        bbox = [*boxes[:, :2].min(axis=0).tolist(), *boxes[:, 2:].max(axis=0).tolist()]
        dates = sorted(item.datetime for item in items)  # type: ignore[type-var]
        interval = [dates[0], dates[-1]]
    else:
        bbox, interval = [-180.0, -90.0, 180.0, 90.0], [None, None]
    extent = pystac.Extent(pystac.SpatialExtent([bbox]), pystac.TemporalExtent([interval]))
    return pystac.Collection(
        id=name,
        description=f"Sea-ice type maps of the seaice-dask run {name!r} (contains modified Copernicus Sentinel data).",
        extent=extent,
        license="other",
        catalog_type=pystac.CatalogType.SELF_CONTAINED,
    )
