"""``driftloop models import --from-mlflow NAME [VERSION|@ALIAS]``: an existing MLflow model
under monitoring, without retraining.

1. The version is resolved in MLflow (a number, ``@alias``, default ``@<registry.mlflow.alias>``)
   and its files are downloaded into a temporary folder (never from a location on this host:
   :meth:`~retrain.mlflow_client.MlflowGateway.download_uri`).
2. Its ``MLmodel`` must hold the ``sklearn`` flavour (:mod:`retrain.mlmodel`, read as hostile
   input). A model saved with skops is loaded with skops, trusting skops' defaults,
   ``registry.trusted_types`` and ``--trust`` only (never the ``skops_trusted_types`` the MLmodel
   lists). A model saved with pickle or cloudpickle runs code when it is loaded: it is refused,
   naming ``registry.mlflow.allow_pickle_import``; with that set to true it is unpickled once
   here and kept as skops, so that every later load is safe. A version driftloop itself
   mirrored carries ``driftloop.artifact_sha256``: the download must match it.
3. The reference sample is ``--reference FILE``, else the ``reference.json.gz`` driftloop
   logged with the version (checked against ``driftloop.reference_sha256``).
4. It becomes a driftloop version like ``models register`` makes one (``source: mlflow``,
   SHA-256 recorded, the model checked to predict on the reference's features), recording
   the MLflow version it is, so the mirror never creates a second one; ``--promote`` makes it
   the champion (and the alias follows). The MLflow version is tagged
   ``driftloop.imported_as``. The same MLflow version is imported once per driftloop model.
"""
from __future__ import annotations

import logging
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import sqlalchemy as sa

from driftloop.core.config import Config
from driftloop.core.store import Store
from driftloop.core.tables import model_versions
from retrain.artifacts import ArtifactIntegrityError, frame_from_bytes, sha256_file
from retrain.events import ModelEvent
from retrain.mlflow_client import MlflowGateway, MlflowNotFound, MlflowRefused, RemoteVersion, scratch_dir
from retrain.mlmodel import PICKLE_FORMATS, MLmodelError, read_sklearn_flavour
from retrain.registry import Registry, RegistryError

__all__ = ["import_from_mlflow", "ImportResult", "driftloop_model_for"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ImportResult:
    model: str
    version: int                 # driftloop's
    mlflow_name: str
    mlflow_version: int
    serialization_format: str
    events: list[ModelEvent]


def driftloop_model_for(cfg: Config, registry: Registry, mlflow_name: str, model: str | None) -> str:
    """The driftloop model an MLflow registered model is imported as: ``model`` if given, else
    the one configured model whose MLflow name (``registry.mlflow.model_names``, default its own
    name) is ``mlflow_name``."""
    settings = registry.reg.mlflow_settings
    if model is not None:
        if model not in cfg.models:
            raise RegistryError(f"unknown model {model!r} (configured: {', '.join(sorted(cfg.models))})")
        if settings.model_name(model) != mlflow_name:
            raise RegistryError(f"driftloop model {model!r} is MLflow's {settings.model_name(model)!r}, not "
                                f"{mlflow_name!r}: import from that name, or map it in registry.mlflow.model_names")
        return model
    matches = [m for m in sorted(cfg.models) if settings.model_name(m) == mlflow_name]
    if len(matches) != 1:
        raise RegistryError(f"no configured model is MLflow's {mlflow_name!r} (registry.mlflow.model_names); "
                            "name the driftloop model with --model")
    return matches[0]


def _resolve(gateway: MlflowGateway, name: str, ref: str | None, default_alias: str) -> RemoteVersion:
    ref = ref or f"@{default_alias}"
    try:
        if ref.startswith("@"):
            return gateway.version_by_alias(name, ref[1:])
        if not ref.isdigit():
            raise RegistryError(f"{ref!r} is neither a version number nor @alias")
        return gateway.get_version(name, int(ref))
    except MlflowNotFound as exc:
        raise RegistryError(f"MLflow has no {name} {ref}: {exc}") from None


def _load_pickled(path: Path, fmt: str) -> Any:
    """Unpickle an MLflow sklearn model the operator allowed (``registry.mlflow.allow_pickle_import``)."""
    try:
        with open(path, "rb") as f:
            return pickle.load(f)     # allowed by the operator's named setting; kept as skops afterwards
    except Exception as exc:  # noqa: BLE001 - any failure of a foreign pickle is a refusal
        raise RegistryError(f"cannot unpickle the {fmt} model {path.name}: {type(exc).__name__}: {exc}") from None


def import_from_mlflow(cfg: Config, store: Store, mlflow_name: str, ref: str | None = None, *,
                       model: str | None = None, reference: pd.DataFrame | None = None,
                       trust: list[str] | tuple[str, ...] = (), actor: str, promote: bool = False,
                       note: str | None = None) -> ImportResult:
    """Import ``mlflow_name`` version ``ref`` (``"3"``, ``"@champion"``; default the configured
    alias) as a new driftloop version; see the module docstring. Raises
    :class:`~retrain.registry.RegistryError`, :class:`~retrain.artifacts.ArtifactError`,
    :class:`~retrain.mlmodel.MLmodelError` or :class:`~retrain.mlflow_client.MlflowError`."""
    import skops.io as sio

    registry = Registry(cfg, store)
    settings = registry.reg.mlflow_settings
    model = driftloop_model_for(cfg, registry, mlflow_name, model)
    gateway = MlflowGateway(settings)
    remote = _resolve(gateway, mlflow_name, ref, settings.alias)
    with store.engine.connect() as conn:
        c = model_versions.c
        already = conn.execute(sa.select(c.version).where(c.model == model, c.mlflow_version == remote.version)).scalar()
    if already is not None:
        raise RegistryError(f"MLflow {mlflow_name} version {remote.version} is driftloop {model} version {already} "
                            "already")
    with scratch_dir("driftloop-import-") as tmp:
        folder = gateway.download(gateway.download_uri(mlflow_name, remote.version), tmp / "download")
        flavour = read_sklearn_flavour(folder)
        _check_sha(remote, "driftloop.artifact_sha256", flavour.model_file)
        path = flavour.model_file
        if flavour.serialization_format in PICKLE_FORMATS:
            if not settings.allow_pickle_import:
                raise MLmodelError(
                    f"MLflow {mlflow_name} version {remote.version} is saved with {flavour.serialization_format}, "
                    "which runs code when it is loaded; driftloop loads skops only. Re-log it with "
                    "mlflow.sklearn.log_model(..., serialization_format='skops'), or, if you trust its origin, set "
                    "registry.mlflow.allow_pickle_import: true (it is then loaded once and kept as skops)")
            path = tmp / "model.skops"
            sio.dump(_load_pickled(flavour.model_file, flavour.serialization_format), path)
            log.warning("imported %s version %d from %s: unpickled once (registry.mlflow.allow_pickle_import) and "
                        "kept as skops", mlflow_name, remote.version, flavour.serialization_format)
        if reference is None:
            reference = _logged_reference(remote, folder)
        version, events = registry.register(
            model, path, reference, actor=actor, trust=trust, promote=promote, source="mlflow",
            note=note or f"imported from MLflow {mlflow_name} version {remote.version}",
            params={"mlflow_name": mlflow_name, "mlflow_version": remote.version,
                    "serialization_format": flavour.serialization_format,
                    "sklearn_version": flavour.sklearn_version},
            mlflow_run_id=remote.run_id, mlflow_version=remote.version)
    try:
        gateway.set_version_tags(mlflow_name, remote.version, {"driftloop.imported_as": f"{model} v{version}"})
    except (MlflowRefused, MlflowNotFound) as exc:
        log.warning("could not tag MLflow %s version %d: %s", mlflow_name, remote.version, exc)
    return ImportResult(model, version, mlflow_name, remote.version, flavour.serialization_format, events)


def _check_sha(remote: RemoteVersion, tag: str, path: Path) -> None:
    want = remote.tags.get(tag)
    if want is not None and sha256_file(path) != want:
        raise ArtifactIntegrityError(f"{path.name} of MLflow {remote.name} version {remote.version} differs from "
                                     f"the SHA-256 driftloop recorded in its tag {tag} ({want}); refusing it")


def _logged_reference(remote: RemoteVersion, folder: Path) -> pd.DataFrame:
    path = folder / "reference.json.gz"
    if not path.is_file():
        raise RegistryError(f"MLflow {remote.name} version {remote.version} has no reference sample driftloop "
                            "logged: give one with --reference FILE (the feature columns and `label`)")
    _check_sha(remote, "driftloop.reference_sha256", path)
    return frame_from_bytes(path.read_bytes(), str(path))
