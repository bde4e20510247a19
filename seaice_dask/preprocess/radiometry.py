"""The radiometric settings a cube's σ0 was made with, and the refusal to mix them.

Thermal-noise removal (``preprocess.denoise``), the cross-pol textural noise correction
(``preprocess.textural_noise``) and the incidence-angle correction (``preprocess.incidence``)
change every σ0 and every texture: slices made otherwise would put one ice type at two levels in
one cube, and a model trained on one kind of input misreads another. A cube keeps the settings of
its first ingest (the attrs ``incidence_correction`` and ``textural_noise``, the per-slice
``denoise`` coordinate), a model those of its training cube. The defaults changed once (from plain
ESA processing to the seed's: NERSC denoising, textural noise, class-aware incidence correction),
so a refusal names both settings and both ways out: a new store, or the store's settings in the
config.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from seaice_dask.errors import CubeError
from seaice_dask.preprocess.incidence import ATTR


@dataclass(frozen=True)
class Radiometry:
    """Denoising (None: not recorded, as in models), textural noise, incidence method and reference."""

    denoise: str | None
    textural_noise: bool
    incidence: str  # "none" | "linear" | "class"
    reference_deg: float | None = None  # None without incidence correction

    @classmethod
    def of_config(cls, preprocess: Any) -> Radiometry:
        """The settings a :class:`~seaice_dask.config.PreprocessConfig` asks for."""
        inc = preprocess.incidence
        reference = None if inc.correction == "none" else float(inc.reference_deg)
        return cls(preprocess.denoise, bool(preprocess.textural_noise), inc.correction, reference)

    @classmethod
    def of_attrs(cls, attrs: Mapping[str, Any], denoise: Iterable[str] = ()) -> Radiometry:
        """From a cube's attrs or a model's radiometry record (the same keys; missing: uncorrected)
        and the ``denoise`` of the cube's ingested slices (several values: joined with "/")."""
        inc = attrs.get(ATTR) or {"method": "none"}
        method = inc.get("method", "none")
        reference = None if method == "none" else float(inc["reference_deg"])
        methods = sorted(set(map(str, denoise)))
        return cls("/".join(methods) or None, bool(attrs.get("textural_noise", False)), method, reference)

    def describe(self) -> str:
        """"denoise esa, textural noise off, incidence correction none" (denoise left out if unknown)."""
        parts = [] if self.denoise is None else [f"denoise {self.denoise}"]
        parts.append(f"textural noise {'on' if self.textural_noise else 'off'}")
        reference = "" if self.reference_deg is None else f" (reference {self.reference_deg:g}°)"
        return ", ".join(parts + [f"incidence correction {self.incidence}{reference}"])

    def as_config(self) -> str:
        """These settings as config keys, to paste (denoise left out if unknown or mixed)."""
        keys = [] if self.denoise is None or "/" in self.denoise else [f"preprocess.denoise: {self.denoise}"]
        keys += [f"preprocess.textural_noise: {str(self.textural_noise).lower()}",
                 f"preprocess.incidence.correction: {self.incidence}"]
        if self.reference_deg is not None:
            keys.append(f"preprocess.incidence.reference_deg: {self.reference_deg:g}")
        return ", ".join(keys)

    def differs(self, other: Radiometry) -> bool:
        """Another setting, ignoring a denoise that one side does not record."""
        known = self.denoise is not None and other.denoise is not None
        return (known and self.denoise != other.denoise) or (self.textural_noise, self.incidence, self.reference_deg) != (
            other.textural_noise, other.incidence, other.reference_deg)


def check_cube_radiometry(recorded: Radiometry, wanted: Radiometry, store: Any) -> None:
    """Refuse to add slices made with ``wanted`` (the config) to a cube made with ``recorded``:
    CubeError naming both and how to proceed."""
    if recorded.differs(wanted):
        raise CubeError(
            f"the cube was made with {recorded.describe()}; the config asks for {wanted.describe()}. "
            f"Slices made otherwise cannot share one cube: use a new store path (paths.store), or set the "
            f"cube's settings in the config: {recorded.as_config()}", store,
        )


__all__ = ["Radiometry", "check_cube_radiometry"]
