"""Run dask graphs on the cluster (or the local scheduler) with an optional progress bar."""

from __future__ import annotations

import sys
from typing import Any

import dask
from dask.diagnostics import ProgressBar


def compute(*collections: Any, client: Any = None, progress: bool = True) -> tuple:
    """``dask.compute`` on ``client`` when given, with distributed's (or dask's) progress bar."""
    if client is not None:
        futures = client.compute(list(collections))
        if progress:
            from distributed import progress as show_progress

            show_progress(futures, notebook=False)
        return tuple(client.gather(futures))
    if progress:
        with ProgressBar(out=sys.stderr):
            return dask.compute(*collections)
    return dask.compute(*collections)


def persist(collection: Any, client: Any = None) -> Any:
    """Materialise ``collection`` on the workers (or locally) and return it, still lazy-typed."""
    if client is not None:
        return client.persist(collection)
    return collection.persist()
