"""The tag vocabulary: every run and experiment tag key that qrecorder writes or reads.

One module, so a key is spelled once and a reader can see the whole vocabulary. Imports
nothing (the CLI's quick paths and the crash journal may import it without cost).
"""

from __future__ import annotations

PREFIX = "qrecorder."  # every tag of qrecorder's own starts with this

# -- set on every run by the MLflow backend at start ------------------------------------
HOST = "qrecorder.host"  # hostname of the process that started (or resumed) the run
PID = "qrecorder.pid"  # its process id (with HOST: who owns a RUNNING run)
PROCESS = "qrecorder.process"  # boot id, PID namespace, pid and start time: tells a reused pid apart
HEARTBEAT = "qrecorder.heartbeat"  # unix time of the writer's last heartbeat for a RUNNING run
HEARTBEAT_INTERVAL = "qrecorder.heartbeat_interval"  # seconds between heartbeats, as the process set it
CREATE_TOKEN = "qrecorder.create_token"  # makes run/experiment creation idempotent across retries

# -- stale-run detection (mlflow/stale.py, `qrec gc`) ----------------------------------
STALE = "qrecorder.stale"  # "1" once a dead RUNNING run was marked FAILED
STALE_AT = "qrecorder.stale_at"  # when it was marked
STALE_REASON = "qrecorder.stale_reason"  # why it was judged dead
STALE_RETURNED = "qrecorder.stale_returned"  # when a process of a run marked stale came back
STALE_RETURNED_STATUS = "qrecorder.stale_returned_status"  # the status that process wanted to end with

# -- objects and failures ---------------------------------------------------------------
CHECKSUM_PREFIX = "qrecorder.checksum."  # + object name: "blake3:<hex>" of a saved object
LEGACY_CHECKSUM_PREFIX = "qrecorder.sha256."  # + object name: bare SHA-256 of older releases (still verified)
EXCEPTION = "qrecorder.exception"  # "Type: message" of the exception that ended a run FAILED
GIT_ROOT = "qrecorder.git.root"  # the git work tree the run's code came from

# -- workflow runs and the batch runner (workflow/run.py, runner/) --------------------------
MODEL = "qrecorder.model"  # model name (the benchmark folder, or the config's model class)
SEED = "qrecorder.seed"  # the seed the cell ran with
CONFIG = "qrecorder.config"  # path of the workflow config file
CONFIG_HASH = "qrecorder.config_hash"  # hash of the loaded config: resume skips a cell only on a match
KIND = "qrecorder.kind"  # "run" for a model run, "summary" for a batch's summary recorder
BATCH = "qrecorder.batch"  # the run-all batch id ("compare" on a summary made by `qrec compare`)
ATTEMPT = "qrecorder.attempt"  # 0 for the first try of a cell, 1.. for retries
DATASET = "qrecorder.dataset"  # the dataset name from the config's file name
RAY_NODE = "qrecorder.ray_node"  # the Ray node id a --executor ray cell ran on
PYTHON = "qrecorder.python"  # the interpreter the cell ran in (a model venv's python with --env venv)

KIND_RUN = "run"  # KIND of a model run
KIND_SUMMARY = "summary"  # KIND of a summary recorder

# -- MLflow's own keys that qrecorder sets or reads ------------------------------------------
MLFLOW_RUN_NAME = "mlflow.runName"  # the run's name (MLflow matches run_name searches against it)
MLFLOW_USER = "mlflow.user"  # who started the run
MLFLOW_SOURCE_NAME = "mlflow.source.name"  # the script (sys.argv[0])
MLFLOW_SOURCE_TYPE = "mlflow.source.type"  # "LOCAL"
MLFLOW_GIT_COMMIT = "mlflow.source.git.commit"  # HEAD of the run's git work tree
MLFLOW_GIT_BRANCH = "mlflow.source.git.branch"  # its branch
MLFLOW_EXPERIMENT_KIND = "mlflow.experimentKind"  # experiment tag: MLflow's UI picks the landing view by it
MLFLOW_PREFIX = "mlflow."  # MLflow's reserved namespace (such tags go through MLflow's API)
