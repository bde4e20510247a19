"""Cut a re-targeted pass into consecutive slice products, as ESA distributes EW passes.

ESA cuts the data take of a pass into slices of about a minute and distributes each as its own
product (``sliceNumber`` of ``totalSlices``, one ``segmentStartTime`` and data take for all).
The simulator renders the pass once and writes line ranges of it:

* **cut lines** are lines of the geolocation grid (the one nearest ``k·(L − 1)/N``), so each
  slice has tie points on its first and last line and its grid is a subset of the pass's, lines
  re-indexed; consecutive slices share the cut line, so the stop time of one slice is the start
  time of the next and both hold the same pixels on it;
* **times** are linear in line between the pass's first- and last-line times;
* **LUTs**: calibration and noise vectors keep the pass's vectors that bracket the slice, lines
  re-indexed (before line 0 or after the last line, as the schemas' int32 allows), so every LUT
  evaluates on a slice exactly as on the pass; noise azimuth blocks and swath bounds are clipped.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import re

import numpy as np
from lxml import etree

from seaice_dask.errors import ConfigError
from seaice_dask.simulate.safe_writer import RetargetedProduct, product_files, product_name

_POLS = ("hh", "hv")


def cut_lines(product: RetargetedProduct, n: int) -> list[tuple[int, int]]:
    """(first, last) pass lines of each of ``n`` slices, inclusive; neighbours share a line."""
    n_lines = product.shape[0]
    tie_lines = np.unique(product.geolocation()["line"]).astype(np.int64)
    cuts = [int(tie_lines[np.argmin(np.abs(tie_lines - k * (n_lines - 1) / n))]) for k in range(1, n)]
    bounds = [0, *cuts, n_lines - 1]
    if np.any(np.diff(bounds) <= 0):
        raise ConfigError(
            f"{n} slices per pass: the pass has {n_lines} lines and only {tie_lines.size} geolocation "
            "lines to cut at; use fewer slices or size 'full'"
        )
    return list(zip(bounds[:-1], bounds[1:]))


def cut_pass(product: RetargetedProduct) -> list[RetargetedProduct]:
    """The ``product.spec.slices`` slice products of a re-targeted pass."""
    total = product.spec.slices
    return [slice_product(product, k, total, a, b) for k, (a, b) in enumerate(cut_lines(product, total), start=1)]


def _iso(t: dt.datetime) -> str:
    return f"{t:%Y-%m-%dT%H:%M:%S.%f}"


def _keep(lines: np.ndarray, first: int, last: int, cut_first: bool, cut_last: bool) -> np.ndarray:
    """Entries needed to interpolate on lines [first, last]: those inside and, where the range was
    cut, the nearest one beyond; where it was not cut, everything beyond is kept as it was."""
    lo = max(int(np.searchsorted(lines, first, side="right")) - 1, 0) if cut_first else 0
    hi = min(int(np.searchsorted(lines, last, side="left")), lines.size - 1) if cut_last else lines.size - 1
    keep = np.zeros(lines.size, bool)
    keep[lo : hi + 1] = True
    return keep


def _set_list(el: etree._Element, values) -> None:
    values = list(values)
    el.text = " ".join(values)
    el.attrib["count"] = str(len(values))


def _cut_vectors(parent: etree._Element, first: int, last: int, n_lines: int) -> None:
    """Calibration or noise range vectors: keep those bracketing [first, last], lines re-indexed."""
    vectors = list(parent)
    lines = np.array([int(v.findtext("line")) for v in vectors])
    keep = _keep(lines, first, last, first > 0, last < n_lines - 1)
    for vector, kept, line in zip(vectors, keep, lines):
        if kept:
            vector.find("line").text = str(line - first)
        else:
            parent.remove(vector)
    parent.attrib["count"] = str(len(parent))


def _clip_block(el: etree._Element, first: int, last: int) -> tuple[int, int, int, int] | None:
    """Clip a (first/lastAzimuthLine) block to [first, last] and re-index; None if outside."""
    a, b = int(el.findtext("firstAzimuthLine")), int(el.findtext("lastAzimuthLine"))
    if b < first or a > last:
        return None
    ca, cb = max(a, first), min(b, last)
    el.find("firstAzimuthLine").text, el.find("lastAzimuthLine").text = str(ca - first), str(cb - first)
    return a, b, ca, cb


def _cut_noise_azimuth(root: etree._Element, first: int, last: int) -> None:
    for parent in root.iter("noiseAzimuthVectorList"):
        for block in list(parent):
            clipped = _clip_block(block, first, last)
            if clipped is None:
                parent.remove(block)
                continue
            a, b, ca, cb = clipped
            line_el, lut_el = block.find("line"), block.find("noiseAzimuthLut")
            lines = np.array(line_el.text.split(), dtype=np.int64)
            keep = _keep(lines, ca, cb, ca > a, cb < b)
            _set_list(line_el, (str(v - first) for v in lines[keep]))
            _set_list(lut_el, np.array(lut_el.text.split())[keep])
        parent.attrib["count"] = str(len(parent))


def _cut_annotation(root: etree._Element, first: int, last: int, start: dt.datetime, stop: dt.datetime) -> None:
    info = root.find("imageAnnotation/imageInformation")
    info.find("productFirstLineUtcTime").text, info.find("productLastLineUtcTime").text = _iso(start), _iso(stop)
    info.find("numberOfLines").text = str(last - first + 1)
    for parent in root.iter("geolocationGridPointList"):
        for point in list(parent):
            line = int(point.findtext("line"))
            if first <= line <= last:
                point.find("line").text = str(line - first)
            else:
                parent.remove(point)
        parent.attrib["count"] = str(len(parent))
    for parent in root.iter("swathBoundsList"):
        for bounds in list(parent):
            if _clip_block(bounds, first, last) is None:
                parent.remove(bounds)
        parent.attrib["count"] = str(len(parent))


def _footprint(product: RetargetedProduct) -> str:
    """Corners (lat,lon) in ESA's order: last line near, last line far, first line far, first line near."""
    geo = product.geolocation()
    lines, pixels = (geo["line"].min(), geo["line"].max()), (geo["pixel"].min(), geo["pixel"].max())
    corners = []
    for line, pixel in ((lines[1], pixels[0]), (lines[1], pixels[1]), (lines[0], pixels[1]), (lines[0], pixels[0])):
        at = np.flatnonzero((geo["line"] == line) & (geo["pixel"] == pixel))[0]
        corners.append(f"{geo['latitude'][at]:.6f},{geo['longitude'][at]:.6f}")
    return " ".join(corners)


def _cut_manifest(
    product: RetargetedProduct, number: int, total: int, start: dt.datetime, stop: dt.datetime
) -> etree._Element:
    """The pass manifest with the slice's file names, times, ANX times and slice number."""
    names = {f"{t0:%Y%m%dt%H%M%S}": f"{t1:%Y%m%dt%H%M%S}" for t0, t1 in ((product.start, start), (product.stop, stop))}
    text = re.sub("|".join(names), lambda m: names[m.group()], etree.tostring(product.manifest, encoding="unicode"))
    manifest = etree.fromstring(text, etree.XMLParser(resolve_entities=False, no_network=True))
    manifest.find(".//{*}acquisitionPeriod/{*}startTime").text = _iso(start)
    manifest.find(".//{*}acquisitionPeriod/{*}stopTime").text = _iso(stop)
    manifest.find(".//{*}sliceNumber").text = str(number)
    manifest.find(".//{*}totalSlices").text = str(total)
    for tag, t, edge in (("startTimeANX", start, product.start), ("stopTimeANX", stop, product.stop)):
        el = manifest.find(f".//{{*}}{tag}")  # ms after the ascending node
        el.text = f"{float(el.text) + (t - edge).total_seconds() * 1e3:.6e}"
    return manifest


def slice_product(product: RetargetedProduct, number: int, total: int, first: int, last: int) -> RetargetedProduct:
    """Slice ``number`` of ``total``: pass lines ``first`` … ``last`` (inclusive) as its own product."""
    n_lines = product.shape[0]
    start, stop = (product.start + (product.stop - product.start) * (line / (n_lines - 1)) for line in (first, last))
    xml = {key: copy.deepcopy(root) for key, root in product.xml.items()}
    for (kind, pol), root in xml.items():
        header = root.find("adsHeader")
        header.find("startTime").text, header.find("stopTime").text = _iso(start), _iso(stop)
        if kind == "annotation":
            _cut_annotation(root, first, last, start, stop)
        elif kind == "calibration":
            _cut_vectors(root.find("calibrationVectorList"), first, last, n_lines)
        elif kind == "noise":
            _cut_vectors(root.find("noiseRangeVectorList"), first, last, n_lines)
            _cut_noise_azimuth(root, first, last)
    piece = dataclasses.replace(
        product,
        name=product_name(product.spec, start, stop),
        files=product_files(product.spec, start, stop),
        xml=xml,
        manifest=_cut_manifest(product, number, total, start, stop),
        shape=(last - first + 1, product.shape[1]),
        start=start,
        stop=stop,
        first_line=first,
        slice_number=number,
        _geolocation={},
    )
    piece.manifest.find(".//{*}footPrint/{*}coordinates").text = _footprint(piece)
    return piece


__all__ = ["cut_lines", "cut_pass", "slice_product"]
