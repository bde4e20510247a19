"""SIGRID-3 code tables and the decoding of one chart polygon's egg code.

Source: JCOMM Expert Team on Sea Ice, *SIGRID-3: a vector archive format for sea ice
georeferenced information and data*, JCOMM Technical Report 23 (WMO/TD-1214), 2014 revision 3,
Appendix E: Table 1 (concentration: CT, CA, CB, CC), Table 2 (stage of development: SA, SB, SC,
CN, CD), Table 3 (form of ice: FA, FB, FC) and Table 4 (POLY_TYPE).

Conventions of the ice services that the specification leaves open, and how we read them:

* ``-9`` (also empty, NULL, ``99`` for "unknown") marks a missing value (CIS and NIC charts).
* ``00`` as a total concentration means ice free (CIS and NIC use it for POLY_TYPE ``W``,
  although Table 1 only lists ``98``).
* Concentrations are percent; an interval code (``13`` = 1/10-3/10) decodes to its midpoint;
  below-a-tenth codes (``01`` open water, ``02`` bergy water, ``98`` ice free) decode to 0 % sea
  ice, as the AI4Arctic challenge data do.
* With a single ice type the partial concentration ``CA`` is left empty: it equals ``CT``.
* ``CD`` (stage S_d) takes the remainder ``CT - (CA + CB + CC)``; ``CN`` (stage S_o, thicker
  ice under 1/10) is a trace and carries no concentration.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

#: Table 4: POLY_TYPE.
POLY_TYPES: dict[str, str] = {
    "L": "land",
    "W": "water, sea ice free",
    "I": "ice of any concentration",
    "N": "no data",
    "S": "ice shelf / ice of land origin",
}


def _concentration_table() -> dict[str, tuple[float, float]]:
    """Table 1 as code -> (lowest, highest) concentration in percent."""
    table: dict[str, tuple[float, float]] = {
        "98": (0.0, 0.0),  # ice free
        "01": (0.0, 0.0),  # less than 1/10 (open water)
        "02": (0.0, 0.0),  # bergy water
        "00": (0.0, 0.0),  # ice free, service convention (see module docstring)
        "92": (100.0, 100.0),  # 10/10
    }
    for tenths in range(1, 10):
        table[f"{tenths}0"] = (tenths * 10.0, tenths * 10.0)
    intervals = ("91", "89", "81", "79", "78", "68", "67", "57", "56", "46", "45", "35", "34",
                 "24", "23", "13", "12")  # fmt: skip
    for code in intervals:
        low, high = int(code[0]), int(code[1])
        table[code] = (low * 10.0, 100.0 if code in ("91", "81") else high * 10.0)
    return table


#: Table 1: concentration code -> (low, high) percent; ``99`` (unknown) is handled as missing.
CONCENTRATION: dict[str, tuple[float, float]] = _concentration_table()


def _thickness_table() -> dict[str, float]:
    """Table 2, codes 02-78: ice thickness in cm."""
    table = {"02": 2.0}
    table.update({f"{cm:02d}": float(cm) for cm in range(3, 51)})
    table.update({f"{51 + i}": 55.0 + 5 * i for i in range(9)})  # 51..59: 55..95 cm
    table.update({f"{60 + i}": 100.0 + 10 * i for i in range(10)})  # 60..69: 100..190 cm
    table.update({f"{70 + i}": 200.0 + 50 * i for i in range(4)})  # 70..73: 200..350 cm
    table.update({f"{74 + i}": 400.0 + 100 * i for i in range(5)})  # 74..78: 400..800 cm
    return table


#: Table 2, thickness codes 02-78 -> thickness in cm.
THICKNESS_CM: dict[str, float] = _thickness_table()

#: Table 2, named stages of development (codes 79-99; 90 and 92 are "for later use": invalid).
STAGES: dict[str, str] = {
    "01": "ice free",
    "79": "brash ice",
    "80": "no stage of development",
    "81": "new ice",
    "82": "nilas, ice rind",
    "83": "young ice",
    "84": "grey ice",
    "85": "grey-white ice",
    "86": "first-year ice",
    "87": "thin first-year ice",
    "88": "thin first-year ice, stage 1",
    "89": "thin first-year ice, stage 2",
    "91": "medium first-year ice",
    "93": "thick first-year ice",
    "94": "residual ice",
    "95": "old ice",
    "96": "second-year ice",
    "97": "multi-year ice",
    "98": "glacier ice",
}

#: Table 3: form of ice.
FORMS: dict[str, str] = {
    "22": "pancake ice", "01": "shuga / small ice cake, brash ice", "02": "ice cake",
    "03": "small floe", "04": "medium floe", "05": "big floe", "06": "vast floe",
    "07": "giant floe", "08": "fast ice", "09": "growlers, floebergs or floebits",
    "10": "icebergs", **{f"{c:02d}": f"strips and patches {c - 10}/10" for c in range(11, 20)},
    "91": "strips and patches 9+/10", "20": "strips and patches 10/10", "21": "level ice",
}  # fmt: skip

MISSING = {"", "-9", "-99", "99", "nan", "none", "null"}


def normalise_code(value: object) -> str | None:
    """A field value as a two-digit code string, or ``None`` when missing.

    Shapefile readers return strings (``"92"``), numbers (``92``, ``92.0``, ``-9``) or NULL.
    """
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, (int, float)):
        text = f"{int(value):02d}" if float(value).is_integer() else str(value)
    else:
        text = str(value).strip()
        if text.lstrip("-").isdigit():
            text = f"{int(text):02d}"
    return None if text.lower() in MISSING else text


@dataclass
class EggCode:
    """One decoded polygon: total concentration, (stage, partial concentration) pairs, forms.

    ``problems`` lists codes outside the tables; a polygon with problems is left unlabelled.
    """

    poly_type: str | None
    total: float | None  # CT, percent of sea ice; None when missing or unknown
    stages: list[tuple[str | None, float]] = field(default_factory=list)  # (SoD code, percent)
    trace_stage: str | None = None  # CN (S_o)
    forms: list[str | None] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def _concentration(name: str, code: str | None, problems: list[str]) -> float | None:
    if code is None:
        return None
    if code not in CONCENTRATION:
        problems.append(f"{name}={code!r} is not a SIGRID-3 concentration code (Table 1)")
        return None
    low, high = CONCENTRATION[code]
    return (low + high) / 2.0


def _stage(name: str, code: str | None, problems: list[str]) -> str | None:
    if code is not None and code not in STAGES and code not in THICKNESS_CM:
        problems.append(f"{name}={code!r} is not a SIGRID-3 stage of development code (Table 2)")
        return None
    return code


def decode_egg_code(fields: dict[str, object]) -> EggCode:
    """Decode the SIGRID-3 attributes of one polygon (keys upper-case: ``CT``, ``CA``, …).

    Follows the egg-code reading of SIGRID-3 Appendix E (see the module docstring): the
    partial concentrations C_a, C_b, C_c belong to stages S_a, S_b, S_c (thickest first), S_d
    takes the remainder, and a lone stage S_a takes the total concentration.
    """
    problems: list[str] = []
    code = {k: normalise_code(fields.get(k)) for k in
            ("CT", "CA", "CB", "CC", "SA", "SB", "SC", "CN", "CD", "FA", "FB", "FC")}  # fmt: skip
    poly_type = normalise_code(fields.get("POLY_TYPE"))
    if poly_type is not None:
        poly_type = poly_type.upper()
        if poly_type not in POLY_TYPES:
            problems.append(f"POLY_TYPE={poly_type!r} is not in SIGRID-3 Table 4")
    total = _concentration("CT", code["CT"], problems)
    partial = {k: _concentration(k, code[k], problems) for k in ("CA", "CB", "CC")}
    stage = {k: _stage(k, code[k], problems) for k in ("SA", "SB", "SC", "CN", "CD")}
    forms = []
    for k in ("FA", "FB", "FC"):
        if code[k] is not None and code[k] not in FORMS:
            problems.append(f"{k}={code[k]!r} is not a SIGRID-3 form of ice code (Table 3)")
        forms.append(code[k] if code[k] in FORMS else None)

    stages: list[tuple[str | None, float]] = []
    if total is not None and total > 0:
        if all(partial[k] is None for k in ("CA", "CB", "CC")):
            stages.append((stage["SA"], total))  # one ice type: C_a is left empty, equals CT
        else:
            for c, s in (("CA", "SA"), ("CB", "SB"), ("CC", "SC")):
                if partial[c] is not None:
                    stages.append((stage[s], partial[c]))
                elif stage[s] is not None and c != "CA":
                    problems.append(f"{s}={code[s]!r} has no partial concentration {c}")
        remainder = total - sum(p for _, p in stages)
        if stage["CD"] is not None and remainder > 0:
            stages.append((stage["CD"], remainder))
    return EggCode(poly_type, total, stages, stage["CN"], forms, problems)
