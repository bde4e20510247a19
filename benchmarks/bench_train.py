"""Training memory vs series length: does a series twice as long need more worker memory?

Two synthetic labelled cubes (``seaice_dask.learn.synthetic``) of ``N`` and ``2N`` scenes, same
grid; ``train`` (temporal split, class-balanced, same ``cap_per_class``) runs on a fresh LocalCluster
for each series. Worker memory is the resident set size of every worker process, polled every
0.2 s while ``train`` runs (the peak of the polls, per worker, then the largest worker); the
processes' lifetime peak (``ru_maxrss``) is reported too, but it is not a measure of the work:
a worker process is forked from this (client) process before it executes a fresh Python, and
Linux keeps the high-water mark of that forked image, i.e. of the client's size at start-up. Then ``predict`` on the same workers (peak and time
reported separately). Target (issue 8): peak worker memory for ``2N`` ≤ 1.2 × that for ``N``;
wall time per scene reported.

    python -m benchmarks.bench_train [--scenes 12] [--size 256] [--chunk 128] [--cap 5000]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from distributed import Client, LocalCluster

from benchmarks.common import rss, rss_poller, timer, worker_peak_memory, write_results
from seaice_dask.config import PipelineConfig
from seaice_dask.learn import predict, train
from seaice_dask.learn.synthetic import make_synthetic_cube

LEARNERS = ["sgd", "mlp", "gnb", "rf"]


def run(client: Client, cfg: PipelineConfig, n_scenes: int) -> dict:
    client.run(rss)  # workers fully started before polling
    idle = max(client.run(rss).values())
    with timer() as t_train, rss_poller(client) as peaks:
        report = train(cfg, client, progress=False)
    train_peak = max(peaks.values())
    with timer() as t_predict, rss_poller(client) as predict_peaks:
        predict(cfg, client=client, progress=False)
    return {
        "scenes": n_scenes,
        "train_pixels": report.n_train,
        "train_s": t_train["seconds"],
        "train_s_per_scene": t_train["seconds"] / n_scenes,
        "sample_s_per_scene": report.sample_seconds / n_scenes,
        "predict_s_per_scene": t_predict["seconds"] / n_scenes,
        "idle_worker_MiB": idle / 2**20,
        "train_peak_worker_MiB": train_peak / 2**20,
        "predict_peak_worker_MiB": max(predict_peaks.values()) / 2**20,
        "lifetime_peak_worker_MiB": max(worker_peak_memory(client).values()) / 2**20,
        "best": report.best,
        "best_test_OA": report.scores[report.best]["overall_accuracy"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=12)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--chunk", type=int, default=128)
    parser.add_argument("--cap", type=int, default=5000)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in (args.scenes, 2 * args.scenes):
            workdir = Path(tmp) / f"n{n}"
            make_synthetic_cube(workdir / "cube.zarr", n_times=n, size=args.size, chunk=args.chunk, seed=0)
            cfg = PipelineConfig.model_validate(
                {"paths": {"workdir": str(workdir)}, "model": {"learners": LEARNERS, "cap_per_class": args.cap}}
            ).resolve(workdir)
            with LocalCluster(
                n_workers=args.workers, threads_per_worker=1, processes=True, memory_limit="2GiB",
                dashboard_address=None,
            ) as cluster, Client(cluster) as client:
                rows.append({**run(client, cfg, n), "pixels_per_scene": args.size**2})
    ratio = rows[1]["train_peak_worker_MiB"] / rows[0]["train_peak_worker_MiB"]
    write_results(
        "bench_train", rows, learners=LEARNERS, workers=args.workers,
        peak_memory_ratio_2n_over_n=ratio, target_ratio_max=1.2, meets_target=ratio <= 1.2,
    )
    print(f"peak worker memory, {2 * args.scenes} vs {args.scenes} scenes: ×{ratio:.3f} (target ≤ 1.2)")


if __name__ == "__main__":
    main()
