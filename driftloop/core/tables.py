"""The registry's and the retraining jobs' tables, on the shared :data:`driftloop.core.store.metadata`.

``Store.create_schema()`` creates them with everything else once this module is imported
(:mod:`retrain` imports it). The worker's consumed offsets reuse the store's ``offsets`` table
under its own group id (``registry.worker_group_id``).

``retrain_jobs``
    One row per job id (the primary key makes a job id unique): written ``queued`` in the
    transaction that enqueues the job, ``running`` when a worker starts it (``attempts`` + 1;
    an attempt a graceful stop or a store/disk error interrupted is given back: ``attempts`` - 1,
    ``give_backs`` + 1, at most ``registry.max_give_backs`` times),
    then ``done`` (``decision`` = ``promoted``/``rejected``, ``version``), ``failed`` (``error``)
    or ``skipped`` (a repeat delivery, or not enough data).
``model_versions``
    Every version of every model: artifact and reference sample (paths relative to the
    artifact folder, with their SHA-256), params, metrics, data window, code and library
    versions. ``status``: ``champion`` (at most one per model: a partial unique index),
    ``registered`` (never champion yet), ``archived`` (was champion) or ``rejected``.
    ``job_id`` is unique: one job yields at most one version.
``champion_history``
    The audit trail, append-only: every registry event (``registered``, ``promoted``,
    ``rejected``, ``rolled_back``) with the champion before and after it, who decided
    (``actor``), why (``reason``) and the evidence (``details``: both models' metrics, the
    test). Which version was champion at time *t* is the ``champion_version`` of the last row
    with ``decided_at <= t``.
"""
from __future__ import annotations

import sqlalchemy as sa

from driftloop.core.store import metadata

__all__ = ["retrain_jobs", "model_versions", "champion_history", "JOB_STATUSES", "VERSION_STATUSES"]

JOB_STATUSES = ("queued", "running", "done", "failed", "skipped")
VERSION_STATUSES = ("registered", "champion", "archived", "rejected")

_ID = sa.BigInteger().with_variant(sa.Integer, "sqlite")

retrain_jobs = sa.Table(
    "retrain_jobs", metadata,
    sa.Column("job_id", sa.String(128), primary_key=True),
    sa.Column("model", sa.String(128), nullable=False),
    sa.Column("trigger", sa.String(16), nullable=False),          # alert | schedule | manual
    sa.Column("reason", sa.JSON, nullable=False),                 # alert ids the job answers
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("decision", sa.String(16)),                         # promoted | rejected
    sa.Column("version", sa.Integer),                             # the challenger's version
    sa.Column("requested_at", sa.BigInteger, nullable=False),     # epoch ms
    sa.Column("started_at", sa.BigInteger),
    sa.Column("finished_at", sa.BigInteger),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    # attempts given back (graceful stop, store or disk error); capped by registry.max_give_backs.
    # Added after the first release: Store.create_schema adds it to older stores (server default 0)
    sa.Column("give_backs", sa.Integer, nullable=False, default=0, server_default="0"),
    sa.Column("worker", sa.String(255)),
    sa.Column("error", sa.Text),
    sa.Column("payload", sa.LargeBinary, nullable=False),         # the job message as published
)
sa.Index("ix_retrain_jobs_model", retrain_jobs.c.model, retrain_jobs.c.requested_at)

model_versions = sa.Table(
    "model_versions", metadata,
    sa.Column("model", sa.String(128), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("source", sa.String(16), nullable=False),           # retrain | register
    sa.Column("job_id", sa.String(128), unique=True),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("task", sa.String(16), nullable=False),
    sa.Column("features", sa.JSON, nullable=False),               # name -> numeric | categorical
    sa.Column("classes", sa.JSON),
    sa.Column("artifact_path", sa.String(1024), nullable=False),  # relative to registry.artifact_dir
    sa.Column("artifact_sha256", sa.String(64), nullable=False),
    sa.Column("artifact_format", sa.String(16), nullable=False),  # skops
    sa.Column("trusted_types", sa.JSON, nullable=False),          # types the file needs (info only: never trusted)
    sa.Column("reference_path", sa.String(1024), nullable=False),
    sa.Column("reference_sha256", sa.String(64), nullable=False),
    sa.Column("reference_rows", sa.Integer, nullable=False),
    sa.Column("holdout_path", sa.String(1024)),                   # held-out rows + this version's outputs
    sa.Column("holdout_sha256", sa.String(64)),
    sa.Column("holdout_rows", sa.Integer),
    sa.Column("estimator", sa.String(255)),
    sa.Column("params", sa.JSON, nullable=False),
    sa.Column("metrics", sa.JSON, nullable=False),
    sa.Column("data_window", sa.JSON, nullable=False),
    sa.Column("code_version", sa.String(64)),
    sa.Column("library_versions", sa.JSON, nullable=False),
    sa.Column("note", sa.Text),
)
sa.Index("ux_model_versions_one_champion", model_versions.c.model, unique=True,
         sqlite_where=model_versions.c.status == "champion",
         postgresql_where=model_versions.c.status == "champion")

champion_history = sa.Table(
    "champion_history", metadata,
    sa.Column("id", _ID, primary_key=True, autoincrement=True),
    sa.Column("model", sa.String(128), nullable=False),
    sa.Column("event", sa.String(16), nullable=False),            # registered | promoted | rejected | rolled_back
    sa.Column("version", sa.Integer, nullable=False),             # the version the event is about
    sa.Column("champion_version", sa.Integer),                    # champion after the event
    sa.Column("previous_champion", sa.Integer),                   # champion before it
    sa.Column("decided_at", sa.BigInteger, nullable=False),
    sa.Column("actor", sa.String(255), nullable=False),           # worker id, or user@host for the CLI
    sa.Column("job_id", sa.String(128)),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("details", sa.JSON, nullable=False),
)
sa.Index("ix_champion_history_model", champion_history.c.model, champion_history.c.id)
