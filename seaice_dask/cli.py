"""The ``seaice-dask`` command line: parse, load the config, open the cluster, call the library.

Every verb is a thin wrapper around a library function that a notebook can call too.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer
from rich.console import Console

from seaice_dask.errors import SeaIceError

if TYPE_CHECKING:
    from distributed import Client

    from seaice_dask.config import PipelineConfig

app = typer.Typer(
    name="seaice-dask",
    help="Sea-ice type classification of Sentinel-1 SAR time series at cluster scale.\n\n"
    "Pipeline: simulate → ingest → charts → features → train → predict → evaluate "
    "(or `run` for all of them, `demo` for an offline end-to-end example).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)

ConfigArg = Annotated[Path, typer.Argument(help="Pipeline config (YAML).", show_default=False)]
SchedulerOpt = Annotated[
    Optional[str],
    typer.Option("--scheduler", help="Connect to a running scheduler (tcp://host:port or tls://…)."),
]
ForceUnlockOpt = Annotated[
    bool, typer.Option("--force-unlock", help="Take the store's lock even if another run seems to hold it."),
]


@app.callback()
def _main(
    verbose: Annotated[
        int, typer.Option("--verbose", "-v", count=True, help="More logging (-vv debug, -vvv libraries too).")
    ] = 0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only warnings and errors.")] = False,
) -> None:
    level = logging.WARNING if quiet else (logging.DEBUG if verbose > 1 else logging.INFO)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("seaice_dask").setLevel(level)
    _quiet_libraries(logging.DEBUG if verbose > 2 else logging.WARNING)


def _quiet_libraries(level: int) -> None:
    """Dependencies log at WARNING unless -vvv; distributed installs its own handlers at import."""
    # read by dask's config in this process and in every worker process it spawns
    os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", logging.getLevelName(level).lower())
    import distributed  # noqa: F401  (so that its logger configuration is in place first)

    for name in ("distributed", "pyogrio", "numba", "rasterio", "matplotlib", "fiona"):
        logging.getLogger(name).setLevel(level)


def _load(config: Path) -> PipelineConfig:
    from seaice_dask.config import load_config

    return load_config(config)


@contextlib.contextmanager
def _cluster(cfg: PipelineConfig, scheduler: str | None) -> Iterator[Client]:
    from seaice_dask.cluster import open_client

    with open_client(cfg.cluster, address=scheduler) as client:
        console.print(f"Dask dashboard: {client.dashboard_link}")
        yield client


@app.command()
def info(scheduler: SchedulerOpt = None) -> None:
    """Versions of the key libraries and the cluster the pipeline would use."""
    from importlib.metadata import PackageNotFoundError, version

    from seaice_dask.config import ClusterConfig

    for pkg in (
        "seaice-dask", "dask", "distributed", "xarray", "zarr", "numpy", "numba", "rasterio",
        "rioxarray", "geopandas", "shapely", "pyproj", "scikit-learn", "dask-ml", "skops",
    ):
        try:
            v = version(pkg)
        except PackageNotFoundError:
            v = "not installed"
        typer.echo(f"{pkg:14s} {v}")
    typer.echo(f"{'python':14s} {sys.version.split()[0]}")
    cfg = ClusterConfig()
    target = scheduler or os.environ.get("DASK_SCHEDULER_ADDRESS")
    if target:
        typer.echo(f"cluster        scheduler at {target}")
    else:
        typer.echo(
            f"cluster        LocalCluster: {cfg.n_workers} workers × {cfg.threads_per_worker} "
            f"thread(s), {cfg.memory_limit} each (override in the config's `cluster` section)"
        )


@app.command()
def simulate(
    out: Annotated[Path, typer.Option("--out", help="Output folder.")] = Path("simulated"),
    scenes: Annotated[int, typer.Option("--scenes", min=1, help="Number of passes (over all orbits).")] = 29,
    size: Annotated[str, typer.Option("--size", help="full | small")] = "small",
    product: Annotated[str, typer.Option("--product", help="GRDM | GRDH")] = "GRDM",
    seed: Annotated[int, typer.Option("--seed")] = 0,
    start: Annotated[str, typer.Option(help="First acquisition day.")] = "2020-10-05",
    end: Annotated[str, typer.Option(help="Last acquisition day.")] = "2021-03-22",
    fmt: Annotated[str, typer.Option("--format", help="zip | safe")] = "zip",
    slices_per_pass: Annotated[
        int, typer.Option("--slices-per-pass", min=1, help="Products (consecutive slices) each pass is cut into.")
    ] = 1,
    orbits: Annotated[
        str, typer.Option("--orbits", help="Relative orbits, comma-separated (24 descending, 89 ascending), "
                          "or 'auto': the track nearest each centre.")
    ] = "24",
    centres: Annotated[
        Optional[str], typer.Option("--centres", help="Pass centres 'lon,lat;lon,lat' (one per orbit) or 'scatter' "
                                    "(spread over the grid). Default: the grid centre.")
    ] = None,
    grid_config: Annotated[
        Optional[Path], typer.Option("--grid", help="Pipeline config whose grid to simulate on (default: Denmark Strait).")
    ] = None,
) -> None:
    """Render simulated Sentinel-1 EW GRD products, SIGRID-3 charts and the truth."""
    from seaice_dask.simulate.series import parse_centres, render_processes, simulate_series

    relative = [r.strip() for r in orbits.split(",")]
    if size not in ("full", "small") or product not in ("GRDM", "GRDH") or fmt not in ("zip", "safe") or not (
        orbits == "auto" or all(r.isdigit() for r in relative)
    ):
        console.print("[red]error:[/red] --size is full|small, --product GRDM|GRDH, --format zip|safe, "
                      "--orbits numbers separated by commas or auto")
        raise typer.Exit(2)
    series = simulate_series(
        out, n_scenes=scenes, start=start, end=end, size=size, product=product, seed=seed, fmt=fmt,
        slices_per_pass=slices_per_pass, orbits=None if orbits == "auto" else [int(r) for r in relative],
        centres=parse_centres(centres), grid=_load(grid_config).grid.to_grid() if grid_config else None,
        processes=render_processes(scenes),
    )
    typer.echo(f"{len(series.passes)} passes as {len(series.scenes)} products in {out / 'scenes'}, "
               f"{len(series.charts)} charts in {out / 'charts'}, truth in {series.truth}")


def _stage(config: Path, scheduler: str | None, stage: str, force_unlock: bool) -> object:
    from seaice_dask.cube import cube_store
    from seaice_dask.lock import store_lock
    from seaice_dask.pipeline import run_pipeline

    cfg = _load(config)
    with store_lock(cube_store(cfg), force=force_unlock), _cluster(cfg, scheduler) as client:
        return run_pipeline(cfg, client, stages=[stage])[stage]


@app.command()
def ingest(config: ConfigArg, scheduler: SchedulerOpt = None, force_unlock: ForceUnlockOpt = False) -> None:
    """Calibrate, denoise and geocode scenes into the Zarr cube (incremental, resumable)."""
    report = _stage(config, scheduler, "ingest", force_unlock)
    typer.echo(report.summary())
    if report.failed:
        raise typer.Exit(1)


@app.command()
def charts(config: ConfigArg, scheduler: SchedulerOpt = None, force_unlock: ForceUnlockOpt = False) -> None:
    """Decode SIGRID-3 charts and rasterise training labels into the cube."""
    used = _stage(config, scheduler, "charts", force_unlock)
    typer.echo(f"labels from {len(used)} chart(s) written")


@app.command()
def features(config: ConfigArg, scheduler: SchedulerOpt = None, force_unlock: ForceUnlockOpt = False) -> None:
    """Compute GLCM texture features of the cube's sigma0 (resumable)."""
    names = _stage(config, scheduler, "features", force_unlock)
    typer.echo(f"texture features written: {', '.join(names)}")


@app.command()
def train(config: ConfigArg, scheduler: SchedulerOpt = None, force_unlock: ForceUnlockOpt = False) -> None:
    """Train the configured classifiers on the labelled stack."""
    _stage(config, scheduler, "train", force_unlock)


@app.command()
def predict(config: ConfigArg, scheduler: SchedulerOpt = None, force_unlock: ForceUnlockOpt = False) -> None:
    """Classify every scene of the cube; write classes and probabilities into it."""
    _stage(config, scheduler, "predict", force_unlock)


@app.command()
def evaluate(config: ConfigArg, scheduler: SchedulerOpt = None, force_unlock: ForceUnlockOpt = False) -> None:
    """Scores per model, scene and month; confusion matrices and figures."""
    _stage(config, scheduler, "evaluate", force_unlock)


@app.command()
def export(config: ConfigArg, scheduler: SchedulerOpt = None, force_unlock: ForceUnlockOpt = False) -> None:
    """GIS outputs: class-map COGs with palette and class names, QGIS styles, STAC; index.html."""
    report = _stage(config, scheduler, "export", force_unlock)
    typer.echo(f"{len(report.class_maps)} class maps, STAC collection {report.collection}"
               + (f", report {report.index}" if report.index else ""))


@app.command()
def run(
    config: ConfigArg,
    scheduler: SchedulerOpt = None,
    stages: Annotated[
        Optional[str], typer.Option(help="Comma-separated subset, e.g. features,train.")
    ] = None,
    force_unlock: ForceUnlockOpt = False,
) -> None:
    """Every stage in order: ingest, charts, features, train, predict, evaluate, export."""
    from seaice_dask.cube import cube_store
    from seaice_dask.lock import store_lock
    from seaice_dask.pipeline import STAGES, run_pipeline, simulate_inputs
    from seaice_dask.simulate.series import render_processes

    cfg = _load(config)
    with store_lock(cube_store(cfg), force=force_unlock):
        if cfg.simulate.enabled:
            simulate_inputs(cfg, processes=render_processes(cfg.simulate.n_scenes))
        with _cluster(cfg, scheduler) as client:
            run_pipeline(cfg, client, stages=stages.split(",") if stages else STAGES)
    typer.echo(f"outputs: cube {cfg.paths.store}, models {cfg.paths.models}, reports {cfg.paths.reports}")


@app.command()
def classify(
    model: Annotated[Path, typer.Argument(help="Model folder (train's paths.models) or a .skops model file.", show_default=False)],
    scenes: Annotated[list[Path], typer.Argument(help="Sentinel-1 products (SAFE folders or zips).", show_default=False)],
    out: Annotated[Path, typer.Option("--out", help="Output folder: maps, STAC catalogue, cube.")] = Path("classified"),
    grid: Annotated[Optional[Path], typer.Option("--grid", help="Pipeline config whose grid to use instead of the model's.")] = None,
    probabilities: Annotated[bool, typer.Option("--probabilities", help="Also write probability COGs.")] = False,
    scheduler: SchedulerOpt = None,
) -> None:
    """Apply a trained model to new scenes (no charts, no training): class COGs, QML, STAC Items."""
    from seaice_dask.classify import classify as classify_scenes
    from seaice_dask.cluster import open_client

    with open_client(address=scheduler) as client:
        report = classify_scenes(model, scenes, out, grid_config=grid, probabilities=probabilities,
                                 client=client, progress=sys.stderr.isatty())
    for scene, reason in report.refused.items():
        typer.echo(f"refused {scene}: {reason}", err=True)  # one unwrapped line per scene
    typer.echo(f"{len(report.class_maps)} class map(s) in {out / 'maps'} ({report.seconds:.1f} s)")
    if report.refused:
        raise typer.Exit(1)


@app.command()
def watch(
    config: ConfigArg,
    interval: Annotated[float, typer.Option("--interval", min=0, help="Seconds between polls.")] = 60.0,
    download: Annotated[bool, typer.Option("--download", help="Also fetch new products from the archive (download section).")] = False,
    model: Annotated[Optional[Path], typer.Option("--model", help="Model folder or file (default: paths.models).")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", help="Output folder (default: <workdir>/classified).")] = None,
    rounds: Annotated[Optional[int], typer.Option("--rounds", min=1, help="Stop after this many polls (default: never).")] = None,
    scheduler: SchedulerOpt = None,
) -> None:
    """Follow the scene folders (and the archive): classify each new product with a frozen model."""
    from seaice_dask.watch import watch as follow

    cfg = _load(config)
    with _cluster(cfg, scheduler) as client:
        try:
            report = follow(cfg, model=model, out=out, interval_s=interval, download=download, rounds=rounds, client=client)
        except KeyboardInterrupt:
            raise typer.Exit(0) from None
    typer.echo(f"{len(report.classified)} product(s) classified in {report.rounds} round(s)")


@app.command()
def demo(
    out: Annotated[Path, typer.Option("--out", help="Output folder.")] = Path("demo-output"),
    scenes: Annotated[int, typer.Option("--scenes", min=4, help="Number of simulated scenes.")] = 12,
) -> None:
    """Offline end-to-end example: simulated scenes on a LocalCluster, every stage."""
    from seaice_dask.pipeline import STAGES, demo_config, run_pipeline, simulate_inputs
    from seaice_dask.simulate.series import render_processes
    from seaice_dask.warmup import in_background

    cfg = demo_config(out, scenes)
    with contextlib.ExitStack() as stack:
        # a first run compiles the kernels while it simulates, ingests and rasterises the charts;
        # the GLCM sweep, the longest, is needed from the features stage on
        with in_background(cfg.features.features):
            simulate_inputs(cfg, processes=render_processes(scenes))
            client = stack.enter_context(_cluster(cfg, None))
            reports = run_pipeline(cfg, client, stages=STAGES[:2])
        reports |= run_pipeline(cfg, client, stages=STAGES[2:])
    typer.echo(f"\nDemo finished. Config: {out / 'pipeline.yaml'} (re-run with `seaice-dask run` on it)")
    typer.echo(f"  inputs   {cfg.paths.workdir / 'scenes'}, {cfg.paths.workdir / 'charts'}")
    typer.echo(f"  cube     {cfg.paths.store}")
    typer.echo(f"  models   {cfg.paths.models}")
    typer.echo(f"  reports  {cfg.paths.reports / 'index.html'} (scores, figures; maps/: class-map COGs, QGIS styles, STAC)")
    evaluation = reports.get("evaluate")
    if evaluation is not None:
        typer.echo(f"  scores on the held-out dates {', '.join(d[:10] for d in evaluation.test_dates)}, "
                   "against the simulator's truth:")
        for model, row in evaluation.table("truth").items():
            typer.echo(f"  {model:6s} overall accuracy {row['overall_accuracy']:.3f}  kappa {row['kappa']:.3f}")


@app.command()
def search(
    roots: Annotated[list[Path], typer.Argument(help="Folders (or products) to search.", show_default=False)],
    start: Annotated[Optional[str], typer.Option(help="First day, YYYY-MM-DD.")] = None,
    end: Annotated[Optional[str], typer.Option(help="Last day, YYYY-MM-DD.")] = None,
    orbit: Annotated[Optional[int], typer.Option("--orbit", help="Relative orbit.")] = None,
    mode: Annotated[Optional[str], typer.Option(help="EW, IW or SM.")] = None,
    bbox: Annotated[
        Optional[str], typer.Option(help="lon_min,lat_min,lon_max,lat_max the footprint must meet.")
    ] = None,
    paths: Annotated[bool, typer.Option("--paths", help="Print only paths (for scripts/configs).")] = False,
) -> None:
    """Find Sentinel-1 products in local archives by date, orbit, mode and area."""
    import datetime as dt

    from rich.table import Table

    from seaice_dask.catalog import search_local

    try:
        area = tuple(float(v) for v in bbox.split(",")) if bbox else None
        if area is not None and len(area) != 4:
            raise ValueError("bbox needs four numbers")
        first = dt.date.fromisoformat(start) if start else None
        last = dt.date.fromisoformat(end) if end else None
    except ValueError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    records = search_local(roots, start=first, end=last, relative_orbit=orbit, mode=mode, bbox=area)
    if paths:
        for record in records:
            typer.echo(str(record.path))
        return
    table = Table(title=f"{len(records)} product(s)")
    for column in ("start (UTC)", "product", "orbit", "pass", "pols", "path"):
        table.add_column(column)
    for r in records:
        table.add_row(
            str(r.start_time)[:19], r.name, str(r.relative_orbit), r.pass_direction[:4],
            "+".join(r.polarisations), str(r.path),
        )
    Console().print(table)


@app.command()
def download(
    config: ConfigArg,
    scheduler: SchedulerOpt = None,
    list_only: Annotated[
        bool, typer.Option("--list", help="Only print the matching products and write them as CSV + GeoJSON.")
    ] = False,
) -> None:
    """Search the archive (download.provider) and fetch missing scenes and NIC charts (needs network)."""
    from rich.table import Table

    from seaice_dask.download import download_products, first_folder, search_archive, write_listing
    from seaice_dask.download.products import human_size

    cfg = _load(config)
    products = search_archive(cfg)
    if list_only:
        table = Table(title=f"{len(products)} product(s) from {cfg.download.provider}")
        for column in ("start (UTC)", "product", "orbit", "size", "online"):
            table.add_column(column)
        for p in products:
            table.add_row(str(p.start_time)[:19], p.name, str(p.relative_orbit or "?"), human_size(p.size),
                          "yes" if p.online else "no")
        Console().print(table)
        stem = first_folder(cfg, cfg.paths.scenes) / f"{cfg.download.provider}-products"
        csv_path, geojson_path = write_listing(products, stem)
        typer.echo(f"listing: {csv_path}, footprints: {geojson_path}")
        return
    with contextlib.ExitStack() as stack:
        client = stack.enter_context(_cluster(cfg, scheduler)) if scheduler else None
        report = download_products(cfg, products, client=client)
    typer.echo(report.summary())
    if report.failed:
        raise typer.Exit(1)


@app.command()
def validate(
    store: Annotated[str, typer.Argument(help="Zarr cube to check: a path, or an s3:// URL (AWS variables).")],
) -> None:
    """Check a cube's consistency (grid, variables, completed slices)."""
    from seaice_dask.cube import done, open_cube
    from seaice_dask.ingest import validate_ingest

    problems = validate_ingest(store)
    if problems:
        for problem in problems:
            console.print(f"[red]✗[/red] {problem}")
        raise typer.Exit(1)
    ds = open_cube(store)
    order = ["ingest", "labels", "glcm_hh", "glcm_hv", "features", "predict"]
    stages = sorted((str(v)[5:] for v in ds.data_vars if str(v).startswith("done_")),
                    key=lambda s: (order.index(s) if s in order else len(order), s))
    flags = {stage: int(done(store, stage).sum()) for stage in stages}
    typer.echo(f"{store}: consistent; {ds.sizes['time']} time slices on a {ds.sizes['y']}×{ds.sizes['x']} grid")
    for stage, count in flags.items():
        typer.echo(f"  {stage:12s} {count}/{ds.sizes['time']} slices complete")
    typer.echo("  variables: " + ", ".join(str(v) for v in ds.data_vars if not str(v).startswith("done_")))


def main() -> None:
    """Console-script entry point: package errors become one red line and exit status 1."""
    try:
        app()
    except SeaIceError as exc:
        from rich.markup import escape

        console.print(f"[red]error:[/red] {escape(str(exc))}", soft_wrap=True)  # one line, even when long
        sys.exit(1)


if __name__ == "__main__":
    main()
