"""The MLflow backend: the abstract model translated to ``MlflowClient`` calls (never the
fluent ``mlflow.start_run`` global state)."""

import os as _os

# MLflow's telemetry starts a thread at ``import mlflow`` that, when it cannot reach its
# endpoint (any machine without internet), removes ``_MLFLOW_TELEMETRY_SESSION_ID`` from
# os.environ while other threads may be iterating os.environ (``requests`` does, for proxies,
# at every HTTP request): qrecorder's writer then failed a log-batch with KeyError
# '_MLFLOW_TELEMETRY_SESSION_ID' (seen under load, with MLflow's own client too). Off unless
# the user set MLFLOW_DISABLE_TELEMETRY; qrecorder sends nothing anywhere itself.
_os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
