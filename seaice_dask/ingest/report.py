"""What one ingest run did, and how a bad scene is recorded (a warning, not an exception)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

from seaice_dask import cube


@dataclass
class IngestReport:
    """What one ingest run did: scene names per outcome and the store written."""

    store: cube.StoreLike
    ingested: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # already in the cube
    excluded: list[str] = field(default_factory=list)  # outside the date range or the grid
    failed: dict[str, str] = field(default_factory=dict)  # path or name → reason
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failed

    def summary(self) -> str:
        return (
            f"{self.store}: {len(self.ingested)} ingested, {len(self.skipped)} already present, "
            f"{len(self.excluded)} excluded, {len(self.failed)} failed ({self.seconds:.1f} s)"
        )


def _fail(report: IngestReport, key: str, message: str) -> None:
    report.failed[key] = message
    warnings.warn(f"skipping scene: {message}", stacklevel=3)
