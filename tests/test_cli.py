import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from seaice_dask.cli import app

VERBS = ["simulate", "ingest", "charts", "features", "train", "predict", "evaluate", "export", "run", "demo",
         "search", "download", "info", "validate"]
runner = CliRunner()


def test_help_lists_every_verb():
    result = runner.invoke(app, ["--help"], terminal_width=200)
    assert result.exit_code == 0
    for verb in VERBS:
        assert verb in result.output


def test_info_prints_versions_and_cluster():
    result = runner.invoke(app, ["info"])
    assert result.exit_code == 0
    assert "dask" in result.output and "LocalCluster" in result.output


def test_download_needs_a_config():
    result = runner.invoke(app, ["download"])
    assert result.exit_code == 2
    assert "Missing argument" in result.output


def test_console_script_is_installed():
    exe = Path(sys.executable).with_name("seaice-dask")
    out = subprocess.run([str(exe), "--help"], capture_output=True, text=True, check=True)
    assert "ingest" in out.stdout
