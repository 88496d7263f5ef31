"""Hostile configuration: whatever the data, files or DRIFTLOOP__ overrides, only ConfigError escapes.

Property-based (hypothesis) over nested data shaped like the configuration (the real key names
of every section, with values of any type YAML can produce: huge integers, NaN, dates, bytes,
NUL, deep and shared structures), over YAML text and over environment overrides; then the
classic malicious YAML (alias bomb, recursive alias, Python tags, deep nesting).
"""
from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import time

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from driftloop.core import config as config_mod
from driftloop.core.config import ConfigError, load_config, load_config_dict, load_config_text

MINIMAL = {"models": {"m": {"task": "classification", "features": {"a": "numeric"}}}}
FUZZ = settings(max_examples=250, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])


@pytest.fixture(autouse=True)
def no_arbitrary_imports(monkeypatch):
    """retrain.recipe names modules to import (by design: the configuration is code's peer); fuzzed
    names must not import anything outside scikit-learn (e.g. ``antigravity`` opens a browser)."""
    import driftloop.core.config.retrain as rc
    real = rc.import_object

    def guarded(path):
        if not str(path).startswith(("sklearn.", "math:")):
            raise ImportError(f"not imported in tests: {path!r}")
        return real(path)

    monkeypatch.setattr(rc, "import_object", guarded)


def _fields():
    from detectors.model_monitor import MonitorSettings
    from driftloop.core.config.alerts import AlertsConfig, SinkConfig, StaleConfig
    from driftloop.core.config.api import ApiConfig
    from driftloop.core.config.retrain import RecipeConfig, RegistryConfig, RetrainPolicy
    c = config_mod
    return {
        "kafka": c.KafkaConfig.__struct_fields__, "topics": c.TopicsConfig.__struct_fields__,
        "store": c.StoreConfig.__struct_fields__, "ingest": c.IngestConfig.__struct_fields__,
        "alerts": AlertsConfig.__struct_fields__, "sink": SinkConfig.__struct_fields__,
        "stale": StaleConfig.__struct_fields__, "api": ApiConfig.__struct_fields__,
        "registry": RegistryConfig.__struct_fields__, "retrain": RetrainPolicy.__struct_fields__,
        "recipe": RecipeConfig.__struct_fields__,
        "detectors": tuple(f.name for f in dataclasses.fields(MonitorSettings)),
    }


FIELDS = _fields()

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-2**80, 2**80), st.integers(-5, 70_000),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12),
    st.sampled_from(["numeric", "categorical", "classification", "regression", "SSL", "SASL_SSL", "PLAIN",
                     "webhook", "slack", "pagerduty", "alertmanager", "critical", "warning", "holm", "count",
                     "time", "sqlite:///x.db", "postgresql://u@h/d", "mysql://x", "", "\x00", "a\x00b",
                     "0 3 * * 1", "99 99 * * *", "sklearn.linear_model.LogisticRegression", "math:sqrt",
                     "http://h/x", "earliest", "latest", "NORMAL", "FULL"]),
    st.dates(), st.datetimes(), st.binary(max_size=8),
)


def nested(leaves):
    return st.recursive(leaves, lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.one_of(st.text(max_size=6), st.integers(), st.none(), st.booleans()), inner, max_size=3)),
        max_leaves=8)


anything = nested(scalars)


def section(name: str, extra: dict | None = None):
    keys = st.one_of(st.sampled_from(FIELDS[name]), st.text(max_size=6))
    values = st.one_of(scalars, anything, *(extra or {}).values())
    return st.one_of(st.dictionaries(keys, values, max_size=5), anything)


model = st.one_of(
    st.fixed_dictionaries({"task": st.one_of(st.sampled_from(["classification", "regression"]), scalars),
                           "features": st.one_of(st.dictionaries(st.text(min_size=1, max_size=5),
                                                                 st.sampled_from(["numeric", "categorical"]),
                                                                 min_size=1, max_size=3), anything)},
                          optional={"detectors": section("detectors"), "reference": scalars,
                                    "retrain": section("retrain", {"recipe": section("recipe")}),
                                    "extra": anything}),
    anything)

configs = st.fixed_dictionaries({}, optional={
    "kafka": section("kafka"), "topics": section("topics"), "store": section("store"),
    "ingest": section("ingest"), "api": section("api"), "registry": section("registry"),
    "alerts": section("alerts", {"sinks": st.lists(section("sink"), max_size=2), "stale": section("stale")}),
    "models": st.one_of(st.dictionaries(st.one_of(st.text(max_size=8), st.integers()), model, max_size=2), anything),
    "base_dir": scalars, "unknown": anything,
})


def _only_config_error(fn, *args, **kw):
    try:
        cfg = fn(*args, **kw)
    except ConfigError as exc:
        assert str(exc).strip(), "a ConfigError must say what is wrong"
        return None
    _usable(cfg)
    return cfg


def _usable(cfg) -> None:
    """What loads must also work where it is used later: the fuzz harness's own check, so that
    CI and the fuzzer hold the loader to the same promise."""
    from tests.test_fuzz_harnesses import config as harness
    harness._usable(cfg)


@FUZZ
@given(configs)
def test_any_config_data_gives_config_or_config_error(data):
    before = copy.deepcopy(data)
    _only_config_error(load_config_dict, data, environ={})
    assert data == before or data != data     # (NaN is not equal to itself) the input is not changed


ENV_VALUES = st.one_of(
    st.text(max_size=20),
    st.sampled_from([".nan", ".inf", "-.inf", "1e999", str(2**80), "-1", "0", "[", "{", "]", "[a, b]", "{a: 1}",
                     "null", "~", "true", "2024-13-45", "2024-02-30", "!!python/object/apply:os.system [id]",
                     "!!python/name:os.system", "&a [*a]", "*a", "'\\0'", '"\\0"', "[" * 200, "- a\n- b",
                     "!!binary aGVsbG8=", "!!timestamp 2024-99-01", "!!set {a, b}", "{? [a]: 1}", "!!float x"]))
ENV_NAMES = st.one_of(
    st.builds(lambda s, k: f"DRIFTLOOP__{s}__{k}".upper(),
              st.sampled_from(["kafka", "topics", "store", "ingest", "alerts", "api", "registry"]),
              st.sampled_from(sorted({k for v in FIELDS.values() for k in v}))),
    st.builds(lambda k: f"DRIFTLOOP__MODELS__M__{k}".upper(),
              st.sampled_from(["task", "features", "reference", "detectors", "retrain", "features__a",
                               "detectors__window_size", "retrain__recipe__params"])),
    st.builds(lambda rest: "DRIFTLOOP__" + rest, st.text(alphabet="ABC_x1", max_size=12)),
)


@FUZZ
@given(st.dictionaries(ENV_NAMES, ENV_VALUES, max_size=4))
def test_any_env_override_gives_config_or_config_error(environ):
    data = copy.deepcopy(MINIMAL)
    _only_config_error(load_config_dict, data, environ=environ)
    assert data == MINIMAL           # overrides never write into the caller's dicts


@FUZZ
@given(st.one_of(configs.map(lambda d: yaml.safe_dump(d, allow_unicode=True) if _dumpable(d) else "x: ["),
                 st.text(max_size=200),
                 st.lists(st.sampled_from(["models:", "  m:", "    task: regression", "    features: {a: numeric}",
                                           "ingest: {max_future_skew_s: .nan}", "x: &a [*a]", "- 1", "? [a]",
                                           "a: !!python/object:os.system {}", "{", "b: 2024-13-45", "\t", ": :",
                                           "c: &b {d: *b}", "'", '"\\0"', "---", "%YAML 1.1", "!x y"]),
                          max_size=8).map("\n".join)))
def test_any_yaml_text_gives_config_or_config_error(text):
    _only_config_error(load_config_text, text, environ={})


def _dumpable(d) -> bool:
    try:
        yaml.safe_dump(d)
    except yaml.YAMLError:
        return False
    return True


@FUZZ
@given(st.binary(max_size=200))
def test_any_bytes_as_yaml_or_toml_give_config_or_config_error(raw):
    _only_config_error(load_config_text, raw, environ={})
    _only_config_error(load_config_text, raw, fmt="toml", environ={})


# --- malicious YAML -----------------------------------------------------------------------------

LAUGHS = "a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]\n" for i in range(1, 10))
M = "models:\n  m:\n    task: classification\n    features: {a: numeric}\n"


@pytest.mark.parametrize("where", ["top", "alerts", "detectors", "retrain", "features", "sinks"])
def test_billion_laughs_is_refused_fast(tmp_path, where):
    body = {
        "top": LAUGHS + M,
        "alerts": M + "alerts:\n" + "".join("  " + line + "\n" for line in LAUGHS.splitlines()),
        "detectors": LAUGHS + M + "    detectors: {concept_params: *a9}\n",
        "retrain": LAUGHS + M + "    retrain: {recipe: {params: {x: *a9}}}\n",
        "features": LAUGHS + "models: {m: {task: regression, features: *a9}}\n",
        "sinks": LAUGHS + M + "alerts: {sinks: *a9}\n",
    }[where]
    (tmp_path / "c.yaml").write_text(body)
    t0 = time.perf_counter()
    with pytest.raises(ConfigError, match="alias bomb"):
        load_config(tmp_path / "c.yaml", environ={})
    assert time.perf_counter() - t0 < 5


@pytest.mark.parametrize("text,needle", [
    (M + "alerts: &a {x: *a}\n", "alerts.x: refers to itself"),
    (M + "registry: &a [*a]\n", "registry[0]: refers to itself"),
    (M.replace("{a: numeric}", "&f {a: *f}"), "models.m.features.a: refers to itself"),
    (M + "api: !!python/object/apply:os.system ['touch pwned']\n", "could not determine a constructor"),
    (M + "api: !!python/object/new:os.system ['touch pwned']\n", "could not determine a constructor"),
    (M + "api: !!python/name:os.system\n", "could not determine a constructor"),
    (M + "api: !!python/module:os\n", "could not determine a constructor"),
    ("a: " + "{b: " * 5000 + "1" + "}" * 5000 + "\n", "nested too deeply"),
    ("a: " + "[" * 5000 + "]" * 5000 + "\n", "nested too deeply"),
    ("a:\n" + "".join("  " * i + f"  k{i}:\n" for i in range(40)) + "  " * 41 + "v\n", "nested deeper than 32 levels"),
    (M + "alerts: {x: 2024-13-45}\n", "month must be in 1..12"),
    ("models: 2024-02-30\n", "day is out of range for month"),
    (M + "registry: {a: !!timestamp 2024-99-01}\n", "month must be in 1..12"),
    (M + "api: {token: !!binary '%%%'}\n", "api"),
    (M + "? [a, b]\n: 1\n", "unhashable"),
    (M + "---\n" + M, "single document"),
    (M + 'base_dir: "\\0"\n', "base_dir: contains a NUL character"),
    (M + 'kafka: {security_protocol: SSL, ssl_cafile: "a\\0b"}\n', "kafka.ssl_cafile: contains a NUL"),
    (M + "ingest: {max_future_skew_s: .nan}\n", "ingest.max_future_skew_s: must be a finite number"),
    (M + "ingest: {prediction_ttl_s: .inf}\n", "ingest.prediction_ttl_s: must be a finite number"),
    (M + "ingest: {max_future_skew_s: -1}\n", "ingest.max_future_skew_s: must be >= 0"),
    (M + "ingest: {expire_every_s: 0}\n", "ingest.expire_every_s: must be positive"),
    (M + f"ingest: {{max_message_bytes: {2**80}}}\n", "ingest.max_message_bytes: 1208925819614629174706176 is out of range"),
    (M + f"kafka: {{session_timeout_ms: {2**40}}}\n", "kafka.session_timeout_ms"),
    (M + "kafka: {request_timeout_ms: -5}\n", "kafka.request_timeout_ms: must be positive"),
    (M + "topics: {replication_factor: 40000}\n", "topics.replication_factor"),
    (M + "    detectors: {window_size: x}\n", "models.m.detectors: Expected `int`, got `str` - at `$.window_size`"),
    (M + "    detectors: {multivariate_methods: 5}\n", "models.m.detectors"),
    (M + "    detectors: {windw_size: 5}\n", "models.m.detectors: unknown settings ['windw_size']"),
    (M + "    detectors: {correction: [1]}\n", "models.m.detectors"),
    (M + "    reference: " + "a" * 5000 + "\n", "models.m.reference: file not found"),
    ("models: {m: null}\n", "$.models.m"),
    ("models: {m: {task: regression, features: [a]}}\n", "$.models.m.features"),
    ("false\n", "must be a mapping"),
    ("- a\n", "must be a mapping"),
])
def test_malicious_yaml_is_refused_with_a_clear_error(tmp_path, text, needle):
    (tmp_path / "c.yaml").write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(tmp_path / "c.yaml", environ={})
    assert needle in str(err.value)
    assert not (tmp_path / "pwned").exists()


def test_config_file_not_utf8(tmp_path):
    (tmp_path / "c.yaml").write_bytes(b"models:\n  m\xff: 1\n")
    with pytest.raises(ConfigError, match=r"not UTF-8 \(byte 11\)"):
        load_config(tmp_path / "c.yaml", environ={})


@pytest.mark.parametrize("text,needle", [
    ("a = " + "[" * 5000 + "]" * 5000 + "\n", "nested too deeply"),
    ("[ingest]\nmax_future_skew_s = nan\n", "must be a finite number"),
    ("[ingest]\nlabel_ttl_s = inf\n", "must be a finite number"),
    ('[models.m]\ntask = "regression"\nfeatures = {x = "numeric"}\nreference = 1979-05-27T07:32:00Z\n', "datetime"),
    ("a = 2024-13-45\n", "not valid TOML"),
    ("= 1\n", "not valid TOML"),
])
def test_malicious_toml(tmp_path, text, needle):
    (tmp_path / "c.toml").write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(tmp_path / "c.toml", environ={})
    assert needle in str(err.value)


@pytest.mark.parametrize("environ,needle", [
    ({"DRIFTLOOP__INGEST__MAX_FUTURE_SKEW_S": ".nan"}, "ingest.max_future_skew_s: must be a finite number"),
    ({"DRIFTLOOP__MODELS__M__FEATURES": "2024-13-45"}, "DRIFTLOOP__MODELS__M__FEATURES: not valid YAML: month"),
    ({"DRIFTLOOP__API": "!!python/object/apply:os.system ['touch pwned']"}, "could not determine a constructor"),
    ({"DRIFTLOOP__A": "[" * 5000 + "]" * 5000}, "DRIFTLOOP__A: not valid YAML: nested too deeply"),
    ({"DRIFTLOOP__ALERTS__SINKS": "&a [*a]"}, "alerts.sinks[0]: refers to itself"),
    ({"DRIFTLOOP__ALERTS": "{a0: &a0 [1, 1, 1, 1, 1, 1, 1, 1, 1, 1], " + ", ".join(
        f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 7)) + "}"}, "alias bomb"),
    ({"DRIFTLOOP__INGEST__MAX_POLL_RECORDS": str(2**64)}, "ingest.max_poll_records"),
    ({"DRIFTLOOP__INGEST": "5"}, "$.ingest"),
    ({"DRIFTLOOP__MODELS__M": "null"}, "$.models.m"),
    ({"DRIFTLOOP__MODELS__M__DETECTORS__WINDOW_SIZE": "'5'"}, "models.m.detectors"),
    ({"DRIFTLOOP__STORE__URL": '"sqlite:///\\0"'}, "store.url: contains a NUL"),
])
def test_malicious_env_overrides(environ, needle):
    data = copy.deepcopy(MINIMAL)
    with pytest.raises(ConfigError) as err:
        load_config_dict(data, environ=environ)
    assert needle in str(err.value)
    assert data == MINIMAL


def test_yaml_dates_that_are_valid_still_load_where_strings_are_expected_with_a_clear_error():
    with pytest.raises(ConfigError, match=r"Expected `str`, got `date` - at `\$.store.url`"):
        load_config_dict({**MINIMAL, "store": {"url": dt.date(2024, 1, 1)}}, environ={})


def test_the_shape_limits_leave_real_configurations_alone():
    text = yaml.safe_dump({**MINIMAL, "alerts": {"sinks": [{"type": "webhook", "url": "http://h/x",
                                                            "routes": [{"models": ["m"], "kinds": ["performance"]}]}]}})
    cfg = load_config_text(text, environ={})
    assert cfg.alerts["sinks"][0]["routes"][0]["models"] == ["m"]
    cfg = load_config_text(       # YAML anchors used the usual way: shared settings
        "models:\n  a: {task: regression, features: {x: numeric}, detectors: &d {window_size: 100, warmup: 10}}\n"
        "  b: {task: regression, features: {x: numeric}, detectors: *d}\n", environ={})
    assert cfg.models["b"].detectors == {"window_size": 100, "warmup": 10}
