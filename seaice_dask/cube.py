"""The Zarr (v3) time-series cube: one store, one grid, every stage writes its own variables.

Layout (dims ``time, [extra], y, x``, chunks ``(1, [full extra], chunk, chunk)``):

* coordinates ``time`` (UTC acquisition start), ``y``/``x`` (pixel centres, metres),
  ``spatial_ref`` (CRS), per-scene metadata along ``time`` (``product_id``, ``mission``, …);
* data variables written by the stages (``sigma0_hh``, ``labels``, ``glcm_hh``, ``class``, …);
* completion flags ``done_<stage>`` (bool per time slice), set by :func:`mark_done` only after a
  stage has written every variable of a slice, so a crash never leaves a half-written slice that
  looks finished. Every region write is idempotent: re-running a stage rewrites the same bytes.

Writes go straight through zarr into chunk-aligned regions, so different time slices can be
written concurrently by different workers or processes without locks.

A store is a local path or an ``s3://bucket/prefix/cube.zarr`` URL (:class:`RemoteStore`: the URL
and its fsspec/s3fs storage options; :func:`cube_store` makes the one a config names). Every
function here takes either; zarr reaches object storage through fsspec, and the options travel
with the zarr arrays to the workers that write the chunks.
"""

from __future__ import annotations

import shutil
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar

import dask
import dask.array as da
import numpy as np
import pandas as pd
import xarray as xr
import zarr
from zarr.codecs import BloscCodec
from dask._task_spec import Task, TaskRef
from dask.base import tokenize
from dask.delayed import Delayed
from dask.highlevelgraph import HighLevelGraph

from seaice_dask.config import is_url
from seaice_dask.errors import CubeError
from seaice_dask.grid import Grid, chunk_sizes, write_crs

if TYPE_CHECKING:
    from seaice_dask.config import PipelineConfig

TIME_UNITS = "microseconds since 1970-01-01T00:00:00"
FLAG_PREFIX = "done_"
_NAT = np.iinfo("int64").min  # how xarray stores NaT in an int64 date array
_GRID_ATTR = "grid"
_CREATING_ATTR = "creating"  # an object-storage cube whose creation has not finished
#: ``Dataset.encoding`` keys of :func:`open_cube`: the store, and its variables' dask names as opened.
_SOURCE = "source"
_OPENED = "opened_dask_names"


class RemoteStore:
    """A cube in object storage: its ``s3://`` URL and the fsspec/s3fs options that reach it.

    It prints as its URL alone, so messages, logs and reports never show the options (credentials).
    """

    __slots__ = ("url", "storage_options")

    def __init__(self, url: str, storage_options: Mapping[str, Any] | None = None):
        self.url = url.rstrip("/")
        self.storage_options = dict(storage_options or {})

    def __str__(self) -> str:
        return self.url

    def __repr__(self) -> str:
        return f"RemoteStore({self.url!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RemoteStore) and (self.url, self.storage_options) == (other.url, other.storage_options)

    def __hash__(self) -> int:
        return hash(self.url)

    def filesystem(self) -> tuple[Any, str]:
        """The s3fs filesystem with these options, and the store's key (``bucket/prefix/cube.zarr``)."""
        from seaice_dask.safe.objectstore import s3_filesystem

        return s3_filesystem(**self.storage_options), self.url.removeprefix("s3://")


#: What every function here accepts as a store: a local path, an ``s3://`` URL (options from the
#: AWS variables) or a :class:`RemoteStore`.
StoreLike: TypeAlias = "str | Path | RemoteStore"
T = TypeVar("T")

#: The codec of the gridded variables: Blosc's byte shuffle then Zstandard at level 1. Against
#: Zstandard alone at its default level it writes texture twice as fast and reads as fast, in
#: 3–13 % fewer bytes (``benchmarks/README.md``, ``bench_codecs``). Lossless; stores written with
#: another codec are read as they are.
GRID_COMPRESSOR = BloscCodec(cname="zstd", clevel=1, shuffle="shuffle")


def cube_store(cfg: PipelineConfig) -> Path | RemoteStore:
    """The cube of a config: ``paths.store`` as a local path, or its URL with ``paths.storage_options``."""
    store = cfg.paths.store
    return RemoteStore(store, cfg.paths.storage_options) if is_url(store) else Path(store)


def remote_store(store: StoreLike) -> RemoteStore | None:
    """``store`` as a :class:`RemoteStore`, None for a local path."""
    if isinstance(store, RemoteStore):
        return store
    return RemoteStore(store) if is_url(store) else None


def _zarr_args(store: StoreLike) -> tuple[str, dict[str, Any]]:
    """Where zarr and xarray find ``store``, and the keyword arguments that reach it."""
    remote = remote_store(store)
    if remote is None:
        return str(store), {}
    # s3fs asks every object's size (a HEAD) before reading it, to split downloads above its
    # block size (50 MB) over parallel requests; chunks and metadata are far smaller, so that
    # HEAD only doubles the requests
    return remote.url, {"storage_options": {"max_concurrency": 1, **remote.storage_options}}


def cube_exists(path: StoreLike) -> bool:
    """Is something at ``path``? (In object storage: a group that is not a half-made cube.)"""
    if remote_store(path) is None:
        return Path(path).exists()
    location, kwargs = _zarr_args(path)
    try:
        return _CREATING_ATTR not in zarr.open_group(location, mode="r", zarr_format=3, **kwargs).attrs
    except (FileNotFoundError, zarr.errors.GroupNotFoundError):
        return False


def _time_encoding() -> dict[str, Any]:
    return {"units": TIME_UNITS, "calendar": "proleptic_gregorian", "dtype": "int64"}


def _encode_times(times: Sequence[Any]) -> np.ndarray:
    stamps = pd.DatetimeIndex(pd.to_datetime(list(times))).as_unit("us")
    return stamps.asi8.astype("int64")


def _coord_values(values: Sequence[Any]) -> np.ndarray:
    """Coordinate values; text as variable-length strings (zarr v3 has no fixed-width spec)."""
    array = np.asarray(values)
    return array.astype(object) if array.dtype.kind == "U" else array


def _group(path: StoreLike, mode: str = "r+") -> zarr.Group:
    location, kwargs = _zarr_args(path)
    try:
        group = zarr.open_group(location, mode=mode, zarr_format=3, **kwargs)
    except (FileNotFoundError, zarr.errors.GroupNotFoundError) as exc:
        raise CubeError("no cube here (create it with `seaice-dask ingest`)", path) from exc
    if _GRID_ATTR not in group.attrs:
        raise CubeError("not a seaice-dask cube (no grid attribute)", path)
    return group


def create_cube(
    path: StoreLike,
    grid: Grid,
    times: Sequence[Any],
    scene_coords: Mapping[str, Sequence[Any]] | None = None,
    *,
    chunk: int = 512,
    attrs: Mapping[str, Any] | None = None,
) -> None:
    """Create an empty cube with its coordinates; refuses to overwrite an existing store.

    Written under a temporary name, then renamed, so a crash never leaves a half-made cube. Object
    storage has no rename: there the cube is written in place and becomes one (its ``grid``
    attribute) last; a half-made one is overwritten by the next call.
    """
    if cube_exists(path):
        raise CubeError("a store already exists here; open it or choose another path", path)
    time_index = pd.DatetimeIndex(pd.to_datetime(list(times))).as_unit("ns")
    coords: dict[str, Any] = {"time": ("time", time_index.values, {"long_name": "acquisition start (UTC)"})}
    coords.update(grid.coords())
    for name, values in (scene_coords or {}).items():
        if len(values) != len(time_index):
            raise CubeError(f"scene coordinate {name!r} has {len(values)} values for {len(time_index)} times", path)
        coords[name] = ("time", _coord_values(values))
    ds = xr.Dataset(coords=coords, attrs={**(attrs or {}), "Conventions": "CF-1.10"})
    ds.attrs[_GRID_ATTR] = grid.to_attrs()
    ds.attrs["chunk"] = int(chunk)
    ds = write_crs(ds, grid.crs)
    encoding: dict[str, Any] = {"time": {**_time_encoding(), "chunks": (1,)}}
    for name in scene_coords or {}:
        encoding[name] = {"chunks": (1,)}
    if remote_store(path) is not None:
        _create_in_place(path, ds, encoding)
        return
    path = Path(path)
    tmp = path.with_name(f".{path.name}.creating")
    shutil.rmtree(tmp, ignore_errors=True)
    ds.to_zarr(tmp, mode="w-", zarr_format=3, consolidated=False, encoding=encoding)
    tmp.rename(path)


def _create_in_place(path: StoreLike, ds: xr.Dataset, encoding: dict[str, Any]) -> None:
    """Write a new cube where nothing can be renamed: marked half-made until its grid is set."""
    location, kwargs = _zarr_args(path)
    grid = ds.attrs[_GRID_ATTR]
    ds.attrs = {**{k: v for k, v in ds.attrs.items() if k != _GRID_ATTR}, _CREATING_ATTR: 1}
    ds.to_zarr(location, mode="w", zarr_format=3, consolidated=False, encoding=encoding, **kwargs)
    group = zarr.open_group(location, mode="r+", zarr_format=3, **kwargs)
    group.attrs.put({**{k: v for k, v in group.attrs.items() if k != _CREATING_ATTR}, _GRID_ATTR: grid})


def open_cube(path: StoreLike) -> xr.Dataset:
    """Open the cube lazily (dask-backed); per-scene metadata become coordinates.

    ``ds.encoding`` records the store and the dask names of its variables as opened, so that
    :func:`stored_stack` can tell a variable still identical to the store's (same name) from a
    subset or a computed one.
    """
    _group(path, mode="r")
    location, kwargs = _zarr_args(path)
    ds = xr.open_zarr(location, consolidated=False, zarr_format=3, chunks={}, **kwargs)
    per_scene = [
        v for v in ds.data_vars if ds[v].dims == ("time",) and not str(v).startswith(FLAG_PREFIX)
    ]
    # per-scene metadata is tiny: load it so callers can index and compare without computing;
    # read here, in one go (with a cluster's client active, a load per variable would be a
    # round trip to the scheduler each, several per stage)
    values = dask.compute(*(ds[v].data for v in per_scene), scheduler="synchronous")
    ds = ds.set_coords(per_scene).assign_coords({v: ds[v].copy(data=x) for v, x in zip(per_scene, values)})
    ds.encoding[_SOURCE] = path  # a RemoteStore keeps its storage options for the workers
    ds.encoding[_OPENED] = {str(v): ds[v].data.name for v in ds.data_vars if isinstance(ds[v].data, da.Array)}
    return ds



def stored_stack(ds: xr.Dataset, names: Sequence[str]) -> da.Array | None:
    """Variables ``names`` of the cube ``ds`` came from, as one float32 ``(time, column, y, x)``
    dask array read by one task per block, or None when that would not equal ``ds``'s values.

    Why: stacking the variables' own dask arrays reads each one in its own task, and the
    distributed scheduler places those reads independently, so about half of every stacked block
    crosses between workers (measured: 0.5 GB per date of a full-size 13-column stack on 2
    workers). One task reading every variable of its block moves nothing. Used when every
    variable is as :func:`open_cube` opened it (same dask name: not subset, not computed),
    float32 or float16 (the texture, read as float32) with a NaN (or no) fill value and no scale
    or offset, and chunked alike.
    """
    source, opened = ds.encoding.get(_SOURCE), ds.encoding.get(_OPENED, {})
    variables, chunks = [], None
    for name in names:
        var = ds[name]
        enc = var.encoding
        if not isinstance(var.data, da.Array) or opened.get(name) != var.data.name:
            return None
        fill = enc.get("_FillValue")
        if (var.dtype not in (np.float32, np.float16) or "scale_factor" in enc or "add_offset" in enc
                or (fill is not None and not np.isnan(fill))):
            return None
        spatial = (var.chunks[0], var.chunks[-2], var.chunks[-1])
        if chunks not in (None, spatial) or var.dims[0] != "time" or var.dims[-2:] != ("y", "x") or var.ndim not in (3, 4):
            return None
        chunks = spatial
        variables.append((str(name), var.ndim == 4, var.shape[1] if var.ndim == 4 else 1))
    if source is None or chunks is None:
        return None
    n_columns = sum(n for *_, n in variables)
    return da.map_blocks(
        _read_stack_block,
        dtype=np.float32,
        chunks=(chunks[0], (n_columns,), chunks[1], chunks[2]),
        meta=np.empty((0, 0, 0, 0), dtype=np.float32),
        name="stack-" + tokenize(str(source), [opened[n] for n in names]),
        store=source,
        variables=tuple(variables),
    )


def _read_stack_block(store: StoreLike, variables: tuple[tuple[str, bool, int], ...], block_info: Any = None) -> np.ndarray:
    """One ``(time, column, y, x)`` block of :func:`stored_stack`: each variable's region read
    straight into its columns. The group is opened per block: stages may add variables or dates
    between calls, so cached metadata could be stale."""
    info = block_info[None]
    (t0, t1), _, (y0, y1), (x0, x1) = info["array-location"]
    out = np.empty(info["chunk-shape"], dtype=np.float32)
    group = _group(store, mode="r")
    column = 0
    for name, has_columns, n in variables:
        region = group[name][t0:t1, :, y0:y1, x0:x1] if has_columns else group[name][t0:t1, y0:y1, x0:x1][:, None]
        out[:, column : column + n] = region
        column += n
    return out


def cube_grid(cube: StoreLike | xr.Dataset) -> Grid:
    """The grid a cube was created on."""
    attrs = cube.attrs if isinstance(cube, xr.Dataset) else dict(_group(cube, mode="r").attrs)
    return Grid.from_attrs(attrs[_GRID_ATTR])


def _n_times(group: zarr.Group) -> int:
    return int(group["time"].shape[0])


def ensure_variable(
    path: StoreLike,
    name: str,
    *,
    dtype: Any,
    fill_value: Any,
    attrs: Mapping[str, Any] | None = None,
    extra_dims: Mapping[str, Sequence[Any]] | None = None,
    static: bool = False,
    scale_factor: float | None = None,
) -> np.dtype:
    """Declare variable ``name`` with dims ``(time, *extra_dims, y, x)`` if it is missing.

    Only metadata (and the coordinates of ``extra_dims``) is written; unwritten chunks read as
    ``fill_value``. ``static=True`` drops the ``time`` dimension (e.g. a land mask).
    ``scale_factor``: integers stored for ``value × scale_factor`` (CF packing; ``fill_value``
    reads as NaN), which :func:`open_cube` decodes to floats (float64: xarray takes the type of
    the scale factor, a JSON number); writers store the packed integers
    (:func:`write_slice` writes what it is given, cast to ``dtype``). Returns the stored dtype:
    an existing variable keeps its own (a cube written before an encoding changed).
    """
    group = _group(path)
    if name in group:
        existing = tuple(group[name].metadata.dimension_names or ())
        wanted = (() if static else ("time",)) + tuple(extra_dims or {}) + ("y", "x")
        if existing != wanted:
            raise CubeError(f"variable {name!r} exists with dims {existing}, not {wanted}", path)
        return group[name].dtype
    grid = Grid.from_attrs(group.attrs[_GRID_ATTR])
    chunk = int(group.attrs["chunk"])
    shape: list[int] = [] if static else [_n_times(group)]
    chunks: list[int] = [] if static else [1]
    dims: list[str] = [] if static else ["time"]
    coords: dict[str, Any] = {}
    for dim, values in (extra_dims or {}).items():
        dims.append(dim)
        shape.append(len(values))
        chunks.append(len(values))
        coords[dim] = (dim, _coord_values(values))
    dims += ["y", "x"]
    shape += list(grid.shape)
    chunks += [min(chunk, grid.shape[0]), min(chunk, grid.shape[1])]
    encoding: dict[str, Any] = {"chunks": tuple(chunks), "fill_value": fill_value, "compressors": (GRID_COMPRESSOR,)}
    if scale_factor is None:
        lazy = da.full(shape, fill_value, dtype=dtype, chunks=chunks)
    else:  # xarray writes the packing attributes from the decoded values' encoding
        lazy = da.full(shape, np.nan, dtype=np.float32, chunks=chunks)
        encoding.update(dtype=np.dtype(dtype), scale_factor=float(scale_factor), _FillValue=fill_value)
    var = xr.Variable(dims, lazy, attrs=dict(attrs or {}))
    if np.issubdtype(np.dtype(dtype), np.floating) or np.issubdtype(np.dtype(dtype), np.integer):
        var.attrs.setdefault("grid_mapping", "spatial_ref")
    ds = xr.Dataset({name: var}, coords=coords, attrs=dict(group.attrs))
    location, kwargs = _zarr_args(path)
    ds.to_zarr(
        location,
        **kwargs,
        mode="a",
        zarr_format=3,
        consolidated=False,
        compute=False,
        encoding={name: encoding},
    )
    return np.dtype(dtype)


def write_slice(path: StoreLike, name: str, t: int | None, data: Any,
                window: tuple[slice, slice] | None = None, blocks: np.ndarray | None = None) -> None:
    """Write ``data`` (shape ``(*extra, y, x)``) into time slice ``t`` of variable ``name``.

    ``t=None`` writes a static variable whole. ``window`` (rows, cols; chunk-aligned starts, from
    :mod:`seaice_dask.coverage`) writes only that part of the grid; the rest is left as it is.
    ``blocks`` (bool, the store's blocks of the window): only those are computed and written, the
    others are left as they are (absent: the fill value). Dask input is rechunked onto the
    store's chunks and written chunk by chunk where it is computed (no gathering on the client).
    """
    writes = slice_writes(path, t, {name: data}, window, blocks)
    if writes is not None:
        dask.compute(writes)


def slice_writes(path: StoreLike, t: int | None, variables: Mapping[str, Any],
                 window: tuple[slice, slice] | None = None, blocks: np.ndarray | None = None,
                 where: str | None = None) -> Delayed | None:
    """:func:`write_slice` of several ``variables`` (name: data) of time slice ``t``, lazy for dask
    data: their writes as one Delayed, from one graph, so that what they share is computed once
    (NumPy data is written at once; None when there is no dask data).

    ``where``: the name of a bool variable among ``variables``; of the blocks (``blocks``, or all),
    only those where it holds a True pixel are written, every variable or none, and the Delayed
    computes to their flags (bool, the window's blocks), so that what a slice covers is learnt in
    the computation that writes it, not in a computation of its own before (all data is lazy then).
    """
    if where is not None and (where not in variables or np.ndim(variables[where]) != 2):
        raise CubeError(f"where={where!r} is not one of the (y, x) variables {sorted(variables)}", path)
    group = _group(path)
    lazy: list[tuple[da.Array, _Region]] = []
    for name, data in variables.items():
        if name not in group:
            raise CubeError(f"variable {name!r} does not exist; call ensure_variable first", path)
        array = group[name]
        values = data.data if isinstance(data, xr.DataArray) else data
        target_shape = list(array.shape if t is None else array.shape[1:])
        spatial: tuple[slice, ...] = ()
        if window is not None:
            spatial = tuple(slice(*w.indices(n)[:2]) for w, n in zip(window, target_shape[-2:]))
            target_shape[-2:] = [w.stop - w.start for w in spatial]
        if tuple(values.shape) != tuple(target_shape):
            raise CubeError(f"{name}: data shape {tuple(values.shape)} does not match {tuple(target_shape)}", path)
        if t is not None and not 0 <= t < array.shape[0]:
            raise CubeError(f"{name}: time index {t} out of range 0..{array.shape[0] - 1}", path)
        values = values.astype(array.dtype) if values.dtype != array.dtype else values
        lead = () if t is None else (t,)
        chunks: list[Any] = list(array.chunks if t is None else array.chunks[1:])
        # windows start on chunk boundaries: their chunks are the store's
        chunks[-2:] = [chunk_sizes(n, c) for c, n in zip(array.chunks[-2:], target_shape[-2:])]
        if blocks is not None and tuple(blocks.shape) != tuple(len(c) for c in chunks[-2:]):
            raise CubeError(f"{name}: {blocks.shape} block flags for {tuple(len(c) for c in chunks[-2:])} blocks", path)
        region = _Region(array, lead, spatial)
        if isinstance(values, da.Array) or where is not None:
            lazy.append((da.asarray(values).rechunk(tuple(chunks)), region))
        elif blocks is None:
            array[(*lead, ..., *spatial)] = np.asarray(values)
        else:
            for key in _block_keys(chunks, blocks):
                region[key] = np.asarray(values)[key]
    if not lazy:
        return None
    if where is not None:
        mask = lazy[list(variables).index(where)][0]
        return _store_covered(lazy, np.ones(mask.numblocks[-2:], bool) if blocks is None else blocks, mask)
    if blocks is None:
        return da.store([v for v, _ in lazy], [r for _, r in lazy], lock=False, compute=False)
    return _store_blocks(lazy, blocks)


def compute_in_order(
    steps: Iterable[T], writes: Callable[[T], Delayed | None], finish: Callable[[T], None], *,
    client: Any = None, ahead: int = 1,
) -> None:
    """Compute each step's ``writes`` (:func:`slice_writes`; None: nothing to write), then call
    ``finish`` on the step (flag it done), in order. With a ``client`` the next ``ahead`` steps are
    already computing while one finishes, so the workers do not wait on the client between steps
    (a step's graph is a few blocks: alone it leaves workers idle)."""
    pending: deque[tuple[T, Any]] = deque()

    def drain(limit: int) -> None:
        while len(pending) > limit:
            step, future = pending.popleft()
            if future is not None:
                client.gather(future)
            finish(step)

    for step in steps:
        work = writes(step)
        if client is None:
            if work is not None:
                dask.compute(work)
            finish(step)
            continue
        pending.append((step, None if work is None else client.compute(work)))
        drain(ahead)
    drain(0)


def _block_keys(chunks: Sequence[Sequence[int]], blocks: np.ndarray) -> list[tuple[slice, ...]]:
    """Index of each flagged block (all leading dims, one spatial block) of an array of ``chunks``."""
    edges = [np.cumsum((0, *c)) for c in chunks[-2:]]
    lead = (slice(None),) * (len(chunks) - 2)
    return [(*lead, slice(edges[0][by], edges[0][by + 1]), slice(edges[1][bx], edges[1][bx + 1]))
            for by, bx in zip(*np.nonzero(blocks))]


def _put(region: _Region, key: tuple[slice, ...], value: np.ndarray) -> None:
    region[key] = value


def _store_blocks(writes: list[tuple[da.Array, _Region]], blocks: np.ndarray) -> Delayed:
    """The writes of each array's blocks flagged in ``blocks`` (spatial) into its region: one
    task per written chunk. The arrays' graphs are optimised together, for those blocks only, so
    only what they need is computed, and what they share once."""
    name = "store-blocks-" + tokenize([(v, r.array.path, r.lead, r.spatial) for v, r in writes], blocks)
    keys, tasks = [], {}
    for n, (values, region) in enumerate(writes):
        edges = [np.cumsum((0, *c)) for c in values.chunks]
        for index in np.ndindex(*values.numblocks):
            if blocks[index[-2:]]:
                key = tuple(slice(int(e[i]), int(e[i + 1])) for e, i in zip(edges, index))
                keys.append((values.name, *index))
                tasks[(name, n, *index)] = Task((name, n, *index), _put, region, key, TaskRef((values.name, *index)))
    graph = HighLevelGraph.merge(*(v.__dask_graph__() for v, _ in writes))
    graph = writes[0][0].__dask_optimize__(graph, keys) if keys else {}
    done = name + "-done"
    return Delayed(done, {**dict(graph), **tasks, done: Task(done, _finished, *(TaskRef(k) for k in tasks))})


def _finished(*_: Any) -> None:
    return None


def _store_covered(writes: list[tuple[da.Array, _Region]], blocks: np.ndarray, mask: da.Array) -> Delayed:
    """The writes of the blocks flagged in ``blocks`` (spatial) where ``mask`` (y, x; bool, one of
    the arrays written) holds a True pixel: one task per block writes every array's chunks of it,
    or none, and returns whether it wrote; the Delayed computes to those flags (``blocks``' shape).
    As in :func:`_store_blocks`, the graphs are optimised together for those blocks only."""
    name = "store-covered-" + tokenize([(v, r.array.path, r.lead, r.spatial) for v, r in writes], blocks, mask)
    edges = [[np.cumsum((0, *c)) for c in values.chunks] for values, _ in writes]
    keys, tasks = [], {}
    for by, bx in np.argwhere(blocks).tolist():
        regions, puts, refs = [], [], []
        for (values, region), e in zip(writes, edges):
            for lead in np.ndindex(*values.numblocks[:-2]):
                index = (*lead, by, bx)
                regions.append(region)
                puts.append(tuple(slice(int(e[i][j]), int(e[i][j + 1])) for i, j in enumerate(index)))
                refs.append((values.name, *index))
        keys.extend(refs)
        key = (name, by, bx)
        tasks[key] = Task(key, _put_covered, tuple(regions), tuple(puts), TaskRef((mask.name, by, bx)),
                          *map(TaskRef, refs))
    graph = HighLevelGraph.merge(*(v.__dask_graph__() for v, _ in writes))
    graph = writes[0][0].__dask_optimize__(graph, keys) if keys else {}
    done = name + "-flags"
    flags = Task(done, _covered_flags, blocks.shape, tuple(k[1:] for k in tasks), *(TaskRef(k) for k in tasks))
    return Delayed(done, {**dict(graph), **tasks, done: flags})


def _put_covered(regions: tuple[_Region, ...], keys: tuple[tuple[slice, ...], ...], mask: np.ndarray,
                 *values: np.ndarray) -> bool:
    """Write each block of ``values`` at its key into its region if ``mask`` holds a True pixel."""
    if not mask.any():
        return False
    for region, key, value in zip(regions, keys, values):
        region[key] = value
    return True


def _covered_flags(shape: tuple[int, int], where: tuple[tuple[int, int], ...], *wrote: bool) -> np.ndarray:
    """The blocks' flags as an array of ``shape`` (False where no block was written)."""
    flags = np.zeros(shape, dtype=bool)
    for index, flag in zip(where, wrote):
        flags[index] = flag
    return flags


class _Region:
    """``__setitem__`` view of a time slice and/or spatial window of a zarr array (a target for
    ``dask.array.store``): keys relative to the region are shifted to the array's."""

    def __init__(self, array: zarr.Array, lead: tuple[int, ...], spatial: tuple[slice, ...]):
        self.array, self.lead, self.spatial = array, lead, spatial
        shape = list(array.shape[len(lead):])
        if spatial:
            shape[-2:] = [w.stop - w.start for w in spatial]
        self.shape, self.dtype = tuple(shape), array.dtype

    def __setitem__(self, key: tuple, value: np.ndarray) -> None:
        key = list(key if isinstance(key, tuple) else (key,))
        for i, w in enumerate(self.spatial):
            k = key[len(key) - 2 + i]
            key[len(key) - 2 + i] = slice(k.start + w.start, k.stop + w.start)
        self.array[(*self.lead, *key)] = value


def _append_variable(path: StoreLike, group: zarr.Group, name: str, values: Any, encoding: dict) -> None:
    """Add one small variable along ``time``, keeping the store's attributes."""
    var = values if isinstance(values, xr.Variable) else xr.Variable("time", values)
    ds = xr.Dataset({name: var}, attrs=dict(group.attrs))
    location, kwargs = _zarr_args(path)
    ds.to_zarr(location, mode="a", zarr_format=3, consolidated=False, encoding={name: encoding}, **kwargs)


#: The coverage index (time, block_y, block_x): does a block of the grid hold data? (:mod:`seaice_dask.coverage`)
COVERAGE_VAR = "coverage"


def write_coverage(path: StoreLike, t: int, covered: np.ndarray) -> None:
    """Record which blocks (``chunk`` × ``chunk`` tiles of the grid) of time step ``t`` hold data."""
    group = _group(path)
    covered = np.asarray(covered, dtype=bool)
    if COVERAGE_VAR not in group:
        var = xr.Variable(("time", "block_y", "block_x"), np.zeros((_n_times(group), *covered.shape), bool),
                          attrs={"long_name": "grid block holds valid data", "block_size_px": int(group.attrs["chunk"])})
        _append_variable(path, group, COVERAGE_VAR, var, {"chunks": (1, *covered.shape)})
        group = _group(path)
    group[COVERAGE_VAR][t] = covered


def read_coverage(path: StoreLike) -> np.ndarray | None:
    """The coverage index (time, block_y, block_x), or None for a cube written before it."""
    group = _group(path, mode="r")
    if COVERAGE_VAR not in group:
        return None
    return np.asarray(group[COVERAGE_VAR][:], dtype=bool)


def set_slice_coord(path: StoreLike, name: str, t: int, value: Any) -> None:
    """Set per-scene coordinate ``name`` at time index ``t`` (created on first use).

    Strings, numbers and dates are supported; dates are stored as ``datetime64`` with CF units.
    """
    group = _group(path)
    if name not in group:
        n = _n_times(group)
        is_date = isinstance(value, (np.datetime64, pd.Timestamp)) or hasattr(value, "isoformat")
        if is_date:
            values = np.full(n, np.datetime64("NaT"), dtype="datetime64[ns]")
            encoding = {**_time_encoding(), "chunks": (1,)}
        elif isinstance(value, str):
            values, encoding = np.full(n, "", dtype=object), {"chunks": (1,)}
        else:
            values, encoding = np.full(n, np.nan), {"chunks": (1,)}
        _append_variable(path, group, name, values, encoding)
        group = _group(path)
    array = group[name]
    units = array.attrs.get("units", "")
    if "since" in str(units):
        array[t] = _NAT if pd.isna(value) else _encode_times([value])[0]
    else:
        array[t] = value


def cube_attrs(path: StoreLike) -> dict[str, Any]:
    """The cube's global attributes."""
    return dict(_group(path, mode="r").attrs)


def set_cube_attrs(path: StoreLike, **attrs: Any) -> None:
    """Set global attributes (JSON values) of the cube."""
    _group(path).attrs.update(attrs)


def mark_done(path: StoreLike, stage: str, t: int) -> None:
    """Flag time slice ``t`` as complete for ``stage``; call after all its writes."""
    group = _group(path)
    name = FLAG_PREFIX + stage
    if name not in group:
        n = _n_times(group)
        flags = xr.Variable("time", np.zeros(n, dtype=bool), {"long_name": f"{stage} complete"})
        _append_variable(path, group, name, flags, {"chunks": (1,)})
        group = _group(path)
    group[name][t] = True


def clear_done(path: StoreLike, t: int) -> None:
    """Unflag time slice ``t`` for every stage (before it is rewritten), so each recomputes it."""
    group = _group(path)
    for name, array in group.arrays():
        if name.startswith(FLAG_PREFIX) and t < array.shape[0]:
            array[t] = False


def done(path: StoreLike, stage: str) -> np.ndarray:
    """Bool per time slice: has ``stage`` completed it?"""
    group = _group(path, mode="r")
    name = FLAG_PREFIX + stage
    n = _n_times(group)
    if name not in group:
        return np.zeros(n, dtype=bool)
    flags = np.asarray(group[name][:], dtype=bool)
    return np.pad(flags, (0, n - flags.size)) if flags.size < n else flags


def append_times(
    path: StoreLike, times: Sequence[Any], scene_coords: Mapping[str, Sequence[Any]] | None = None
) -> list[int]:
    """Add new time slots at the end (for scenes ingested later); returns their indices.

    Every time-dependent array is resized before the ``time`` coordinate itself, so an
    interrupted append is completed by calling it again with the same times.
    """
    group = _group(path)
    existing = set(group["time"][:].tolist())
    encoded = _encode_times(times)
    new = [i for i, v in enumerate(encoded) if int(v) not in existing]
    if not new:
        return []
    start = _n_times(group)
    target = start + len(new)
    for name, array in group.arrays():
        dims = tuple(array.metadata.dimension_names or ())
        if name != "time" and dims[:1] == ("time",) and array.shape[0] < target:
            array.resize((target, *array.shape[1:]))
            if "since" in str(array.attrs.get("units", "")):  # per-scene dates: NaT, not 1970
                array[start:target] = _NAT
    for name, values in (scene_coords or {}).items():
        if name in group:
            group[name][start:target] = np.asarray([values[i] for i in new])
    group["time"].resize((target,))
    group["time"][start:target] = encoded[new]
    return list(range(start, target))


#: Cube attribute holding an unfinished :func:`remove_times` (its moves and the new length).
_REMOVING_ATTR = "removing_times"


def remove_times(path: StoreLike, indices: Sequence[int]) -> dict[int, int]:
    """Remove the time steps ``indices``; returns where each kept step now is (old → new index).

    Why this way: zarr can only shrink an array at its end, so each removed step that is not
    at the end is filled with one of the last kept steps, and every time-dependent array is then
    resized. Only as many steps move as are removed (a season is not rewritten), and the cube's
    order along ``time`` (already the order of ingest, not of the dates) changes only there.

    Crash-safe: the plan is recorded in the cube's attrs first and :func:`finish_removal`
    carries it out; a move only reads steps past the new end, which nothing writes before the
    final resize, so an interrupted removal is completed by running it again (every ingest does).
    A moved step keeps its stages' flags, cleared first and copied last.
    """
    group = _group(path)
    n = _n_times(group)
    gone = sorted({int(i) for i in indices})
    if not gone:
        return {t: t for t in range(n)}
    if gone[0] < 0 or gone[-1] >= n:
        raise CubeError(f"time indices {gone} out of range 0..{n - 1}", path)
    kept = [t for t in range(n) if t not in gone]
    size = len(kept)
    moves = list(zip([t for t in kept if t >= size], [t for t in gone if t < size]))
    group.attrs[_REMOVING_ATTR] = {"moves": moves, "size": size, "moved": False}
    finish_removal(path)
    return {**{t: t for t in kept if t < size}, **dict(moves)}


def finish_removal(path: StoreLike) -> None:
    """Carry out an interrupted :func:`remove_times` recorded in the cube; nothing if none."""
    group = _group(path)
    plan = group.attrs.get(_REMOVING_ATTR)
    if plan is None:
        return
    arrays = [(name, array) for name, array in group.arrays()
              if tuple(array.metadata.dimension_names or ())[:1] == ("time",)]
    flags = [a for name, a in arrays if name.startswith(FLAG_PREFIX)]
    if not plan["moved"]:
        for src, dst in plan["moves"]:
            for array in flags:
                if dst < array.shape[0]:
                    array[dst] = False
            for name, array in arrays:
                if not name.startswith(FLAG_PREFIX):
                    _copy_step(array, src, dst)
            for array in flags:
                _copy_step(array, src, dst)
        group.attrs[_REMOVING_ATTR] = {**plan, "moved": True}
    size = int(plan["size"])
    for name, array in sorted(arrays, key=lambda item: item[0] == "time"):  # ``time`` last
        if array.shape[0] > size:
            array.resize((size, *array.shape[1:]))
    del group.attrs[_REMOVING_ATTR]


def _copy_step(array: zarr.Array, src: int, dst: int) -> None:
    """``array[dst] = array[src]``, a block at a time for (time, ..., y, x) arrays."""
    if src >= array.shape[0]:  # a flag array older than the step: unset
        if dst < array.shape[0]:
            array[dst] = array.fill_value
        return
    if array.ndim == 1:
        array[dst] = array[src]
        return
    source = da.from_zarr(array)[src]
    da.store(source, _Region(array, (dst,), ()), lock=False)


def validate_cube(path: StoreLike) -> list[str]:
    """Problems found in a cube (an empty list means consistent)."""
    problems: list[str] = []
    try:
        group = _group(path, mode="r")
        grid = Grid.from_attrs(group.attrs[_GRID_ATTR])
    except Exception as exc:  # report, don't raise: this is a checker
        return [str(exc)]
    n = _n_times(group)
    ny, nx = grid.shape
    if group["y"].shape != (ny,) or group["x"].shape != (nx,):
        problems.append(f"y/x lengths {group['y'].shape}/{group['x'].shape} differ from grid {grid.shape}")
    elif not np.allclose(group["x"][:], grid.x) or not np.allclose(group["y"][:], grid.y):
        problems.append("x/y coordinates do not match the grid attribute")
    times = group["time"][:]
    if len(np.unique(times)) != times.size:
        problems.append("duplicate acquisition times")
    for name, array in group.arrays():
        dims = tuple(array.metadata.dimension_names or ())
        if dims[:1] == ("time",) and array.shape[0] != n:
            problems.append(f"{name}: {array.shape[0]} time slices, time has {n}")
        if dims[-2:] == ("y", "x") and tuple(array.shape[-2:]) != (ny, nx):
            problems.append(f"{name}: spatial shape {array.shape[-2:]} differs from grid {grid.shape}")
    if "spatial_ref" not in group:
        problems.append("no spatial_ref (CRS) variable")
    return problems
