"""Training and prediction give identical results on a LocalCluster of 1 or 2 worker processes."""

from __future__ import annotations

import shutil
import time

import numpy as np
import pytest
from distributed import Client, LocalCluster

from seaice_dask.config import PipelineConfig
from seaice_dask.cube import open_cube
from seaice_dask.learn import predict, train
from seaice_dask.learn.synthetic import make_synthetic_cube

pytestmark = [pytest.mark.slow, pytest.mark.cluster]


def test_predictions_identical_on_one_or_two_workers(tmp_path):
    make_synthetic_cube(tmp_path / "template" / "cube.zarr", n_times=4, size=48, chunk=24, seed=2)
    outputs = {}
    # one cluster, scaled from 2 worker processes down to 1 (starting processes is the slow part)
    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, memory_limit="1GiB", dashboard_address=None
    ) as cluster, Client(cluster) as client:
        for n_workers in (2, 1):
            cluster.scale(n_workers)
            client.wait_for_workers(n_workers)
            while len(client.scheduler_info()["workers"]) != n_workers:
                time.sleep(0.1)
            workdir = tmp_path / f"workers{n_workers}"
            shutil.copytree(tmp_path / "template", workdir)
            cfg = PipelineConfig.model_validate(
                {"paths": {"workdir": str(workdir)},
                 "model": {"learners": ["sgd", "gnb"], "cap_per_class": 400, "select": "accuracy"}}
            ).resolve(workdir)
            report = train(cfg, client, progress=False)
            predict(cfg, client=client, progress=False)
            ds = open_cube(cfg.paths.store)
            outputs[n_workers] = (report, ds["class"].values, ds["proba"].values)
    (r1, c1, p1), (r2, c2, p2) = outputs[1], outputs[2]
    assert r1.scores == r2.scores and r1.best == r2.best
    assert (c1 >= 0).mean() > 0.5
    np.testing.assert_array_equal(c1, c2)
    np.testing.assert_array_equal(p1, p2)
