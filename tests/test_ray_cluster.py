"""A real two-node Ray cluster on this machine runs ``qrec run-all --executor ray`` into one ``qrec server``.

Two ``ray start --block`` processes (a head with resource ``node_a``, a second node with
``node_b``, one CPU each), each with its own ``--temp-dir``, its own ports and its own session
(process group), so only this cluster is stopped afterwards: the process groups we started are
signalled, never ``ray stop`` (which stops every Ray on the machine). A private token
(``RAY_AUTH_TOKEN``) keeps other Ray clusters of this user out of it.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from _runner_helpers import LINEAR, write_bench
from conftest import REPO

from qrecorder.server import ServerConfig, ServerProcess, free_port

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
QREC, RAY = str(BIN / "qrec"), str(BIN / "ray")
START_TIMEOUT_S = 120.0
START_ATTEMPTS = 3  # Ray 2.60's raylet gives its dashboard agent a fixed 15 s; under load that can be short


class RayNode:
    """One ``ray start --block`` in its own session: stopping it stops exactly its processes."""

    def __init__(self, folder: Path, env: dict[str, str], args: list[str]) -> None:
        self.folder, self.env, self.args = folder, env, args
        self.proc: subprocess.Popen[bytes] | None = None
        self.seconds = 0.0

    def start(self) -> RayNode:
        errors = []
        for attempt in range(START_ATTEMPTS):
            temp = self.folder / f"t{attempt}"  # Ray's own files (sockets, logs, port files) of this node
            temp.mkdir(parents=True)
            log = self.folder / f"start{attempt}.log"
            ports = ["--dashboard-agent-listen-port", "--dashboard-agent-grpc-port", "--runtime-env-agent-port",
                     "--metrics-export-port", "--node-manager-port", "--object-manager-port"]
            cmd = [RAY, "start", "--block", "--num-cpus", "1", "--temp-dir", str(temp), "--disable-usage-stats",
                   "--node-ip-address", "127.0.0.1", *self.args]
            for flag in ports:
                cmd += [flag, str(free_port())]
            t0 = time.monotonic()
            with open(log, "wb") as out:
                self.proc = subprocess.Popen(cmd, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                                             start_new_session=True)
            while time.monotonic() - t0 < START_TIMEOUT_S:
                text = log.read_text(errors="replace")
                if "Ray runtime started" in text:
                    self.seconds = time.monotonic() - t0
                    self.temp = temp
                    return self
                if self.proc.poll() is not None:
                    break
                time.sleep(0.5)
            errors.append(log.read_text(errors="replace")[-1500:])
            self.stop()
        raise AssertionError(f"ray start failed {START_ATTEMPTS} times: {' '.join(self.args)}\n" + "\n---\n".join(errors))

    def node_id(self) -> str:
        """The node's id, from the port files its raylet writes in its session folder."""
        found = {p.name.rsplit("_", 1)[1] for p in self.temp.glob("session_*/gcs_server_port_*")}
        found |= {p.name.rsplit("_", 1)[1] for p in self.temp.glob("session_*/runtime_env_agent_port_*")}
        assert len(found) == 1, found
        return found.pop()

    def stop(self) -> None:
        """SIGTERM to the node's process group (Ray drains), SIGKILL to what is left of it after 15 s."""
        if self.proc is None:
            return
        pgid = self.proc.pid  # start_new_session: the group of `ray start` and everything it started
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=15)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)  # workers, agents: nothing of this node outlives the test
        self.proc.wait(timeout=10)
        self.proc = None


@pytest.fixture
def cluster() -> Iterator[tuple[str, dict[str, str], RayNode, RayNode]]:
    pytest.importorskip("ray")
    short = Path(tempfile.mkdtemp(prefix="qrray", dir="/tmp"))  # Ray's socket paths must stay under 108 bytes
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "token",
           "RAY_AUTH_TOKEN": secrets.token_hex(32),
           "PYTHONPATH": os.pathsep.join([str(REPO / "src"), *filter(None, [os.environ.get("PYTHONPATH")])])}
    for name in ("RAY_ADDRESS", "QRECORDER_URI", "MLFLOW_TRACKING_URI"):
        env.pop(name, None)
    port = free_port()
    head = RayNode(short / "a", env, ["--head", "--port", str(port), "--resources", '{"node_a": 1}',
                                              "--include-dashboard", "false", "--dashboard-port", str(free_port())])
    second = RayNode(short / "b", env, ["--address", f"127.0.0.1:{port}", "--resources", '{"node_b": 1}'])
    try:
        head.start()
        second.start()
        print(f"ray start: head {head.seconds:.1f} s, second node {second.seconds:.1f} s")
        yield f"127.0.0.1:{port}", env, head, second
    finally:
        second.stop()
        head.stop()
        shutil.rmtree(short, ignore_errors=True)


def test_run_all_on_a_two_node_ray_cluster(cluster, tmp_path: Path) -> None:
    address, env, head, second = cluster
    cfg = ServerConfig(backend_store_uri=f"sqlite:///{tmp_path / 'server.db'}",
                       artifacts_destination=str(tmp_path / "artifacts"), port=free_port(), workers=1)
    srv = ServerProcess(cfg, log_path=tmp_path / "server.log").start()
    try:
        bench = write_bench(tmp_path / "bench", {"Linear": LINEAR})
        t0 = time.monotonic()
        res = subprocess.run([QREC, "run-all", str(bench), "--executor", "ray", "--ray-address", address,
                              "--workers", "2", "--times", "4", "--uri", srv.url, "--out", str(tmp_path / "out"),
                              "--no-progress", "--json"],
                             cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
        print(f"qrec run-all on the cluster: {time.monotonic() - t0:.1f} s")
        assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
        batch = json.loads(res.stdout)

        from qrecorder import R

        with R.uri_context(srv.url):
            exp = R.get_exp(experiment_name="run_all_model", create=False)
            recorders = exp.list_recorders()
            runs = {rid: rec.list_tags() for rid, rec in recorders.items()
                    if rec.list_tags().get("qrecorder.kind") == "run"}
            statuses = {rid: rec.status for rid, rec in recorders.items() if rid in runs}
        # every cell landed in the one server, finished
        assert len(runs) == 4, runs
        assert set(statuses.values()) == {"FINISHED"}, statuses
        assert sorted(runs) == sorted(batch["run_ids"]), batch["run_ids"]
        # both nodes ran cells: each run carries the Ray node it ran on
        nodes = {tags["qrecorder.ray_node"] for tags in runs.values()}
        assert nodes == {head.node_id(), second.node_id()}, (nodes, head.node_id(), second.node_id())
        pids = {tags["qrecorder.pid"] for tags in runs.values()}
        assert len(pids) >= 2, pids  # separate worker processes, one per node at least
    finally:
        srv.stop()
