from __future__ import annotations

import pytest

from driftloop.core.config import ConfigError, load_config, load_config_dict

MINIMAL = {"models": {"fraud": {"task": "classification", "features": {"amount": "numeric"}}}}


def test_defaults_and_env_overrides():
    cfg = load_config_dict(MINIMAL, environ={
        "DRIFTLOOP__KAFKA__BOOTSTRAP_SERVERS": "10.0.0.1:9092",
        "DRIFTLOOP__INGEST__MAX_POLL_RECORDS": "123",
        "DRIFTLOOP__TOPICS__DLQ": "my.dlq",
        "UNRELATED": "x",
    })
    assert cfg.kafka.bootstrap_servers == "10.0.0.1:9092"
    assert cfg.ingest.max_poll_records == 123
    assert cfg.topics.dlq == "my.dlq" and cfg.topics.predictions == "driftloop.predictions"


@pytest.mark.parametrize("data,needle", [
    ({"models": {"m": {"task": "clustering", "features": {"a": "numeric"}}}}, "task"),
    ({"models": {"m": {"task": "regression", "features": {}}}}, "at least one feature"),
    ({"models": {"m": {"task": "regression", "features": {"a": "text"}}}}, "features"),
    ({"kafka": {"bootstrap_server": "x"}, **MINIMAL}, "bootstrap_server"),
    ({"ingest": {"max_poll_records": 0}, **MINIMAL}, "max_poll_records"),
    ({"store": {"url": "mysql://x"}, **MINIMAL}, "store.url"),
    ({"models": {"m": {"task": "regression", "features": {"a": "numeric"}, "reference": "nope.csv"}}}, "not found"),
])
def test_invalid_config_names_the_key(data, needle):
    with pytest.raises(ConfigError, match=needle):
        load_config_dict(data, environ={})


def test_yaml_and_toml_files(tmp_path):
    (tmp_path / "ref.csv").write_text("amount,label\n1,0\n")
    (tmp_path / "c.yaml").write_text(
        "models:\n  fraud:\n    task: classification\n    features: {amount: numeric}\n    reference: ref.csv\n")
    cfg = load_config(tmp_path / "c.yaml", environ={})
    assert cfg.resolve(cfg.models["fraud"].reference) == tmp_path / "ref.csv"
    (tmp_path / "c.toml").write_text('[models.fraud]\ntask = "regression"\nfeatures = {x = "numeric"}\n')
    assert load_config(tmp_path / "c.toml", environ={}).models["fraud"].task == "regression"
    (tmp_path / "bad.yaml").write_text("models: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(tmp_path / "bad.yaml", environ={})


def test_readme_configuration_example_is_valid(tmp_path, monkeypatch):
    """The README's full configuration block loads as written (keeps the docs honest)."""
    from pathlib import Path
    for name in ("HOOK_SECRET", "SLACK_WEBHOOK", "PD_KEY", "DRIFTLOOP_API_TOKEN"):
        monkeypatch.setenv(name, "https://example.invalid/x" if name == "SLACK_WEBHOOK" else "s3cret")
    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = text[text.index("## Configuration"):]
    block = section[section.index("```yaml") + len("```yaml"):]
    block = block[:block.index("```")]
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "fraud_train.csv").write_text("amount,country,label\n1,DE,0\n")
    (tmp_path / "c.yaml").write_text(block)
    cfg = load_config(tmp_path / "c.yaml", environ={})
    assert cfg.models["fraud"].retrain["min_examples"] == 1000
    assert len(cfg.alerts["sinks"]) == 4


def test_readme_ranking_configuration_example_is_valid(tmp_path):
    """The README's ranking model block (issue 19) loads as written, its settings and metric checked."""
    from pathlib import Path
    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = text[text.index("**Ranking models**"):]
    block = section[section.index("```yaml") + len("```yaml"):]
    block = block[:block.index("```")]
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "shop_reference.jsonl").write_text('{"user_segment": "a", "prediction": ["i1"]}\n')
    (tmp_path / "c.yaml").write_text(block)
    cfg = load_config(tmp_path / "c.yaml", environ={})
    shop = cfg.models["shop"]
    assert shop.task == "ranking" and shop.detectors["k"] == 10 and shop.retrain["metric"] == "ndcg@10"


def test_kafka_password_is_not_printed():
    cfg = load_config_dict(MINIMAL, environ={"DRIFTLOOP__KAFKA__SASL_PLAIN_PASSWORD": "hunter2"})
    assert cfg.kafka.sasl_plain_password == "hunter2"
    assert "hunter2" not in repr(cfg) and "hunter2" not in repr(cfg.kafka) and "<hidden>" in repr(cfg.kafka)


def test_store_password_is_not_printed():
    cfg = load_config_dict(MINIMAL, environ={"DRIFTLOOP__STORE__URL": "postgresql://app:hunter2@db:5432/drift"})
    assert cfg.store.url.endswith(":hunter2@db:5432/drift")   # still used as given
    for text in (repr(cfg), str(cfg), repr(cfg.store)):
        assert "hunter2" not in text
        assert "postgresql://app:***@db:5432/drift" in text


def test_relative_tls_files_resolve_against_the_config_folder(tmp_path):
    import subprocess
    (tmp_path / "tls").mkdir()
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=test",
                    "-keyout", str(tmp_path / "tls/ca.key"), "-out", str(tmp_path / "tls/ca.pem")],
                   check=True, capture_output=True)
    path = tmp_path / "c.yaml"
    path.write_text("kafka: {security_protocol: SSL, ssl_cafile: tls/ca.pem}\n")
    cfg = load_config(path, environ={})
    assert cfg.kafka.ssl_cafile == str(tmp_path / "tls/ca.pem")


@pytest.mark.parametrize("segments,needle", [
    (["countr"], r"models\.m\.segments\[0\]: 'countr' is not a feature of the model"),
    (["country", "amount"], r"models\.m\.segments\[1\]: numeric feature 'amount' needs buckets"),
    ([{"feature": "amount", "buckets": ["a"]}], r"models\.m\.segments\[0\]\.buckets: a non-empty list of finite numbers"),
    ([{"feature": "amount", "bins": [1]}], r"models\.m\.segments\[0\]: expected a feature name"),
    ([7], r"models.*segments"),
])
def test_a_bad_segment_fails_at_start_naming_the_key(segments, needle):
    """Issue 18: a segment feature the model does not have, or a numeric one without buckets,
    fails at start naming the key."""
    data = {"models": {"m": {"task": "classification", "features": {"amount": "numeric", "country": "categorical"},
                             "segments": segments}}}
    with pytest.raises(ConfigError, match=needle):
        load_config_dict(data, environ={})


def test_segments_reach_the_monitor_settings():
    cfg = load_config_dict({"models": {"m": {"task": "classification", "features": {"amount": "numeric", "c": "categorical"},
                                             "segments": ["c", {"feature": "amount", "buckets": [10, 100]}],
                                             "detectors": {"segment_top": 3}}}}, environ={})
    from detectors.model_monitor import MonitorSettings
    s = MonitorSettings.from_dict(cfg.models["m"].monitor_settings())
    assert s.segments == ("c", {"feature": "amount", "buckets": [10, 100]}) and s.segment_top == 3
    with pytest.raises(ConfigError, match=r"models\.m\.detectors\.segments: give segments as models\.m\.segments"):
        load_config_dict({"models": {"m": {"task": "classification", "features": {"c": "categorical"},
                                           "detectors": {"segments": ["c"]}}}}, environ={})
