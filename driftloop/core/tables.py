"""The schema: every table of the state store, declared here and nowhere else.

:meth:`driftloop.core.store.Store.create_schema` creates all of them from :data:`metadata`,
whatever modules the process has imported (a process that imports only the store gets the
whole schema), and adds the columns a newer release declares to the tables an older one
created (:func:`driftloop.core.store.add_missing_columns`: a column added here must be
nullable or have a ``server_default``). The modules that read and write a table import it
from here; the table's row format is documented with it.

The monitor's batch transaction (:mod:`consumers.ingest`, :mod:`driftloop.core.store`)
    ``offsets`` (the consumed offsets of every consumer group: the monitor's, the retrain
    worker's under its own group id), ``examples`` (one row per (model, event_id): the
    prediction half, the label half, or both, joined), ``counters``, ``outbox`` (messages to
    publish: dead letters, alerts, retrain jobs) and ``detector_state`` (each model's detectors).
    With ``analysis.mode: apart``, ``analysis_journal`` (what each batch gave the detectors,
    waiting to be judged) instead of the detectors' run, and ``analysis_progress`` (the last
    entry judged per model, written by the judging process with ``detector_state``).
Statistics history (:mod:`driftloop.monitoring.history`)
    ``detector_history`` (one row per judged prediction window, column and detector) and
    ``performance_history`` (one row per judged window and metric; ``source`` realised or
    estimated).
Alerts (:mod:`driftloop.alerts.tables` holds the statements)
    ``alerts``: current state, one row per ``alert_id`` (the lifecycle's ``AlertState`` as JSON
    plus indexed columns for listing and for finding what is due).
    ``incidents``: one row per incident (:mod:`driftloop.alerts.incidents`): the alerts of one
    model version that fire together, paged as one.
    ``alert_events``: the history of announced changes: one row per (``alert_id``, ``seq``) with
    the message as sent; ``idempotency_key`` (``alert_id:status:seq``) is unique. An incident's
    changes are rows too, under its ``incident_id``.
    ``alert_deliveries``: one row per event and sink: ``status`` (``pending``, ``sent``,
    ``failed`` = gave up after ``max_attempts``), ``attempts``, ``next_attempt_at``,
    ``lease_until`` (claimed by a dispatcher until then), ``last_error`` (no secrets), ``sent_at``.
    ``alert_stream_watch``: per (model, stream): the last seen counter value, when it last grew,
    whether it is stale.
Retraining and the registry (:mod:`retrain.policy`, :mod:`retrain.worker`, :mod:`retrain.registry`)
    ``retrain_jobs``: one row per job id (the primary key makes a job id unique): written
    ``queued`` in the transaction that enqueues the job, ``running`` when a worker starts it
    (``attempts`` + 1; an attempt a graceful stop or a store/disk error interrupted is given
    back: ``attempts`` - 1, ``give_backs`` + 1, at most ``registry.max_give_backs`` times), then
    ``done`` (``decision`` = ``promoted``/``rejected``, ``version``), ``failed`` (``error``) or
    ``skipped`` (a repeat delivery, or not enough data).
    ``model_versions``: every version of every model: artifact and reference sample (paths
    relative to the artifact folder, with their SHA-256), params, metrics, data window, code and
    library versions. ``status``: ``champion`` (at most one per model: a partial unique index),
    ``registered`` (never champion yet), ``archived`` (was champion), ``rejected`` or ``shadow``
    (a challenger answering live requests beside the champion until the live comparison decides,
    :mod:`retrain.shadow`; at most one per model, kept by the registry under the model's lock).
    ``job_id`` is unique: one job yields at most one version.
    ``champion_history``: the audit trail, append-only: every registry event (``registered``,
    ``promoted``, ``rejected``, ``rolled_back``, ``shadow_started``, ``shadow_report``; with
    ``registry.backend: mlflow`` also ``external_change`` and ``mlflow_deleted``, which are
    history rows only, never ``driftloop.models`` events) with the champion before and after it, who
    decided (``actor``), why (``reason``) and the evidence (``details``: both models' metrics,
    the test). Which version was champion at time *t* is the ``champion_version`` of the last
    row with ``decided_at <= t``.
    ``mlflow_models`` (``registry.backend: mlflow``, :mod:`retrain.mlflow_registry`): per
    model, the MLflow alias as driftloop last saw and moved it; ``model_versions.mlflow_*``
    hold each version's mirror (state, run, MLflow version number, the status in its tags).
The HTTP API (:mod:`driftloop.app.api.live`)
    ``api_heartbeat``: one row per API process, rewritten by ``/readyz``.
Shadow predictions (:mod:`consumers.shadow_join`, in the monitor's batch transaction)
    ``shadow_examples``: one row per (model, event_id, model_version): a challenger's answer
    to the request whose served answer has that ``event_id`` (contract v1.1). ``joined_at`` is
    set when the served row in ``examples`` holds both halves; the label stays there.

>>> import sqlalchemy as sa
>>> engine = sa.create_engine("sqlite://")
>>> metadata.create_all(engine)
>>> sorted(sa.inspect(engine).get_table_names()) == sorted(metadata.tables)
True
>>> len(metadata.tables)
21
"""
from __future__ import annotations

import sqlalchemy as sa

__all__ = ["metadata",
           "offsets", "examples", "counters", "outbox", "detector_state", "analysis_journal", "analysis_progress", "analysis_judge",
           "detector_history", "performance_history",
           "alerts", "incidents", "alert_events", "alert_deliveries", "alert_stream_watch",
           "retrain_jobs", "model_versions", "champion_history", "JOB_STATUSES", "VERSION_STATUSES",
           "api_heartbeat", "shadow_examples", "mlflow_models"]

metadata = sa.MetaData()
"""The one metadata every table is declared on: ``Store.create_schema`` creates it whole."""

_ID = sa.BigInteger().with_variant(sa.Integer, "sqlite")

# -- the monitor's batch transaction ------------------------------------------------------
offsets = sa.Table(
    "offsets", metadata,
    sa.Column("group_id", sa.String(255), primary_key=True),
    sa.Column("topic", sa.String(255), primary_key=True),
    sa.Column("partition", sa.Integer, primary_key=True),
    sa.Column("next_offset", sa.BigInteger, nullable=False),
    sa.Column("updated_at", sa.BigInteger, nullable=False),
)

# One row per (model, event_id): the prediction half, the label half, or both (joined).
examples = sa.Table(
    "examples", metadata,
    sa.Column("model", sa.String(128), primary_key=True),
    sa.Column("event_id", sa.String(128), primary_key=True),
    sa.Column("pred_ts", sa.BigInteger),          # event time of the prediction, epoch ms
    sa.Column("model_version", sa.String(128)),
    sa.Column("payload", sa.LargeBinary),         # the prediction event as JSON
    sa.Column("label_ts", sa.BigInteger),
    sa.Column("label", sa.LargeBinary),           # the label value as JSON
    sa.Column("created_at", sa.BigInteger, nullable=False),   # wall clock, for pending TTLs
    sa.Column("joined_at", sa.BigInteger),
    # a rowid table on purpose: rows are ~350 B and event ids arrive in random order (UUIDs), so
    # keeping whole rows in the key b-tree (WITHOUT ROWID) costs ~3x per insert (42 vs 15 us/row
    # for 100k random ids, bench/ingest.py --uuid-ids); here rows append and only the key index
    # is written at random places
)
sa.Index("ix_examples_model_pred_ts", examples.c.model, examples.c.pred_ts)
sa.Index("ix_examples_created_at", examples.c.created_at)

counters = sa.Table(
    "counters", metadata,
    sa.Column("model", sa.String(128), primary_key=True),
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("value", sa.BigInteger, nullable=False),
)

outbox = sa.Table(
    "outbox", metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("topic", sa.String(255), nullable=False),
    sa.Column("key", sa.LargeBinary),
    sa.Column("value", sa.LargeBinary, nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("sent_at", sa.BigInteger),
)
sa.Index("ix_outbox_unsent", outbox.c.sent_at, outbox.c.id)

detector_state = sa.Table(
    "detector_state", metadata,
    sa.Column("model", sa.String(128), primary_key=True),
    sa.Column("state", sa.LargeBinary, nullable=False),
    sa.Column("updated_at", sa.BigInteger, nullable=False),
    # +1 on every save: a process whose in-memory detectors are older reloads them first
    sa.Column("generation", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("reference_version", sa.String(64)),   # the registry version the reference came from
)

# -- analysis apart from ingestion (driftloop.monitoring.journal, analysis.mode: apart) --------
# one row per model per committed batch: the columns the detectors judge (detectors.state codec);
# ``seq`` counts per model from 1; a judged row is deleted in the judgement's transaction
analysis_journal = sa.Table(
    "analysis_journal", metadata,
    sa.Column("model", sa.String(128), primary_key=True),
    sa.Column("seq", sa.BigInteger, primary_key=True),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("events", sa.BigInteger, nullable=False),      # rows the entry holds (the backlog's unit)
    sa.Column("entry", sa.LargeBinary, nullable=False),
)
# per model: the last journal ``seq`` judged, written with the detector state it produced
analysis_progress = sa.Table(
    "analysis_progress", metadata,
    sa.Column("model", sa.String(128), primary_key=True),
    sa.Column("seq", sa.BigInteger, nullable=False),
    sa.Column("updated_at", sa.BigInteger, nullable=False),
)
# one row: the judging process that started judging last (host:pid); an orphaned judging
# process (its monitor was killed) judges on until a newer one has taken over
analysis_judge = sa.Table(
    "analysis_judge", metadata,
    sa.Column("slot", sa.String(16), primary_key=True),
    sa.Column("owner", sa.String(200), nullable=False),
    sa.Column("started_at", sa.BigInteger, nullable=False),
)

# -- statistics history (driftloop.monitoring.history) --------------------------------------
detector_history = sa.Table(
    "detector_history", metadata,
    sa.Column("id", _ID, primary_key=True, autoincrement=True),
    sa.Column("model", sa.String(128), nullable=False),
    sa.Column("seq", sa.Integer, nullable=False),              # judged prediction windows so far
    sa.Column("ts", sa.BigInteger, nullable=False),            # when judged (wall clock, epoch ms)
    sa.Column("window_start", sa.BigInteger),                  # event time, epoch ms (when known)
    sa.Column("window_end", sa.BigInteger),
    sa.Column("n", sa.Integer),
    sa.Column("kind", sa.String(32), nullable=False),          # data_drift | prediction_drift | multivariate_drift
    sa.Column("detector", sa.String(64), nullable=False),      # wasserstein, psi, missing_rate, pca_reconstruction, ...
    sa.Column("feature", sa.String(512), nullable=False),      # column name; "" for multivariate
    sa.Column("statistic", sa.Float),                          # the effect size the decision uses
    sa.Column("threshold", sa.Float),                          # the effect size that counts as drift
    sa.Column("p_value", sa.Float),
    sa.Column("drifting", sa.Boolean, nullable=False),
    sa.Column("model_version", sa.String(128)),
    sa.Column("details", sa.JSON),                             # every other statistic of the window
)
sa.Index("ix_detector_history_model_id", detector_history.c.model, detector_history.c.id)
sa.Index("ix_detector_history_model_feature_ts", detector_history.c.model, detector_history.c.feature,
         detector_history.c.ts)

performance_history = sa.Table(
    "performance_history", metadata,
    sa.Column("id", _ID, primary_key=True, autoincrement=True),
    sa.Column("model", sa.String(128), nullable=False),
    sa.Column("source", sa.String(16), nullable=False),        # realised (labels) | estimated (CBPE)
    sa.Column("seq", sa.Integer, nullable=False),              # judged windows of that stream so far
    sa.Column("ts", sa.BigInteger, nullable=False),
    sa.Column("window_start", sa.BigInteger),
    sa.Column("window_end", sa.BigInteger),
    sa.Column("n", sa.Integer),
    sa.Column("metric", sa.String(64), nullable=False),
    sa.Column("value", sa.Float),
    sa.Column("baseline", sa.Float),
    sa.Column("ci_low", sa.Float),
    sa.Column("ci_high", sa.Float),
    sa.Column("p_value", sa.Float),
    sa.Column("threshold", sa.Float),                          # the drop from the baseline that counts
    sa.Column("degraded", sa.Boolean, nullable=False),
    sa.Column("model_version", sa.String(128)),
)
sa.Index("ix_performance_history_model_source_id", performance_history.c.model, performance_history.c.source,
         performance_history.c.id)
sa.Index("ix_performance_history_model_ts", performance_history.c.model, performance_history.c.ts)

# -- alerts (driftloop.alerts) ---------------------------------------------------------------
alerts = sa.Table(
    "alerts", metadata,
    sa.Column("alert_id", sa.String(64), primary_key=True),
    sa.Column("model", sa.String(128), nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("detector", sa.String(64), nullable=False),
    sa.Column("feature", sa.String(512)),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("severity", sa.String(16), nullable=False),
    sa.Column("model_version", sa.String(128)),
    sa.Column("seq", sa.Integer, nullable=False),
    sa.Column("group_id", sa.String(64)),
    sa.Column("due_at", sa.BigInteger),
    sa.Column("started_at", sa.BigInteger),
    sa.Column("updated_at", sa.BigInteger, nullable=False),
    sa.Column("summary", sa.Text),
    sa.Column("state", sa.LargeBinary, nullable=False),
)
sa.Index("ix_alerts_model_status", alerts.c.model, alerts.c.status)
sa.Index("ix_alerts_status_due", alerts.c.status, alerts.c.due_at)
sa.Index("ix_alerts_updated", alerts.c.updated_at)

incidents = sa.Table(
    "incidents", metadata,
    sa.Column("incident_id", sa.String(64), primary_key=True),
    sa.Column("model", sa.String(128), nullable=False),
    sa.Column("model_version", sa.String(128)),
    sa.Column("ordinal", sa.Integer, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("severity", sa.String(16), nullable=False),
    sa.Column("seq", sa.Integer, nullable=False),
    sa.Column("due_at", sa.BigInteger),
    sa.Column("started_at", sa.BigInteger, nullable=False),
    sa.Column("updated_at", sa.BigInteger, nullable=False),
    sa.Column("summary", sa.Text),
    sa.Column("state", sa.LargeBinary, nullable=False),
)
"""One row per incident (:mod:`driftloop.alerts.incidents`); its announced changes are rows of
``alert_events``/``alert_deliveries`` keyed by ``incident_id`` (ids never collide with alert ids)."""
sa.Index("ix_incidents_model_status", incidents.c.model, incidents.c.status)
sa.Index("ix_incidents_status_due", incidents.c.status, incidents.c.due_at)

alert_events = sa.Table(
    "alert_events", metadata,
    sa.Column("id", _ID, primary_key=True, autoincrement=True),
    sa.Column("idempotency_key", sa.String(96), nullable=False, unique=True),
    sa.Column("alert_id", sa.String(64), nullable=False),
    sa.Column("seq", sa.Integer, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("model", sa.String(128), nullable=False),
    sa.Column("severity", sa.String(16), nullable=False),
    sa.Column("reason", sa.String(64), nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("message", sa.LargeBinary, nullable=False),
)
sa.Index("ix_alert_events_alert", alert_events.c.alert_id, alert_events.c.seq)

alert_deliveries = sa.Table(
    "alert_deliveries", metadata,
    sa.Column("id", _ID, primary_key=True, autoincrement=True),
    sa.Column("idempotency_key", sa.String(96), nullable=False),
    sa.Column("alert_id", sa.String(64), nullable=False),
    sa.Column("sink", sa.String(128), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("next_attempt_at", sa.BigInteger, nullable=False),
    sa.Column("lease_until", sa.BigInteger),
    sa.Column("last_error", sa.Text),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("sent_at", sa.BigInteger),
    sa.UniqueConstraint("idempotency_key", "sink", name="uq_alert_deliveries_key_sink"),
)
sa.Index("ix_alert_deliveries_sink_status", alert_deliveries.c.sink, alert_deliveries.c.status,
         alert_deliveries.c.id)

alert_stream_watch = sa.Table(
    "alert_stream_watch", metadata,
    sa.Column("model", sa.String(128), primary_key=True),
    sa.Column("stream", sa.String(32), primary_key=True),
    sa.Column("last_count", sa.BigInteger, nullable=False),
    sa.Column("changed_at", sa.BigInteger, nullable=False),
    sa.Column("stale", sa.Boolean, nullable=False),
    sa.Column("checked_at", sa.BigInteger, nullable=False),
)

# -- retraining and the registry (retrain) ---------------------------------------------------
JOB_STATUSES = ("queued", "running", "done", "failed", "skipped")
VERSION_STATUSES = ("registered", "champion", "archived", "rejected", "shadow")

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
    # registry.backend: mlflow (retrain.mlflow_registry): the version's mirror in MLflow
    sa.Column("mlflow_state", sa.String(16)),       # null: not mirrored yet | pending | synced | deleted
    sa.Column("mlflow_run_id", sa.String(64)),      # the run its files and lineage were logged in
    sa.Column("mlflow_version", sa.Integer),        # its version number in MLflow's registered model
    sa.Column("mlflow_status", sa.String(16)),      # the status last written to its MLflow tags
)
sa.Index("ux_model_versions_one_champion", model_versions.c.model, unique=True,
         sqlite_where=model_versions.c.status == "champion",
         postgresql_where=model_versions.c.status == "champion")

champion_history = sa.Table(
    "champion_history", metadata,
    sa.Column("id", _ID, primary_key=True, autoincrement=True),
    sa.Column("model", sa.String(128), nullable=False),
    sa.Column("event", sa.String(16), nullable=False),            # registered | promoted | rejected | rolled_back
    #                                                               | shadow_started | shadow_report
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

# registry.backend: mlflow (retrain.mlflow_registry): per model, what driftloop last saw and did
# to the MLflow alias that follows its champion. ``alias_seen``: the MLflow version the alias
# pointed to when driftloop last read or moved it (null: no alias), so a move by someone else
# is recorded once; ``champion_applied``: the driftloop champion version whose alias move is
# done (the move is pending while it differs from the champion).
mlflow_models = sa.Table(
    "mlflow_models", metadata,
    sa.Column("model", sa.String(128), primary_key=True),
    sa.Column("alias_seen", sa.Integer),
    sa.Column("champion_applied", sa.Integer),
    sa.Column("checked_at", sa.BigInteger),       # the last reconciliation that reached MLflow
    sa.Column("last_error", sa.Text),             # the last failure to reach or use MLflow (null: none)
)

# -- the HTTP API (driftloop.app.api) --------------------------------------------------------
api_heartbeat = sa.Table(
    "api_heartbeat", metadata,
    sa.Column("name", sa.String(255), primary_key=True),
    sa.Column("ts", sa.BigInteger, nullable=False),
)
"""One row per API process, rewritten by ``/readyz`` to prove the store takes writes."""

# -- shadow predictions (consumers.shadow_join) ------------------------------------------------
# One row per (model, event_id, model_version): a shadow prediction, a challenger's answer to the
# request the served prediction ``examples[(model, event_id)]`` answered. Its label is that served
# row's label (not copied here). The key is (model, model_version, event_id), in the order that
# lets the primary key's index find every version of one event id (the label's join).
shadow_examples = sa.Table(
    "shadow_examples", metadata,
    sa.Column("model", sa.String(128), primary_key=True),
    sa.Column("event_id", sa.String(128), primary_key=True),
    sa.Column("model_version", sa.String(128), primary_key=True),
    sa.Column("pred_ts", sa.BigInteger, nullable=False),      # event time of the shadow prediction, epoch ms
    sa.Column("payload", sa.LargeBinary, nullable=False),     # the shadow prediction event as JSON
    sa.Column("created_at", sa.BigInteger, nullable=False),   # wall clock: its TTL, and the retention once joined
    sa.Column("joined_at", sa.BigInteger),                    # when the served row had both halves; null: pending
)
sa.Index("ix_shadow_examples_created_at", shadow_examples.c.created_at)
