"""Write simulated Sentinel-1 EW GRD products (SAFE folder or zip) re-targeted from a real annotation.

The template is a real S1A EW GRDM 1SDH product (``template/README.md``). For each simulated
scene its XML is re-targeted, not invented:

* **time**: every ISO and compact timestamp moves by ``start − template start`` (orbit, attitude,
  tie points, LUT azimuth times, names), so durations and line timing stay real;
* **place**: one rotation of the Earth, taking the template's scene centre to the target centre
  and turning its local heading to that of a descending or ascending pass at the target latitude
  (sun-synchronous ground track, inclination 98.18°), is applied to the tie points and the orbit
  state vectors — it preserves the real swath geometry, right-looking radar included, so near
  range lies east of the track's centre line on a descending pass and west on an ascending one;
* **identity**: mission (S1A/S1B), absolute/relative orbit, cycle, datatake, pass direction;
* **slices**: the pass is written as ``slices`` consecutive products
  (:mod:`~seaice_dask.simulate.slices`: names, times, footprint, slice numbers per slice);
* **size**: GRDH (25 m) or a shrunk test product (``size="small"``, pixel spacing × ``shrink``):
  every line/sample index is mapped consistently — tie points and LUT positions by pixel centre,
  ``floor((i + ½)·f)``; block bounds by pixel edges, ``first → round(first·f)``,
  ``last → round((last + 1)·f) − 1`` — so subswath blocks still tile the image exactly.

Digital numbers are rendered strip by strip with the reader's LUT kernels
(:func:`seaice_dask.preprocess.luts.calibration_window`, :func:`~seaice_dask.preprocess.luts.noise_window`)
and the forward model of :mod:`seaice_dask.simulate.backscatter`.
"""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import math
import re
import shutil
import tempfile
import zipfile
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
from lxml import etree

from seaice_dask.errors import ConfigError
from seaice_dask.grid import Grid, default_grid

TEMPLATE_DIR = Path(__file__).with_name("template")
TEMPLATE_START = dt.datetime(2022, 11, 30, 1, 43, 42, 546629)
TEMPLATE_STOP = dt.datetime(2022, 11, 30, 1, 44, 46, 839082)
TEMPLATE_ABSOLUTE_ORBIT = 46117
_POLS = ("hh", "hv")
_SWATHS = ("EW1", "EW2", "EW3", "EW4", "EW5")
INCLINATION_DEG = 98.18
#: Orbit period (s): 175 orbits in the 12-day repeat cycle.
ORBIT_PERIOD_S = 12 * 86400 / 175
#: Pixel spacing (m) of EW products by resolution class.
PIXEL_SPACING = {"GRDM": 40.0, "GRDH": 25.0}
#: Relative-orbit numbering: relative = (absolute − offset) mod 175 + 1 (ESA).
ORBIT_OFFSET = {"S1A": 73, "S1B": 27}
_NSSDC = {"S1A": "2014-016A", "S1B": "2016-025A"}


@dataclass(frozen=True)
class SceneSpec:
    """What one simulated product is: when, where, which satellite and format, which noise errors.

    ``noise_scale``/``noise_offset`` map a polarisation to five per-subswath values (EW1…EW5):
    the true noise is ``η_annotated · scale + offset · A_σ²`` (offset in linear sigma0 units).
    """

    start: dt.datetime
    absolute_orbit: int
    mission: str = "S1A"
    product: str = "GRDM"
    size: str = "small"
    shrink: int = 8
    centre_lonlat: tuple[float, float] = (-27.0, 67.2)
    noise_scale: dict[str, tuple[float, ...]] = field(default_factory=lambda: {p: (1.0,) * 5 for p in _POLS})
    noise_offset: dict[str, tuple[float, ...]] = field(default_factory=lambda: {p: (0.0,) * 5 for p in _POLS})
    seed: int = 0
    slices: int = 1
    ascending: bool = False

    def __post_init__(self) -> None:
        if self.mission not in ORBIT_OFFSET:
            raise ConfigError(f"mission must be one of {sorted(ORBIT_OFFSET)}, got {self.mission!r}")
        if self.product not in PIXEL_SPACING:
            raise ConfigError(f"product must be GRDM or GRDH, got {self.product!r}")
        if self.size not in ("full", "small") or self.shrink < 1:
            raise ConfigError(f"size must be 'full' or 'small' (shrink >= 1), got {self.size!r}/{self.shrink}")
        if self.slices < 1:
            raise ConfigError(f"a pass has at least one slice, got slices={self.slices}")

    @property
    def relative_orbit(self) -> int:
        return (self.absolute_orbit - ORBIT_OFFSET[self.mission]) % 175 + 1

    @property
    def cycle(self) -> int:
        return (self.absolute_orbit - ORBIT_OFFSET[self.mission]) // 175 + 1

    @property
    def datatake(self) -> int:
        return (self.absolute_orbit * 7 + 0x0A5) % 0xFFFFF

    @property
    def delta(self) -> dt.timedelta:
        """Whole-second shift from the template, so compact name times stay consistent."""
        return dt.timedelta(seconds=round((self.start - TEMPLATE_START).total_seconds()))

    @property
    def acquisition_start(self) -> dt.datetime:
        """First-line time: ``start`` to the second, with the template's sub-second part."""
        return TEMPLATE_START + self.delta

    @property
    def scale(self) -> float:
        """Factor from template pixel indices to this product's indices."""
        f = PIXEL_SPACING["GRDM"] / PIXEL_SPACING[self.product]
        return f / self.shrink if self.size == "small" else f

    @property
    def acquisition_stop(self) -> dt.datetime:
        """Last-line time of the whole pass (the template's duration)."""
        return TEMPLATE_STOP + self.delta

    @property
    def pass_direction(self) -> str:
        return "ASCENDING" if self.ascending else "DESCENDING"

    @property
    def name(self) -> str:
        """Name of the whole pass written as one product (``slices=1``)."""
        return product_name(self, self.acquisition_start, self.acquisition_stop)


def product_name(spec: SceneSpec, start: dt.datetime, stop: dt.datetime) -> str:
    """ESA product name of ``spec`` acquired from ``start`` to ``stop``; the unique id is derived
    from the rest of the name, so it is reproducible and differs between slices."""
    stem = (
        f"{spec.mission}_EW_{spec.product}_1SDH_{start:%Y%m%dT%H%M%S}_{stop:%Y%m%dT%H%M%S}_"
        f"{spec.absolute_orbit:06d}_{spec.datatake:06X}"
    )
    return f"{stem}_{hashlib.md5(stem.encode()).hexdigest()[:4].upper()}"


def _file_stem(spec: SceneSpec, pol: str, number: int, start: dt.datetime, stop: dt.datetime) -> str:
    """Annotation/measurement file stem, as ESA names them inside the SAFE."""
    return (
        f"{spec.mission.lower()}-ew-grd-{pol}-{start:%Y%m%dt%H%M%S}-{stop:%Y%m%dt%H%M%S}-"
        f"{spec.absolute_orbit:06d}-{spec.datatake:06x}-{number:03d}"
    )


# ------------------------------------------------------------------------------- template text


@lru_cache(maxsize=None)
def _template_text(name: str) -> str:
    with gzip.open(TEMPLATE_DIR / f"{name}.gz", "rt", encoding="utf-8") as f:
        return f.read()


#: Everything scene-specific in the template text: times, mission, orbit, datatake, ids.
_TOKENS = re.compile(
    r"(?P<iso>(?<=[>\"])\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?)"
    r"|(?P<compact>(?<=[_\-/A-Za-z])20\d{6}[Tt]\d{6}(?![0-9]))"
    r"|(?P<nssdc>2014-016A)|(?P<number><safe:number>A</safe:number>)|(?P<mission>S1A|s1a)"
    r"|(?P<orbit6>046117)|(?P<orbit>(?<=>)46117(?=<))|(?P<datatake>(?<=[_\-0-9])058549)"
    r"|(?P<datatake_dec>(?<=>)361801(?=<))|(?P<uid>BB15)|(?P<resolution>EW_GRDM_)"
)


@lru_cache(maxsize=None)
def _template_parts(name: str) -> tuple[tuple[str, str, str], ...]:
    """The template split once into (literal, token kind, token text) triples."""
    text = _template_text(name)
    parts, pos = [], 0
    for m in _TOKENS.finditer(text):
        parts.append((text[pos : m.start()], m.lastgroup, m.group()))
        pos = m.end()
    parts.append((text[pos:], "", ""))
    return tuple(parts)


def _shift_iso(value: str, delta: dt.timedelta) -> str:
    """``2022-11-30T01:43:42.546629`` + delta, keeping the number of decimals."""
    head, _, frac = value.partition(".")
    t = dt.datetime.fromisoformat(head) + dt.timedelta(seconds=float("0." + (frac or "0"))) + delta
    return t.strftime("%Y-%m-%dT%H:%M:%S") + (f".{t.microsecond:06d}"[: len(frac) + 1].ljust(len(frac) + 1, "0") if frac else "")


def _token(kind: str, value: str, spec: SceneSpec) -> str:
    if kind == "iso":
        return _shift_iso(value, spec.delta)
    if kind == "compact":
        t = dt.datetime.strptime(value[:8] + value[9:], "%Y%m%d%H%M%S") + spec.delta
        return t.strftime(f"%Y%m%d{value[8]}%H%M%S")
    return {
        "nssdc": _NSSDC[spec.mission],
        "number": f"<safe:number>{spec.mission[-1]}</safe:number>",
        "mission": spec.mission if value.isupper() else spec.mission.lower(),
        "orbit6": f"{spec.absolute_orbit:06d}",
        "orbit": str(spec.absolute_orbit),
        "datatake": f"{spec.datatake:06x}",
        "datatake_dec": str(spec.datatake),
        "uid": spec.name[-4:],
        "resolution": f"EW_{spec.product}_",
    }[kind]


def _retarget_text(name: str, spec: SceneSpec) -> str:
    """The template file ``name`` with times, mission, orbit, datatake, id and resolution replaced."""
    out = []
    for literal, kind, value in _template_parts(name):
        out.append(literal)
        if kind:
            upper_datatake = kind == "datatake" and literal.endswith("_")
            out.append(f"{spec.datatake:06X}" if upper_datatake else _token(kind, value, spec))
    return "".join(out)


# ------------------------------------------------------------------------------- geometry


def _unit(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    lon, lat = np.radians(lon), np.radians(lat)
    return np.stack([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)], axis=-1)


def _enu(lon: float, lat: float, heading_turn_deg: float = 0.0) -> np.ndarray:
    """Rows (east, north, up) at a point, east/north turned clockwise by ``heading_turn_deg``."""
    lo, la = math.radians(lon), math.radians(lat)
    east = np.array([-math.sin(lo), math.cos(lo), 0.0])
    north = np.array([-math.sin(la) * math.cos(lo), -math.sin(la) * math.sin(lo), math.cos(la)])
    up = _unit(np.array(lon), np.array(lat))
    a = math.radians(heading_turn_deg)
    return np.stack([math.cos(a) * east - math.sin(a) * north, math.sin(a) * east + math.cos(a) * north, up])


def descending_heading(lat: float) -> float:
    """Ground-track heading (deg from north) of a descending sun-synchronous pass at ``lat``."""
    s = math.cos(math.radians(INCLINATION_DEG)) / math.cos(math.radians(lat))
    return (180.0 - math.degrees(math.asin(max(-1.0, min(1.0, s)))) + 180.0) % 360.0 - 180.0


def ascending_heading(lat: float) -> float:
    """Ground-track heading (deg from north) of an ascending sun-synchronous pass at ``lat``: the
    descending heading mirrored about east–west (−21.5° at 67.2° N against −158.5°)."""
    s = math.cos(math.radians(INCLINATION_DEG)) / math.cos(math.radians(lat))
    return math.degrees(math.asin(max(-1.0, min(1.0, s))))


def argument_of_latitude(lat: float, ascending: bool) -> float:
    """Angle (deg) from the ascending node along the orbit where the nadir reaches ``lat``."""
    u = math.degrees(math.asin(math.sin(math.radians(lat)) / math.sin(math.radians(INCLINATION_DEG))))
    return u if ascending else 180.0 - u


def ascending_lead_s(lat: float) -> float:
    """Seconds by which an orbit crosses ``lat`` northbound before it crosses it southbound."""
    return (argument_of_latitude(lat, False) - argument_of_latitude(lat, True)) / 360 * ORBIT_PERIOD_S


def _rotation(src_lonlat, dst_lonlat, turn_deg: float) -> np.ndarray:
    """Earth rotation matrix taking the local frame at ``src`` to the (turned) frame at ``dst``."""
    return _enu(*dst_lonlat, turn_deg).T @ _enu(*src_lonlat)


def _rotate_lonlat(rot: np.ndarray, lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    v = _unit(np.asarray(lon, float), np.asarray(lat, float)) @ rot.T
    return np.degrees(np.arctan2(v[..., 1], v[..., 0])), np.degrees(np.arcsin(np.clip(v[..., 2], -1, 1)))


# ------------------------------------------------------------------------------- index scaling


def _fmt(values: np.ndarray) -> str:
    return " ".join(map(str, np.asarray(values, dtype=np.int64).tolist()))


def _point(i, f: float) -> np.ndarray:
    """Template pixel index → new index of the pixel containing its centre."""
    return np.floor((np.asarray(i, dtype=float) + 0.5) * f).astype(np.int64)


def _edge(i, f: float) -> int:
    return int(math.floor(float(i) * f + 0.5))


def _set(el: etree._Element, path: str, value) -> None:
    node = el.find(path)
    if node is not None:
        node.text = str(value)


def _scale_list(vector: etree._Element, index_tag: str, value_tags: tuple[str, ...], f: float) -> None:
    """Map an index list in place and drop entries that collapse onto the previous index."""
    node = vector.find(index_tag)
    new = _point(np.array(node.text.split(), dtype=np.int64), f)
    keep = np.r_[True, np.diff(new) > 0]
    node.text, node.attrib["count"] = _fmt(new[keep]), str(int(keep.sum()))
    if keep.all():
        return
    for tag in value_tags:
        vnode = vector.find(tag)
        vnode.text = " ".join(np.array(vnode.text.split())[keep])
        vnode.attrib["count"] = str(int(keep.sum()))


def _scale_vectors(parent: etree._Element, f: float, index_tag: str, value_tags: tuple[str, ...]) -> None:
    """Scale line + per-vector index lists of a vector list; drop vectors on a repeated line."""
    last = None
    for vector in list(parent):
        line = int(_point(int(vector.findtext("line")), f))
        if last is not None and line <= last:
            parent.remove(vector)
            continue
        last = line
        vector.find("line").text = str(line)
        _scale_list(vector, index_tag, value_tags, f)
    parent.attrib["count"] = str(len(parent))


def _scale_bounds(el: etree._Element, f: float) -> None:
    for first, last in (("firstAzimuthLine", "lastAzimuthLine"), ("firstRangeSample", "lastRangeSample")):
        a, b = el.find(first), el.find(last)
        a.text, b.text = str(_edge(a.text, f)), str(_edge(int(b.text) + 1, f) - 1)


def _scale_annotation(root: etree._Element, f: float) -> None:
    info = root.find("imageAnnotation/imageInformation")
    for tag in ("numberOfLines", "numberOfSamples"):
        _set(info, tag, _edge(info.findtext(tag), f))
    for tag in ("rangePixelSpacing", "azimuthPixelSpacing"):
        _set(info, tag, f"{float(info.findtext(tag)) / f:.6e}")
    _set(info, "azimuthTimeInterval", f"{float(info.findtext('azimuthTimeInterval')) / f:.15e}")
    for point in root.iter("geolocationGridPoint"):
        for tag in ("line", "pixel"):
            _set(point, tag, int(_point(int(point.findtext(tag)), f)))
    for bounds in root.iter("swathBounds"):
        _scale_bounds(bounds, f)


def _scale_calibration(root: etree._Element, f: float) -> None:
    _scale_vectors(root.find("calibrationVectorList"), f, "pixel", ("sigmaNought", "betaNought", "gamma", "dn"))


def _scale_noise(root: etree._Element, f: float) -> None:
    _scale_vectors(root.find("noiseRangeVectorList"), f, "pixel", ("noiseRangeLut",))
    for block in root.iter("noiseAzimuthVector"):
        _scale_bounds(block, f)
        _scale_list(block, "line", ("noiseAzimuthLut",), f)


# ------------------------------------------------------------------------------- re-targeting


@dataclass
class RetargetedProduct:
    """XML trees (per kind and polarisation) and names of one simulated product."""

    spec: SceneSpec
    name: str
    files: dict[tuple[str, str], str]  # (kind, pol) → relative path inside the SAFE
    xml: dict[tuple[str, str], etree._Element]
    manifest: etree._Element
    shape: tuple[int, int]
    start: dt.datetime  # first-line time
    stop: dt.datetime  # last-line time
    first_line: int = 0  # of this slice in its pass image
    slice_number: int = 1
    _geolocation: dict = field(default_factory=dict, repr=False)

    def geolocation(self, pol: str = "hh") -> dict[str, np.ndarray]:
        """Tie points as arrays: line, pixel, latitude, longitude, height, incidence (flat)."""
        if pol not in self._geolocation:
            self._geolocation[pol] = self._parse_geolocation(pol)
        return self._geolocation[pol]

    def _parse_geolocation(self, pol: str) -> dict[str, np.ndarray]:
        points = self.xml[("annotation", pol)].iter("geolocationGridPoint")
        rows = [
            [float(p.findtext(t)) for t in ("line", "pixel", "latitude", "longitude", "height", "incidenceAngle")]
            for p in points
        ]
        a = np.array(rows)
        return dict(zip(("line", "pixel", "latitude", "longitude", "height", "incidence"), a.T))


def retarget(spec: SceneSpec) -> RetargetedProduct:
    """Re-target the template XML onto ``spec`` (see the module docstring)."""
    f = spec.scale
    parser = etree.XMLParser(remove_blank_text=False, resolve_entities=False, no_network=True)
    xml: dict[tuple[str, str], etree._Element] = {}
    for pol in _POLS:
        for kind in ("annotation", "calibration", "noise", "rfi"):
            xml[(kind, pol)] = etree.fromstring(_retarget_text(f"{kind}-{pol}.xml", spec).encode(), parser)
    manifest = etree.fromstring(_retarget_text("manifest.safe", spec).encode(), parser)

    # geometry: one rotation for tie points, footprint and orbit
    ann = xml[("annotation", "hh")]
    lat = np.array([float(p.findtext("latitude")) for p in ann.iter("geolocationGridPoint")])
    lon = np.array([float(p.findtext("longitude")) for p in ann.iter("geolocationGridPoint")])
    c = _unit(lon, lat).mean(axis=0)
    src = (math.degrees(math.atan2(c[1], c[0])), math.degrees(math.atan2(c[2], math.hypot(c[0], c[1]))))
    # An ascending pass is the template turned on the sphere until its track heads north-west:
    # a rotation, not a mirror, so the radar still looks right of the track and near range moves
    # to the other (west) side of the box. No real EW GRD of an ascending pass is at hand; a real
    # S1A IW GRDH ascending product (2015-02-22, orbit 4739) shows the same: heading −15.2°,
    # near range west.
    heading0 = float(ann.findtext("generalAnnotation/productInformation/platformHeading"))
    target = (ascending_heading if spec.ascending else descending_heading)(spec.centre_lonlat[1])
    turn = target - descending_heading(src[1])
    rot = _rotation(src, spec.centre_lonlat, turn)
    heading = (heading0 + turn + 180.0) % 360.0 - 180.0
    for pol in _POLS:
        root = xml[("annotation", pol)]
        _set(root, "generalAnnotation/productInformation/pass", spec.pass_direction.capitalize())
        _set(root, "generalAnnotation/productInformation/platformHeading", f"{heading:.15e}")
        for p in root.iter("geolocationGridPoint"):
            new_lon, new_lat = _rotate_lonlat(rot, float(p.findtext("longitude")), float(p.findtext("latitude")))
            _set(p, "longitude", f"{float(new_lon):.15e}")
            _set(p, "latitude", f"{float(new_lat):.15e}")
        for orbit in root.iter("orbit"):
            for vec in ("position", "velocity"):
                v = np.array([float(orbit.findtext(f"{vec}/{a}")) for a in "xyz"]) @ rot.T
                for a, value in zip("xyz", v):
                    _set(orbit, f"{vec}/{a}", f"{value:.15e}")
        _scale_annotation(root, f)
        _scale_calibration(xml[("calibration", pol)], f)
        _scale_noise(xml[("noise", pol)], f)

    _retarget_manifest(manifest, spec)
    if spec.ascending:  # the first line comes earlier after the node than on the descending pass
        lead = dt.timedelta(seconds=ascending_lead_s(spec.centre_lonlat[1]))
        for pol in _POLS:
            node = xml[("annotation", pol)].find("imageAnnotation/imageInformation/ascendingNodeTime")
            node.text = f"{dt.datetime.fromisoformat(node.text) + lead:%Y-%m-%dT%H:%M:%S.%f}"
        for el in (manifest.find(".//{*}startTimeANX"), manifest.find(".//{*}stopTimeANX")):
            el.text = f"{float(el.text) - lead.total_seconds() * 1e3:.6e}"
    info = ann.find("imageAnnotation/imageInformation")
    shape = (int(info.findtext("numberOfLines")), int(info.findtext("numberOfSamples")))
    start, stop = spec.acquisition_start, spec.acquisition_stop
    return RetargetedProduct(
        spec=spec, name=spec.name, files=product_files(spec, start, stop), xml=xml, manifest=manifest, shape=shape,
        start=start, stop=stop,
    )


def product_files(spec: SceneSpec, start: dt.datetime, stop: dt.datetime) -> dict[tuple[str, str], str]:
    """(kind, pol) → path inside the SAFE of a product of ``spec`` from ``start`` to ``stop``."""
    files = {}
    for n, pol in enumerate(_POLS, start=1):
        stem = _file_stem(spec, pol, n, start, stop)
        files[("annotation", pol)] = f"annotation/{stem}.xml"
        files[("calibration", pol)] = f"annotation/calibration/calibration-{stem}.xml"
        files[("noise", pol)] = f"annotation/calibration/noise-{stem}.xml"
        files[("rfi", pol)] = f"annotation/rfi/rfi-{stem}.xml"
        files[("measurement", pol)] = f"measurement/{stem}.tiff"
    return files


_NS = {
    "xfdu": "urn:ccsds:schema:xfdu:1",
    "safe": "http://www.esa.int/safe/sentinel-1.0",
    "gml": "http://www.opengis.net/gml",
}


def _retarget_manifest(manifest: etree._Element, spec: SceneSpec) -> None:
    """Orbit numbers, pass direction; drop the preview/quick-look objects the simulator does not
    write. Footprint, times and slice numbers are set per slice (:mod:`~seaice_dask.simulate.slices`)."""
    for el in manifest.iterfind(".//safe:relativeOrbitNumber", _NS):
        el.text = str(spec.relative_orbit)
    for el in manifest.iterfind(".//safe:cycleNumber", _NS):
        el.text = str(spec.cycle)
    manifest.find(".//{*}orbitProperties/{*}pass").text = spec.pass_direction
    dropped = {"mapoverlay", "productpreview", "quicklook"}
    for ptr in list(manifest.iterfind(".//dataObjectPointer")):
        if ptr.get("dataObjectID") in dropped:
            unit = ptr.getparent()
            unit.getparent().remove(unit)
    for obj in list(manifest.iterfind(".//metadataObject")) + list(manifest.iterfind(".//dataObject")):
        if obj.get("ID") in dropped or obj.get("ID", "").removesuffix("Annotation") in dropped:
            obj.getparent().remove(obj)


def _finish_manifest(manifest: etree._Element, root_dir: Path) -> bytes:
    """Sizes and MD5 checksums of the files written, as real manifests carry them."""
    for obj in manifest.iterfind(".//dataObject"):
        stream = obj.find("byteStream")
        loc = stream.find("fileLocation").get("href")
        path = root_dir / loc.removeprefix("./")
        md5 = hashlib.md5()
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 22), b""):
                md5.update(chunk)
        stream.set("size", str(path.stat().st_size))
        stream.find("checksum").text = md5.hexdigest()
    return etree.tostring(manifest, xml_declaration=True, encoding="UTF-8")


# ------------------------------------------------------------------------------- rendering


def _render_grid(grid: Grid, product: RetargetedProduct) -> Grid:
    """Grid in ``grid.crs`` covering the product footprint, at ≥ the product's pixel spacing."""
    from pyproj import Transformer

    geo = product.geolocation()
    x, y = Transformer.from_crs("EPSG:4326", grid.crs, always_xy=True).transform(geo["longitude"], geo["latitude"])
    spacing = float(product.xml[("annotation", "hh")].findtext("imageAnnotation/imageInformation/rangePixelSpacing"))
    res = max(grid.resolution, 2 * spacing)
    return Grid.from_bounds(grid.crs, (x.min() - res, y.min() - res, x.max() + res, y.max() + res), res)


def _swath_tables(noise, shape: tuple[int, int], spec: SceneSpec, pol: str):
    """Per azimuth block: (line range, sample range, scale, offset) of the true noise."""
    scale = dict(zip(_SWATHS, spec.noise_scale[pol]))
    offset = dict(zip(_SWATHS, spec.noise_offset[pol]))
    return [
        (b.first_line, b.last_line, b.first_sample, b.last_sample, scale.get(b.swath, 1.0), offset.get(b.swath, 0.0))
        for b in noise.azimuth
    ]


def render_measurements(
    product: RetargetedProduct,
    grid: Grid,
    *,
    write=None,
    strip_lines: int = 256,
    keep_truth: bool = False,
) -> dict[str, np.ndarray]:
    """Render DN of HH and HV strip by strip; ``write(pol, row0, dn)`` receives each strip.

    With ``keep_truth`` the full-image ``surface`` (int8) and noise-free ``sigma0_hh``/``sigma0_hv``
    (linear, texture included, no speckle) are returned for tests (small products only).
    """
    from seaice_dask.preprocess.luts import calibration_window, interp_vectors, noise_window
    from seaice_dask.safe.annotation import parse_calibration, parse_noise
    from pyproj import Transformer

    from seaice_dask.simulate import backscatter as bs
    from seaice_dask.simulate.truth import truth_fields

    spec = product.spec
    n_lines, n_samples = product.shape
    rng = np.random.default_rng([spec.seed, spec.absolute_orbit, 4])
    rgrid = _render_grid(grid, product)
    truth = truth_fields(rgrid, pd.Timestamp(spec.acquisition_start), spec.seed, domain=grid)
    surface_map = truth["surface"].values
    wind_map = truth["wind_speed"].values

    geo = product.geolocation()
    tie_lines = np.unique(geo["line"])
    order = np.lexsort((geo["pixel"], geo["line"]))
    x, y = Transformer.from_crs("EPSG:4326", grid.crs, always_xy=True).transform(geo["longitude"], geo["latitude"])
    per_line = lambda v: [v[order][geo["line"][order] == ln] for ln in tie_lines]  # noqa: E731
    tie_pixels = per_line(geo["pixel"])
    tie_x, tie_y, tie_inc = per_line(x), per_line(y), per_line(geo["incidence"])

    cal = {p: parse_calibration(product.xml[("calibration", p)], product.files[("calibration", p)]) for p in _POLS}
    noise = {p: parse_noise(product.xml[("noise", p)], product.files[("noise", p)]) for p in _POLS}
    blocks = {p: _swath_tables(noise[p], product.shape, spec, p) for p in _POLS}
    enl = bs.ENL[spec.product]
    texture = bs.TextureFields(rng, product.shape)
    speckle = {p: bs.StripNoise(rng, n_samples, "gamma", enl) for p in _POLS}

    out: dict[str, np.ndarray] = {}
    if keep_truth:
        out = {"surface": np.full(product.shape, -2, np.int8)}
        out.update({f"sigma0_{p}": np.zeros(product.shape, np.float32) for p in _POLS})
    samples = np.arange(n_samples)
    for row0 in range(0, n_lines, strip_lines):
        lines = np.arange(row0, min(row0 + strip_lines, n_lines))
        mx = interp_vectors(tie_lines, tie_pixels, tie_x, lines, samples)
        my = interp_vectors(tie_lines, tie_pixels, tie_y, lines, samples)
        inc = interp_vectors(tie_lines, tie_pixels, tie_inc, lines, samples).astype(np.float32)
        col = np.clip(((mx - rgrid.xmin) / rgrid.resolution).astype(np.intp), 0, rgrid.shape[1] - 1)
        row = np.clip(((rgrid.ymax - my) / rgrid.resolution).astype(np.intp), 0, rgrid.shape[0] - 1)
        del mx, my
        surface = surface_map[row, col]
        wind = wind_map[row, col]
        fields = texture.next(lines, samples)
        for pol in _POLS:
            a_sigma = calibration_window(cal[pol], "sigma_nought", lines, samples).astype(np.float32)
            eta = noise_window(noise[pol], lines, samples).astype(np.float32)
            valid = np.zeros(eta.shape, bool)
            for l0, l1, s0, s1, scale, offset in blocks[pol]:
                r = slice(max(l0 - row0, 0), max(min(l1 + 1 - row0, lines.size), 0))
                c = slice(s0, s1 + 1)
                eta[r, c] = eta[r, c] * np.float32(scale) + np.float32(offset) * a_sigma[r, c] ** 2
                valid[r, c] = True
            dn, sigma0 = bs.render_dn(
                surface, inc, wind, fields, pol, a_sigma, eta, speckle[pol].next(lines.size)
            )
            dn[~valid] = 0
            if write is not None:
                write(pol, row0, dn)
            if keep_truth:
                out[f"sigma0_{pol}"][lines[0] : lines[-1] + 1] = np.where(valid, sigma0, np.nan)
        if keep_truth:
            out["surface"][lines[0] : lines[-1] + 1] = surface
    return out


# ------------------------------------------------------------------------------- writing


def _tiff_profile(product: RetargetedProduct, pol: str) -> dict:
    from rasterio.control import GroundControlPoint
    from rasterio.crs import CRS

    geo = product.geolocation(pol)
    gcps = [
        GroundControlPoint(row=r, col=c, x=lo, y=la, z=h, id=str(i + 1))
        for i, (r, c, lo, la, h) in enumerate(zip(geo["line"], geo["pixel"], geo["longitude"], geo["latitude"], geo["height"]))
    ]
    return {
        "driver": "GTiff",
        "dtype": "uint16",
        "count": 1,
        "height": product.shape[0],
        "width": product.shape[1],
        "tiled": False,
        "blockysize": 1,
        "compress": None,
        "gcps": gcps,
        "crs": CRS.from_epsg(4326),
    }


def _write_xml(safe: Path, product: RetargetedProduct) -> None:
    for (kind, pol), rel in product.files.items():
        (safe / rel).parent.mkdir(parents=True, exist_ok=True)
        if kind != "measurement":
            (safe / rel).write_bytes(
                etree.tostring(product.xml[(kind, pol)], xml_declaration=True, encoding="UTF-8", standalone=True)
            )
    (safe / "support").mkdir()
    for xsd in sorted(TEMPLATE_DIR.glob("*.xsd.gz")):
        (safe / "support" / xsd.name.removesuffix(".gz")).write_bytes(gzip.decompress(xsd.read_bytes()))


def _pack(safe: Path, final: Path, fmt: str) -> None:
    """Zip (or keep) a finished SAFE folder and move it to ``final``."""
    built = safe
    if fmt == "zip":
        built = safe.with_name(final.name)
        with zipfile.ZipFile(built, "w", compresslevel=1) as zf:
            for path in sorted(safe.rglob("*")):
                if path.is_file():
                    method = zipfile.ZIP_STORED if path.suffix == ".tiff" else zipfile.ZIP_DEFLATED
                    zf.write(path, path.relative_to(safe.parent).as_posix(), compress_type=method)
    if final.exists():
        shutil.rmtree(final) if final.is_dir() else final.unlink()
    built.rename(final)


def write_pass(
    out_dir: str | Path,
    spec: SceneSpec,
    *,
    grid: Grid | None = None,
    fmt: str = "zip",
    overwrite: bool = False,
) -> list[Path]:
    """Render one pass once and write it as ``spec.slices`` consecutive slice products
    (:mod:`~seaice_dask.simulate.slices`); returns their paths (``<name>.zip`` or ``<name>.SAFE``)
    in slice order.

    Everything is written under temporary names in ``out_dir`` and renamed at the end, so an
    interrupted run never leaves a half-written product under a final name; a pass whose products
    all exist is not rendered again.
    """
    import rasterio
    from rasterio.windows import Window

    from seaice_dask.simulate.slices import cut_pass

    if fmt not in ("zip", "safe"):
        raise ConfigError(f"fmt must be 'zip' or 'safe', got {fmt!r}")
    grid = grid or default_grid()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    product = retarget(spec)
    pieces = cut_pass(product)
    finals = [out_dir / (f"{p.name}.zip" if fmt == "zip" else f"{p.name}.SAFE") for p in pieces]
    if all(f.exists() for f in finals) and not overwrite:
        return finals
    work = Path(tempfile.mkdtemp(prefix=f".{product.name}.", dir=out_dir))
    try:
        safes = [work / f"{p.name}.SAFE" for p in pieces]
        datasets = {}
        try:
            for k, (piece, safe) in enumerate(zip(pieces, safes)):
                _write_xml(safe, piece)
                for pol in _POLS:
                    ds = datasets[(k, pol)] = rasterio.open(
                        safe / piece.files[("measurement", pol)], "w", **_tiff_profile(piece, pol)
                    )
                    ds.update_tags(
                        TIFFTAG_IMAGEDESCRIPTION=f"Sentinel-1{spec.mission[-1]} EW GRD {pol.upper()} (simulated)",
                        TIFFTAG_SOFTWARE="Sentinel-1 IPF 003.52 template, seaice-dask simulator",
                        TIFFTAG_DATETIME=f"{piece.start:%Y:%m:%d %H:%M:%S}",
                    )

            def write(pol: str, row0: int, dn: np.ndarray) -> None:
                """Each strip of the pass goes to every slice holding some of its lines."""
                for k, piece in enumerate(pieces):
                    a = max(row0, piece.first_line)
                    b = min(row0 + dn.shape[0], piece.first_line + piece.shape[0])
                    if a < b:
                        window = Window(0, a - piece.first_line, dn.shape[1], b - a)
                        datasets[(k, pol)].write(dn[a - row0 : b - row0], 1, window=window)

            render_measurements(product, grid, write=write)
        finally:
            for ds in datasets.values():
                ds.close()
        for piece, safe, final in zip(pieces, safes, finals):
            (safe / "manifest.safe").write_bytes(_finish_manifest(piece.manifest, safe))
            _pack(safe, final, fmt)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    shutil.rmtree(work, ignore_errors=True)
    return finals


def write_scene(
    out_dir: str | Path,
    spec: SceneSpec,
    *,
    grid: Grid | None = None,
    fmt: str = "zip",
    overwrite: bool = False,
) -> Path:
    """Render and write one pass as one product (``spec.slices == 1``); returns its path."""
    if spec.slices != 1:
        raise ConfigError(f"write_scene writes one product; use write_pass for {spec.slices} slices")
    return write_pass(out_dir, spec, grid=grid, fmt=fmt, overwrite=overwrite)[0]


__all__ = [
    "ORBIT_OFFSET",
    "PIXEL_SPACING",
    "TEMPLATE_ABSOLUTE_ORBIT",
    "INCLINATION_DEG",
    "ORBIT_PERIOD_S",
    "TEMPLATE_START",
    "TEMPLATE_STOP",
    "RetargetedProduct",
    "SceneSpec",
    "argument_of_latitude",
    "ascending_heading",
    "ascending_lead_s",
    "descending_heading",
    "product_files",
    "product_name",
    "render_measurements",
    "retarget",
    "write_pass",
    "write_scene",
]
