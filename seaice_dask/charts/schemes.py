"""Class schemes: from a decoded egg code to one training label per chart polygon.

A scheme maps each stage of development (SIGRID-3 Table 2) to a class id. A polygon gets the
class that holds at least ``dominance`` of its ice (partial concentrations over their sum, which
equals CT for a consistent egg code); otherwise it is "mixed" and unlabelled (−1). Polygons of
POLY_TYPE ``W`` and those with CT below ``water_ct_max`` are water (class 0). Land, no-data,
ice-of-land-origin, unknown and undecodable polygons are unlabelled.

Built-in schemes:

* ``sod4`` (this project): 0 open water, 1 young ice incl. new ice and nilas (< 30 cm),
  2 first-year ice (30–200 cm), 3 old ice (residual, second-year, multi-year).
* ``ai4arctic``: the six stage-of-development classes of the AI4Arctic sea-ice challenge
  (Buus-Hinkler et al. 2022, AI4Arctic Sea Ice Challenge Dataset manual, ``SOD_LOOKUP``):
  0 open water, 1 new ice (81, 82), 2 young ice (83–85), 3 thin first-year ice (87–89),
  4 thick first-year ice (86, 91, 93), 5 old ice (95–97); 94, 98 and 99 unlabelled.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from os import PathLike

import numpy as np
import pandas as pd

from seaice_dask.charts.codes import THICKNESS_CM, EggCode, decode_egg_code
from seaice_dask.errors import ChartError

UNLABELLED = -1
WATER = 0


class ChartCodeWarning(UserWarning):
    """A chart polygon carries a code outside the SIGRID-3 tables (it is left unlabelled)."""


@dataclass(frozen=True)
class ClassScheme:
    """Stage-of-development codes → class ids.

    ``stages`` maps named stage codes (79–98) to a class id or ``None`` (unlabelled);
    ``thickness_cm`` holds (upper bound in cm, class id or ``None``) pairs, ascending, for the
    thickness codes 02–78. Class 0 must be open water. ``colours`` (``#rrggbb`` per class id,
    close to the WMO stage-of-development colour code) is the one palette of figures, GeoTIFF
    colour tables and QGIS styles.
    """

    name: str
    classes: Mapping[int, str]
    stages: Mapping[str, int | None]
    thickness_cm: tuple[tuple[float, int | None], ...]
    colours: Mapping[int, str]

    def stage_class(self, code: str | None) -> int | None:
        """Class of one stage code; ``None`` when unknown or not a sea-ice stage."""
        if code is None:
            return None
        if code in THICKNESS_CM:
            cm = THICKNESS_CM[code]
            return next((cls for upper, cls in self.thickness_cm if cm < upper), None)
        return self.stages.get(code)


SOD4 = ClassScheme(
    name="sod4",
    classes={0: "open water", 1: "young ice", 2: "first-year ice", 3: "old ice"},
    stages={
        "01": 0, "80": 0,
        "81": 1, "82": 1, "83": 1, "84": 1, "85": 1,
        "86": 2, "87": 2, "88": 2, "89": 2, "91": 2, "93": 2,
        "94": 3, "95": 3, "96": 3, "97": 3,
        "79": None, "98": None,
    },  # fmt: skip
    thickness_cm=((30.0, 1), (200.0, 2), (float("inf"), None)),
    colours={0: "#3a6fb0", 1: "#e36ee3", 2: "#ffff00", 3: "#a0522d"},
)

AI4ARCTIC = ClassScheme(
    name="ai4arctic",
    classes={0: "open water", 1: "new ice", 2: "young ice", 3: "thin first-year ice",
             4: "thick first-year ice", 5: "old ice"},  # fmt: skip
    stages={
        "01": 0, "80": 0,
        "81": 1, "82": 1,
        "83": 2, "84": 2, "85": 2,
        "87": 3, "88": 3, "89": 3,
        "86": 4, "91": 4, "93": 4,
        "95": 5, "96": 5, "97": 5,
        "79": None, "94": None, "98": None,
    },  # fmt: skip
    thickness_cm=((10.0, 1), (30.0, 2), (70.0, 3), (200.0, 4), (float("inf"), None)),
    colours={0: "#3a6fb0", 1: "#f0d2fa", 2: "#aa28f0", 3: "#9bd200", 4: "#007800", 5: "#a0522d"},
)

SCHEMES: dict[str, ClassScheme] = {s.name: s for s in (SOD4, AI4ARCTIC)}


def get_scheme(scheme: str | ClassScheme) -> ClassScheme:
    """A built-in scheme by name, or ``scheme`` itself."""
    if isinstance(scheme, ClassScheme):
        return scheme
    try:
        return SCHEMES[scheme]
    except KeyError:
        raise ChartError(f"unknown class scheme {scheme!r}; built in: {sorted(SCHEMES)}") from None


def classify_egg_code(
    egg: EggCode, scheme: ClassScheme, *, dominance: float = 0.65, water_ct_max: float = 10.0
) -> tuple[int, float]:
    """(class id or −1, share of the polygon's ice in that class) for one decoded polygon."""
    if egg.problems or egg.poly_type in ("L", "N", "S"):
        return UNLABELLED, np.nan
    if egg.poly_type == "W":
        return WATER, 1.0
    if egg.total is None:
        return UNLABELLED, np.nan
    if egg.total < water_ct_max:
        return WATER, 1.0
    shares: dict[int | None, float] = {}
    for stage, concentration in egg.stages:
        cls = scheme.stage_class(stage)
        shares[cls] = shares.get(cls, 0.0) + concentration
    total = sum(shares.values())
    if total <= 0:
        return UNLABELLED, np.nan
    best = max((c for c in shares if c is not None), key=shares.__getitem__, default=None)
    if best is None:
        return UNLABELLED, np.nan
    share = shares[best] / total
    return (best if share >= dominance else UNLABELLED), share


def classify_chart(
    attributes: pd.DataFrame,
    scheme: str | ClassScheme = "sod4",
    *,
    dominance: float = 0.65,
    water_ct_max: float = 10.0,
    source: str | PathLike | None = None,
) -> pd.DataFrame:
    """Decode and classify every polygon of a chart's attribute table.

    Returns a frame on the same index with ``label`` (int8, −1 unlabelled), ``share`` (share of
    the ice in the label's class), ``ct_percent`` and ``problems``. Codes outside the SIGRID-3
    tables give one warning naming ``source`` and the polygons; those polygons stay unlabelled.
    """
    scheme = get_scheme(scheme)
    records = pd.DataFrame(attributes).rename(columns=lambda c: str(c).upper()).to_dict("records")
    rows = []
    bad: list[str] = []
    for index, fields in zip(attributes.index, records, strict=True):
        egg = decode_egg_code(fields)
        label, share = classify_egg_code(egg, scheme, dominance=dominance, water_ct_max=water_ct_max)
        rows.append((label, share, np.nan if egg.total is None else egg.total, "; ".join(egg.problems)))
        if egg.problems:
            bad.append(f"polygon {index}: {'; '.join(egg.problems)}")
    if bad:
        where = f"{source}: " if source is not None else ""
        shown = "; ".join(bad[:5]) + (f"; … ({len(bad)} polygons in all)" if len(bad) > 5 else "")
        warnings.warn(f"{where}codes outside the SIGRID-3 tables, polygons left unlabelled: {shown}",
                      ChartCodeWarning, stacklevel=2)  # fmt: skip
    out = pd.DataFrame(rows, index=attributes.index, columns=["label", "share", "ct_percent", "problems"])
    out["label"] = out["label"].astype("int8")
    return out
