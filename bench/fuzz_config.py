"""Fuzz the configuration loader: YAML / TOML text and DRIFTLOOP__ overrides -> load_config_text().

    python bench/fuzz_config.py -atheris_runs=50000          # or -max_total_time=300 [CORPUS_DIR ...]
    python bench/fuzz_config.py -max_total_time=300 --yaml-coverage

Coverage feedback comes from driftloop's configuration code (about 500 exec/s here);
``--yaml-coverage`` adds PyYAML's and tomllib's Python code, which guides mutations through the
YAML grammar but runs about ten times slower.

The first byte of an input picks what the rest is: 0 YAML, 1 TOML, 2 environment overrides
(``NAME=VALUE`` lines; ``DRIFTLOOP__`` is prefixed when missing) on top of a valid minimal
configuration, 3 YAML text then overrides after a ``\\x1e``. :func:`check_config` promises: only
:class:`~driftloop.core.config.ConfigError` comes out, with a message; what loads is usable (finite
ingest numbers, detector settings the monitor can build, alert and API sections valid).

Module paths in ``retrain.recipe`` are imported by design (the configuration names code); here
only ``sklearn.*`` and ``math`` may be, so a fuzzed name imports nothing else.

An exception is a finding: atheris prints it and writes the input as ``crash-*``. At the end a
summary: executions, executions/s, configurations accepted and the error kinds seen.
``tests/test_fuzz_harnesses.py`` runs :func:`check_config` over :data:`CORPUS`.
"""
from __future__ import annotations

import math
import re
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import driftloop.core.config.retrain as _retrain_config
from detectors.model_monitor import MonitorSettings
from driftloop.core.config import ConfigError, load_config_text
from driftloop.core.config.alerts import AlertsConfig
from driftloop.core.config.api import ApiConfig

_real_import = _retrain_config.import_object


def _guarded_import(path: str):
    if not str(path).startswith(("sklearn.", "math:")):
        raise ImportError(f"not imported while fuzzing: {str(path)[:60]!r}")
    return _real_import(path)



BASE_DIR = Path(tempfile.mkdtemp(prefix="driftloop-fuzz-config-"))
(BASE_DIR / "ref.csv").write_text("a,label\n1,0\n2,1\n")
MINIMAL = "models:\n  m:\n    task: classification\n    features: {a: numeric}\n"
SEP = b"\x1e"
LAUGHS = "a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]\n" for i in range(1, 7))

FULL = """kafka: {bootstrap_servers: "127.0.0.1:9092", security_protocol: PLAINTEXT, session_timeout_ms: 10000}
topics: {predictions: p, labels: l, dlq: d, partitions: 6}
store: {url: "sqlite:///x.db", sqlite_synchronous: NORMAL}
ingest: {max_message_bytes: 1048576, max_future_skew_s: 86400, prediction_ttl_s: 604800, start_from: earliest}
models:
  fraud:
    task: classification
    features: {amount: numeric, country: categorical}
    reference: ref.csv
    detectors: {window_size: 500, warmup: 100, correction: holm, multivariate: false}
    retrain: {min_examples: 100, cooldown_s: 60, schedule: "0 3 * * 1", metric: accuracy,
              recipe: {estimator: sklearn.linear_model.LogisticRegression, params: {C: 1.0}}}
alerts:
  hold_down_s: 300
  sinks:
    - {type: webhook, url: "https://hooks.example/x", secret: s3cret}
    - {type: pagerduty, routing_key: k, routes: [{models: [fraud], min_severity: critical}]}
  stale: {predictions_after_s: 3600}
registry: {artifact_dir: artifacts}
api: {port: 8321, token_env: T}
"""

CORPUS: list[bytes] = [
    b"\x00" + MINIMAL.encode(),
    b"\x00" + FULL.encode(),
    b"\x01" + b'[models.m]\ntask = "regression"\nfeatures = {x = "numeric"}\n[ingest]\nmax_future_skew_s = 60.0\n',
    b"\x02DRIFTLOOP__INGEST__MAX_POLL_RECORDS=100\nDRIFTLOOP__KAFKA__BOOTSTRAP_SERVERS=h:1\n",
    b"\x02INGEST__MAX_FUTURE_SKEW_S=.nan\nMODELS__M__DETECTORS__WINDOW_SIZE=x\n",
    b"\x02MODELS__M__FEATURES=2024-13-45\nAPI=!!python/object/apply:os.system [id]\n",
    b"\x02ALERTS__SINKS=&a [*a]\nINGEST=5\n",
    b"\x03" + FULL.encode() + SEP + b"MODELS__FRAUD__RETRAIN__RECIPE__PARAMS={C: -1}\n",
    b"\x00" + (LAUGHS + MINIMAL).encode(),
    b"\x00" + (MINIMAL + "alerts: &a {x: *a}\n").encode(),
    b"\x00" + ("a: " + "[" * 700 + "]" * 700 + "\n").encode(),
    b"\x00" + ("a: " + "{b: " * 700 + "1" + "}" * 700 + "\n").encode(),
    b"\x00" + (MINIMAL + "x: !!python/name:os.system\n").encode(),
    b"\x00" + (MINIMAL + "alerts: {x: 2024-13-45}\n").encode(),
    b"\x00" + (MINIMAL + 'base_dir: "\\0"\n').encode(),
    b"\x00" + (MINIMAL + f"ingest: {{max_message_bytes: {2**80}, label_ttl_s: .inf}}\n").encode(),
    b"\x00" + (MINIMAL + "    detectors: {window_size: x, correction: [1]}\n").encode(),
    b"\x00" + (MINIMAL + "    reference: " + "a" * 5000 + "\n").encode(),
    b"\x00models:\n  m\xff: 1\n",
    b"\x00false\n",
    b"\x00- a\n",
    b"\x01a = " + b"[" * 700 + b"]" * 700 + b"\n",
    b"\x01[ingest]\nmax_future_skew_s = nan\n",
    b"\x01a = 2024-13-45\n",
]

stats: Counter = Counter()
errors: Counter = Counter()


def _environ(text: bytes) -> dict[str, str]:
    env = {}
    for line in text.decode("utf-8", "replace").splitlines()[:8]:
        name, _, value = line.partition("=")
        if "\x00" in name + value:          # the OS cannot hold these in an environment
            continue
        env[name if name.startswith("DRIFTLOOP__") else "DRIFTLOOP__" + name] = value
    return env


def _usable(cfg) -> None:
    lim = cfg.ingest
    for key in ("max_future_skew_s", "prediction_ttl_s", "label_ttl_s", "joined_retention_s", "expire_every_s"):
        assert math.isfinite(getattr(lim, key)) and getattr(lim, key) >= 0, key
    int(lim.max_future_skew_s * 1000)
    assert 0 < lim.max_message_bytes < 2**31 and 0 < lim.max_poll_records < 2**31
    AlertsConfig.from_dict(cfg.alerts)
    ApiConfig.from_dict(cfg.api)
    for m in cfg.models.values():
        MonitorSettings.from_dict(m.monitor_settings())


def check_config(data: bytes) -> None:
    """The fuzz target: raises anything but ConfigError, or AssertionError on a broken promise."""
    mode = (data[0] if data else 0) & 3
    body = data[1:]
    fmt, text, environ = "yaml", body, {}
    if mode == 1:
        fmt = "toml"
    elif mode == 2:
        text, environ = MINIMAL.encode(), _environ(body)
    elif mode == 3:
        text, _, env_text = body.partition(SEP)
        environ = _environ(env_text)
    stats["executions"] += 1
    _retrain_config.import_object = _guarded_import
    try:
        cfg = load_config_text(text, fmt=fmt, base_dir=BASE_DIR, environ=environ)
    except ConfigError as exc:
        msg = str(exc)
        assert msg.strip(), "empty ConfigError"
        errors[re.sub(r"\d+", "N", msg.splitlines()[0])[:80]] += 1
        return
    finally:
        _retrain_config.import_object = _real_import
    _usable(cfg)
    stats["accepted"] += 1


_t0 = time.perf_counter()


def summary(final: bool = False) -> str:
    el = time.perf_counter() - _t0
    n = stats["executions"]
    lines = [f"{'final' if final else 'so far'}: {n} executions in {el:.0f} s = {n / max(el, 1e-9):.0f} exec/s; "
             f"{stats['accepted']} configurations accepted, {n - stats['accepted']} refused with a ConfigError "
             f"({len(errors)} kinds); nothing else escaped"]
    if final:
        lines += [f"  {c:8d}  {r}" for r, c in errors.most_common(30)]
    return "\n".join(lines)


def main() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from fuzz_decoder import fuzz

    argv = [a for a in sys.argv if a != "--yaml-coverage"]
    prefixes = ("driftloop.core.config", "driftloop.core.config.alerts", "driftloop.core.config.api", "driftloop.core.config.retrain",
                "detectors.model_monitor")
    if len(argv) < len(sys.argv):
        prefixes += ("yaml.", "tomllib")
    fuzz(argv, check_config, summary, prefixes, CORPUS, 4096)


if __name__ == "__main__":
    main()
