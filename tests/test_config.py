from pathlib import Path

import pytest

from seaice_dask.config import EXAMPLE_CONFIG, PipelineConfig, dump_config, load_config
from seaice_dask.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "pipeline.yaml"
    path.write_text(text)
    return path


def test_example_config_is_the_default():
    cfg = load_config(EXAMPLE_CONFIG)
    defaults = PipelineConfig().resolve(EXAMPLE_CONFIG.parent)
    assert cfg.model_dump(exclude={"name", "simulate"}) == defaults.model_dump(exclude={"name", "simulate"})
    assert cfg.grid.to_grid().shape == (5000, 5000)



def test_empty_config_has_the_seeds_preprocessing(tmp_path):
    """NERSC denoising, textural noise and the class-aware incidence correction by default, as the
    seed; the example says so explicitly, and three keys give plain ESA processing."""
    for cfg in (load_config(write(tmp_path, "")), load_config(EXAMPLE_CONFIG)):
        pre = cfg.preprocess
        assert (pre.denoise, pre.textural_noise, pre.incidence.correction) == ("nersc", True, "class")
    text = EXAMPLE_CONFIG.read_text()
    assert "  denoise: nersc " in text and "  textural_noise: true " in text and "    correction: class " in text
    assert "denoise: esa, textural_noise: false, incidence: {correction: none}" in text
    esa = load_config(write(tmp_path, "preprocess:\n  denoise: esa\n  textural_noise: false\n"
                                      "  incidence: {correction: none}\n")).preprocess
    assert (esa.denoise, esa.textural_noise, esa.incidence.correction) == ("esa", False, "none")


def test_paths_are_resolved_against_the_config_folder(tmp_path):
    cfg = load_config(write(tmp_path, "paths:\n  workdir: run1\n  store: out/cube.zarr\n"))
    assert cfg.paths.store == (tmp_path / "run1" / "out" / "cube.zarr").resolve()
    assert cfg.path("scenes/*.zip") == (tmp_path / "run1" / "scenes" / "*.zip").resolve()


def test_unknown_key_is_named_with_the_file(tmp_path):
    path = write(tmp_path, "grid:\n  resolution_m: 80\n  pixel_size: 40\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert "grid.pixel_size: unknown key" in str(err.value)
    assert str(path) in str(err.value)


def test_wrong_type_is_named(tmp_path):
    with pytest.raises(ConfigError, match=r"features\.window"):
        load_config(write(tmp_path, "features:\n  window: eleven\n"))
    with pytest.raises(ConfigError, match=r"features\.window: Value error, window must be odd"):
        load_config(write(tmp_path, "features:\n  window: 10\n"))
    with pytest.raises(ConfigError, match=r"cluster\.kind"):
        load_config(write(tmp_path, "cluster:\n  kind: cloud\n"))


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(write(tmp_path, "grid: [unclosed\n"))
    with pytest.raises(ConfigError, match="mapping of sections"):
        load_config(write(tmp_path, "- a list\n"))


def test_dump_round_trip(tmp_path):
    cfg = load_config(write(tmp_path, "name: x\nmodel:\n  learners: [sgd, rf]\n"))
    again = load_config(dump_config(cfg, tmp_path / "again.yaml"))
    assert again == cfg


def test_snap_engine_needs_plain_esa_processing(tmp_path):
    """SNAP only removes ESA's noise: with the defaults (the seed's corrections) it is refused at
    load, naming the file and the three keys; with them set it loads."""
    with pytest.raises(ConfigError, match=r"pipeline.yaml(.|\n)*engine: snap does plain ESA processing.*textural_noise: false"):
        load_config(write(tmp_path, "preprocess:\n  engine: snap\n"))
    plain = "preprocess:\n  engine: snap\n  denoise: esa\n  textural_noise: false\n  incidence: {correction: none}\n"
    assert load_config(write(tmp_path, plain)).preprocess.engine == "snap"
