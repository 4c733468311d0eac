"""The few REST calls a plain run makes on a tracking server, without importing MLflow.

``import mlflow`` costs ~1.1 s; a fresh process that logs one run to a tracking server needs
only experiments/get-by-name (and create), runs/create, runs/log-batch, runs/update and, for
the stale check at the end, runs/get. :class:`RestClient` sends exactly the requests
MLflow's ``RestStore`` sends for them (same endpoints, methods, JSON bodies, headers and
credentials), so a server cannot tell the difference; everything else goes through MLflow's
client, opened on first need (``Store.client``).

The light path is used only when the client configuration is plain (:func:`plain_config`):
basic or bearer credentials from MLflow's variables (or ``~/.mlflow/credentials``), TLS
settings, the request timeout, and MLflow's own retries off (qrecorder's default). Anything
else that could change requests (MLFLOW_TRACKING_AUTH, AWS SigV4, workspaces, installed
request header or auth provider plugins, Databricks) leaves every call to MLflow.

Errors are :class:`RestError`, which carries ``error_code`` and ``get_http_status_code()``
like MLflow's ``RestException``: ``calls`` and ``retry`` treat them the same way (401/403 →
AccessDeniedError, connection errors, 429 and 5xx → retried within the budget), and an error
that reaches the caller is turned into MLflow's own exception (``to_mlflow``).
"""

from __future__ import annotations

import base64
import math
import os
import re
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .. import tags as tagnames
from ..errors import ExpAlreadyExistError
from . import calls

if TYPE_CHECKING:
    import requests

API = "/api/2.0/mlflow"

# mlflow.exceptions.HTTP_STATUS_TO_ERROR_CODE: the error code of an answer without a JSON body
_STATUS_TO_CODE = {
    400: "BAD_REQUEST",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "ENDPOINT_NOT_FOUND",
    429: "REQUEST_LIMIT_EXCEEDED",
    500: "INTERNAL_ERROR",
    501: "NOT_IMPLEMENTED",
    503: "TEMPORARILY_UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}

# mlflow.exceptions.ERROR_CODE_TO_HTTP_STATUS: RestException.get_http_status_code() of an error code
_CODE_TO_STATUS = {
    "INTERNAL_ERROR": 500, "INVALID_STATE": 500, "DATA_LOSS": 500, "NOT_IMPLEMENTED": 501,
    "TEMPORARILY_UNAVAILABLE": 503, "DEADLINE_EXCEEDED": 504, "REQUEST_LIMIT_EXCEEDED": 429, "CANCELLED": 499,
    "RESOURCE_EXHAUSTED": 429, "ABORTED": 409, "RESOURCE_CONFLICT": 409, "ALREADY_EXISTS": 409, "NOT_FOUND": 404,
    "ENDPOINT_NOT_FOUND": 404, "RESOURCE_DOES_NOT_EXIST": 404, "PERMISSION_DENIED": 403, "CUSTOMER_UNAUTHORIZED": 401,
    "UNAUTHENTICATED": 401, "BAD_REQUEST": 400, "RESOURCE_ALREADY_EXISTS": 400, "INVALID_PARAMETER_VALUE": 400,
}
# mlflow.utils.request_utils._TRANSIENT_FAILURE_RESPONSE_CODES: with MLflow's retries off, urllib3
# raises "Max retries exceeded" for these whatever the body says (a transient error for qrecorder)
_MLFLOW_RETRY_CODES = (408, 429, 500, 502, 503, 504)

# Variables with which MLflow's client would send other requests than this module.
_NOT_PLAIN_ENV = (
    "MLFLOW_TRACKING_AUTH",
    "MLFLOW_TRACKING_AWS_SIGV4",
    "MLFLOW_WORKSPACE",
    "MLFLOW_ENABLE_WORKSPACES",
    "_MLFLOW_DATABRICKS_TRAFFIC_ID",
    "DATABRICKS_RUNTIME_VERSION",
    "MLFLOW_ACTIVE_MODEL_ID",  # MLflow's client adds it to every metric (model_id)
    "_MLFLOW_ACTIVE_MODEL_ID",
)
_PLUGIN_GROUPS = re.compile(r"^\s*\[\s*mlflow\.request_(header|auth)_provider\s*\]", re.MULTILINE)


class RestError(Exception):
    """A tracking server's answer other than 200, as MLflow's ``RestException`` describes it.

    ``error_code`` is the server's (or, without a JSON body, the one MLflow derives from the
    HTTP status); ``get_http_status_code()`` is the HTTP status the server answered with."""

    def __init__(self, status: int, endpoint: str, text: str, body: dict[str, Any] | None,
                 message: str | None = None) -> None:
        self.status = status
        self.endpoint = endpoint
        self.text = text
        self.json = body
        if body is not None:
            code = str(body.get("error_code") or "INTERNAL_ERROR")
            if code.isdigit():
                code = _STATUS_TO_CODE.get(int(code), code)
            message = f"{code}: {body['message'] if 'message' in body else 'Response: ' + str(body)}"
        else:
            code = _STATUS_TO_CODE.get(status, "INTERNAL_ERROR")
            message = message or (
                f"API request to endpoint {endpoint} failed with error code {status} != 200. Response body: '{text}'"
            )
        self.error_code = code
        self.message = message
        super().__init__(message)

    def get_http_status_code(self) -> int:
        """As MLflow's exceptions: a JSON answer's from its error code (RestException), else the
        HTTP status (MLflow's client raises a plain MlflowException then: retried only for the
        statuses it retries, which are transient here too)."""
        if self.json is not None:
            return _CODE_TO_STATUS.get(self.error_code, 500)
        return self.status

    def to_mlflow(self) -> Exception:
        """The exception MLflow's client raises for the same answer (imports MLflow)."""
        from mlflow.exceptions import MlflowException, RestException
        from mlflow.protos.databricks_pb2 import ErrorCode

        if self.json is not None:
            return RestException(self.json)
        try:
            code = ErrorCode.Value(self.error_code)
        except ValueError:  # pragma: no cover - a code this MLflow does not know
            return MlflowException(self.message)
        try:
            from mlflow.error_classification import ErrorClass, SqlState

            return MlflowException(self.message, error_code=code, sqlstate=SqlState.from_cp_error_code(self.error_code),
                                   error_class=ErrorClass.from_cp_error_code(self.error_code))
        except ImportError:  # pragma: no cover - an MLflow without error classes
            return MlflowException(self.message, error_code=code)


class RequestFailed(Exception):
    """A request that got no answer for a reason other than a connection error or a timeout (an
    invalid URL or header, ...): MLflow's ``http_request`` raises these as ``MlflowException``
    (``InvalidUrlException`` for an invalid URL) with the same message, never retried."""

    def __init__(self, url: str, cause: BaseException) -> None:
        import requests

        self.invalid_url = isinstance(cause, requests.exceptions.InvalidURL)
        message = f"Invalid url: {url}" if self.invalid_url else f"API request to {url} failed with exception {cause}"
        super().__init__(message)

    def to_mlflow(self) -> Exception:
        from mlflow.exceptions import InvalidUrlException, MlflowException

        return (InvalidUrlException if self.invalid_url else MlflowException)(str(self))


def is_server_error(exc: BaseException) -> bool:
    """An error a tracking server answered with: ours, or MLflow's (if MLflow is imported)."""
    if isinstance(exc, RestError):
        return True
    module = sys.modules.get("mlflow.exceptions")
    return module is not None and isinstance(exc, module.RestException)


def is_mlflow_error(exc: BaseException) -> bool:
    """True for what MLflow's client would raise as ``MlflowException`` (any of its kinds)."""
    if isinstance(exc, (RestError, RequestFailed)):
        return True
    module = sys.modules.get("mlflow.exceptions")
    return module is not None and isinstance(exc, module.MlflowException)


def caller_error(exc: Exception) -> Exception:
    """What the caller sees for a final error: MLflow's exception for a server's answer."""
    if isinstance(exc, (RestError, RequestFailed)):
        converted = exc.to_mlflow()
        converted.__cause__ = exc
        return converted
    return exc


# ------------------------------------------------------------------ configuration
_plugins: bool | None = None


def _request_plugins_installed() -> bool:
    """Is any package registering MLflow request header or auth providers installed? (read once;
    ~2 ms: the entry_points.txt files of installed distributions, as importlib.metadata does)"""
    global _plugins
    if _plugins is not None:
        return _plugins
    found = False
    for folder in list(sys.path):
        try:
            entries = os.scandir(folder or ".")
        except OSError:
            continue
        with entries:
            for entry in entries:
                if not entry.name.endswith((".dist-info", ".egg-info")):
                    continue
                try:
                    with open(os.path.join(entry.path, "entry_points.txt"), encoding="utf-8") as fh:
                        text = fh.read()
                except OSError:
                    continue
                if _PLUGIN_GROUPS.search(text):
                    found = True
                    break
        if found:
            break
    _plugins = found
    return found


def _env_int(name: str, default: int) -> int | None:
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        return None


def _truthy(name: str) -> bool | None:
    raw = os.environ.get(name)
    if raw is None:
        return False
    low = raw.lower()
    if low not in ("true", "false", "1", "0"):
        return None  # MLflow raises for this: let it
    return low in ("true", "1")


def _mlflow_accepts_http_settings() -> bool:
    """MLflow's http_request reads and checks these variables on every request (its session the
    pool sizes) and raises for a value it refuses: its client must be the one to raise then."""
    factor = _env_int("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", 2)
    retries_limit = _env_int("_MLFLOW_HTTP_REQUEST_MAX_RETRIES_LIMIT", 10)
    factor_limit = _env_int("_MLFLOW_HTTP_REQUEST_MAX_BACKOFF_FACTOR_LIMIT", 120)
    if factor is None or retries_limit is None or factor_limit is None:
        return False
    if retries_limit < 0 or factor_limit < 0 or factor > factor_limit:
        return False
    if _env_int("MLFLOW_HTTP_POOL_CONNECTIONS", 10) is None or _env_int("MLFLOW_HTTP_POOL_MAXSIZE", 10) is None:
        return False
    try:
        float(os.environ.get("MLFLOW_HTTP_REQUEST_BACKOFF_JITTER", "1.0"))
    except ValueError:
        return False
    return not (_truthy("MLFLOW_HTTP_RESPECT_RETRY_AFTER_HEADER") is None
                and os.environ.get("MLFLOW_HTTP_RESPECT_RETRY_AFTER_HEADER") is not None)


def plain_config(uri: str) -> bool:
    """True when MLflow's client would send this module's requests unchanged (see module doc)."""
    if os.environ.get("QRECORDER_REST", "1") == "0":
        return False
    if not uri.lower().startswith(("http://", "https://")):
        return False
    if any(os.environ.get(name) for name in _NOT_PLAIN_ENV):
        return False
    if _env_int("MLFLOW_HTTP_REQUEST_MAX_RETRIES", 7) != 0:
        return False  # MLflow's own retries (urllib3) were asked for
    if _env_int("MLFLOW_HTTP_REQUEST_TIMEOUT", 120) is None or _truthy("MLFLOW_TRACKING_INSECURE_TLS") is None:
        return False
    if _truthy("MLFLOW_ALLOW_HTTP_REDIRECTS") is None and os.environ.get("MLFLOW_ALLOW_HTTP_REDIRECTS") is not None:
        return False
    if _truthy("MLFLOW_TRACKING_INSECURE_TLS") and os.environ.get("MLFLOW_TRACKING_SERVER_CERT_PATH") is not None:
        return False  # MlflowHostCreds refuses both: MLflow's client raises its error
    if not _mlflow_accepts_http_settings():
        return False
    if "databricks" in uri.lower():
        return False
    return not _request_plugins_installed()


def _credentials() -> tuple[str | None, str | None]:
    """MLflow's ``read_mlflow_creds``: the variables, else ``~/.mlflow/credentials``."""
    user = os.environ.get("MLFLOW_TRACKING_USERNAME") or None
    password = os.environ.get("MLFLOW_TRACKING_PASSWORD") or None
    if user and password:
        return user, password
    path = os.path.expanduser("~/.mlflow/credentials")
    if os.path.exists(path):
        import configparser

        config = configparser.ConfigParser()
        config.read(path)
        if "mlflow" in config:
            section = config["mlflow"]
            user = user or section.get("mlflow_tracking_username")
            password = password or section.get("mlflow_tracking_password")
    return user, password


_mlflow_version: str | None = None


def _client_version() -> str:
    global _mlflow_version
    if _mlflow_version is None:
        try:
            from importlib.metadata import version

            _mlflow_version = version("mlflow")
        except Exception:  # noqa: BLE001 - metadata missing: a neutral version
            _mlflow_version = "unknown"
    return _mlflow_version


def _headers() -> dict[str, str]:
    """MLflow's default request headers and its Authorization header."""
    ver = _client_version()
    headers = {"User-Agent": f"mlflow-python-client/{ver}", "X-MLflow-Client-Version": ver}
    user, password = _credentials()
    token = os.environ.get("MLFLOW_TRACKING_TOKEN") or None
    if user and password:
        headers["Authorization"] = "Basic " + base64.standard_b64encode(f"{user}:{password}".encode()).decode("utf-8")
    elif token:
        headers["Authorization"] = f"Bearer {token}"
    return headers


# ------------------------------------------------------------------ one session per process
_session: requests.Session | None = None
_session_pid = 0
_session_lock = threading.Lock()


def session() -> requests.Session:
    """This process's keep-alive session (a forked child makes its own)."""
    global _session, _session_pid
    current = _session
    if current is not None and _session_pid == os.getpid():
        return current
    with _session_lock:
        if _session is None or _session_pid != os.getpid():
            _session = _new_session()  # the parent's, if any, is left alone: its sockets are shared
            _session_pid = os.getpid()
        return _session


def _new_session() -> requests.Session:
    """A session set up as MLflow's (``mlflow.utils.request_utils``): its pool sizes and TCP
    keepalive (a dead server found within ~1 min on an idle connection), no urllib3 retries."""
    import requests
    from requests.adapters import HTTPAdapter

    options = _socket_options()

    class KeepAliveAdapter(HTTPAdapter):
        def init_poolmanager(self, connections: int, maxsize: int, block: bool = False, **kwargs: Any) -> None:
            kwargs.setdefault("socket_options", options)
            super().init_poolmanager(connections, maxsize, block=block, **kwargs)

        def proxy_manager_for(self, proxy: str, **kwargs: Any) -> Any:
            kwargs.setdefault("socket_options", options)
            return super().proxy_manager_for(proxy, **kwargs)

    adapter = KeepAliveAdapter(pool_connections=_env_int("MLFLOW_HTTP_POOL_CONNECTIONS", 10) or 10,
                               pool_maxsize=_env_int("MLFLOW_HTTP_POOL_MAXSIZE", 10) or 10, max_retries=0)
    new = requests.Session()
    new.mount("https://", adapter)
    new.mount("http://", adapter)
    return new


def _socket_options() -> list[tuple[int, int, int]]:
    import socket

    from urllib3.connection import HTTPConnection

    options = list(HTTPConnection.default_socket_options or [])
    if _truthy("MLFLOW_HTTP_TCP_KEEPALIVE") is False and os.environ.get("MLFLOW_HTTP_TCP_KEEPALIVE") is not None:
        return options
    options.append((socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1))
    for name, env, default in (("TCP_KEEPIDLE", "MLFLOW_HTTP_TCP_KEEPALIVE_IDLE", 30),
                               ("TCP_KEEPINTVL", "MLFLOW_HTTP_TCP_KEEPALIVE_INTERVAL", 10),
                               ("TCP_KEEPCNT", "MLFLOW_HTTP_TCP_KEEPALIVE_COUNT", 3)):
        if hasattr(socket, name):
            options.append((socket.IPPROTO_TCP, getattr(socket, name), _env_int(env, default) or default))
    if not hasattr(socket, "TCP_KEEPIDLE") and hasattr(socket, "TCP_KEEPALIVE"):  # macOS
        options.append((socket.IPPROTO_TCP, socket.TCP_KEEPALIVE, _env_int("MLFLOW_HTTP_TCP_KEEPALIVE_IDLE", 30) or 30))
    return options


# ------------------------------------------------------------------ values
def _number(value: Any) -> float | str:
    """A metric value as MLflow's JSON writes a double: NaN and infinities as strings."""
    v = float(value)
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "Infinity" if v > 0 else "-Infinity"
    return v


def _pairs(items: Any) -> list[dict[str, str]]:
    return [{"key": k, "value": v} for k, v in items]


@dataclass(frozen=True)
class ExperimentInfo:
    experiment_id: str
    name: str
    lifecycle_stage: str
    artifact_location: str | None
    tags: dict[str, str]


def _light_run(run: dict[str, Any]) -> Any:
    from .sql.entities import LightRun, LightRunData, LightRunInfo

    info = run.get("info", {})
    data = run.get("data", {})

    def ms(key: str) -> int | None:
        value = info.get(key)
        return int(value) if value is not None else None

    light = LightRunInfo(
        info.get("run_id") or info.get("run_uuid"), str(info.get("experiment_id")), info.get("user_id"),
        info.get("status", "RUNNING"), ms("start_time"), ms("end_time"), info.get("lifecycle_stage", "active"),
        info.get("artifact_uri"), info.get("run_name"),
    )
    tags = {t["key"]: t.get("value", "") for t in data.get("tags", [])}
    params = {p["key"]: p.get("value", "") for p in data.get("params", [])}
    return LightRun(light, LightRunData(params=params, tags=tags))


# ------------------------------------------------------------------ the client
class RestClient:
    """The calls of a plain run on one tracking server (``uri``), as MLflow's RestStore makes them.

    Methods make one request each (``calls.call`` retries them) except the creations, which
    are made at most once through ``calls.call_once`` as qrecorder's MLflow client does."""

    remote = True  # for the writer: a sink whose batches follow MLflow's per-request limits

    def __init__(self, uri: str) -> None:
        self.store_uri = uri  # calls.describe_target reads it
        self._host = uri.rstrip("/")

    def available(self) -> bool:
        """Still plain (the configuration is read again: variables may change in a process)."""
        return plain_config(self.store_uri)

    def request(self, method: str, endpoint: str, body: dict[str, Any]) -> dict[str, Any]:
        """One request; the decoded JSON answer, or RestError / requests' exceptions."""
        import requests

        url = f"{self._host}{API}{endpoint}"
        # As MlflowHostCreds: a variable set to "" is a value (verify="" turns verification off)
        cert = os.environ.get("MLFLOW_TRACKING_CLIENT_CERT_PATH")
        server_cert = os.environ.get("MLFLOW_TRACKING_SERVER_CERT_PATH")
        verify: bool | str = server_cert if server_cert is not None else not _truthy("MLFLOW_TRACKING_INSECURE_TLS")
        timeout = _env_int("MLFLOW_HTTP_REQUEST_TIMEOUT", 120)
        redirects = os.environ.get("MLFLOW_ALLOW_HTTP_REDIRECTS", "true").lower() in ("true", "1")
        kwargs: dict[str, Any] = {"params": body} if method == "GET" else {"json": body}
        if cert is not None:
            kwargs["cert"] = cert
        headers = _headers()  # outside the try: MLflow reads the credentials before its http_request
        http = session()
        try:
            response = http.request(method, url, headers=headers, verify=verify, timeout=timeout,
                                    allow_redirects=redirects, **kwargs)
        except requests.exceptions.Timeout as exc:
            raise requests.exceptions.Timeout(
                f"API request to {url} failed with timeout exception {exc}. To increase the timeout, set the "
                "environment variable MLFLOW_HTTP_REQUEST_TIMEOUT to a larger value."
            ) from exc
        except requests.exceptions.ConnectionError:
            raise  # transient: retried (MLflow's message says "Max retries exceeded" as well)
        except Exception as exc:  # noqa: BLE001 - as MLflow's http_request: an MlflowException for the caller
            raise RequestFailed(url, exc) from exc
        text = response.text
        if response.status_code != 200:
            # A status MLflow's session retries never reaches its body parsing: transient whatever it says.
            answer = None if response.status_code in _MLFLOW_RETRY_CODES else _json_object(text)
            raise RestError(response.status_code, f"{API}{endpoint}", text, answer)
        if not text.strip():
            return {}
        decoded = _json_object(text)
        if decoded is None:
            raise RestError(response.status_code, f"{API}{endpoint}", text, None, message=(
                "API request to endpoint was successful but the response body was not in a valid JSON format. "
                f"Response body: '{text[:200]}'"))
        return decoded

    # -------------------------------------------------------------- experiments
    def get_experiment_by_name(self, name: str) -> ExperimentInfo | None:
        try:
            answer = self.request("GET", "/experiments/get-by-name", {"experiment_name": name})
        except RestError as exc:
            if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
                return None
            raise
        return _experiment(answer["experiment"])

    def get_experiment(self, experiment_id: str) -> ExperimentInfo:
        return _experiment(self.request("GET", "/experiments/get", {"experiment_id": str(experiment_id)})["experiment"])

    def create_experiment(self, name: str, artifact_location: str | None, tags: dict[str, str]) -> str:
        """qrecorder's create_experiment (store.py ``QRecorderClient``): a token tag makes a retry
        find an earlier attempt that succeeded; the token is dropped once the experiment exists."""
        token = uuid.uuid4().hex
        body: dict[str, Any] = {"name": name}
        if artifact_location:
            body["artifact_location"] = artifact_location
        body["tags"] = _pairs({**tags, tagnames.CREATE_TOKEN: token}.items())

        def create() -> str:
            try:
                return str(self.request("POST", "/experiments/create", body)["experiment_id"])
            except RestError as exc:
                if exc.error_code == "RESOURCE_ALREADY_EXISTS":
                    raise ExpAlreadyExistError(f"Experiment {name!r} exists already.") from exc
                raise

        def find() -> str | None:
            exp = self.get_experiment_by_name(name)
            return exp.experiment_id if exp is not None and exp.tags.get(tagnames.CREATE_TOKEN) == token else None

        exp_id = calls.call_once(create, find, self.create_experiment)
        from .store import _drop_token

        _drop_token(lambda: self.request("POST", "/experiments/delete-experiment-tag",
                                         {"experiment_id": exp_id, "key": tagnames.CREATE_TOKEN}))
        return exp_id

    # -------------------------------------------------------------- runs
    def create_run(self, experiment_id: str, run_name: str | None, tags: dict[str, str]) -> Any | None:
        """qrecorder's create_run for its own runs (tags with pid and host: the start time, unique
        per process, with them finds an earlier attempt); None for other runs (MLflow's client)."""
        from .store import _HOST_TAG, _PID_TAG, _unique_start_ms

        pid, host = tags.get(_PID_TAG), tags.get(_HOST_TAG)
        if not pid or not host or "'" in pid + host:
            return None
        start_time = _unique_start_ms()
        body: dict[str, Any] = {"experiment_id": str(experiment_id), "user_id": tags.get(tagnames.MLFLOW_USER, "unknown")}
        if run_name:
            body["run_name"] = run_name
        body["start_time"] = start_time
        if tags:
            body["tags"] = _pairs(tags.items())
        wanted = f"attributes.start_time = {start_time} and tags.`{_PID_TAG}` = '{pid}' and tags.`{_HOST_TAG}` = '{host}'"

        def create() -> Any:
            return _light_run(self.request("POST", "/runs/create", body)["run"])

        def find() -> Any:
            answer = self.request("POST", "/runs/search", {"experiment_ids": [str(experiment_id)], "run_view_type": "ALL",
                                                           "filter": wanted, "max_results": 1})
            runs = answer.get("runs") or []
            return _light_run(runs[0]) if runs else None

        return calls.call_once(create, find, self.create_run)

    def get_run(self, run_id: str) -> Any:
        return _light_run(self.request("GET", "/runs/get", {"run_uuid": run_id, "run_id": run_id})["run"])

    def update_run(self, run_id: str, status: str, end_time: int | None = None) -> None:
        """MlflowClient.set_terminated(run_id, status, end_time)."""
        end = int(time.time() * 1000) if end_time is None else int(end_time)
        self.request("POST", "/runs/update", {"run_uuid": run_id, "status": status, "end_time": end, "run_id": run_id})

    def log_batch(self, run_id: str, metrics: list[Any], params: list[Any], tags: list[Any]) -> None:
        """One runs/log-batch request: ``metrics`` as (key, value, timestamp, step), ``params`` and
        ``tags`` as (key, value), within MLflow's limits (the writer's ``_chunks``)."""
        body: dict[str, Any] = {"run_id": run_id}
        if metrics:
            body["metrics"] = [{"key": k, "value": _number(v), "timestamp": int(ts), "step": int(step)}
                               for k, v, ts, step in metrics]
        if params:
            body["params"] = _pairs(params)
        if tags:
            body["tags"] = _pairs(tags)
        self.request("POST", "/runs/log-batch", body)


def _json_object(text: str) -> dict[str, Any] | None:
    import json

    try:
        decoded = json.loads(text)
    except ValueError:
        return None
    return decoded if isinstance(decoded, dict) else None


def _experiment(exp: dict[str, Any]) -> ExperimentInfo:
    return ExperimentInfo(
        str(exp["experiment_id"]), exp.get("name", ""), exp.get("lifecycle_stage", "active"),
        exp.get("artifact_location"), {t["key"]: t.get("value", "") for t in exp.get("tags", [])},
    )
