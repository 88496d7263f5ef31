"""Model files and data samples on disk, in formats that do not run code when loaded.

* Models: `skops <https://skops.readthedocs.io>`_ (``.skops``), never pickle. Loading refuses
  any type that is not in skops' default trusted set, in :data:`BUILTIN_TRUSTED` (the three
  types scikit-learn's own tree models and numpy dtypes need, which skops does not trust by
  default, and the built-in ranker's class) or in the configuration's ``registry.trusted_types``. The types recorded with a
  version in the database are NOT trusted: whoever can write the database must not be able to
  make a process import and build arbitrary types.
* Paths: a registry file's path, as recorded in the database, is resolved (symlinks, ``..``)
  and refused unless it lies inside ``registry.artifact_dir`` (:func:`resolve_inside`).
* Samples (reference and held-out rows): gzip'd column-oriented JSON (``.json.gz``): plain
  numbers, strings and nulls, read back as a pandas ``DataFrame``.

Every file's SHA-256 is recorded in the registry and checked before the bytes are parsed, so
a file changed after it was registered fails with :class:`ArtifactIntegrityError`.

>>> import pandas as pd, tempfile
>>> d = tempfile.mkdtemp()
>>> info = save_frame(pd.DataFrame({"x": [1.5, None], "c": ["a", None], "label": ["0", "1"]}),
...                   f"{d}/ref.json.gz")
>>> load_frame(info.path, info.sha256).to_dict("list")
{'x': [1.5, nan], 'c': ['a', nan], 'label': ['0', '1']}
>>> _ = open(info.path, "ab").write(b"x")
>>> load_frame(info.path, info.sha256)
Traceback (most recent call last):
...
retrain.artifacts.ArtifactIntegrityError: ... was modified or is corrupt: its SHA-256 is ... but the registry recorded ...; refusing to load it
"""
from __future__ import annotations

import gzip
import hashlib
import io
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd

__all__ = [
    "ArtifactError",
    "ArtifactIntegrityError",
    "UntrustedArtifactError",
    "FileInfo",
    "sha256_file",
    "save_model",
    "load_model",
    "untrusted_types",
    "save_frame",
    "load_frame",
    "safe_name",
    "resolve_inside",
    "read_checked",
    "BUILTIN_TRUSTED",
]

FRAME_FORMAT = "driftloop.frame/1"

#: Trusted on load besides skops' defaults and ``registry.trusted_types``: what the default
#: recipes' fitted models hold (HistGradientBoosting's predictors, forests' trees, dtypes).
#: Plain array containers, rebuilt from arrays by scikit-learn's own code.
#: ``retrain.ranker.PopularityRanker``: the built-in ranker (issue 19), driftloop's own class;
#: its fitted state is plain str/int/float data, so the class is the only type it adds.
BUILTIN_TRUSTED = ("numpy.dtype", "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
                   "sklearn.tree._tree.Tree", "retrain.ranker.PopularityRanker")


class ArtifactError(RuntimeError):
    """A registry file cannot be used (missing, unreadable, wrong format)."""


class ArtifactIntegrityError(ArtifactError):
    """A registry file's bytes differ from those recorded when it was registered."""


class UntrustedArtifactError(ArtifactError):
    """A model file holds types that are not trusted to be loaded."""


@dataclass(frozen=True, slots=True)
class FileInfo:
    path: Path
    sha256: str
    size: int
    trusted_types: tuple[str, ...] = ()
    rows: int | None = None


def safe_name(text: str) -> str:
    """A file-name-safe form of a model name (plus a short hash when characters were replaced).

    >>> safe_name("fraud"), safe_name("a/b c")
    ('fraud', 'a_b_c-0af99a60')
    """
    clean = re.sub(r"[^A-Za-z0-9_.-]", "_", text)[:64]
    if clean == text:
        return clean
    return f"{clean}-{hashlib.sha256(text.encode()).hexdigest()[:8]}"


def resolve_inside(root: str | os.PathLike[str], recorded: str) -> Path:
    """``root / recorded`` with symlinks and ``..`` resolved; :class:`ArtifactError` unless it
    lies inside ``root`` (itself resolved). ``recorded`` comes from the database, so it is
    not trusted to stay in the artifact folder.

    >>> resolve_inside("/srv/art", "fraud/v1/model.skops").as_posix()
    '/srv/art/fraud/v1/model.skops'
    >>> resolve_inside("/srv/art", "../../etc/passwd")
    Traceback (most recent call last):
    ...
    retrain.artifacts.ArtifactError: registry file '../../etc/passwd' resolves to /etc/passwd, outside registry.artifact_dir /srv/art; refusing it
    """
    base = Path(root).resolve()
    path = (base / recorded).resolve()
    if path != base and base not in path.parents:
        raise ArtifactError(f"registry file {recorded!r} resolves to {path}, outside registry.artifact_dir "
                            f"{base}; refusing it")
    return path


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _read_checked(path: str | os.PathLike[str], sha256: str) -> bytes:
    p = Path(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise ArtifactError(f"registry file {p} is missing (was the artifact folder moved or cleaned?)") from None
    except OSError as exc:
        raise ArtifactError(f"cannot read registry file {p}: {exc.strerror}") from None
    actual = _sha256(data)
    if actual != sha256:
        raise ArtifactIntegrityError(
            f"registry file {p} was modified or is corrupt: its SHA-256 is {actual} but the registry "
            f"recorded {sha256}; refusing to load it")
    return data


def read_checked(path: str | os.PathLike[str], sha256: str) -> bytes:
    """A registry file's bytes after checking its SHA-256 (:class:`ArtifactIntegrityError` if
    it differs, :class:`ArtifactError` if it is missing or unreadable)."""
    return _read_checked(path, sha256)


# -- models ----------------------------------------------------------------------------------
def untrusted_types(data: bytes) -> list[str]:
    """Types in a skops file that skops does not trust by default."""
    import skops.io as sio

    try:
        return sorted(sio.get_untrusted_types(data=data))
    except Exception as exc:  # noqa: BLE001 - any parse failure means "not a skops file"
        raise ArtifactError(f"not a readable skops file: {type(exc).__name__}: {exc}") from None


def save_model(estimator: Any, path: str | os.PathLike[str]) -> FileInfo:
    """Write a fitted estimator with skops; the types it needs are returned as trusted.

    They are trusted because driftloop built the estimator itself (from the configured recipe);
    the SHA-256 check on load guarantees the file is still the one written here.
    """
    import skops.io as sio

    data = sio.dumps(estimator)
    p = Path(path)
    _write_atomic(p, data)
    return FileInfo(p, _sha256(data), len(data), tuple(untrusted_types(data)))


def load_model(path: str | os.PathLike[str], sha256: str, trusted_types: list[str] | tuple[str, ...] = ()) -> Any:
    """Load a skops model after checking its SHA-256; refuse types that are neither skops'
    defaults nor in ``trusted_types`` (the registry passes :data:`BUILTIN_TRUSTED` and
    ``registry.trusted_types``: the configuration's trust, never the database's)."""
    import skops.io as sio

    data = _read_checked(path, sha256)
    needed = untrusted_types(data)
    unknown = sorted(set(needed) - set(trusted_types))
    if unknown:
        raise UntrustedArtifactError(
            f"model file {path} holds types that are not trusted: {unknown}; if you trust them, list them in "
            "registry.trusted_types (the types recorded with a version in the database are not trusted)")
    try:
        return sio.loads(data, trusted=list(needed) or None)
    except Exception as exc:  # noqa: BLE001 - any skops failure means the file cannot be loaded
        raise ArtifactError(f"cannot load model file {path}: {type(exc).__name__}: {exc}") from None


# -- data samples ----------------------------------------------------------------------------
def _column(series: pd.Series) -> dict[str, Any]:
    name = str(series.name)
    values = series.to_numpy()
    if pd.api.types.is_bool_dtype(series.dtype):
        return {"name": name, "kind": "bool", "values": [bool(v) for v in values]}
    if pd.api.types.is_numeric_dtype(series.dtype):
        arr = np.asarray(values, dtype=np.float64)
        return {"name": name, "kind": "float", "values": [None if v != v else v for v in arr.tolist()]}
    out: list[Any] = []
    for v in values.tolist():
        if v is None or (isinstance(v, float) and v != v) or v is pd.NA:
            out.append(None)
        else:
            out.append(str(v))
    return {"name": name, "kind": "str", "values": out}


def save_frame(df: pd.DataFrame, path: str | os.PathLike[str]) -> FileInfo:
    """Write a DataFrame as gzip'd column JSON (deterministic bytes: no time stamp in the gzip)."""
    body = {"format": FRAME_FORMAT, "rows": int(len(df)), "columns": [_column(df[c]) for c in df.columns]}
    raw = orjson.dumps(body)
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0, compresslevel=6) as gz:
        gz.write(raw)
    data = buf.getvalue()
    p = Path(path)
    _write_atomic(p, data)
    return FileInfo(p, _sha256(data), len(data), rows=int(len(df)))


def frame_from_bytes(data: bytes, origin: str = "frame") -> pd.DataFrame:
    try:
        body = orjson.loads(gzip.decompress(data))
    except (OSError, EOFError, orjson.JSONDecodeError) as exc:
        raise ArtifactError(f"{origin}: not a driftloop sample file ({exc})") from None
    if not isinstance(body, dict) or body.get("format") != FRAME_FORMAT:
        raise ArtifactError(f"{origin}: not a driftloop sample file (format {body.get('format')!r})")
    cols: dict[str, Any] = {}
    for col in body["columns"]:
        vals = col["values"]
        if col["kind"] == "float":
            cols[col["name"]] = np.array([np.nan if v is None else v for v in vals], dtype=np.float64)
        elif col["kind"] == "bool":
            cols[col["name"]] = np.array(vals, dtype=bool)
        else:
            arr = np.empty(len(vals), dtype=object)
            arr[:] = [np.nan if v is None else v for v in vals]
            cols[col["name"]] = arr
    return pd.DataFrame(cols, index=pd.RangeIndex(int(body["rows"])))


def load_frame(path: str | os.PathLike[str], sha256: str) -> pd.DataFrame:
    """Read a sample written by :func:`save_frame`, after checking its SHA-256."""
    return frame_from_bytes(_read_checked(path, sha256), str(path))
