"""Several hosts, made of Linux network namespaces: a scheduler, two workers and the runner each
in its own namespace, joined by veth pairs to a bridge in a fifth one, on a private subnet that
exists only inside these namespaces. Nothing can use 127.0.0.1 to reach another part, so a run
that finishes shows that no part binds to or assumes localhost. The file system is shared (as on
a cluster with a shared file system), the network is not.

`seaice-dask run --scheduler tcp://<scheduler address>` on the small simulated series (every
stage) must give outputs identical to the LocalCluster reference; so must the run over tls://,
which starts from the reference's work folder after ``features`` (train, predict, evaluate and
export: both workers still compute and fetch from each other, every message encrypted; the
tcp run already covers the other stages across hosts). Needs root and iproute2
(skipped with the reason otherwise); the namespaces are always removed.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.smallseries import SEAICE_DASK, assert_same_outputs, env, write_config

pytestmark = [pytest.mark.slow, pytest.mark.cluster]
DASK = str(Path(sys.executable).with_name("dask"))
ROLES = ("scheduler", "worker1", "worker2", "runner")
PORT = 8786

#: Run in the runner's namespace: wait for both workers, or report what each worker did.
_PROBE = """
import json, sys
from seaice_dask.cluster import open_client
from seaice_dask.config import load_config
cfg = load_config(sys.argv[1])
with open_client(cfg.cluster, address=sys.argv[2]) as client:
    if sys.argv[3] == "wait":
        client.wait_for_workers(2, timeout=120)
    else:
        print(json.dumps(client.run(lambda dask_worker: [dask_worker.state.executed_count,
                                                         dask_worker.state.transfer_incoming_count_total])))
"""


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


@dataclass(frozen=True)
class Network:
    namespaces: dict[str, str]  # role → namespace name
    addresses: dict[str, str]  # role → IPv4 address inside its namespace

    def exec(self, role: str) -> list[str]:
        return ["ip", "netns", "exec", self.namespaces[role]]


@pytest.fixture(scope="module")
def network():
    """Five namespaces (a bridge and four hosts) on a random private /24; removed afterwards."""
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    if shutil.which("ip") is None:
        pytest.skip("iproute2 (`ip`) is not installed")
    tag = secrets.token_hex(3)
    hub = f"sd{tag}-hub"
    names = {role: f"sd{tag}-{role}" for role in ROLES}
    subnet = f"10.{secrets.randbelow(200) + 20}.{secrets.randbelow(250)}"
    addresses = {role: f"{subnet}.{i}" for i, role in enumerate(ROLES, start=1)}
    created: list[str] = []
    try:
        for ns in (hub, *names.values()):
            _ip("netns", "add", ns)
            created.append(ns)
            _ip("-n", ns, "link", "set", "lo", "up")
        _ip("-n", hub, "link", "add", "br0", "type", "bridge")
        _ip("-n", hub, "link", "set", "br0", "up")
        for i, role in enumerate(ROLES):
            ns, port = names[role], f"sd{tag}p{i}"
            _ip("link", "add", "eth0", "netns", ns, "type", "veth", "peer", "name", port, "netns", hub)
            _ip("-n", ns, "addr", "add", f"{addresses[role]}/24", "dev", "eth0")
            _ip("-n", ns, "link", "set", "eth0", "up")
            _ip("-n", hub, "link", "set", port, "master", "br0")
            _ip("-n", hub, "link", "set", port, "up")
        # running a program inside (remounts /sys; some containers refuse that)
        subprocess.run(["ip", "netns", "exec", names["runner"], "true"], check=True, capture_output=True, text=True)
    except subprocess.CalledProcessError as exc:
        for ns in created:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        pytest.skip(f"cannot make network namespaces here: {' '.join(exc.cmd)}: {exc.stderr.strip()}")
    try:
        yield Network(names, addresses)
    finally:
        for ns in reversed(created):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def _stop(procs: list[subprocess.Popen]) -> None:
    for proc in reversed(procs):
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _tls_files(folder: Path) -> dict[str, Path]:
    """A self-signed key and certificate (the CA too) for every part: distributed's own recipe."""
    from distributed.security import Security

    sec = Security.temporary()
    folder.mkdir()
    files = {"ca_file": folder / "ca.pem", "cert": folder / "cert.pem", "key": folder / "key.pem"}
    files["ca_file"].write_text(sec.tls_ca_file)
    files["cert"].write_text(sec.tls_client_cert)
    files["key"].write_text(sec.tls_client_key)
    files["key"].chmod(0o600)
    return files


@pytest.mark.parametrize("protocol", ["tcp", "tls"])
def test_run_across_namespaces_equals_the_local_cluster_run(network, small_series, tmp_path, protocol):
    workdir = tmp_path / "shared"
    if protocol == "tcp":
        small_series.inputs(workdir)  # every stage across the namespaces
    else:
        small_series.copy("features", workdir)  # the tcp run covers the stages before
    tls_args: list[str] = []
    if protocol == "tls":
        tls = _tls_files(tmp_path / "tls")
        write_config(workdir, cluster={"tls": {k: str(v) for k, v in tls.items()}})
        tls_args = ["--tls-ca-file", str(tls["ca_file"]), "--tls-cert", str(tls["cert"]), "--tls-key", str(tls["key"])]
    config = workdir / "pipeline.yaml"
    address = f"{protocol}://{network.addresses['scheduler']}:{PORT}"
    procs = []
    try:
        procs.append(subprocess.Popen(
            [*network.exec("scheduler"), DASK, "scheduler", "--protocol", protocol,
             "--host", network.addresses["scheduler"], "--port", str(PORT), "--dashboard-address", ":0", *tls_args],
            env=env(), start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        ))
        for worker in ("worker1", "worker2"):
            procs.append(subprocess.Popen(
                [*network.exec(worker), DASK, "worker", address, "--name", worker, "--nthreads", "1",
                 "--memory-limit", "2GiB", "--local-directory", str(tmp_path / worker), "--no-dashboard", *tls_args],
                env=env(), start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            ))
        probe = [*network.exec("runner"), sys.executable, "-c", _PROBE, str(config), address]
        subprocess.run([*probe, "wait"], env=env(), check=True, timeout=180, capture_output=True)
        run = subprocess.run([*network.exec("runner"), SEAICE_DASK, "run", str(config), "--scheduler", address],
                             env=env(), capture_output=True, text=True, timeout=600)
        assert run.returncode == 0, run.stderr[-4000:]
        done = json.loads(subprocess.run([*probe, "stats"], env=env(), check=True, timeout=180,
                                         capture_output=True, text=True).stdout)
    finally:
        _stop(procs)
    # both workers, at their namespace addresses, computed and fetched data from each other
    hosts = {addr.split("://")[1].rsplit(":", 1)[0] for addr in done}
    assert hosts == {network.addresses["worker1"], network.addresses["worker2"]}
    assert all(addr.startswith(f"{protocol}://") for addr in done)
    assert all(executed > 0 for executed, _ in done.values()), done
    assert sum(fetched for _, fetched in done.values()) > 0, done
    assert_same_outputs(workdir, small_series.reference)
