"""Team mode: what basic auth costs per request and per run, qrecorder beside MLflow's own client.

    .venv/bin/python benchmarks/bench_team.py [--quick] [--workers 2]

Starts real ``qrec server`` processes (``qrecorder.server``, as ``qrec server`` does) on a fresh
PostgreSQL database at 127.0.0.1:5432 (dropped afterwards):

- ``no auth``
- ``auth`` -- ``--auth`` as qrecorder configures it (MLflow's credential cache on, 60 s)
- ``auth, cache off`` -- ``--auth`` with ``QRECORDER_AUTH_CACHE_SECONDS=0`` (MLflow's default)

and measures against each, one after the other, from this process:

- ``ms/request``: a plain ``GET /api/2.0/mlflow/experiments/search`` over one keep-alive
  ``requests`` session (the server's per-request cost, nothing else);
- ``MLflow client s/run``: ``MlflowClient`` create_run, log_param, 10 log_metric, set_terminated;
- ``qrecorder s/run``: ``with R.start(...)``: log_params, 10 log_metrics, end of run;
- requests per run (no-auth server, through a counting proxy): the same two runs, plus a
  qrecorder run that saves one object and loads it back twice.

Then the team-mode targets (``--targets-only`` runs just these), on a ``qrec server`` without
auth on PostgreSQL and on the database directly, each beside MLflow's own client, from a
folder that is not a git repository (in one, a qrecorder run also uploads its code_* texts):

- per-run overhead: start, 5 params, 5 metrics, end (target through the server <= 40 ms,
  direct ``postgresql://`` <= 20 ms); qrecorder ``with R.start``, MLflow ``create_run``,
  5 ``log_param``, 5 ``log_metric``, ``set_terminated``;
- 10,000 metric values: the logging loop, then the time until all are durable (target <= 1 s
  after the loop); MLflow with ``synchronous=False`` and waiting for every operation;
- 16 client processes x 100 runs (``--quick``: x 10) into one experiment at once: the wall
  time, then the rows counted in PostgreSQL (runs FINISHED, params, metrics: no loss);
- then the per-run overhead and 10,000 values through a plain ``mlflow server`` (no fast paths,
  MLflow's job runner and event loop): what qrec server itself contributes.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

ADMIN_PASSWORD = "bench-admin-password"
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


def _pg(sql: str) -> None:
    import psycopg2

    con = psycopg2.connect(PG_ADMIN)
    con.autocommit = True
    try:
        con.cursor().execute(sql)
    finally:
        con.close()


def per_request_ms(url: str, auth: tuple[str, str] | None, n: int) -> float:
    import requests

    session = requests.Session()
    path = url + "/api/2.0/mlflow/experiments/search?max_results=10"
    session.get(path, auth=auth, timeout=60).raise_for_status()  # connection and cache warm
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        session.get(path, auth=auth, timeout=60).raise_for_status()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000


def mlflow_client_run_s(url: str, runs: int) -> float:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=url)
    name = f"bench-mlflow-{uuid.uuid4().hex[:6]}"
    exp_id = client.create_experiment(name)
    times = []
    for i in range(runs):
        t0 = time.perf_counter()
        run = client.create_run(exp_id)
        client.log_param(run.info.run_id, "seed", i)
        for step in range(10):
            client.log_metric(run.info.run_id, "loss", 1.0 / (step + 1), step=step)
        client.set_terminated(run.info.run_id)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def qrecorder_run_s(url: str, runs: int) -> float:
    from qrecorder import R

    R.set_uri(url)
    name = f"bench-qrec-{uuid.uuid4().hex[:6]}"
    R.get_exp(experiment_name=name)
    times = []
    for i in range(runs):
        t0 = time.perf_counter()
        with R.start(experiment_name=name):
            R.log_params(seed=i)
            for step in range(10):
                R.log_metrics(step=step, loss=1.0 / (step + 1))
        times.append(time.perf_counter() - t0)
    R.set_uri(None)
    return statistics.median(times)


class CountingProxy:
    """A local HTTP proxy in front of ``target`` that counts requests by (method, path)."""

    def __init__(self, target: str) -> None:
        import collections
        import http.client
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        from urllib.parse import urlsplit

        self.counts: collections.Counter[str] = collections.Counter()
        parts = urlsplit(target)
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _forward(self) -> None:
                proxy.counts[f"{self.command} {self.path.split('?')[0]}"] += 1
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=120)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                conn.request(self.command, self.path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                self.send_response(resp.status)
                for key, value in resp.getheaders():
                    if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                conn.close()

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _forward  # noqa: N815

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def take(self) -> dict[str, int]:
        counts = dict(self.counts)
        self.counts.clear()
        return counts


def requests_per_run(url: str) -> dict[str, dict[str, int]]:
    """Requests of one run each way, counted by a proxy (the experiment exists already)."""
    from mlflow import MlflowClient

    from qrecorder import R

    proxy = CountingProxy(url)
    out = {}
    client = MlflowClient(tracking_uri=proxy.url)
    exp_id = client.create_experiment(f"count-mlflow-{uuid.uuid4().hex[:6]}")
    proxy.take()
    run = client.create_run(exp_id)
    client.log_param(run.info.run_id, "seed", 0)
    for step in range(10):
        client.log_metric(run.info.run_id, "loss", 1.0 / (step + 1), step=step)
    client.set_terminated(run.info.run_id)
    out["MLflow client run"] = proxy.take()

    R.set_uri(proxy.url)
    name = f"count-qrec-{uuid.uuid4().hex[:6]}"
    R.get_exp(experiment_name=name)
    proxy.take()
    with R.start(experiment_name=name):
        R.log_params(seed=0)
        for step in range(10):
            R.log_metrics(step=step, loss=1.0 / (step + 1))
    out["qrecorder run"] = proxy.take()
    with R.start(experiment_name=name):
        R.log_params(seed=1)
        R.save_objects(pred={"a": list(range(100))})
        rec = R.get_recorder()
    rec.load_object("pred")
    rec.load_object("pred")
    out["qrecorder run + save_objects + 2 load_object"] = proxy.take()
    R.set_uri(None)
    proxy.server.shutdown()
    return out


N_PARAMS = N_METRICS = 5


def qrec_run_ms(uri: str, runs: int) -> float:
    """Median ms of one qrecorder run: start, 5 params, 5 metrics, end (durable at the end)."""
    from qrecorder import R

    R.set_uri(uri)
    name = f"overhead-qrec-{uuid.uuid4().hex[:6]}"
    R.get_exp(experiment_name=name)
    times = []
    for i in range(runs + 1):
        t0 = time.perf_counter()
        with R.start(experiment_name=name):
            R.log_params(**{f"p{k}": i for k in range(N_PARAMS)})
            R.log_metrics(step=0, **{f"m{k}": k / 10 for k in range(N_METRICS)})
        times.append(time.perf_counter() - t0)
    R.set_uri(None)
    return statistics.median(times[1:]) * 1000  # the first run also opens the store


def mlflow_run_ms(uri: str, runs: int) -> float:
    """Median ms of the same run with MlflowClient (one call per value, as its docs show)."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp_id = client.create_experiment(f"overhead-mlflow-{uuid.uuid4().hex[:6]}")
    times = []
    for i in range(runs + 1):
        t0 = time.perf_counter()
        run_id = client.create_run(exp_id).info.run_id
        for k in range(N_PARAMS):
            client.log_param(run_id, f"p{k}", i)
        for k in range(N_METRICS):
            client.log_metric(run_id, f"m{k}", k / 10, step=0)
        client.set_terminated(run_id)
        times.append(time.perf_counter() - t0)
    return statistics.median(times[1:]) * 1000


def qrec_10k(uri: str, n: int = 10_000) -> tuple[float, float]:
    """(loop s, s until durable after the loop) for n metric values in one qrecorder run."""
    from qrecorder import R

    R.set_uri(uri)
    with R.start(experiment_name=f"values-qrec-{uuid.uuid4().hex[:6]}"):
        rec = R.get_recorder()
        t0 = time.perf_counter()
        for step in range(n):
            R.log_metrics(step=step, loss=1.0 / (step + 1))
        t1 = time.perf_counter()
        rec.flush()
        t2 = time.perf_counter()
    R.set_uri(None)
    return t1 - t0, t2 - t1


def mlflow_10k(uri: str, n: int = 10_000) -> tuple[float, float]:
    """The same with MlflowClient's asynchronous logging (synchronous=False), then every operation awaited."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp_id = client.create_experiment(f"values-mlflow-{uuid.uuid4().hex[:6]}")
    run_id = client.create_run(exp_id).info.run_id
    t0 = time.perf_counter()
    ops = [client.log_metric(run_id, "loss", 1.0 / (step + 1), step=step, synchronous=False) for step in range(n)]
    t1 = time.perf_counter()
    for op in ops:
        op.wait()
    t2 = time.perf_counter()
    client.set_terminated(run_id)
    return t1 - t0, t2 - t1


_CLIENT = r"""
import sys, time, os
os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
kind, uri, exp, runs = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
if kind == "qrecorder":
    from qrecorder import R
    R.set_uri(uri)
    for i in range(runs):
        with R.start(experiment_name=exp):
            R.log_params(**{f"p{k}": i for k in range(5)})
            R.log_metrics(step=0, **{f"m{k}": k / 10 for k in range(5)})
else:
    from mlflow import MlflowClient
    client = MlflowClient(tracking_uri=uri)
    exp_id = client.get_experiment_by_name(exp).experiment_id
    for i in range(runs):
        run_id = client.create_run(exp_id).info.run_id
        for k in range(5):
            client.log_param(run_id, f"p{k}", i)
        for k in range(5):
            client.log_metric(run_id, f"m{k}", k / 10, step=0)
        client.set_terminated(run_id)
"""


_COLD_QREC = r"""
import time; t0 = time.perf_counter()
import sys
from qrecorder import R
R.set_uri(sys.argv[1])
with R.start(experiment_name=sys.argv[2]):
    R.log_params(seed=1)
    R.log_metrics(step=0, loss=1.0)
print(time.perf_counter() - t0, "mlflow" in sys.modules)
"""
_COLD_MLFLOW = r"""
import time; t0 = time.perf_counter()
import sys
from mlflow import MlflowClient
client = MlflowClient(tracking_uri=sys.argv[1])
found = client.get_experiment_by_name(sys.argv[2])
exp_id = found.experiment_id if found else client.create_experiment(sys.argv[2])
run_id = client.create_run(exp_id).info.run_id
client.log_param(run_id, "seed", 1)
client.log_metric(run_id, "loss", 1.0)
client.set_terminated(run_id)
print(time.perf_counter() - t0, True)
"""


def cold_first_run(kind: str, uri: str, cwd: Path, repeat: int = 3) -> tuple[float, bool]:
    """Median s of a fresh interpreter's first run (imports included, the interpreter's own
    start excluded), the experiment existing; and whether it imported MLflow."""
    import subprocess

    code = _COLD_QREC if kind == "qrecorder" else _COLD_MLFLOW
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
           "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true"}
    exp = f"cold-{kind}"
    times, imported = [], False
    for i in range(repeat + 1):  # the first creates the experiment: not counted
        done = subprocess.run([sys.executable, "-c", code, uri, exp], cwd=cwd, env=env, capture_output=True,
                              text=True, timeout=600)
        if done.returncode != 0:
            raise RuntimeError(f"cold {kind} run failed: {done.stderr[-800:]}")
        seconds, mlflow_loaded = done.stdout.split()[-2:]
        if i:
            times.append(float(seconds))
            imported = imported or mlflow_loaded == "True"
    return statistics.median(times), imported


def _cold_row(label: str, uri: str, cwd: Path) -> tuple[str, str, str, str]:
    q, q_mlflow = cold_first_run("qrecorder", uri, cwd)
    m, _ = cold_first_run("mlflow", uri, cwd)
    print(json.dumps({"cold_first_run": label, "qrecorder_s": q, "qrecorder_imported_mlflow": q_mlflow,
                      "mlflow_s": m}), flush=True)
    return (f"fresh process: first run, {label} (s)", f"{q:.2f}", f"{m:.2f}",
            "median of 3, imports included" + ("" if q_mlflow else "; qrecorder without MLflow"))


def many_clients(kind: str, url: str, db_uri: str, procs: int, runs: int, cwd: Path) -> dict[str, object]:
    """``procs`` processes x ``runs`` runs into one new experiment at once; wall time and rows counted after."""
    import subprocess

    import psycopg2

    exp = f"many-{kind}-{uuid.uuid4().hex[:6]}"
    if kind == "mlflow":
        from mlflow import MlflowClient

        MlflowClient(tracking_uri=url).create_experiment(exp)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    t0 = time.perf_counter()
    children = [subprocess.Popen([sys.executable, "-c", _CLIENT, kind, url, exp, str(runs)], cwd=cwd, env=env,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for _ in range(procs)]
    failures = 0
    for child in children:
        _, err = child.communicate(timeout=3600)
        if child.returncode != 0:
            failures += 1
            print(f"  {kind} client failed: {err.decode(errors='replace')[-800:]}", file=sys.stderr)
    wall = time.perf_counter() - t0
    con = psycopg2.connect(db_uri)
    try:
        cur = con.cursor()
        cur.execute("SELECT experiment_id FROM experiments WHERE name = %s", (exp,))
        (exp_id,) = cur.fetchone()
        cur.execute("SELECT count(*) FROM runs WHERE experiment_id = %s AND status = 'FINISHED'", (exp_id,))
        finished = cur.fetchone()[0]
        counts = {}
        for table in ("params", "metrics"):
            cur.execute(f"SELECT count(*) FROM {table} t JOIN runs r ON t.run_uuid = r.run_uuid "  # noqa: S608
                        "WHERE r.experiment_id = %s AND t.key ~ '^[pm][0-9]$'", (exp_id,))
            counts[table] = cur.fetchone()[0]
    finally:
        con.close()
    expected = procs * runs
    return {"client": kind, "wall_s": wall, "runs_finished": finished, "params": counts["params"],
            "metrics": counts["metrics"], "expected_runs": expected, "failed_processes": failures,
            "lossless": failures == 0 and finished == expected and counts["params"] == expected * N_PARAMS
            and counts["metrics"] == expected * N_METRICS}


def targets(db: str, tmp: Path, workers: int, quick: bool) -> None:
    """The team-mode targets on one server without auth and on the database directly."""
    from qrecorder.server import ServerConfig, ServerProcess, free_port

    db_uri = f"postgresql://postgres@127.0.0.1:5432/{db}"
    runs = 10 if quick else 30
    work = tmp / "cwd"  # not a git repository: no code_* texts uploaded at each start
    work.mkdir(exist_ok=True)
    old_cwd = os.getcwd()
    os.chdir(work)
    cfg = ServerConfig(backend_store_uri=db_uri, artifacts_destination=str(tmp / "artifacts-targets"),
                       port=free_port(), workers=workers)
    srv = ServerProcess(cfg, log_path=tmp / "server-targets.log").start()
    rows: list[tuple[str, str, str, str]] = []
    try:
        for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
            os.environ.pop(name, None)
        q_srv, m_srv = qrec_run_ms(srv.url, runs), mlflow_run_ms(srv.url, runs)
        rows.append(("per-run overhead, qrec server (ms; target <= 40)", f"{q_srv:.1f}", f"{m_srv:.1f}",
                     f"{runs} runs, median"))
        q_db, m_db = qrec_run_ms(db_uri, runs), mlflow_run_ms(db_uri, runs)
        rows.append(("per-run overhead, postgresql:// (ms; target <= 20)", f"{q_db:.1f}", f"{m_db:.1f}",
                     f"{runs} runs, median"))
        rows.append(_cold_row("qrec server", srv.url, work))
        rows.append(_cold_row("postgresql://", db_uri, work))
        cells = []
        for label, fn in (("qrecorder", qrec_10k), ("mlflow", mlflow_10k)):
            loop, after = fn(srv.url)
            print(json.dumps({"10k_values": label, "loop_s": loop, "durable_after_loop_s": after}), flush=True)
            cells.append(f"{loop:.2f} / {after:.2f}")
        rows.append(("10,000 values via server: loop / durable after the loop (s; target <= 1 after)", *cells,
                     "MLflow: synchronous=False"))
        procs, per = 16, (10 if quick else 100)
        cells = []
        for kind in ("qrecorder", "mlflow"):
            result = many_clients(kind, srv.url, db_uri, procs, per, work)
            print(json.dumps(result), flush=True)
            cells.append(f"{result['wall_s']:.1f} s, {'no loss' if result['lossless'] else 'LOSS'}: "
                         f"{result['runs_finished']}/{result['expected_runs']} FINISHED, {result['params']} params, "
                         f"{result['metrics']} metrics, {result['failed_processes']} failed processes")
        rows.append((f"{procs} processes x {per} runs via server: wall time, rows counted", *cells, ""))
    finally:
        srv.stop()
    # The same through a plain `mlflow server` (MLflow's handlers, job runner and event loop):
    # what qrec server's fast paths and settings contribute, apart from the client.
    plain = ServerConfig(backend_store_uri=db_uri, artifacts_destination=str(tmp / "artifacts-targets"),
                         port=free_port(), workers=workers, fast_paths=False, jobs=True,
                         extra_args=["--uvicorn-opts", ""])
    srv = ServerProcess(plain, log_path=tmp / "server-plain.log").start()
    try:
        time.sleep(5)  # let the job runner's start settle
        q_plain, m_plain = qrec_run_ms(srv.url, runs), mlflow_run_ms(srv.url, runs)
        rows.append(("per-run overhead, plain mlflow server (ms)", f"{q_plain:.1f}", f"{m_plain:.1f}",
                     f"{runs} runs, median; no fast paths"))
        rows.append(_cold_row("plain mlflow server", srv.url, work))
        loop, after = qrec_10k(srv.url)
        print(json.dumps({"10k_values_plain_server": "qrecorder", "loop_s": loop, "durable_after_loop_s": after}), flush=True)
        rows.append(("10,000 values via plain mlflow server: loop / durable after (s)", f"{loop:.2f} / {after:.2f}",
                     "", "no fast paths"))
    finally:
        srv.stop()
        os.chdir(old_cwd)
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"\nteam-mode targets (server workers: {workers}; load average at the end: {load})\n")
    print("| measure | qrecorder | MLflow client | note |")
    print("| --- | ---: | ---: | --- |")
    for row in rows:
        print("| " + " | ".join(row) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer requests and runs")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--targets-only", action="store_true", help="only the team-mode targets (no auth servers)")
    args = parser.parse_args()
    n_req, n_runs = (10, 3) if args.quick else (40, 8)

    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    from qrecorder.server import ServerConfig, ServerProcess, free_port

    db = f"qrec_bench_team_{uuid.uuid4().hex[:8]}"
    _pg(f"CREATE DATABASE {db}")
    tmp = Path(tempfile.mkdtemp(prefix="bench-team-"))
    os.environ["QRECORDER_ADMIN_PASSWORD"] = ADMIN_PASSWORD
    results = []
    cold_auth: tuple[str, ...] = ()
    if args.targets_only:
        try:
            targets(db, tmp, args.workers, args.quick)
        finally:
            _pg(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
        return
    try:
        for label, auth, cache in (("no auth", False, None), ("auth (cache 60 s)", True, 60),
                                   ("auth, cache off", True, 0)):
            cfg = ServerConfig(backend_store_uri=f"postgresql://postgres@127.0.0.1:5432/{db}",
                               artifacts_destination=str(tmp / "artifacts"), port=free_port(), workers=args.workers,
                               auth=auth, auth_dir=tmp / f"auth{cache}", auth_cache_seconds=cache)
            srv = ServerProcess(cfg, log_path=tmp / f"server-{len(results)}.log").start()
            try:
                creds = ("admin", ADMIN_PASSWORD) if auth else None
                for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
                    os.environ.pop(name, None)
                if creds:
                    os.environ["MLFLOW_TRACKING_USERNAME"], os.environ["MLFLOW_TRACKING_PASSWORD"] = creds
                slow = auth and cache == 0
                row = {
                    "server": label,
                    "ms_per_request": per_request_ms(srv.url, creds, max(3, n_req // 4) if slow else n_req),
                    "mlflow_client_s_per_run": mlflow_client_run_s(srv.url, max(1, n_runs // 4) if slow else n_runs),
                    "qrecorder_s_per_run": qrecorder_run_s(srv.url, max(1, n_runs // 4) if slow else n_runs),
                }
                results.append(row)
                print(json.dumps(row), flush=True)
                if not auth:
                    counted = requests_per_run(srv.url)
                elif not slow:
                    cwd = tmp / "cwd"  # not a git repository
                    cwd.mkdir(exist_ok=True)
                    cold_auth = _cold_row("qrec server --auth", srv.url, cwd)
            finally:
                srv.stop()
        targets(db, tmp, args.workers, args.quick)
    finally:
        _pg(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")

    print("\nfresh process, first run through qrec server --auth (s): | " + " | ".join(cold_auth) + " |")
    print("\nrequests per run (no auth):")
    for label, counts in counted.items():
        print(f"  {label}: {sum(counts.values())}  " + ", ".join(f"{k} x{v}" for k, v in sorted(counts.items())))
    base = results[0]
    print(f"\nserver workers: {args.workers}; {n_req} requests, {n_runs} runs per server (median)\n")
    print("| server | ms/request | × no auth | MLflow client s/run | × no auth | qrecorder s/run | × no auth |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for row in results:
        cells = [row["server"]]
        for key in ("ms_per_request", "mlflow_client_s_per_run", "qrecorder_s_per_run"):
            fmt = "{:.1f}" if key == "ms_per_request" else "{:.3f}"
            cells += [fmt.format(row[key]), f"{row[key] / base[key]:.2f}"]
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
