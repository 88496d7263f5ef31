"""The retraining settings: the ``registry`` section and each model's ``retrain`` section.

:class:`driftloop.core.config.Config` keeps both as raw mappings; they are validated here, with
every key documented and defaulted, unknown keys refused, and errors raised as
:class:`driftloop.core.config.ConfigError` naming the key::

    registry:
      artifact_dir: artifacts          # model files and reference samples (relative to the config)
    models:
      fraud:
        retrain:
          on_kinds: [concept_drift, performance]
          min_severity: critical
          min_examples: 5000
          cooldown_s: 21600
          schedule: "0 3 * * 1"        # also every Monday 03:00 (cron), alerts or not
          metric: accuracy
          min_delta: 0.005
          recipe:
            estimator: sklearn.ensemble.RandomForestClassifier
            params: {n_estimators: 200, min_samples_leaf: 5}

>>> p = RetrainPolicy.from_dict({"min_examples": 500, "recipe": {"params": {"max_iter": 50}}},
...                             task="classification", where="models.fraud.retrain")
>>> p.min_examples, p.primary_metric, p.recipe.estimator_path("classification")
(500, 'accuracy', 'sklearn.ensemble.HistGradientBoostingClassifier')
>>> RetrainPolicy.from_dict({"min_delta": -1}, task="regression", where="models.price.retrain")
Traceback (most recent call last):
...
driftloop.core.config.ConfigError: models.price.retrain.min_delta: must be >= 0, got -1.0
"""
from __future__ import annotations

import importlib
import re
from pathlib import Path
from typing import Any, Literal

import msgspec

from driftloop.core.config import Config, ConfigError, ConfigSection
from driftloop.core.moved import current_module

__all__ = [
    "ALERT_KINDS",
    "CLASSIFICATION_METRICS",
    "REGRESSION_METRICS",
    "RANKING_METRICS",
    "RecipeConfig",
    "RetrainPolicy",
    "ShadowPolicy",
    "RegistryConfig",
    "MlflowConfig",
    "MLFLOW_EXTRA_HINT",
    "registry_config",
    "retrain_policy",
    "retrain_policies",
    "validate",
    "import_object",
]

ALERT_KINDS = ("data_drift", "prediction_drift", "concept_drift", "performance", "multivariate_drift",
               "stale_stream")
CLASSIFICATION_METRICS = ("accuracy", "balanced_accuracy", "f1_macro", "log_loss", "roc_auc")
REGRESSION_METRICS = ("rmse", "mae", "r2")
# a ranking model's metrics (any `name@k` of these bases is allowed as `metric`; detectors.ranking_metrics)
RANKING_METRICS = ("ndcg@10", "precision@10", "recall@10", "map@10", "mrr", "hit_rate@10")
_TYPE_NAME = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)+")
DEFAULT_ESTIMATORS = {
    "classification": "sklearn.ensemble.HistGradientBoostingClassifier",
    "regression": "sklearn.ensemble.HistGradientBoostingRegressor",
    "ranking": "retrain.ranker.PopularityRanker",
}


def _convert(data: Any, cls: type, where: str) -> Any:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: must be a mapping, got {type(data).__name__}")
    try:
        return msgspec.convert(data, cls, strict=False)
    except msgspec.ValidationError as exc:
        msg = str(exc)
        # msgspec says "... - at `$.recipe.params`": point at the full key instead
        if " - at `$" in msg:
            text, _, path = msg.rpartition(" - at `$")
            raise ConfigError(f"{where}{path.rstrip('`')}: {text}") from None
        raise ConfigError(f"{where}: {msg}") from None


def import_object(path: str) -> Any:
    """Import ``package.module.Name`` or ``package.module:name``; clear errors for typos.

    >>> import_object("sklearn.linear_model.LogisticRegression").__name__
    'LogisticRegression'
    >>> import_object("math:sqrt")(9.0)
    3.0
    >>> import_object("driftloop.demo_data:make_estimator").__module__   # its path before issue 13
    'driftloop.app.demo_data'
    """
    if ":" in path:
        module_name, _, attr = path.partition(":")
    else:
        module_name, _, attr = path.rpartition(".")
    if not module_name or not attr:
        raise ImportError(f"{path!r} is not an import path (expected 'package.module.Name' or 'module:function')")
    module_name = current_module(module_name)   # a file written before the layout's move (issue 13)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ImportError(f"cannot import module {module_name!r} for {path!r}: {exc}") from None
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ImportError(f"module {module_name!r} has no attribute {attr!r} (from {path!r})") from None
    return obj


class RecipeConfig(ConfigSection):
    """How a challenger is built (``models.<name>.retrain.recipe``).

    Give at most one of:

    ``estimator``
        Import path of a scikit-learn estimator or ``Pipeline`` class
        (e.g. ``sklearn.ensemble.RandomForestClassifier``), constructed with ``params``.
        Default: ``HistGradientBoostingClassifier`` / ``...Regressor`` by task.
    ``factory``
        ``module:function``, called as ``function(**params)``; returns an unfitted estimator.

    ``preprocess``
        ``auto`` (default): a plain estimator (not a ``Pipeline``) is wrapped in a pipeline
        that imputes numeric features (median) and one-hot encodes categorical ones;
        ``none``: the estimator receives the raw feature ``DataFrame`` (numeric ``float64``
        with ``NaN``, categorical strings with ``NaN``).
    ``max_categories``
        Most one-hot columns per categorical feature in the ``auto`` preprocessing (rarer
        values share an "infrequent" column). Default 32.

    A ``random_state`` parameter left unset anywhere in the estimator is set to ``seed``
    (default 0), so that a job redone after a crash trains the same model.
    """

    estimator: str | None = None
    factory: str | None = None
    params: dict[str, Any] = msgspec.field(default_factory=dict)
    preprocess: Literal["auto", "none"] = "auto"
    max_categories: int = 32
    seed: int = 0

    def estimator_path(self, task: str) -> str:
        """The estimator class path this recipe uses (the default for ``task`` if unset)."""
        return self.estimator or DEFAULT_ESTIMATORS[task]

    def describe(self, task: str) -> dict[str, Any]:
        """JSON-able description for the registry (what was trained and how)."""
        out: dict[str, Any] = {"params": self.params, "preprocess": self.preprocess, "seed": self.seed}
        if self.factory:
            out["factory"] = self.factory
        else:
            out["estimator"] = self.estimator_path(task)
        return out


class ShadowPolicy(ConfigSection):
    """The shadow phase before a promotion (``models.<name>.retrain.shadow``).

    ``min_labels`` [1000]: labelled live requests both the champion and the shadow answered
    before the live comparison decides (>= 1); ``max_hours`` [72]: a shadow not promoted
    this long after it started is rejected (> 0). The live decision takes the paired
    comparison's own verdict (:class:`detectors.paired.ShadowComparison`: McNemar for
    classification, a paired test of the errors for regression, at its ``alpha``): significantly
    better: promoted; otherwise rejected. See :mod:`retrain.shadow`.
    """

    min_labels: int = 1000
    max_hours: float = 72.0

    @property
    def max_ms(self) -> int:
        return int(self.max_hours * 3_600_000)


class RetrainPolicy(ConfigSection):
    """When and how one model is retrained (``models.<name>.retrain``). Defaults in brackets.

    Triggering
        ``enabled`` [true]; ``on_kinds``: alert kinds that trigger a job [every kind except
        ``stale_stream``; ``data_quality`` never does: a model retrained on a broken pipeline's
        data would learn the defect]; ``min_severity`` [``critical``]: ``warning`` also lets warnings
        trigger; ``min_examples`` [1000]: joined labelled examples the window must hold;
        ``cooldown_s`` [3600]: no alert-triggered job sooner than this after the model's
        previous job (requested or finished, whichever is later); ``schedule`` [none]: a
        5-field crontab (``"0 3 * * *"``) for periodic jobs regardless of alerts (they skip
        the cooldown, not the one-job-in-flight rule); ``timezone`` [UTC] of the schedule.
    Data
        ``window_s`` [7 days]: labelled examples whose prediction time lies in the last
        ``window_s`` seconds before the job was requested; ``max_examples`` [200000]: the most
        recent ones if there are more; ``mix_reference`` [false]: also train on the
        champion's reference sample (older than the window in time order, never held out);
        ``holdout_fraction`` [0.2]: the most recent part, held out for the comparison;
        ``min_holdout`` [200] rows.
    Decision
        ``metric``: primary metric [``accuracy`` for classification, ``rmse`` for regression];
        one of ``accuracy``, ``balanced_accuracy``, ``f1_macro``, ``log_loss``, ``roc_auc`` /
        ``rmse``, ``mae``, ``r2``. The challenger is promoted only if it improves the metric
        by at least ``min_delta`` [0.0, in the metric's units] AND the improvement is
        significant at ``alpha`` [0.05]: exact McNemar test for ``accuracy``, a one-sided
        paired bootstrap with ``bootstrap_samples`` [1000] resamples otherwise.
    Shadow phase
        ``shadow`` [none: a challenger that passes the gate is promoted at once]:
        ``{min_labels, max_hours}`` (:class:`ShadowPolicy`). A challenger that passes the offline
        gate above is put in shadow instead (registry status ``shadow``, event ``shadow_started``):
        it answers live requests beside the champion without being shown, and the monitor
        compares both on the same labelled requests. Once ``min_labels`` are compared, a
        significantly better shadow is promoted (its live paired p-value in the ``promoted``
        event) and any other is rejected with the live evidence; a shadow still undecided
        ``max_hours`` after it started is rejected. One shadow per model: while it runs, alerts
        and the schedule enqueue no job of the model (a manual one needs ``--force``); a newer
        challenger that passes the gate replaces the running one (rejected as superseded).
    ``recipe``: see :class:`RecipeConfig`.
    """

    enabled: bool = True
    on_kinds: list[Literal["data_drift", "prediction_drift", "concept_drift", "performance",
                           "multivariate_drift", "stale_stream"]] = msgspec.field(
        default_factory=lambda: ["data_drift", "prediction_drift", "concept_drift", "performance",
                                 "multivariate_drift"])
    min_severity: Literal["warning", "critical"] = "critical"
    min_examples: int = 1000
    cooldown_s: float = 3600.0
    schedule: str | None = None
    timezone: str = "UTC"
    window_s: float = 7 * 86_400.0
    max_examples: int = 200_000
    mix_reference: bool = False
    holdout_fraction: float = 0.2
    min_holdout: int = 200
    metric: str | None = None
    min_delta: float = 0.0
    alpha: float = 0.05
    bootstrap_samples: int = 1000
    recipe: RecipeConfig = msgspec.field(default_factory=RecipeConfig)
    shadow: ShadowPolicy | None = None
    task: str = "classification"   # filled from the model's config, not read from the section

    @property
    def primary_metric(self) -> str:
        return self.metric or {"classification": "accuracy", "ranking": "ndcg@10"}.get(self.task, "rmse")

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None, *, task: str, where: str = "retrain") -> RetrainPolicy:
        """Validate one model's ``retrain`` section (``task`` is the model's)."""
        if isinstance(data, dict) and "task" in data:
            raise ConfigError(f"{where}.task: unknown key (the task is the model's `task`)")
        policy: RetrainPolicy = _convert(data, cls, where)
        policy.task = task
        policy._check(where)
        return policy

    def _check(self, where: str) -> None:
        for key in ("min_examples", "max_examples", "min_holdout", "bootstrap_samples"):
            if getattr(self, key) <= 0:
                raise ConfigError(f"{where}.{key}: must be positive, got {getattr(self, key)}")
        for key in ("cooldown_s", "min_delta"):
            if getattr(self, key) < 0:
                raise ConfigError(f"{where}.{key}: must be >= 0, got {float(getattr(self, key))}")
        if self.window_s <= 0:
            raise ConfigError(f"{where}.window_s: must be positive, got {self.window_s}")
        if not 0.0 < self.holdout_fraction < 1.0:
            raise ConfigError(f"{where}.holdout_fraction: must be between 0 and 1, got {self.holdout_fraction}")
        if not 0.0 < self.alpha < 1.0:
            raise ConfigError(f"{where}.alpha: must be between 0 and 1, got {self.alpha}")
        if self.task == "ranking":
            from detectors.ranking_metrics import parse_metric
            try:
                parse_metric(self.primary_metric)
            except ValueError as exc:
                raise ConfigError(f"{where}.metric: {exc}") from None
            return self._check_rest(where)
        allowed = CLASSIFICATION_METRICS if self.task == "classification" else REGRESSION_METRICS
        if self.primary_metric not in allowed:
            raise ConfigError(f"{where}.metric: {self.primary_metric!r} is not a {self.task} metric; "
                              f"use one of {', '.join(allowed)}")
        self._check_rest(where)

    def _check_rest(self, where: str) -> None:
        """The schedule, the recipe and the shadow phase."""
        if self.schedule is not None:
            from apscheduler.triggers.cron import CronTrigger
            try:
                CronTrigger.from_crontab(self.schedule, timezone=self.timezone)
            except (ValueError, LookupError) as exc:
                raise ConfigError(f"{where}.schedule: {self.schedule!r} is not a 5-field crontab "
                                  f"(minute hour day month weekday) in time zone {self.timezone!r}: {exc}") from None
        self._check_recipe(f"{where}.recipe")
        if self.shadow is not None and self.task == "ranking":
            raise ConfigError(f"{where}.shadow: a ranking model's challenger is promoted on the held-out "
                              "requests; the live shadow comparison is for classifiers and regressors")
        if self.shadow is not None:
            if self.shadow.min_labels < 1:
                raise ConfigError(f"{where}.shadow.min_labels: must be >= 1, got {self.shadow.min_labels}")
            if not self.shadow.max_hours > 0:
                raise ConfigError(f"{where}.shadow.max_hours: must be > 0, got {self.shadow.max_hours}")

    def _check_recipe(self, where: str) -> None:
        r = self.recipe
        if r.estimator and r.factory:
            raise ConfigError(f"{where}: give `estimator` or `factory`, not both")
        if r.max_categories < 2:
            raise ConfigError(f"{where}.max_categories: must be >= 2, got {r.max_categories}")
        if r.factory is not None:
            if ":" not in r.factory:
                raise ConfigError(f"{where}.factory: {r.factory!r} must be 'module:function'")
            try:
                fn = import_object(r.factory)
            except ImportError as exc:
                raise ConfigError(f"{where}.factory: {exc}") from None
            if not callable(fn):
                raise ConfigError(f"{where}.factory: {r.factory!r} is not callable")
            return
        path = r.estimator_path(self.task)
        try:
            klass = import_object(path)
        except ImportError as exc:
            raise ConfigError(f"{where}.estimator: {exc}") from None
        if not isinstance(klass, type) or not hasattr(klass, "fit"):
            raise ConfigError(f"{where}.estimator: {path!r} is not an estimator class (no `fit`)")
        try:
            klass(**r.params)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{where}.params: {path} does not accept these parameters: {exc}") from None


MLFLOW_EXTRA_HINT = "pip install 'driftloop[mlflow]'"
_MLFLOW_RESERVED_ALIAS = re.compile(r"latest|v\d+", re.IGNORECASE)
_MLFLOW_ALIAS = re.compile(r"[A-Za-z_][\w-]{0,254}")


class MlflowConfig(ConfigSection):
    """The MLflow model registry as driftloop's registry (``registry.mlflow``, with
    ``registry.backend: mlflow``; :mod:`retrain.mlflow_registry`). Defaults in brackets.

    ``tracking_uri`` (required): the tracking server, ``http://`` or ``https://`` (the registry
    URI is the same). ``experiment`` [``driftloop``]: the experiment the runs are logged in.
    ``model_names`` [each driftloop model's own name]: ``{driftloop model: registered model name
    in MLflow}``. ``alias`` [``champion``]: the alias that follows driftloop's champion (MLflow
    reserves ``latest`` and ``v<digits>``). ``allow_pickle_import`` [false]: ``models import
    --from-mlflow`` of a model saved with pickle or cloudpickle (which run code when loaded) is
    refused unless this is true; an allowed one is loaded once and kept as skops.
    ``poll_s`` [30]: how often the retrain worker checks MLflow (pending mirror work, an alias
    moved by hand, a version deleted). ``http_timeout_s`` [10] and ``http_retries`` [1]: per
    MLflow request (MLflow's own defaults, 120 s and 7 retries, would hold a job for minutes
    when the server is down).
    """

    tracking_uri: str = ""
    experiment: str = "driftloop"
    model_names: dict[str, str] = msgspec.field(default_factory=dict)
    alias: str = "champion"
    allow_pickle_import: bool = False
    poll_s: float = 30.0
    http_timeout_s: float = 10.0
    http_retries: int = 1

    def model_name(self, model: str) -> str:
        """The registered model's name in MLflow for driftloop model ``model``."""
        return self.model_names.get(model, model)

    def check(self, where: str) -> None:
        """Raise :class:`ConfigError` naming the key of the first invalid value."""
        from urllib.parse import urlsplit

        if not self.tracking_uri:
            raise ConfigError(f"{where}.tracking_uri: required with registry.backend: mlflow "
                              "(e.g. http://127.0.0.1:5000)")
        parts = urlsplit(self.tracking_uri)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"{where}.tracking_uri: {self.tracking_uri!r} is not an http(s) URL of an MLflow "
                              "tracking server")
        if not self.experiment.strip() or len(self.experiment) > 500:
            raise ConfigError(f"{where}.experiment: must be a name of 1 to 500 characters")
        if not _MLFLOW_ALIAS.fullmatch(self.alias) or _MLFLOW_RESERVED_ALIAS.fullmatch(self.alias):
            raise ConfigError(f"{where}.alias: {self.alias!r} is not an alias MLflow accepts (letters, digits, _ "
                              "and -, not 'latest' nor v<digits>)")
        for model, name in self.model_names.items():
            if not name or len(name) > 256 or "/" in name or ":" in name:
                raise ConfigError(f"{where}.model_names.{model}: {name!r} must be 1 to 256 characters without "
                                  "'/' or ':'")
        for key in ("poll_s", "http_timeout_s"):
            if not getattr(self, key) > 0:
                raise ConfigError(f"{where}.{key}: must be positive, got {getattr(self, key)}")
        if self.http_retries < 0:
            raise ConfigError(f"{where}.http_retries: must be >= 0, got {self.http_retries}")


class RegistryConfig(ConfigSection):
    """The model registry and the retrain worker (top-level ``registry`` section).

    ``artifact_dir`` [``artifacts``]: where model files and reference samples are written,
    relative to the configuration file; on PostgreSQL with workers on several hosts it must
    be a shared folder. ``worker_group_id`` [``driftloop-retrain``]: the workers' consumer
    group (also the key of their offsets in the store). ``trusted_types`` [none]: skops types
    (``module.Name``) trusted when loading a model, besides skops' defaults and
    :data:`retrain.artifacts.BUILTIN_TRUSTED`; the types recorded with a version in the
    database are never trusted. A recipe whose fitted model needs other types fails its job
    with the list to add here; ``models register --trust`` vouches for an external file but
    cannot go beyond this list. ``max_attempts`` [3]:
    a job whose worker died this many times is marked failed instead of retried.
    ``max_give_backs`` [10]: how many times one job's attempt is given back (not counted)
    because a graceful stop, a store error or a disk error (``OSError``) interrupted it; past
    that, such interruptions count as attempts, so a job that keeps meeting them ends
    ``failed`` after at most ``max_attempts + max_give_backs`` starts. Stored with the job
    (``retrain_jobs.give_backs``): restarts do not reset it. 0: every start counts.
    ``job_timeout_s`` [6 h]: a queued or running job older than this no longer blocks new
    jobs of its model. ``poll_timeout_ms`` [1000] of the worker's consumer. ``threads`` [none:
    the libraries' default]: cap on the BLAS/OpenMP threads a job uses (on a shared host,
    HistGradientBoosting with more OpenMP threads than free cores can be 20x slower).
    ``backend`` [``local``]: ``mlflow`` also keeps every version in an MLflow model registry
    (section ``mlflow``, :class:`MlflowConfig`; needs the ``mlflow`` extra); driftloop's store
    stays the authority and the audit trail either way.
    """

    artifact_dir: str = "artifacts"
    worker_group_id: str = "driftloop-retrain"
    trusted_types: list[str] = msgspec.field(default_factory=list)
    max_attempts: int = 3
    max_give_backs: int = 10
    job_timeout_s: float = 6 * 3600.0
    poll_timeout_ms: int = 1000
    threads: int | None = None
    backend: Literal["local", "mlflow"] = "local"
    mlflow: MlflowConfig | None = None
    base_dir: str = "."   # filled from the configuration file's folder

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None, *, base_dir: str = ".", where: str = "registry") -> RegistryConfig:
        if isinstance(data, dict) and "base_dir" in data:
            raise ConfigError(f"{where}.base_dir: unknown key")
        reg: RegistryConfig = _convert(data, cls, where)
        reg.base_dir = str(base_dir)
        for key in ("max_attempts", "poll_timeout_ms"):
            if getattr(reg, key) <= 0:
                raise ConfigError(f"{where}.{key}: must be positive, got {getattr(reg, key)}")
        if reg.max_give_backs < 0:
            raise ConfigError(f"{where}.max_give_backs: must be >= 0, got {reg.max_give_backs}")
        if reg.threads is not None and reg.threads <= 0:
            raise ConfigError(f"{where}.threads: must be positive, got {reg.threads}")
        if reg.job_timeout_s <= 0:
            raise ConfigError(f"{where}.job_timeout_s: must be positive, got {reg.job_timeout_s}")
        if not reg.worker_group_id:
            raise ConfigError(f"{where}.worker_group_id: must not be empty")
        for i, name in enumerate(reg.trusted_types):
            if not _TYPE_NAME.fullmatch(name):
                raise ConfigError(f"{where}.trusted_types[{i}]: {name!r} is not a type's import path "
                                  "(module.Name, as skops.io.get_untrusted_types lists it)")
        reg._check_backend(where)
        return reg

    def _check_backend(self, where: str) -> None:
        if self.backend == "local":      # an mlflow section is kept but unused (switch with DRIFTLOOP__REGISTRY__BACKEND)
            return
        if self.mlflow is None:
            raise ConfigError(f"{where}.mlflow.tracking_uri: required with {where}.backend: mlflow")
        self.mlflow.check(f"{where}.mlflow")
        import importlib.util

        if importlib.util.find_spec("mlflow") is None:
            raise ConfigError(f"{where}.backend: mlflow needs the MLflow client, which is not installed: "
                              f"{MLFLOW_EXTRA_HINT}")

    @property
    def mlflow_settings(self) -> MlflowConfig:
        """The ``mlflow`` section (``backend: mlflow`` only; validated)."""
        if self.backend != "mlflow" or self.mlflow is None:
            raise ConfigError("registry.backend: the MLflow settings are used with backend: mlflow only")
        return self.mlflow

    @property
    def artifact_path(self) -> Path:
        p = Path(self.artifact_dir)
        return p if p.is_absolute() else Path(self.base_dir) / p


def registry_config(cfg: Config) -> RegistryConfig:
    """The validated ``registry`` section of ``cfg``."""
    return RegistryConfig.from_dict(cfg.registry, base_dir=cfg.base_dir)


def retrain_policy(cfg: Config, model: str) -> RetrainPolicy:
    """The validated ``retrain`` section of one configured model."""
    if model not in cfg.models:
        raise ConfigError(f"models: no model named {model!r} in the configuration "
                          f"(configured: {', '.join(sorted(cfg.models)) or 'none'})")
    mc = cfg.models[model]
    return RetrainPolicy.from_dict(mc.retrain, task=mc.task, where=f"models.{model}.retrain")


def retrain_policies(cfg: Config) -> dict[str, RetrainPolicy]:
    return {name: retrain_policy(cfg, name) for name in cfg.models}


def validate(cfg: Config) -> None:
    """Validate every retraining-related section; raises :class:`ConfigError`.

    Meant to run where the configuration is loaded, so that a typo fails at start-up.
    """
    reg = registry_config(cfg)
    if reg.mlflow is not None:
        for model in reg.mlflow.model_names:
            if model not in cfg.models:
                raise ConfigError(f"registry.mlflow.model_names.{model}: no model named {model!r} in the "
                                  f"configuration (configured: {', '.join(sorted(cfg.models)) or 'none'})")
    keep = cfg.ingest.joined_retention_s
    for name, policy in retrain_policies(cfg).items():
        if keep > 0 and policy.window_s > keep:
            raise ConfigError(
                f"models.{name}.retrain.window_s ({policy.window_s:g} s) is longer than "
                f"ingest.joined_retention_s ({keep:g} s): the older examples would already be pruned; "
                f"raise the retention (0 keeps examples forever) or shorten the window")
