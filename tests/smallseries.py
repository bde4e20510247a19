"""A small simulated series run once per session on a LocalCluster: the undisturbed reference
that multi-host runs, killed-and-resumed runs and the store-lock test are compared against.

Three small scenes on a 1.6 km grid (250 × 250 pixels in blocks of 128: every stage still
crosses block edges, with a quarter of the tasks and stored objects of 64-pixel blocks), a light
GLCM and two fast learners: every stage runs (and can be interrupted) in seconds. The reference's work folder is copied after ``charts``,
``features`` and ``train`` so that each crash test starts right before the stage it kills.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import rasterio
import xarray as xr

from seaice_dask.config import PipelineConfig, dump_config, load_config
from tests.once import built_once

#: The `seaice-dask` console script of the running interpreter's environment.
SEAICE_DASK = str(Path(sys.executable).with_name("seaice-dask"))
REPO = Path(__file__).resolve().parents[1]

N_SCENES = 3
SMALL_SERIES = {
    "name": "small-series",
    "grid": {"resolution_m": 1600, "chunk": 128},
    "preprocess": {"multilook": 1},
    "features": {"window": 5, "levels": 16, "angles": [0, 90], "features": ["contrast", "homogeneity", "entropy"]},
    # select by accuracy: `balanced` weighs the speed measured on the machine, which may differ
    "model": {"learners": ["gnb", "sgd"], "cap_per_class": 500, "select": "accuracy"},
    "cluster": {"n_workers": 1, "threads_per_worker": 1, "memory_limit": "2GiB", "dashboard": False},
    "simulate": {"enabled": True, "n_scenes": N_SCENES, "size": "small"},
}


def env() -> dict[str, str]:
    """Environment of subprocesses: this checkout's package, quiet libraries."""
    return {**os.environ, "PYTHONPATH": str(REPO), "DASK_DISTRIBUTED__WORKER__DAEMON": "False"}


@dataclass(frozen=True)
class SmallSeries:
    reference: Path  # every stage done
    after: dict[str, Path]  # copies of the work folder after "charts", "features", "train"

    def copy(self, stage: str, dst: Path) -> Path:
        """A private copy of the work folder after ``stage``; returns its config file."""
        copy_workdir(self.after[stage], dst)
        return dst / "pipeline.yaml"

    def inputs(self, dst: Path) -> Path:
        """A work folder with only the config and the simulated inputs; returns its config file."""
        copy_workdir(self.reference, dst, ignore=("cube.zarr", "models", "reports"))
        return dst / "pipeline.yaml"


def copy_workdir(src: Path, dst: Path, ignore: tuple[str, ...] = ()) -> None:
    """Copy a work folder; the (read-only) scenes are linked, not copied."""
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("scenes", "*.lock", *ignore), symlinks=True)
    (dst / "scenes").symlink_to((src / "scenes").resolve())


def write_config(workdir: Path, **sections: dict) -> Path:
    """The small-series config in ``workdir`` (with ``sections`` merged in); returns its path."""
    raw = {k: dict(v) if isinstance(v, dict) else v for k, v in SMALL_SERIES.items()}
    for key, value in sections.items():
        raw[key] = {**raw.get(key, {}), **value}
    workdir.mkdir(parents=True, exist_ok=True)
    return dump_config(PipelineConfig.model_validate(raw), workdir / "pipeline.yaml")


def make_small_series(out: Path) -> SmallSeries:
    from seaice_dask.cluster import open_client
    from seaice_dask.config import ClusterConfig
    from seaice_dask.pipeline import STAGES, run_pipeline, simulate_inputs

    reference = out / "reference"
    cfg = load_config(write_config(reference))
    simulate_inputs(cfg)
    after = {}
    two_workers = ClusterConfig(n_workers=2, threads_per_worker=1, memory_limit="2GiB", dashboard=False)
    with open_client(two_workers) as client:
        for stage in STAGES:
            run_pipeline(cfg, client, stages=[stage], progress=False)
            if stage in ("charts", "features", "train"):
                after[stage] = out / f"after_{stage}"
                copy_workdir(reference, after[stage])
    return SmallSeries(reference, after)


@pytest.fixture(scope="session")
def small_series(tmp_path_factory) -> SmallSeries:
    """Three small simulated scenes through every stage on a 2-worker LocalCluster."""
    return built_once(tmp_path_factory, "small_series", make_small_series)


def _train_report(workdir: Path) -> dict:
    report = json.loads((workdir / "models" / "train_report.json").read_text())
    return {k: v for k, v in report.items() if not k.endswith(("seconds", "px_per_s"))}  # measured times


def assert_same_outputs(got: Path, expected: Path) -> None:
    """Cube (every variable, value and attribute), training report, scores and class-map GeoTIFFs."""
    from seaice_dask.cube import open_cube

    # the model key hashes the model file, which records when it was written
    left, right = (open_cube(d / "cube.zarr").drop_vars("class_model_key", errors="ignore") for d in (got, expected))
    assert sorted(left.variables) == sorted(right.variables)
    xr.testing.assert_identical(left.load(), right.load())
    assert _train_report(got) == _train_report(expected)
    scores = [json.loads((d / "reports" / "scores.json").read_text())["scores"] for d in (got, expected)]
    assert scores[0] == scores[1]
    maps = [sorted((d / "reports" / "maps").glob("class_*.tif")) for d in (got, expected)]
    assert [p.name for p in maps[0]] == [p.name for p in maps[1]] and maps[0]
    for a, b in zip(*maps, strict=True):
        with rasterio.open(a) as ra, rasterio.open(b) as rb:
            np.testing.assert_array_equal(ra.read(1), rb.read(1))
            assert ra.crs == rb.crs and ra.transform == rb.transform


def start(args: list[str], log: Path) -> subprocess.Popen:
    """``seaice-dask ARGS`` in its own process group (so that a kill takes its workers too),
    its output to ``log`` (a pipe nobody reads would stall it)."""
    with log.open("w") as out:
        return subprocess.Popen([SEAICE_DASK, *args], env=env(), start_new_session=True, stdout=out, stderr=out)


def kill_when(proc: subprocess.Popen, ready: Callable[[], bool], timeout: float = 240) -> None:
    """SIGKILL ``proc``'s process group as soon as ``ready()``; fail if it ends first."""
    deadline = time.monotonic() + timeout
    seen = False
    try:
        while time.monotonic() < deadline and proc.poll() is None and not (seen := ready()):
            time.sleep(0.05)
        alive = proc.poll() is None
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
    assert seen and alive, f"the run was not killed at the intended point (rc {proc.returncode})"
