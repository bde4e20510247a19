"""sigma0 HH+HV of a full-size EW GRDM scene on a 2-worker LocalCluster: wall time and peak
memory per worker (target: < 30 s and < 2 GiB per worker).

The scene is the real S1A EW GRDM annotation in tests/data (10708 × 10487, IPF 003.52)
with measurement TIFFs written once into a cache folder: uncompressed uint16 strips like ESA's,
DN = √(A_σ² · σ0 · speckle + η) for σ0 = −15 dB and unit-mean gamma speckle (ENL 10.7).
``--product PATH`` benchmarks any other product instead (e.g. one from the simulator).

Cases, each on a fresh cluster so that the peak memory belongs to that case alone:
``read DN`` (baseline: read and square DN, summed), ``sigma0 → sum`` (calibrate + ESA denoise,
reduced on the workers), ``sigma0 → zarr`` (the same, written to a local Zarr store).
Besides wall time, the workers' CPU seconds are reported: on a shared machine they are the
stable number, and CPU/2 is what two idle cores would need.

    python -m benchmarks.bench_sigma0 [--product PATH] [--chunk 1024]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

import dask.array as da
import numpy as np
import rasterio
import xarray as xr
from rasterio.windows import Window

from benchmarks.common import timer, worker_peak_memory, write_results
from seaice_dask.config import ClusterConfig
from seaice_dask.cluster import open_client
from seaice_dask.preprocess import calibration_window, noise_window, sigma0
from seaice_dask.safe import open_safe

#: The real EW sample of the test data (annotation only; see tests/data/SOURCES.md).
EW_GRDM = (Path(__file__).resolve().parents[1] / "tests" / "data" / "sentinel1"
           / "S1A_EW_GRDM_1SDH_20221130T014342_20221130T014446_046117_058549_BB15")
SIGMA0_DB, ENL, STRIP = -15.0, 10.7, 512


def build_scene(cache: Path) -> Path:
    """Copy the real EW annotation to ``cache`` and write its two measurement TIFFs (once)."""
    dst = cache / (EW_GRDM.name + ".SAFE")
    if (dst / "measurement" / "ew-hv.tiff").is_file():
        return dst
    src = EW_GRDM
    if not src.is_dir():
        raise SystemExit(f"real EW annotation not found at {src}; pass --product")
    shutil.rmtree(dst, ignore_errors=True)
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("*.tiff", "*.pdf", "*.png"))
    for p in [dst, *dst.rglob("*")]:
        p.chmod(0o755 if p.is_dir() else 0o644)
    product = open_safe(dst)
    lines, samples = product.shape
    rng = np.random.default_rng(0)
    for pol in product.polarisations:
        cal, noise = product.calibration(pol), product.noise(pol)
        tmp = dst / "measurement" / f"ew-{pol.lower()}.tiff.tmp"
        profile = dict(driver="GTiff", width=samples, height=lines, count=1, dtype="uint16", blockysize=1,
                       gcps=product.gcps(pol), crs="EPSG:4326")
        with rasterio.open(tmp, "w", **profile) as tif:
            for r0 in range(0, lines, STRIP):
                rows, cols = np.arange(r0, min(r0 + STRIP, lines)), np.arange(samples)
                speckle = rng.gamma(ENL, 1.0 / ENL, (rows.size, samples))
                power = calibration_window(cal, "sigma_nought", rows, cols) ** 2 * 10 ** (SIGMA0_DB / 10) * speckle
                dn = np.sqrt(power + noise_window(noise, rows, cols))
                tif.write(np.clip(np.rint(dn), 1, 65535).astype(np.uint16), 1, window=Window(0, r0, samples, rows.size))
        tmp.replace(tmp.with_suffix(""))
    return dst


def _cpu_seconds() -> float:
    """User + system CPU time of this worker process: unlike wall time, not inflated by other
    jobs sharing the CPU, so ``cpu / 2`` estimates the wall time on two idle cores."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_case(case: str, product_path: Path, chunk: int, workdir: Path) -> dict:
    cfg = ClusterConfig(kind="local", n_workers=2, threads_per_worker=1, memory_limit="4GiB", dashboard=False)
    with open_client(cfg) as client:
        product = open_safe(product_path)
        pols = product.polarisations
        chunks = (chunk, chunk)
        cpu_before = sum(client.run(_cpu_seconds).values())
        with timer() as t:
            if case == "read DN":
                total = sum((product.dn(p, chunks).data.astype(np.float64) ** 2).sum() for p in pols)
                client.compute(total).result()
            elif case == "sigma0 → sum":
                total = sum(da.nansum(sigma0(product, p, chunks=chunks).data, dtype=np.float64) for p in pols)
                client.compute(total).result()
            else:
                store = workdir / "sigma0.zarr"
                shutil.rmtree(store, ignore_errors=True)
                ds = xr.Dataset({f"sigma0_{p.lower()}": sigma0(product, p, chunks=chunks) for p in pols})
                ds.to_zarr(store, mode="w", consolidated=False, compute=False).compute()
        peaks = worker_peak_memory(client)
        cpu = sum(client.run(_cpu_seconds).values()) - cpu_before
    return {
        "case": case,
        "pols": "+".join(pols),
        "shape": f"{product.shape[0]}x{product.shape[1]}",
        "chunk": chunk,
        "seconds": t["seconds"],
        "worker_cpu_s": cpu,
        "idle_2core_s": cpu / 2,
        "peak_worker_GiB": max(peaks.values()) / 2**30,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--product", type=Path, help="product to use instead of the generated EW scene")
    parser.add_argument("--chunk", type=int, default=1024)
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "seaice_dask_bench")
    args = parser.parse_args(argv)
    args.cache.mkdir(parents=True, exist_ok=True)
    with timer() as build:
        product_path = args.product or build_scene(args.cache)
    rows = [run_case(case, product_path, args.chunk, args.cache) for case in ("read DN", "sigma0 → sum", "sigma0 → zarr")]
    for row in rows:
        row["ratio_to_read"] = row["seconds"] / rows[0]["seconds"]
    write_results("bench_sigma0", rows, product=str(product_path), scene_build_seconds=build["seconds"],
                  targets={"seconds": 30, "peak_worker_GiB": 2},
                  note="2-worker LocalCluster, 1 thread each; the CPU may be shared with other jobs")


if __name__ == "__main__":
    main()
