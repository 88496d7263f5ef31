"""Retraining: jobs on Kafka, champion vs challenger, a registry with history.

The path of a retrain, module by module:

* :mod:`driftloop.core.config.retrain` - the ``registry`` section and each model's ``retrain`` policy/recipe;
* :mod:`retrain.policy` - :class:`RetrainScheduler`: alerts (in the monitor's transaction), a
  cron schedule, or ``driftloop retrain MODEL`` enqueue a job (``retrain_jobs`` + outbox);
* :mod:`retrain.events` - the ``driftloop.retrain`` and ``driftloop.models`` messages, and
  :func:`switch_target` for the monitor;
* :mod:`retrain.worker` - ``driftloop retrain-worker``: the consumer group running the jobs;
* :mod:`retrain.training` - one job: :mod:`retrain.dataset` (the window's labelled examples,
  time-ordered, newest part held out), :mod:`retrain.recipe` (the unfitted challenger),
  :mod:`retrain.evaluate` (metrics, McNemar, paired bootstrap, the promotion rule);
* :mod:`retrain.registry` - versions, champion, shadow, audit history, :func:`load_reference`;
* ``registry.backend: mlflow`` - :mod:`retrain.mlflow_registry` (the registry mirrored into an
  MLflow model registry: runs, versions, tags, the alias; what survives which crash),
  :mod:`retrain.mlflow_client` (the checked calls to MLflow), :mod:`retrain.mlflow_import`
  (``models import --from-mlflow``), :mod:`retrain.mlmodel` (MLflow's ``MLmodel`` file);
* :mod:`retrain.shadow` - the shadow phase (``retrain.shadow``): the monitor's live paired
  comparison promotes or rejects a challenger running in shadow;
  :mod:`retrain.artifacts` - skops model files and JSON samples, SHA-256 checked;
* the tables (``retrain_jobs``, ``model_versions``, ``champion_history``) are declared with every
  other in :mod:`driftloop.core.tables`;
* :mod:`retrain.cli` - ``retrain-worker``, ``retrain``, ``models ...`` commands.

The retrain layer sits above the alerts (alerts enqueue its jobs) and below the application.
May import: ``driftloop.alerts``, ``driftloop.monitoring``, ``detectors``, ``consumers``,
``driftloop.kafka``, ``driftloop.core``.
"""
from retrain.events import ModelEvent, RetrainJob, Switch, switch_target
from retrain.policy import RetrainScheduler
from retrain.registry import Registry, load_reference

__all__ = ["RetrainScheduler", "RetrainJob", "ModelEvent", "Switch", "switch_target", "Registry", "load_reference"]
