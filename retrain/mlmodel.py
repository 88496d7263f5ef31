"""MLflow's ``MLmodel`` file: written beside driftloop's files when a version is mirrored to
MLflow, and read (as hostile input) when a model is imported from MLflow.

Writing: driftloop uploads its own bytes (``model.skops``, the SHA-256 it recorded) and an
``MLmodel`` that declares them an ``sklearn`` model in the skops format, so MLflow's UI and
``mlflow.sklearn.load_model`` see an ordinary scikit-learn model. It is built here as plain
YAML (never by re-serialising the estimator, which would change the bytes and the hash).

Reading: :func:`read_sklearn_flavour` accepts only a mapping with an ``sklearn`` flavour whose
model file lies inside the downloaded folder; the serialization format is the flavour's
``serialization_format`` (missing means pickle, as MLflow assumes), never the file name. The
``skops_trusted_types`` an MLmodel lists are reported, never trusted (a crafted file could
list anything): loading trusts skops' defaults and ``registry.trusted_types`` only.

>>> import tempfile
>>> d = Path(tempfile.mkdtemp())
>>> _ = (d / "model.skops").write_bytes(b"x")
>>> write_mlmodel(d, model_file="model.skops", sklearn_version="1.5.0", trusted_types=[], run_id="r1")
>>> f = read_sklearn_flavour(d)
>>> (f.model_file.name, f.serialization_format)
('model.skops', 'skops')
>>> _ = (d / "MLmodel").write_text("flavors: {sklearn: {pickled_model: ../../etc/passwd}}")
>>> read_sklearn_flavour(d)
Traceback (most recent call last):
...
retrain.mlmodel.MLmodelError: MLmodel: flavors.sklearn.pickled_model: '../../etc/passwd' is not a file inside the model's folder
"""
from __future__ import annotations

import platform
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

__all__ = ["MLmodelError", "SklearnFlavour", "write_mlmodel", "read_sklearn_flavour", "PICKLE_FORMATS",
           "MAX_MLMODEL_BYTES"]

PICKLE_FORMATS = ("pickle", "cloudpickle")
MAX_MLMODEL_BYTES = 1_000_000


class MLmodelError(ValueError):
    """An MLmodel file driftloop cannot use; the message names the key."""


@dataclass(frozen=True)
class SklearnFlavour:
    """What an MLmodel says about its scikit-learn model."""

    model_file: Path                # resolved, inside the folder
    serialization_format: str       # skops | pickle | cloudpickle
    sklearn_version: str | None
    listed_trusted_types: list[str]  # as the file lists them: reported, never trusted


def write_mlmodel(folder: Path, *, model_file: str, sklearn_version: str, trusted_types: list[str],
                  run_id: str | None) -> None:
    """Write ``folder/MLmodel`` declaring ``model_file`` an sklearn model saved with skops."""
    doc = {
        "artifact_path": "model",
        "flavors": {
            "python_function": {"loader_module": "mlflow.sklearn", "model_path": model_file,
                                "predict_fn": "predict", "python_version": platform.python_version()},
            "sklearn": {"code": None, "pickled_model": model_file, "serialization_format": "skops",
                        "sklearn_version": sklearn_version, "skops_trusted_types": list(trusted_types) or None},
        },
        "run_id": run_id,
        "utc_time_created": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f"),
        "metadata": {"written_by": "driftloop"},
    }
    (folder / "MLmodel").write_text(yaml.safe_dump(doc, sort_keys=False))


def read_sklearn_flavour(folder: Path) -> SklearnFlavour:
    """The sklearn flavour of ``folder/MLmodel`` (see the module docstring); :class:`MLmodelError`."""
    from retrain.artifacts import ArtifactError, resolve_inside

    path = folder / "MLmodel"
    try:
        if path.stat().st_size > MAX_MLMODEL_BYTES:
            raise MLmodelError(f"MLmodel: larger than {MAX_MLMODEL_BYTES} bytes")
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise MLmodelError("no MLmodel file: not an MLflow model") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise MLmodelError(f"MLmodel: unreadable ({type(exc).__name__}: {exc})") from None
    flavours = doc.get("flavors") if isinstance(doc, dict) else None
    if not isinstance(flavours, dict):
        raise MLmodelError("MLmodel: `flavors` is missing or not a mapping")
    sk = flavours.get("sklearn")
    if not isinstance(sk, dict):
        raise MLmodelError(f"MLmodel: not a scikit-learn model (flavours: {sorted(map(str, flavours))[:10]}); "
                           "driftloop imports the `sklearn` flavour only")
    fmt = sk.get("serialization_format", "pickle")     # missing: pickle, as MLflow's loader assumes
    if fmt not in ("skops", *PICKLE_FORMATS):
        raise MLmodelError(f"MLmodel: flavors.sklearn.serialization_format: unknown format {str(fmt)[:50]!r}")
    name = sk.get("pickled_model")
    if not isinstance(name, str) or not name:
        raise MLmodelError("MLmodel: flavors.sklearn.pickled_model: missing")
    try:
        model_file = resolve_inside(folder, name)
    except ArtifactError:
        raise MLmodelError(f"MLmodel: flavors.sklearn.pickled_model: {name[:200]!r} is not a file inside the "
                           "model's folder") from None
    if not model_file.is_file():
        raise MLmodelError(f"MLmodel: flavors.sklearn.pickled_model: {name[:200]!r} is not a file inside the "
                           "model's folder")
    listed = sk.get("skops_trusted_types")
    return SklearnFlavour(model_file, str(fmt), _opt_str(sk.get("sklearn_version")),
                          [str(t) for t in listed][:1000] if isinstance(listed, list) else [])


def _opt_str(value: Any) -> str | None:
    return None if value is None else str(value)[:64]
