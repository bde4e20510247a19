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
from typing import Any

import dask
import numpy as np
import xarray as xr

from seaice_dask.coverage import covered_block_list
from seaice_dask.cube import stored_stack
from seaice_dask.errors import ConfigError, CubeError

#: Inputs with a ``feature`` dimension expand into one column per feature: ``glcm_hh_contrast``.
FEATURE_DIM = "feature"
#: The dimension of the stacked model inputs.
COLUMN_DIM = "column"
#: Block results merged per tree node when reducing samples on the workers.
_MERGE_FANIN = 8
#: Entry of a candidate set holding the number of candidates per class (summed, not cut).
TOTALS = "totals"
#: Entry of a candidate set flagging a date whose key bound cut a class short (drawn again).
SHORT = "short"


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
    stored = stored_stack(ds, inputs)
    if stored is not None:  # the same values, one read task per block (cube.stored_stack)
        stack = stack.copy(data=stored)
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
    times: Sequence[np.datetime64], test_fraction: float, groups: Sequence[str] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Temporal validation: indices of training and test dates.

    Test dates are spread evenly over the series (every k-th date in time order), so that both
    sets cover every part of the season; whole dates are held out, so no test pixel shares a
    scene (and its speckle, wind or chart) with a training pixel. With ``groups`` (each date's
    relative orbit and direction), dates are held out within each group, so every orbit's test
    passes cover the season too and per-orbit scores compare like with like.
    """
    n = len(times)
    if n < 2:
        raise ConfigError(f"a temporal split needs at least 2 dates, the cube has {n}")
    labels = np.asarray(groups if groups is not None else [""] * n)
    if len(set(labels.tolist())) > 1 and all((labels == g).sum() >= 2 for g in set(labels.tolist())):
        test = np.sort(np.concatenate([
            np.flatnonzero(labels == g)[split_dates(np.asarray(times)[labels == g], test_fraction)[1]]
            for g in sorted(set(labels.tolist()))
        ]))
        return np.setdiff1d(np.arange(n), test), test
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


def _labelled(labels: np.ndarray, usable: np.ndarray, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Flat labels of a block and the mask of its usable pixels with a class in ``0 … n_classes − 1``."""
    lab = labels.reshape(-1)
    return lab, usable.reshape(-1) & (lab >= 0) & (lab < n_classes)


def _labelled_counts(labels: np.ndarray, usable: np.ndarray, n_classes: int) -> np.ndarray:
    """Usable labelled pixels per class of one block (inputs not read: a cheap upper bound)."""
    lab, ok = _labelled(labels, usable, n_classes)
    return np.bincount(lab[ok].astype(np.int64), minlength=n_classes)


def _key_bounds(counts: list[np.ndarray], k: int, per_class: bool) -> np.ndarray:
    """Per class, a key below which a date's ``k`` smallest keys lie unless inputs are missing.

    With ``n`` labelled pixels and uniform keys, the number below ``b`` is Binomial(n, b); ``b``
    is set for a mean of ``1.05 k + 5 sqrt(k) + 10`` (five standard deviations and 5 % of
    non-finite inputs above ``k``). :func:`_date_sample` checks the bound held.
    """
    n = np.sum(counts, axis=0).astype(np.float64)
    if not per_class:
        n = np.full_like(n, n.sum())
    want = 1.05 * k + 5 * math.sqrt(k) + 10
    return np.minimum(1.0, np.divide(want, n, out=np.ones_like(n), where=n > 0))


def _block_candidates(
    inputs: np.ndarray, labels: np.ndarray, usable: np.ndarray, key_seed: tuple[int, ...],
    t: int, k: int, n_classes: int, per_class: bool, bounds: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Bottom-k candidates of one block: inputs (1, n_col, by, bx), labels/usable (1, by, bx).

    ``TOTALS`` counts every candidate; rows are kept only below the class's key bound
    (:func:`_key_bounds`) and among the block's ``k`` smallest keys. The cut is made on the
    keys before any input is gathered.
    """
    n_col = inputs.shape[1]
    flat = inputs.reshape(n_col, -1)
    lab, ok = _labelled(labels, usable, n_classes)
    for column in flat:  # row by row: contiguous, no (n_col, n) temporary
        ok &= np.isfinite(column)
    keys = np.random.default_rng(key_seed).random(lab.size)
    rows = np.flatnonzero(ok)
    totals = np.bincount(lab[rows].astype(np.int64), minlength=n_classes)
    if bounds is not None:
        rows = rows[keys[rows] < bounds[lab[rows]]]
    if per_class:
        keep = [_smallest(rows[lab[rows] == c], keys, k) for c in range(n_classes)]
        rows = np.sort(np.concatenate(keep))
    else:
        rows = np.sort(_smallest(rows, keys, k))
    return {
        "X": np.ascontiguousarray(flat[:, rows].T, dtype=np.float32),
        "y": lab[rows].astype(np.int8),
        "key": keys[rows],
        "t": np.full(rows.size, t, dtype=np.int32),
        TOTALS: totals,
        SHORT: np.zeros(1, dtype=bool),
    }


def _smallest(rows: np.ndarray, keys: np.ndarray, k: int) -> np.ndarray:
    """The ``k`` entries of ``rows`` with the smallest ``keys[rows]`` (any order)."""
    if rows.size <= k:
        return rows
    return rows[np.argpartition(keys[rows], k - 1)[:k]]


def _bottom_k(
    parts: list[dict[str, np.ndarray]], k: int, n_classes: int, per_class: bool
) -> dict[str, np.ndarray]:
    """Merge candidate sets, keeping the ``k`` smallest keys (per class when ``per_class``).

    ``TOTALS`` (candidates per class before any cut) are summed, ``SHORT`` flags or-ed, the rows
    concatenated.
    """
    totals = sum(p[TOTALS] for p in parts)
    short = np.any([p[SHORT] for p in parts], axis=0)
    merged = {name: np.concatenate([p[name] for p in parts]) for name in parts[0] if name not in (TOTALS, SHORT)}
    if per_class:
        keep = [_smallest(np.flatnonzero(merged["y"] == c), merged["key"], k) for c in range(n_classes)]
        rows = np.sort(np.concatenate(keep))
    else:
        rows = np.sort(_smallest(np.arange(merged["y"].size), merged["key"], k))
    return {**{name: values[rows] for name, values in merged.items()}, TOTALS: totals, SHORT: short}


def _date_sample(
    parts: list[dict[str, np.ndarray]], k: int, n_classes: int, per_class: bool
) -> dict[str, np.ndarray]:
    """:func:`_bottom_k` of one date's blocks, flagged ``SHORT`` when the key bounds cut a
    class below ``min(k, candidates)`` (inputs missing on more labelled pixels than allowed for):
    then the date must be drawn again without bounds."""
    out = _bottom_k(parts, k, n_classes, per_class)
    kept = np.bincount(out["y"].astype(np.int64), minlength=n_classes)
    if per_class:
        out[SHORT] = np.atleast_1d((kept < np.minimum(k, out[TOTALS])).any())
    else:
        out[SHORT] = np.atleast_1d(kept.sum() < min(k, out[TOTALS].sum()))
    return out


def _tree_reduce(nodes: list, k: int, n_classes: int, per_class: bool, last: Any = _bottom_k):
    """Merge ``nodes`` in a tree of fan-in :data:`_MERGE_FANIN`; ``last`` makes the root."""
    merge = dask.delayed(_bottom_k, pure=True)
    while len(nodes) > _MERGE_FANIN:
        nodes = [
            merge(nodes[i : i + _MERGE_FANIN], k, n_classes, per_class)
            for i in range(0, len(nodes), _MERGE_FANIN)
        ]
    return dask.delayed(last, pure=True)(nodes, k, n_classes, per_class)


def sample_graph(
    ds: xr.Dataset,
    inputs: Sequence[str],
    time_index: Sequence[int],
    *,
    cap_per_class: int | None,
    n_classes: int,
    balanced: bool = True,
    seed: int = 0,
    bounded: bool = True,
) -> list:
    """Lazy per-scene samples (one dask ``Delayed`` per date), for :func:`draw_samples`.

    Per scene and class at most ``ceil(cap_per_class / n_dates)`` pixels (``balanced``), or at
    most ``ceil(n_classes * cap_per_class / n_dates)`` pixels in their natural class
    proportions. ``cap_per_class=None`` keeps every candidate (use on small cubes only).

    ``bounded``: labels and masks are counted first (cheap), and blocks return only rows below
    a key bound that the date's bottom-k lies under (:func:`_key_bounds`), so block results
    stay small; a date where the bound failed comes back flagged (:func:`_date_sample`) and
    is drawn again unbounded by :func:`draw_samples`. The sample is the same either way.
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
    count = dask.delayed(_labelled_counts, pure=True)
    scenes = []
    for t in time_index:
        blocks = covered_block_list(ds, t, stack_blocks.shape[2:]) or [(0, 0)]  # keep one: an empty sample
        bounds = None
        if bounded and cap_per_class is not None:
            counts = [count(label_blocks[t, by, bx], usable_blocks[t, by, bx], n_classes) for by, bx in blocks]
            bounds = dask.delayed(_key_bounds, pure=True)(counts, k, balanced)
        nodes = [
            candidates(
                stack_blocks[t, 0, by, bx], label_blocks[t, by, bx], usable_blocks[t, by, bx],
                (seed, t, by, bx), t, k, n_classes, balanced, bounds,
            )
            for by, bx in blocks
        ]
        scenes.append(_tree_reduce(nodes, k, n_classes, balanced, last=_date_sample))
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
    merged = {name: np.concatenate([s[name] for s in scenes]) for name in scenes[0] if name not in (TOTALS, SHORT)}
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
    (sample,) = draw_sample_sets(ds, inputs, [(time_index, balanced)], cap_per_class=cap_per_class,
                                 n_classes=n_classes, seed=seed, compute=compute)  # fmt: skip
    return sample


def draw_sample_sets(
    ds: xr.Dataset,
    inputs: Sequence[str],
    sets: Sequence[tuple[Sequence[int], bool]],
    *,
    cap_per_class: int | None,
    n_classes: int,
    seed: int = 0,
    compute=dask.compute,
) -> list[Sample]:
    """:func:`draw_samples` of several ``(time_index, balanced)`` sets (training and test dates)
    in one computation: the cluster reads every set's blocks at once."""
    kw = {"cap_per_class": cap_per_class, "n_classes": n_classes, "seed": seed}
    graphs = [sample_graph(ds, inputs, index, balanced=balanced, **kw) for index, balanced in sets]
    (drawn,) = compute(graphs)
    samples = []
    for (index, balanced), scenes in zip(sets, drawn, strict=True):
        scenes = list(scenes)
        redo = [i for i, scene in enumerate(scenes) if scene[SHORT].any()]
        if redo:  # key bounds cut short by missing inputs: those dates again, unbounded
            (again,) = compute(sample_graph(ds, inputs, [index[i] for i in redo], balanced=balanced, **kw, bounded=False))
            for i, scene in zip(redo, again, strict=True):
                scenes[i] = scene
        samples.append(assemble(scenes, feature_names(ds, inputs), balanced=balanced, **kw))
    return samples


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

    def graphs(bounded: bool) -> list:
        return [
            _tree_reduce(sample_graph(ds.assign(labels=ref), inputs, time_index, cap_per_class=cap, n_classes=n_classes,
                                      balanced=True, seed=seed, bounded=bounded), k, n_classes, True)
            for ref in references.values()
        ]

    (parts,) = compute(graphs(True))
    if any(part[SHORT].any() for part in parts):  # a key bound failed somewhere: draw unbounded
        (parts,) = compute(graphs(False))
    names = feature_names(ds, inputs)
    out = {}
    for name, part in zip(references, parts, strict=True):
        order = np.argsort(part["t"], kind="stable")  # by date, then position: reproducible
        sample = Sample(part["X"][order], part["y"][order], part["t"][order], names, part["key"][order])
        out[name] = (sample, np.asarray(part[TOTALS]))
    return out
