"""Deployment recipes: every file parses, every command is one the real CLIs accept, the batch
job scripts come out of dask-jobqueue as intended (generated, never submitted), and every recipe
installs this repository's package (the image or the checkout), never an unpublished name."""

from __future__ import annotations

import re
import shlex
import subprocess
import tomllib
from importlib.metadata import entry_points
from pathlib import Path

import click
import dask.config
import pytest
import typer
import yaml

from seaice_dask.cli import app
from seaice_dask.config import PipelineConfig, load_config

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deployments"
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
IMAGE = f"seaice-dask:{PYPROJECT['project']['version']}"
RECIPES = sorted(p for p in DEPLOY.rglob("*") if p.suffix in (".yaml", ".yml"))


def _parse(argv: list[str]) -> click.Context:
    """Parse a command line with the real click parser of `dask <verb>` or `seaice-dask <verb>`."""
    program, verb, *args = argv
    if program == "dask":
        command = entry_points(group="dask_cli")[verb].load()
    else:
        assert program == "seaice-dask", argv
        group = typer.main.get_command(app)
        command = group.get_command(click.Context(group), verb)
        assert command is not None, f"no verb {verb!r}"
    return command.make_context(f"{program} {verb}", list(args))


def test_recipes_are_found_and_parse():
    names = {p.relative_to(DEPLOY).as_posix() for p in RECIPES}
    assert {"docker/compose.yaml", "kubernetes/values.yaml", "kubernetes/daskcluster.yaml",
            "slurm/jobqueue.yaml", "pbs/jobqueue.yaml"} <= names
    for path in RECIPES:
        assert list(yaml.safe_load_all(path.read_text())), path


def test_no_recipe_installs_an_unpublished_package():
    pattern = re.compile(r"""pip install\s+(?:-\S+\s+)*['"]?seaice-dask\b|EXTRA_PIP_PACKAGES""", re.I)
    for path in [*DEPLOY.rglob("*"), REPO / "README.md", REPO / "seaice_dask" / "cluster.py"]:
        if path.is_file():
            assert not pattern.search(path.read_text()), path


def test_dockerfile_multistage_pinned_nonroot_installs_this_repository():
    text = (DEPLOY / "docker" / "Dockerfile").read_text()
    base = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", text, re.M).group(1)
    assert re.fullmatch(r"python:\d+\.\d+\.\d+-slim-\w+(@sha256:[0-9a-f]{64})?", base), base
    stages = re.findall(r"^FROM (\S+)(?: AS (\w+))?$", text, re.M)
    assert len(stages) == 2 and stages[0] == ("${PYTHON_IMAGE}", "build") and stages[1][0] == "${PYTHON_IMAGE}"
    assert "COPY --from=build" in text
    assert re.search(r'pip install "\.\[cluster\]"', text) and "cluster" in PYPROJECT["project"]["optional-dependencies"]
    for src in re.findall(r"^COPY (?!--from)(.+) \S+$", text, re.M):
        for name in src.split():
            assert (REPO / name).exists(), name
    users = re.findall(r"^USER (\S+)$", text, re.M)
    assert users and users[-1] not in ("root", "0")
    ignored = (DEPLOY / "docker" / "Dockerfile.dockerignore").read_text()
    assert "!seaice_dask/" in ignored and "!pyproject.toml" in ignored


def test_compose_services_are_real_invocations_on_one_shared_volume():
    compose = yaml.safe_load((DEPLOY / "docker" / "compose.yaml").read_text())
    services = compose["services"]
    assert set(services) == {"scheduler", "worker-1", "worker-2", "runner"}
    assert "data" in compose["volumes"]
    for name, service in services.items():
        assert service["image"] == IMAGE, name
        assert (DEPLOY / "docker" / service["build"]["context"] / service["build"]["dockerfile"]).is_file()
        assert "data:/data" in service["volumes"], name
    scheduler = _parse(services["scheduler"]["command"]).params
    assert scheduler["host"] == "0.0.0.0"
    address = f"tcp://scheduler:{scheduler['port']}"
    for worker in ("worker-1", "worker-2"):
        params = _parse(services[worker]["command"]).params
        assert params["scheduler"] == address and params["nthreads"] >= 1
    runner = services["runner"]
    params = _parse(runner["command"]).params
    assert params["scheduler"] == address
    source, target = runner["volumes"][1].split(":")[:2]
    assert Path(target) == params["config"]
    cfg = load_config(DEPLOY / "docker" / source)  # the runner's config is a valid pipeline config
    assert cfg.paths.workdir == Path("/data") and cfg.cluster.address == address


def test_kubernetes_recipes_use_the_image_built_here():
    values = yaml.safe_load((DEPLOY / "kubernetes" / "values.yaml").read_text())
    for role in ("scheduler", "worker"):
        image = values[role]["image"]
        assert f"{image['repository'].rsplit('/', 1)[-1]}:{image['tag']}" == IMAGE
    cluster = yaml.safe_load((DEPLOY / "kubernetes" / "daskcluster.yaml").read_text())
    assert cluster["apiVersion"] == "kubernetes.dask.org/v1" and cluster["kind"] == "DaskCluster"
    for role in ("worker", "scheduler"):
        (container,) = cluster["spec"][role]["spec"]["containers"]
        assert container["image"] == IMAGE
        _parse(container["args"])
    cfg = PipelineConfig.model_validate({"cluster": {"kind": "kubernetes", "image": IMAGE}})
    assert cfg.cluster.image == IMAGE


def test_ssh_recipe_is_a_valid_config_section():
    cfg = PipelineConfig.model_validate(yaml.safe_load((DEPLOY / "ssh" / "pipeline-ssh.yaml").read_text()))
    assert cfg.cluster.kind == "ssh" and len(cfg.cluster.hosts) >= 2


def _job_script(kind: str) -> str:
    dask_jobqueue = pytest.importorskip("dask_jobqueue")
    recipe = yaml.safe_load((DEPLOY / kind / "jobqueue.yaml").read_text())["jobqueue"][kind]
    cls = {"slurm": dask_jobqueue.SLURMCluster, "pbs": dask_jobqueue.PBSCluster}[kind]
    with dask.config.set({f"jobqueue.{kind}.{key}": value for key, value in recipe.items()}):
        with cls(scheduler_options={"dashboard_address": ":0"}) as cluster:  # a scheduler, no jobs
            script = cluster.job_script()
    subprocess.run(["bash", "-n"], input=script, text=True, check=True)
    return script


def test_slurm_job_script_from_the_recipe():
    script = _job_script("slurm")
    for line in ("#SBATCH -J seaice-dask-worker", "#SBATCH -p normal", "#SBATCH --cpus-per-task=8",
                 "#SBATCH -t 02:00:00"):
        assert line in script, script
    assert re.search(r"#SBATCH --mem=(32|30)G", script), script
    assert "#SBATCH -A" not in script  # account: null
    worker = script.strip().splitlines()[-1]
    python, dash_m, module, *args = shlex.split(worker)
    assert (dash_m, module) == ("-m", "distributed.cli.dask_worker") and Path(python).name.startswith("python")
    params = _parse(["dask", "worker", *args]).params  # the real `dask worker` parser accepts it
    assert params["scheduler"].startswith("tcp://") and (params["nthreads"], params["n_workers"]) == (4, "2")
    for arg in ("--nthreads 4", "--nworkers 2", "--memory-limit 16.00GiB", "--lifetime 115m",
                "--lifetime-stagger 4m", "--local-directory $TMPDIR"):
        assert arg in worker, worker


def test_pbs_job_script_from_the_recipe():
    script = _job_script("pbs")
    for line in ("#PBS -N seaice-dask-worker", "#PBS -q workq", "#PBS -l select=1:ncpus=8:mem=32GB",
                 "#PBS -l walltime=02:00:00"):
        assert line in script, script
    worker = script.strip().splitlines()[-1]
    assert "--nthreads 4" in worker and "--nworkers 2" in worker and "--memory-limit 16.00GiB" in worker


def test_slurm_driver_job_runs_the_pipeline():
    path = DEPLOY / "slurm" / "run.sbatch"
    subprocess.run(["bash", "-n", str(path)], check=True)
    text = path.read_text()
    assert re.search(r"^#SBATCH --time=\d\d:\d\d:\d\d$", text, re.M)
    (command,) = [line.split() for line in text.splitlines() if line.startswith("seaice-dask ")]
    assert _parse([c.strip('"') for c in command]).params["config"]
