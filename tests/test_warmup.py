"""`python -m seaice_dask.warmup` (run by `make test`, `make bench` and the demo) reaches
every Numba kernel, and every kernel caches its compilation on disk, so that no run compiles on first use."""

from __future__ import annotations

import importlib
import pkgutil

from numba.core.caching import NullCache
from numba.core.registry import CPUDispatcher

import seaice_dask
from seaice_dask.warmup import KERNELS, glcm_variant, warmup


def _kernels() -> dict[str, list[CPUDispatcher]]:
    """Every Numba dispatcher defined in the package, by module."""
    found: dict[str, list[CPUDispatcher]] = {}
    for info in pkgutil.walk_packages(seaice_dask.__path__, "seaice_dask."):
        module = importlib.import_module(info.name)
        for obj in vars(module).values():
            if isinstance(obj, CPUDispatcher) and obj.__module__ == info.name:
                found.setdefault(info.name, []).append(obj)
    return found


def test_every_kernel_caches_and_every_kernel_module_is_compiled_by_the_warmup():
    for compile_one in KERNELS.values():  # in this process: loaded from the cache `make test` warmed
        compile_one()
    kernels = _kernels()
    assert {"seaice_dask.features.kernels", "seaice_dask.preprocess.textural"} <= set(kernels)
    for module, dispatchers in kernels.items():
        uncached = [d.__name__ for d in dispatchers if isinstance(d._cache, NullCache)]
        assert not uncached, f"{module}: kernels without cache=True: {uncached}"
        # kernels called only from other kernels are compiled into them (no signature of their own)
        assert any(d.signatures for d in dispatchers), f"{module}: no kernel compiled by the warmup"


def test_warmup_reports_each_kernel():
    seconds = warmup(processes=1)
    assert set(seconds) == set(KERNELS) and all(s >= 0 for s in seconds.values())


def test_a_run_compiles_only_the_glcm_sweep_its_features_need():
    assert glcm_variant(["contrast", "homogeneity", "correlation"]) == "counts"
    assert glcm_variant(["contrast", "homogeneity", "ASM", "correlation", "entropy"]) == "counts"
    assert glcm_variant(["energy", "max_prob"]) == "max"
    seconds = warmup(processes=1, features=["contrast", "entropy"])
    assert [n for n in seconds if n.startswith("glcm")] == ["glcm counts"]
    # the demo's: the simulation compiles the simulator's kernels itself
    assert "simulator" not in warmup(processes=1, features=["contrast"], skip=["simulator"])
