"""Training samples drawn lazily from the labelled cube.

A pixel is a candidate when ``labels >= 0``, ``valid`` is true, ``land`` is false and every
input is finite. Sampling is stratified per scene and per class: each scene contributes at most
``ceil(cap_per_class / n_scenes)`` pixels of each class, chosen uniformly without replacement.

How it scales: every (time, y, x) block of the cube is read by one task, which gives each
candidate pixel a uniform random key (seeded by the block's position, so the result does not
depend on the number of workers) and keeps only the pixels with the smallest keys per class.
Block results are merged in a tree on the workers, keeping the smallest keys again, so the
client receives at most ``cap_per_class`` pixels per class: the full stack is never gathered,
and a longer series costs more tasks, not more memory. Keeping the smallest uniform keys is an
exact uniform sample without replacement (the "bottom-k" sketch). The per-scene quota is
rounded up, so the assembled sample is finally cut to the cap (smallest keys again).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import dask
import numpy as np
import xarray as xr

from seaice_dask.errors import ConfigError, CubeError

#: Inputs with a ``feature`` dimension expand into one column per feature: ``glcm_hh_contrast``.
FEATURE_DIM = "feature"
#: The dimension of the stacked model inputs.
COLUMN_DIM = "column"
#: Block results merged per tree node when reducing samples on the workers.
_MERGE_FANIN = 8
#: Entry of a candidate set holding the number of candidates per class (summed, not cut).
TOTALS = "totals"


@dataclass
class Sample:
    """Pixels drawn from the cube: inputs ``X`` (n, n_features), labels ``y`` and where from."""

    X: np.ndarray
    y: np.ndarray
    time_index: np.ndarray
    feature_names: list[str]
    key: np.ndarray | None = None  # the pixels' random sampling keys (identify a pixel across samples)

    def __len__(self) -> int:
        return int(self.y.size)

    def take(self, rows: np.ndarray) -> Sample:
        key = None if self.key is None else self.key[rows]
        return Sample(self.X[rows], self.y[rows], self.time_index[rows], self.feature_names, key)

    def class_counts(self, n_classes: int) -> np.ndarray:
        return np.bincount(self.y.astype(np.int64), minlength=n_classes)


def feature_stack(ds: xr.Dataset, inputs: Sequence[str]) -> xr.DataArray:
    """Model inputs as one lazy float32 array ``(time, column, y, x)``, column names as coordinate.

    Inputs with a ``feature`` dimension (``glcm_hh``) give one column per feature named
    ``<input>_<feature>``; the others (``sigma0_hh``, ``incidence``) one column each.
    """
    parts = []
    for name in inputs:
        if name not in ds.data_vars:
            raise CubeError(
                f"model input {name!r} is not in the cube (has: {', '.join(map(str, ds.data_vars))}); "
                "run the stage that writes it or change model.inputs"
            )
        var = ds[name]
        if FEATURE_DIM in var.dims:
            columns = [f"{name}_{f}" for f in var[FEATURE_DIM].values.tolist()]
            var = var.drop_vars(FEATURE_DIM).rename({FEATURE_DIM: COLUMN_DIM})
            var = var.assign_coords({COLUMN_DIM: columns})
        else:
            var = var.expand_dims({COLUMN_DIM: [name]}, axis=1)
        if var.dims != ("time", COLUMN_DIM, "y", "x"):
            raise CubeError(f"model input {name!r} has dims {var.dims}, expected (time, [feature], y, x)")
        parts.append(var.astype("float32").reset_coords(drop=True))
    if not parts:
        raise ConfigError("model.inputs is empty")
    stack = xr.concat(parts, dim=COLUMN_DIM, coords="minimal", compat="override", join="exact")
    stack = stack.assign_coords(time=ds["time"]).chunk({COLUMN_DIM: -1})
    stack.name = "inputs"
    return stack


def feature_names(ds: xr.Dataset, inputs: Sequence[str]) -> list[str]:
    """Column names of :func:`feature_stack` (metadata only, nothing is computed)."""
    return [str(c) for c in feature_stack(ds, inputs)[COLUMN_DIM].values]


def usable_mask(ds: xr.Dataset) -> xr.DataArray:
    """``valid`` and not ``land``, as a lazy bool ``(time, y, x)`` array."""
    if "valid" not in ds.data_vars:
        raise CubeError("the cube has no `valid` mask; run `seaice-dask ingest` first")
    mask = ds["valid"].astype(bool)
    if "land" in ds.data_vars:
        mask = mask & ~ds["land"].astype(bool)
    return mask.transpose("time", "y", "x").reset_coords(drop=True)


def split_dates(
    times: Sequence[np.datetime64], test_fraction: float
) -> tuple[np.ndarray, np.ndarray]:
    """Temporal validation: indices of training and test dates.

    Test dates are spread evenly over the series (every k-th date in time order), so that both
    sets cover every part of the season; whole dates are held out, so no test pixel shares a
    scene (and its speckle, wind or chart) with a training pixel.
    """
    n = len(times)
    if n < 2:
        raise ConfigError(f"a temporal split needs at least 2 dates, the cube has {n}")
    order = np.argsort(np.asarray(times, dtype="datetime64[ns]"), kind="stable")
    n_test = min(max(1, round(test_fraction * n)), n - 1)
    # evenly spaced positions, centred in their stride (never both ends of the series)
    positions = np.floor((np.arange(n_test) + 0.5) * n / n_test).astype(int)
    test = np.sort(order[positions])
    train = np.sort(np.setdiff1d(order, test))
    return train, test


def random_split(sample: Sample, test_fraction: float, seed: int) -> tuple[Sample, Sample]:
    """Random pixel split of a sample; optimistic, hence the warning."""
    warnings.warn(
        "random pixel split: neighbouring pixels of the same scene fall on both sides, so "
        "spatial autocorrelation makes test scores optimistic; prefer model.validation=temporal",
        UserWarning,
        stacklevel=2,
    )
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(sample))
    n_test = max(1, round(test_fraction * len(sample)))
    return sample.take(np.sort(order[n_test:])), sample.take(np.sort(order[:n_test]))


def _block_candidates(
    inputs: np.ndarray, labels: np.ndarray, usable: np.ndarray, key_seed: tuple[int, ...],
    t: int, k: int, n_classes: int, per_class: bool,
) -> dict[str, np.ndarray]:
    """Bottom-k candidates of one block: inputs (1, n_col, by, bx), labels/usable (1, by, bx)."""
    n_col = inputs.shape[1]
    flat = inputs.reshape(n_col, -1)
    lab = labels.reshape(-1).astype(np.int64)
    ok = usable.reshape(-1) & (lab >= 0) & (lab < n_classes) & np.isfinite(flat).all(axis=0)
    keys = np.random.default_rng(key_seed).random(lab.size)
    rows = np.flatnonzero(ok)
    part = {
        "X": np.ascontiguousarray(flat[:, rows].T, dtype=np.float32),
        "y": lab[rows].astype(np.int8),
        "key": keys[rows],
        "t": np.full(rows.size, t, dtype=np.int32),
        TOTALS: np.bincount(lab[rows], minlength=n_classes),
    }
    return _bottom_k([part], k, n_classes, per_class)


def _bottom_k(
    parts: list[dict[str, np.ndarray]], k: int, n_classes: int, per_class: bool
) -> dict[str, np.ndarray]:
    """Merge candidate sets, keeping the ``k`` smallest keys (per class when ``per_class``).

    ``TOTALS`` (candidates per class before any cut) are summed, the rows concatenated.
    """
    totals = sum(p[TOTALS] for p in parts)
    merged = {name: np.concatenate([p[name] for p in parts]) for name in parts[0] if name != TOTALS}
    if per_class:
        keep = [
            rows[np.argsort(merged["key"][rows], kind="stable")[:k]]
            for rows in (np.flatnonzero(merged["y"] == c) for c in range(n_classes))
        ]
        rows = np.sort(np.concatenate(keep))
    else:
        rows = np.sort(np.argsort(merged["key"], kind="stable")[:k])
    return {**{name: values[rows] for name, values in merged.items()}, TOTALS: totals}


def _tree_reduce(nodes: list, k: int, n_classes: int, per_class: bool):
    merge = dask.delayed(_bottom_k, pure=True)
    while len(nodes) > 1:
        nodes = [
            merge(nodes[i : i + _MERGE_FANIN], k, n_classes, per_class)
            for i in range(0, len(nodes), _MERGE_FANIN)
        ]
    return nodes[0]


def sample_graph(
    ds: xr.Dataset,
    inputs: Sequence[str],
    time_index: Sequence[int],
    *,
    cap_per_class: int | None,
    n_classes: int,
    balanced: bool = True,
    seed: int = 0,
) -> list:
    """Lazy per-scene samples (one dask ``Delayed`` per date), for :func:`draw_samples`.

    Per scene and class at most ``ceil(cap_per_class / n_dates)`` pixels (``balanced``), or at
    most ``ceil(n_classes * cap_per_class / n_dates)`` pixels in their natural class
    proportions. ``cap_per_class=None`` keeps every candidate (use on small cubes only).
    """
    time_index = [int(t) for t in time_index]
    if not time_index:
        raise ConfigError("no dates to sample from")
    if "labels" not in ds.data_vars:
        raise CubeError("the cube has no `labels`; run `seaice-dask charts` first")
    stack = feature_stack(ds, inputs)
    labels = ds["labels"].reset_coords(drop=True)
    usable = usable_mask(ds)
    stack, labels, usable = xr.unify_chunks(stack, labels, usable)
    stack_blocks = stack.data.to_delayed()  # (time, 1, ny_blocks, nx_blocks)
    label_blocks = labels.data.to_delayed()
    usable_blocks = usable.data.to_delayed()
    n_dates = len(time_index)
    if cap_per_class is None:
        k = int(np.prod(stack.shape[-2:]))
    elif balanced:
        k = math.ceil(cap_per_class / n_dates)
    else:
        k = math.ceil(n_classes * cap_per_class / n_dates)
    candidates = dask.delayed(_block_candidates, pure=True)
    scenes = []
    for t in time_index:
        nodes = [
            candidates(
                stack_blocks[t, 0, by, bx], label_blocks[t, by, bx], usable_blocks[t, by, bx],
                (seed, t, by, bx), t, k, n_classes, balanced,
            )
            for by in range(stack_blocks.shape[2])
            for bx in range(stack_blocks.shape[3])
        ]
        scenes.append(_tree_reduce(nodes, k, n_classes, balanced))
    return scenes


def assemble(
    scenes: list[dict[str, np.ndarray]],
    names: list[str],
    *,
    n_classes: int,
    balanced: bool,
    seed: int,
    cap_per_class: int | None = None,
) -> Sample:
    """Concatenate per-scene samples, enforce the cap, balance classes and shuffle the rows.

    ``balanced``: every class is cut to the rarest present class (and to ``cap_per_class``);
    otherwise the whole sample is cut to ``n_classes * cap_per_class`` rows. Cuts keep the
    smallest keys, so they stay uniform random samples.
    """
    merged = {name: np.concatenate([s[name] for s in scenes]) for name in scenes[0] if name != TOTALS}
    y, key = merged["y"].astype(np.int64), merged["key"]
    counts = np.bincount(y, minlength=n_classes)
    missing = [c for c in range(n_classes) if counts[c] == 0]
    if missing and y.size:
        warnings.warn(
            f"classes {missing} have no labelled pixels in the sampled dates; the models "
            "cannot predict them", UserWarning, stacklevel=2,
        )
    if balanced and y.size:
        n_keep = int(counts[counts > 0].min()) if cap_per_class is None else min(int(counts[counts > 0].min()), cap_per_class)
        rows = np.concatenate([
            np.flatnonzero(y == c)[np.argsort(key[y == c], kind="stable")[:n_keep]] for c in range(n_classes)
        ])
    elif cap_per_class is not None:
        rows = np.argsort(key, kind="stable")[: n_classes * cap_per_class]
    else:
        rows = np.arange(y.size)
    rows = rows[np.random.default_rng(seed).permutation(rows.size)]  # iid order for partial_fit
    return Sample(merged["X"][rows], merged["y"][rows], merged["t"][rows], list(names))


def draw_samples(
    ds: xr.Dataset,
    inputs: Sequence[str],
    time_index: Sequence[int],
    *,
    cap_per_class: int | None,
    n_classes: int,
    balanced: bool = True,
    seed: int = 0,
    compute=dask.compute,
) -> Sample:
    """Draw a stratified sample from dates ``time_index`` of the cube (see the module docs).

    ``compute`` runs the graph (e.g. a progress-reporting wrapper); only the small per-scene
    samples come back to the caller.
    """
    graph = sample_graph(
        ds, inputs, time_index, cap_per_class=cap_per_class, n_classes=n_classes,
        balanced=balanced, seed=seed,
    )
    (scenes,) = compute(graph)
    return assemble(
        list(scenes), feature_names(ds, inputs), n_classes=n_classes, balanced=balanced, seed=seed,
        cap_per_class=cap_per_class,
    )


def stratified_samples(
    ds: xr.Dataset,
    inputs: Sequence[str],
    time_index: Sequence[int],
    references: dict[str, xr.DataArray],
    *,
    per_class: int | None,
    n_classes: int,
    seed: int = 0,
    compute=dask.compute,
) -> dict[str, tuple[Sample, np.ndarray]]:
    """For each reference class map, a uniform sample of at most ``per_class`` candidates of each
    class over all ``time_index`` dates, and the number of candidates per class it was drawn from.

    Scoring a model on a sample with the rows of class ``k`` weighted by ``totals[k] / n_k``
    estimates the confusion matrix of the full maps without bias (stratified sampling); with
    ``per_class=None`` the sample is every candidate and the weights are 1 (exact). All
    references are drawn in one computation, so each input block is read once; a pixel has the
    same random key whatever the reference, so samples of agreeing references share most rows
    (``Sample.key`` identifies them).
    """
    n_dates = len(list(time_index))
    cap = None if per_class is None else per_class * n_dates
    k = int(np.prod([ds.sizes["y"], ds.sizes["x"]])) * n_dates if per_class is None else per_class
    graphs = [
        _tree_reduce(sample_graph(ds.assign(labels=ref), inputs, time_index, cap_per_class=cap,
                                  n_classes=n_classes, balanced=True, seed=seed), k, n_classes, True)
        for ref in references.values()
    ]
    (parts,) = compute(graphs)
    names = feature_names(ds, inputs)
    out = {}
    for name, part in zip(references, parts, strict=True):
        order = np.argsort(part["t"], kind="stable")  # by date, then position: reproducible
        sample = Sample(part["X"][order], part["y"][order], part["t"][order], names, part["key"][order])
        out[name] = (sample, np.asarray(part[TOTALS]))
    return out
