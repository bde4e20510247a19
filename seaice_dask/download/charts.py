"""US National Ice Center weekly Arctic charts: one SIGRID-3 shapefile zip per chart date.

Files are saved as ``arcticYYMMDD.zip``, the archive's historical name that the chart reader
dates (``seaice_dask.charts.read.chart_date``).
"""

from __future__ import annotations

import datetime as dt


def chart_dates(start: dt.date, end: dt.date, weekday: int = 0) -> list[dt.date]:
    """Every ``weekday`` (0 = Monday) in ``[start, end]``."""
    first = start + dt.timedelta(days=(weekday - start.weekday()) % 7)
    return [first + dt.timedelta(weeks=k) for k in range((end - first).days // 7 + 1)] if first <= end else []


def chart_url(template: str, date: dt.date) -> str:
    """``template`` with ``{date:…}`` formatted, e.g. ``…?prd=26{date:%m%d%Y}``."""
    return template.format(date=date)


def chart_file_name(date: dt.date) -> str:
    return f"arctic{date:%y%m%d}.zip"
