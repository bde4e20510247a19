"""Simulating one EW GRDM HH+HV product: a small test scene (target < 2 s) and a full-size scene
(10708 × 10487, target < 60 s on 2 cores).

Cases, after one untimed warm-up scene (compiles the kernels, builds the truth lattice):
``write zeros`` (baseline: the two uint16 strip TIFFs of the full size, constant DN — pure I/O),
``small GRDM``, ``full GRDM`` (SAFE folder) and ``full GRDM zip``. Besides wall time, the
process CPU seconds are reported: on a shared machine they are the stable number, and CPU/2 is
what two idle cores would need at best. The load average at the start of each case is printed.

    python -m benchmarks.bench_simulate [--skip-full]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.common import timer, write_results
from seaice_dask.grid import default_grid
from seaice_dask.simulate.safe_writer import SceneSpec, _tiff_profile, retarget, write_scene


def _spec(size: str, day: int) -> SceneSpec:
    return SceneSpec(start=dt.datetime(2021, 1, day, 8, 22, 3), absolute_orbit=36146 + day, size=size)


def _write_zeros(out: Path) -> None:
    import rasterio
    from rasterio.windows import Window

    product = retarget(_spec("full", 1))
    strip = np.full((256, product.shape[1]), 100, np.uint16)
    for pol in ("hh", "hv"):
        with rasterio.open(out / f"zeros-{pol}.tiff", "w", **_tiff_profile(product, pol)) as dst:
            for row in range(0, product.shape[0], 256):
                n = min(256, product.shape[0] - row)
                dst.write(strip[:n], 1, window=Window(0, row, product.shape[1], n))


def _case(name: str, func, baseline: float | None) -> dict:
    load = os.getloadavg()[0]
    cpu0 = time.process_time()
    with timer() as t:
        func()
    cpu = time.process_time() - cpu0
    row = {
        "case": name,
        "wall_s": t["seconds"],
        "cpu_s": cpu,
        "cpu_over_2_s": cpu / 2,
        "load_avg_1min": load,
        "vs_baseline": None if baseline is None else t["seconds"] / baseline,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    print(f"  {name}: {row['wall_s']:.1f} s wall, {cpu:.1f} s CPU (load {load:.1f})", flush=True)
    return row


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-full", action="store_true", help="only the small scene")
    args = parser.parse_args(argv)
    grid = default_grid()
    out = Path(tempfile.mkdtemp(prefix="bench-simulate-"))
    try:
        rows = [_case("warm-up small (compile, truth lattice)", lambda: write_scene(out / "w", _spec("small", 2), grid=grid), None)]
        small = [_case(f"small GRDM #{i}", lambda i=i: write_scene(out / "s", _spec("small", 3 + i), grid=grid), None) for i in range(3)]
        rows += small
        if not args.skip_full:
            base = _case("write zeros (baseline, full size)", lambda: _write_zeros(out), None)
            rows.append(base)
            rows.append(_case("full GRDM (SAFE)", lambda: write_scene(out / "f", _spec("full", 10), grid=grid, fmt="safe"), base["wall_s"]))
            rows.append(_case("full GRDM (zip)", lambda: write_scene(out / "z", _spec("full", 11), grid=grid, fmt="zip"), base["wall_s"]))
        write_results(
            "bench_simulate",
            rows,
            targets={"small_s": 2.0, "full_s": 60.0},
            note="wall times on a shared machine are inflated by other jobs; cpu_s is the work done",
        )
    finally:
        shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
