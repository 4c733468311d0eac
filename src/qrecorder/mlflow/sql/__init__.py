"""Every statement qrecorder runs against MLflow's own schema, behind one guard.

- :mod:`.guard`: which Alembic revisions the direct paths were verified against, and the
  decision for one database (standard library only).
- :mod:`.db`: the decision once per store, and the connections (sqlite3 for SQLite, MLflow's
  engine for PostgreSQL).
- :mod:`.reads`: search and get by SELECT, exactly MLflow's answer, else None (use the API).
- :mod:`.writes`: experiments, runs, metrics, params, tags and run end by INSERT/UPDATE.
- :mod:`.template`: a fresh SQLite database from MLflow's schema without its migrations.
- :mod:`.quick`: the CLI's listings (``qrec experiments`` / ``qrec runs``) on SQLite.
- :mod:`.stale`: the compare-and-set statements of ``qrec gc`` and the end of a run.

Nothing outside this package writes SQL against MLflow's tables or reaches MLflow's private
store object.
"""
