"""The MLflow backend: the abstract model translated to ``MlflowClient`` calls (never the
fluent ``mlflow.start_run`` global state)."""
