"""Run dask graphs on the cluster (or the local scheduler) with an optional progress bar."""

from __future__ import annotations

import contextlib
import sys
import warnings
from collections.abc import Iterator
from typing import Any

import dask
from dask.diagnostics import ProgressBar


@contextlib.contextmanager
def _model_in_graph() -> Iterator[None]:
    """Silence distributed's "large graph" warning: the graphs here carry a fitted model (tens of
    MB for a random forest), sent once per computation by design."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sending large graph", category=UserWarning)
        yield


def compute(*collections: Any, client: Any = None, progress: bool = True) -> tuple:
    """``dask.compute`` on ``client`` when given, with distributed's (or dask's) progress bar."""
    if client is not None:
        with _model_in_graph():
            futures = client.compute(list(collections))
        if progress:
            from distributed import progress as show_progress

            show_progress(futures, notebook=False)
        return tuple(client.gather(futures))
    if progress:
        with ProgressBar(out=sys.stderr):
            return dask.compute(*collections)
    return dask.compute(*collections)
