"""Hardened XML parsing for SAFE manifests and annotation files.

Sentinel-1 XML never needs a DTD, entities or network access, so the parser disables all three
and any document that declares a DOCTYPE is refused (this blocks entity-expansion bombs and
external-entity reads even if a future lxml changed its defaults).
"""

from __future__ import annotations

from os import PathLike

import numpy as np
from lxml import etree

from seaice_dask.errors import ProductError

_PARSER_OPTIONS = dict(
    resolve_entities=False,
    no_network=True,
    load_dtd=False,
    dtd_validation=False,
    huge_tree=False,
    remove_comments=True,
)


def parse_xml(data: bytes, source: str | PathLike) -> etree._Element:
    """Parse ``data`` (read from ``source``) into an element tree root, or raise ProductError."""
    parser = etree.XMLParser(**_PARSER_OPTIONS)
    try:
        root = etree.fromstring(data, parser)
    except etree.XMLSyntaxError as exc:
        raise ProductError(f"corrupt XML: {exc}", source) from None
    if root is None:
        raise ProductError("empty XML document", source)
    doctype = root.getroottree().docinfo
    if doctype.internalDTD is not None or doctype.externalDTD is not None or doctype.doctype:
        raise ProductError("XML declares a DOCTYPE (entities are not allowed in product files)", source)
    return root


def find(el: etree._Element, path: str, source: str | PathLike) -> etree._Element:
    """The first element at ``path`` (namespace-agnostic ``local-name`` steps allowed), required."""
    found = el.find(path)
    if found is None:
        raise ProductError(f"missing element {path!r} in <{etree.QName(el).localname}>", source)
    return found


def text(el: etree._Element, path: str, source: str | PathLike) -> str:
    """Stripped text of the required element at ``path``."""
    value = find(el, path, source).text
    if value is None or not value.strip():
        raise ProductError(f"element {path!r} is empty", source)
    return value.strip()


def number_list(el: etree._Element, path: str, source: str | PathLike, dtype=np.float64) -> np.ndarray:
    """A whitespace-separated list of numbers (ESA ``count``-attributed arrays) as a 1-D array."""
    node = find(el, path, source)
    raw = (node.text or "").split()
    try:
        values = np.array(raw, dtype=np.float64)
    except ValueError:
        raise ProductError(f"element {path!r} holds non-numeric values", source) from None
    count = node.get("count")
    if count is not None and int(count) != values.size:
        raise ProductError(
            f"element {path!r} declares count={count} but holds {values.size} values", source
        )
    if np.dtype(dtype).kind in "iu":
        return np.rint(values).astype(dtype)
    return values.astype(dtype)


def utc(value: str) -> np.datetime64:
    """An ESA UTC time string (``2022-11-30T01:43:42.546629``) as datetime64[ns]."""
    return np.datetime64(value.rstrip("Z"), "ns")
