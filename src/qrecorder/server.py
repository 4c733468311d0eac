"""Start and stop an MLflow tracking server for a team (``qrec server``).

qrecorder does not invent a server: this module builds the ``mlflow server`` command line
(PostgreSQL backend, proxied artifact store, host/port/workers, optional basic auth) and
runs it as a child process group, so tests and ``qrec server`` can start, kill and restart it.

Secrets never go on a command line (``/proc/PID/cmdline`` is readable by every user of the
machine): the backend store URI, which may hold the database password, is handed to MLflow
through the environment (``MLFLOW_BACKEND_STORE_URI``, which ``mlflow server`` reads and passes
on to its workers the same way); ``/proc/PID/environ`` is readable by the owner only.

The server runs qrecorder's MLflow app (``--app-name qrecorder``, :mod:`qrecorder.server_app`):
MLflow's own app plus direct-SQL fast paths for the requests every run sends. Basic auth
(``auth=True``) is MLflow's own ``basic-auth`` app inside it. Its configuration (an
``basic_auth.ini`` plus the users database) is written into ``auth_dir`` (made mode 0700);
the ini, the users database (SQLite) and the secret key are files of mode 0600. The admin
password comes from the environment variable ``QRECORDER_ADMIN_PASSWORD`` and is handed to
MLflow through ``MLFLOW_AUTH_ADMIN_PASSWORD`` (never written to disk). The Flask secret key
that MLflow requires for CSRF protection is taken from ``QRECORDER_SERVER_SECRET_KEY`` or made
once and kept in ``auth_dir/secret_key`` so that all workers and restarts agree.

No MLflow import here: building the command must stay cheap.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from .errors import ConfigurationError, StoreUnavailableError

ENV_ADMIN_PASSWORD = "QRECORDER_ADMIN_PASSWORD"
ENV_ADMIN_USERNAME = "QRECORDER_ADMIN_USERNAME"
ENV_SECRET_KEY = "QRECORDER_SERVER_SECRET_KEY"
AUTH_INI = "basic_auth.ini"
AUTH_DB = "basic_auth.db"
ENV_AUTH_CACHE_SECONDS = "QRECORDER_AUTH_CACHE_SECONDS"
DEFAULT_AUTH_CACHE_SECONDS = 60
ENV_BACKEND_URI = "MLFLOW_BACKEND_STORE_URI"  # read by `mlflow server`/`mlflow ui` (click envvar)
PERMISSIONS = ("READ", "EDIT", "MANAGE", "NO_PERMISSIONS")
ENV_SERVER_AUTH = "QRECORDER_SERVER_AUTH"  # server_app.ENV_AUTH (not imported: it imports MLflow)
ENV_SERVER_FAST_PATHS = "QRECORDER_SERVER_FAST_PATHS"


def normalize_backend_uri(uri: str) -> str:
    """Make a PostgreSQL URI use a driver that is installed.

    SQLAlchemy 2.1 maps a bare ``postgresql://`` to psycopg 3; qrecorder depends on
    psycopg2, so the bare form becomes ``postgresql+psycopg2://`` unless psycopg 3 exists.
    """
    text = uri.strip()
    for bare in ("postgresql://", "postgres://"):
        if text.startswith(bare):
            rest = text[len(bare) :]
            if importlib.util.find_spec("psycopg") is not None:
                return "postgresql://" + rest
            return "postgresql+psycopg2://" + rest
    return text


def redact(uri: str) -> str:
    """``scheme://user:***@host/db`` for logs and messages."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(uri)
    if parts.password:
        return urlunsplit(parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@")))
    return uri


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free right now on ``host``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@dataclass
class ServerConfig:
    """What ``mlflow server`` is started with. See docs/team.md for a production layout."""

    backend_store_uri: str
    artifacts_destination: str = "./mlartifacts"
    host: str = "127.0.0.1"
    port: int = 5000
    workers: int = 4
    auth: bool = False
    auth_dir: Path | None = None  # basic_auth.ini, secret key, users db (default: ./qrec-auth)
    auth_db_uri: str | None = None  # users database (default: sqlite in auth_dir)
    default_permission: str = "READ"  # what a logged-in user may do on others' experiments
    # How long each worker remembers a verified (user, password): None = QRECORDER_AUTH_CACHE_SECONDS
    # or 60; 0 turns MLflow's credential cache off (every request then pays the password hash).
    auth_cache_seconds: int | None = None
    allowed_hosts: str | None = None  # MLflow's --allowed-hosts (needed beyond localhost)
    cors_allowed_origins: str | None = None
    extra_args: list[str] = field(default_factory=list)
    # qrecorder's direct-SQL answers to plain log-batch/update-run requests (qrecorder.server_app)
    fast_paths: bool = True
    # MLflow's job runner (GenAI evaluation jobs, trace rollups: 8 extra processes):
    # off unless asked for, or MLFLOW_SERVER_ENABLE_JOB_EXECUTION is set.
    jobs: bool = False

    @property
    def url(self) -> str:
        host = self.host
        if host in ("0.0.0.0", "::", ""):
            host = "127.0.0.1"
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    def resolved_auth_dir(self) -> Path:
        return Path(self.auth_dir or "qrec-auth").expanduser().resolve()


def _artifacts_destination(dest: str) -> str:
    if "://" in dest:
        return dest.rstrip("/")
    return str(Path(dest).expanduser().resolve())


def has_password(uri: str) -> bool:
    """True when ``uri`` carries a password in its authority (``scheme://user:pw@host``)."""
    from urllib.parse import urlsplit

    try:
        return bool(urlsplit(uri).password)
    except ValueError:
        return True  # unparsable: assume the worst


def build_command(cfg: ServerConfig) -> list[str]:
    """The ``mlflow server`` command line for ``cfg`` (run with this interpreter).

    The backend store URI is not in it: :func:`build_env` puts it in the environment."""
    if cfg.workers < 1:
        raise ConfigurationError(f"--workers must be at least 1, got {cfg.workers}.")
    if not (0 < cfg.port < 65536):
        raise ConfigurationError(f"--port must be within 1..65535, got {cfg.port}.")
    cmd = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--serve-artifacts",
        "--artifacts-destination",
        _artifacts_destination(cfg.artifacts_destination),
        "--host",
        cfg.host,
        "--port",
        str(cfg.port),
        "--workers",
        str(cfg.workers),
    ]
    if cfg.allowed_hosts:
        cmd += ["--allowed-hosts", cfg.allowed_hosts]
    if cfg.cors_allowed_origins:
        cmd += ["--cors-allowed-origins", cfg.cors_allowed_origins]
    if cfg.fast_paths or cfg.auth:
        # qrecorder's app: MLflow's own (with its basic auth when ENV_AUTH says so) plus the
        # direct-SQL fast paths for log-batch and update-run (qrecorder.server_app).
        cmd += ["--app-name", "qrecorder"]
    if not any(a == "--uvicorn-opts" or a.startswith("--uvicorn-opts=") for a in cfg.extra_args) and _fast_event_loop():
        cmd += ["--uvicorn-opts", "--loop uvloop --http httptools"]
    cmd += list(cfg.extra_args)
    return cmd


def _fast_event_loop() -> bool:
    """uvloop and httptools are installed (they halve uvicorn's own cost per request)."""
    return all(importlib.util.find_spec(name) is not None for name in ("uvloop", "httptools"))


def write_auth_config(cfg: ServerConfig) -> Path:
    """Write ``basic_auth.ini`` into the auth folder and return its path (no password in it)."""
    if cfg.default_permission not in PERMISSIONS:
        raise ConfigurationError(
            f"default_permission must be one of {', '.join(PERMISSIONS)}, got {cfg.default_permission!r}."
        )
    folder = cfg.resolved_auth_dir()
    if not folder.exists():
        folder.mkdir(parents=True, mode=0o700)
        os.chmod(folder, 0o700)  # mkdir's mode is masked by the umask
    db_uri = cfg.auth_db_uri or "sqlite:///" + str(folder / AUTH_DB)
    if cfg.auth_db_uri is None:
        # Created here, empty, mode 0600, before MLflow opens it: SQLite keeps an existing
        # file's mode and gives its -wal/-journal files the same one.
        _private_file(folder / AUTH_DB, None)
    admin = admin_username()
    cache_seconds = auth_cache_seconds(cfg)
    ini = folder / AUTH_INI
    _private_file(
        ini,
        "[mlflow]\n"
        f"default_permission = {cfg.default_permission}\n"
        f"database_uri = {normalize_backend_uri(db_uri)}\n"
        f"admin_username = {admin}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
        "# Verified credentials are kept per worker for this long (a wrong password is never\n"
        "# cached). Deleting a user or changing a password takes effect at once on the worker\n"
        "# that handled it, on the other workers within this many seconds.\n"
        f"auth_cache_ttl_seconds = {cache_seconds}\n"
        "auth_cache_max_size = 10000\n",
    )
    return ini


def admin_username() -> str:
    """The admin user's name: ``QRECORDER_ADMIN_USERNAME``, else ``admin``."""
    return os.environ.get(ENV_ADMIN_USERNAME, "").strip() or "admin"


def auth_cache_seconds(cfg: ServerConfig) -> int:
    """Lifetime of MLflow's per-worker credential cache for ``cfg`` (0: off)."""
    value: object = cfg.auth_cache_seconds
    if value is None:
        value = os.environ.get(ENV_AUTH_CACHE_SECONDS, "").strip() or DEFAULT_AUTH_CACHE_SECONDS
    try:
        seconds = int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        raise ConfigurationError(f"{ENV_AUTH_CACHE_SECONDS} must be a whole number of seconds, got {value!r}.") from None
    if seconds < 0:
        raise ConfigurationError(f"The credential cache lifetime must be 0 (off) or more seconds, got {seconds}.")
    return seconds


def _private_file(path: Path, text: str | None) -> None:
    """Make ``path`` a file of mode 0600 (whatever it was); write ``text`` when given."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if text is not None else 0)
    fd = os.open(str(path), flags, 0o600)
    try:
        os.fchmod(fd, 0o600)
        if text is not None:
            os.write(fd, text.encode("utf-8"))
    finally:
        os.close(fd)


def _secret_key(folder: Path) -> str:
    key = os.environ.get(ENV_SECRET_KEY, "").strip()
    if key:
        return key
    path = folder / "secret_key"
    if path.exists():
        os.chmod(path, 0o600)
        return path.read_text(encoding="utf-8").strip()
    key = secrets.token_hex(32)
    _private_file(path, key)
    return key


AUTH_MIN_MLFLOW = (3, 17)


def require_auth_capable_mlflow(version: str | None = None) -> None:
    """``--auth`` needs MLflow 3.17+: older basic-auth apps read the admin password from
    ``basic_auth.ini`` only (their workers fail at import without it) and lack the
    ``/api/3.0`` permission routes ``qrec users`` calls."""
    import importlib.metadata

    text = version or importlib.metadata.version("mlflow")
    try:
        found = tuple(int(part) for part in text.split(".")[:2])
    except ValueError:
        return  # a development build: let MLflow decide
    if found < AUTH_MIN_MLFLOW:
        need = ".".join(map(str, AUTH_MIN_MLFLOW))
        raise ConfigurationError(
            f"qrec server --auth needs MLflow {need} or newer; MLflow {text} is installed (its basic-auth app "
            "wants the admin password written in basic_auth.ini and has no /api/3.0 permission routes for "
            f"qrec users). Upgrade it: pip install -U 'mlflow>={need}'. Without --auth the server works on "
            "every supported MLflow."
        )


def build_env(cfg: ServerConfig, base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of the server process; with auth, the auth config is written here."""
    env = dict(os.environ if base is None else base)
    # A client-side tracking URI in the environment must not leak into the server.
    env.pop("MLFLOW_TRACKING_URI", None)
    env.setdefault("PYTHONUNBUFFERED", "1")
    # MLflow 3.17 imports starlette.middleware.wsgi, which warns at every worker start; it is
    # MLflow's to fix, not the operator's: keep it out of the server log.
    quiet = "ignore:starlette.middleware.wsgi is deprecated:UserWarning"
    env["PYTHONWARNINGS"] = ",".join(filter(None, (env.get("PYTHONWARNINGS", ""), quiet)))
    env[ENV_BACKEND_URI] = normalize_backend_uri(cfg.backend_store_uri)  # not on the command line
    env[ENV_SERVER_AUTH] = "1" if cfg.auth else "0"  # read by qrecorder.server_app
    env[ENV_SERVER_FAST_PATHS] = "1" if cfg.fast_paths else "0"
    if cfg.jobs:
        env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "true"
    else:
        env.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    if cfg.auth:
        require_auth_capable_mlflow()
        password = env.get(ENV_ADMIN_PASSWORD, "")
        if not password:
            raise ConfigurationError(
                f"Basic auth needs the admin password in the environment variable {ENV_ADMIN_PASSWORD} "
                "(the admin user is created with it on first start)."
            )
        if len(password) < 12:
            raise ConfigurationError(f"{ENV_ADMIN_PASSWORD} must be at least 12 characters long (MLflow's rule).")
        ini = write_auth_config(cfg)
        env["MLFLOW_AUTH_CONFIG_PATH"] = str(ini)
        env["MLFLOW_AUTH_ADMIN_PASSWORD"] = password
        env["MLFLOW_FLASK_SERVER_SECRET_KEY"] = _secret_key(ini.parent)
    return env


class ServerProcess:
    """An ``mlflow server`` child process group: start, wait until healthy, stop or kill."""

    def __init__(self, cfg: ServerConfig, log_path: str | os.PathLike[str] | None = None) -> None:
        self.cfg = cfg
        self.log_path = Path(log_path) if log_path is not None else None
        self.proc: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None

    @property
    def url(self) -> str:
        return self.cfg.url

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def start(self, wait: bool = True, timeout: float = 180.0) -> ServerProcess:
        if self.proc is not None and self.proc.poll() is None:
            return self
        cmd = build_command(self.cfg)
        env = build_env(self.cfg)
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log_file = open(self.log_path, "ab")  # noqa: SIM115 - kept open while the server runs
            out = self._log_file
        else:
            out = None
        # A new session: the server, uvicorn and its workers share one process group that
        # stop()/kill() signal as a whole.
        self.proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        if wait:
            try:
                self.wait_ready(timeout)
            except BaseException:
                self.stop()  # a server that never became ready (or a Ctrl-C meanwhile) leaves no process behind
                raise
        return self

    def wait_ready(self, timeout: float = 180.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise StoreUnavailableError(
                    f"mlflow server exited with code {self.proc.returncode} before it was ready"
                    + (f"; see {self.log_path}" if self.log_path else "")
                    + f": {self.tail_log()}"
                )
            if is_healthy(self.url + static_prefix(self.cfg.extra_args)):
                return
            time.sleep(0.3)
        raise StoreUnavailableError(f"mlflow server at {self.url} was not healthy within {timeout:.0f}s: {self.tail_log()}")

    def tail_log(self, chars: int = 2000) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")[-chars:]

    def _signal_group(self, sig: int) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, sig)

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM the group, then SIGKILL what is left after ``timeout``."""
        if self.proc is None:
            return
        self._signal_group(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self._signal_group(signal.SIGKILL)
            self.proc.wait(10)
        self._signal_group(signal.SIGKILL)  # workers that outlived their parent
        self._close_log()

    def kill(self) -> None:
        """SIGKILL the server's whole process group at once (no graceful shutdown; like Popen.kill)."""
        if self.proc is None:
            return
        self._signal_group(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)
        self._close_log()

    def _close_log(self) -> None:
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def static_prefix(args: list[str]) -> str:
    """MLflow's ``--static-prefix`` among extra arguments ('' without one): its routes,
    ``/health`` included, live below it."""
    for i, arg in enumerate(args):
        if arg == "--static-prefix" and i + 1 < len(args):
            return "/" + args[i + 1].strip("/")
        if arg.startswith("--static-prefix="):
            return "/" + arg.split("=", 1)[1].strip("/")
    return ""


def is_healthy(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url.rstrip("/") + "/health", timeout=timeout) as resp:  # noqa: S310 - our URL
            return resp.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


# ------------------------------------------------------------------------------ users and permissions
# MLflow 3.17 moved per-experiment permissions from /api/2.0/mlflow/experiments/permissions/*
# (now HTTP 404) to one per-user grant API: /api/3.0/mlflow/users/permissions/{grant,revoke,get}
# with (resource_type, resource_id) -- what mlflow.server.auth.client.AuthServiceClient calls.
# These helpers call the same routes with urllib and explicit credentials (no MLflow import).
USERS_CREATE = "/api/2.0/mlflow/users/create"
USERS_GET = "/api/2.0/mlflow/users/get"
USERS_LIST = "/api/2.0/mlflow/users/list"
USERS_DELETE = "/api/2.0/mlflow/users/delete"
PERMISSION_GRANT = "/api/3.0/mlflow/users/permissions/grant"
PERMISSION_REVOKE = "/api/3.0/mlflow/users/permissions/revoke"
PERMISSION_GET = "/api/3.0/mlflow/users/permissions/get"
EXPERIMENT_BY_NAME = "/api/2.0/mlflow/experiments/get-by-name"


def _credentials(user: str | None, password: str | None) -> tuple[str, str]:
    """Explicit credentials, else MLflow's client variables (the caller's own login)."""
    user = user if user is not None else os.environ.get("MLFLOW_TRACKING_USERNAME", "")
    password = password if password is not None else os.environ.get("MLFLOW_TRACKING_PASSWORD", "")
    if not user or not password:
        raise ConfigurationError(
            "Managing users needs an admin login: set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD "
            f"(the admin user is {admin_username()!r} unless {ENV_ADMIN_USERNAME} said otherwise when the server started)."
        )
    return user, password


def auth_request(url: str, method: str, path: str, body: dict[str, object] | None = None, *,
                 params: dict[str, str] | None = None, user: str | None = None, password: str | None = None,
                 timeout: float = 30.0) -> dict[str, object]:
    """One JSON request to a basic-auth server as ``user`` (default: MLFLOW_TRACKING_USERNAME).

    HTTP 401/403 raise :class:`AccessDeniedError`, an unreachable server
    :class:`StoreUnavailableError`, any other refusal :class:`ConfigurationError`."""
    import base64
    import json
    from urllib.parse import urlencode

    from .errors import AccessDeniedError

    user, password = _credentials(user, password)
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    headers = {"Authorization": f"Basic {token}", "Content-Type": "application/json"}
    full = url.rstrip("/") + path + (("?" + urlencode(params)) if params else "")
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(full, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - our URL
            raw = resp.read()
    except urllib.error.HTTPError as exc:
        detail = exc.read()[:500].decode("utf-8", "replace")
        error_code = ""
        try:
            parsed = json.loads(detail)
            error_code = str(parsed.get("error_code") or "")
            detail = str(parsed.get("message") or detail)
        except (ValueError, AttributeError):
            pass
        if exc.code == 401:
            raise AccessDeniedError(f"The server did not accept the login of {user!r} (HTTP 401).") from None
        if exc.code == 403:
            raise AccessDeniedError(
                f"The server refused {method} {path} for {user!r} (HTTP 403): an admin, or a user who manages the "
                "experiment, must do this."
            ) from None
        if exc.code == 404 and not error_code:
            raise ConfigurationError(
                f"The server has no {path} (HTTP 404): is it running with basic auth (qrec server --auth)?"
            ) from None
        raise ConfigurationError(f"The server refused {method} {path}: HTTP {exc.code} {error_code} {detail}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise StoreUnavailableError(f"The tracking server at {url} is unreachable: {exc}") from None
    return json.loads(raw) if raw.strip() else {}


def _check_permission(permission: str) -> str:
    value = permission.strip().upper()
    if value not in PERMISSIONS:
        raise ConfigurationError(f"permission must be one of {', '.join(PERMISSIONS)}, got {permission!r}.")
    return value


def create_user(url: str, username: str, password: str, *, admin_user: str | None = None,
                admin_password: str | None = None, permission: str | None = None,
                experiment_id: str | None = None) -> None:
    """Create a user on a basic-auth server (as admin); optionally grant it on an experiment.

    ``admin_user``/``admin_password`` default to MLFLOW_TRACKING_USERNAME/_PASSWORD."""
    if len(password) < 12:
        raise ConfigurationError("A password must be at least 12 characters long (MLflow's rule).")
    auth_request(url, "POST", USERS_CREATE, {"username": username, "password": password},
                 user=admin_user, password=admin_password)
    if permission is not None and experiment_id is not None:
        grant_permission(url, username, experiment_id, permission, admin_user=admin_user, admin_password=admin_password)


def grant_permission(url: str, username: str, experiment_id: str, permission: str, *, admin_user: str | None = None,
                     admin_password: str | None = None) -> None:
    """Give ``username`` READ, EDIT or MANAGE on one experiment (replaces an earlier grant).

    Allowed for an admin and for users who MANAGE the experiment (its creator)."""
    auth_request(url, "POST", PERMISSION_GRANT,
                 {"username": username, "resource_type": "experiment", "resource_id": str(experiment_id),
                  "permission": _check_permission(permission)}, user=admin_user, password=admin_password)


def revoke_permission(url: str, username: str, experiment_id: str, *, admin_user: str | None = None,
                      admin_password: str | None = None) -> None:
    """Remove ``username``'s grant on an experiment (the server's default permission applies again)."""
    auth_request(url, "POST", PERMISSION_REVOKE,
                 {"username": username, "resource_type": "experiment", "resource_id": str(experiment_id)},
                 user=admin_user, password=admin_password)


def get_permission(url: str, username: str, experiment_id: str, *, admin_user: str | None = None,
                   admin_password: str | None = None) -> str:
    """What ``username`` may do on an experiment, as the server decides it (READ, EDIT, MANAGE, NO_PERMISSIONS)."""
    result = auth_request(url, "GET", PERMISSION_GET,
                          params={"username": username, "resource_type": "experiment", "resource_id": str(experiment_id)},
                          user=admin_user, password=admin_password)
    return str(result.get("permission", "NO_PERMISSIONS"))


def list_users(url: str, *, admin_user: str | None = None, admin_password: str | None = None) -> list[dict[str, object]]:
    """Every user: ``[{"username": ..., "is_admin": ..., "id": ...}, ...]`` sorted by name."""
    result = auth_request(url, "GET", USERS_LIST, user=admin_user, password=admin_password)
    users = result.get("users", [])
    assert isinstance(users, list)
    return sorted(({"username": u["username"], "is_admin": bool(u.get("is_admin")), "id": u.get("id")} for u in users),
                  key=lambda u: str(u["username"]))


def delete_user(url: str, username: str, *, admin_user: str | None = None, admin_password: str | None = None) -> None:
    """Delete a user: their requests are refused from then on (see docs/team.md for the credential cache)."""
    auth_request(url, "DELETE", USERS_DELETE, {"username": username}, user=admin_user, password=admin_password)


def experiment_id_by_name(url: str, name: str, *, admin_user: str | None = None,
                          admin_password: str | None = None) -> str | None:
    """The id of the experiment called ``name``, or None when there is none."""
    try:
        result = auth_request(url, "GET", EXPERIMENT_BY_NAME, params={"experiment_name": name},
                              user=admin_user, password=admin_password)
    except ConfigurationError as exc:
        if "RESOURCE_DOES_NOT_EXIST" in str(exc):
            return None
        raise
    experiment = result.get("experiment")
    return str(experiment["experiment_id"]) if isinstance(experiment, dict) else None


def shown_command(cmd: list[str], env: dict[str, str]) -> str:
    """``cmd`` as a shell line for people (``--dry-run``): the backend variable first, redacted."""
    prefix = f"{ENV_BACKEND_URI}={redact(env[ENV_BACKEND_URI])} " if ENV_BACKEND_URI in env else ""
    return prefix + " ".join(redact(part) for part in cmd)


def mlflow_ui_env(backend_store_uri: str, base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of ``mlflow ui``: the backend URI goes here, not on its command line."""
    env = dict(os.environ if base is None else base)
    env.pop("MLFLOW_TRACKING_URI", None)
    env[ENV_BACKEND_URI] = normalize_backend_uri(backend_store_uri)
    return env


def mlflow_ui_command(host: str, port: int, artifacts_destination: str | None = None) -> list[str]:
    """``mlflow ui`` for a local store (one worker, artifacts served from where runs keep them).

    Run it with :func:`mlflow_ui_env`, which carries the backend store URI."""
    cmd = [sys.executable, "-m", "mlflow", "ui", "--host", host, "--port", str(port), "--workers", "1"]
    if artifacts_destination:
        cmd += ["--artifacts-destination", _artifacts_destination(artifacts_destination)]
    return cmd

