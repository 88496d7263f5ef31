"""Registry: files checked on load, external registration, promote/rollback and the audit trail, CLI."""
from __future__ import annotations

import json
import pickle
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
import skops.io as sio

import retrain.registry as registry_module
from driftloop.app.cli import main as cli
from driftloop.core.store import Store
from retrain.artifacts import ArtifactError, ArtifactIntegrityError, UntrustedArtifactError, load_model, save_model
from retrain.events import decode_model_event, switch_target
from retrain.registry import Registry, RegistryError, code_version, load_reference
from tests.retrain.helpers import agrawal, config_data, fitted_model, frame, predict, write_config

ROWS = agrawal(600, function=0, seed=1)


@pytest.fixture
def env(tmp_path):
    path, cfg = write_config(tmp_path, config_data(tmp_path))
    store = Store.from_config(cfg.store)
    store.create_schema()
    yield path, cfg, store, Registry(cfg, store)
    store.dispose()


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    est = fitted_model(ROWS)
    path = tmp_path_factory.mktemp("ext") / "model.skops"
    sio.dump(est, path)
    return path, est


def _outbox_events(store):
    with store.engine.connect() as c:
        rows = c.exec_driver_sql("SELECT topic, value FROM outbox ORDER BY id").all()
    return [decode_model_event(v) for t, v in rows if t.endswith(".models")]


def test_changed_model_bytes_fail_with_a_clear_error(tmp_path, model_file):
    info = save_model(model_file[1], tmp_path / "m.skops")
    assert load_model(info.path, info.sha256, info.trusted_types).predict is not None
    data = bytearray(info.path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    info.path.write_bytes(bytes(data))
    with pytest.raises(ArtifactIntegrityError, match=r"m\.skops was modified or is corrupt: its SHA-256 is [0-9a-f]{64} "
                                                     r"but the registry recorded [0-9a-f]{64}; refusing to load it"):
        load_model(info.path, info.sha256, info.trusted_types)
    info.path.unlink()
    with pytest.raises(ArtifactError, match="is missing"):
        load_model(info.path, info.sha256, info.trusted_types)


@pytest.fixture
def fresh_code_version(monkeypatch):
    """``code_version()`` computed anew in the test (it is cached per process), and again after it."""
    monkeypatch.delenv("DRIFTLOOP_CODE_VERSION", raising=False)
    code_version.cache_clear()
    yield monkeypatch
    code_version.cache_clear()


def _git(*args: str) -> str | None:
    root = Path(registry_module.__file__).resolve().parent
    res = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10)
    return res.stdout.strip() if res.returncode == 0 else None


def test_code_version_is_the_git_commit_of_the_checkout(fresh_code_version):
    """The commit the code was checked out at, ``-dirty`` if a tracked file is modified; None
    outside a git checkout (an installed wheel, a tarball)."""
    head_before = _git("rev-parse", "HEAD")
    got = code_version()
    head_after = _git("rev-parse", "HEAD")   # (other work may commit meanwhile: either is right)
    if head_before is None:
        assert got is None
        return
    assert got is not None
    commit, dirty = re.fullmatch(r"(.+?)(-dirty)?", got).groups()
    tags = (_git("tag", "--points-at", "HEAD") or "").split()
    assert commit.endswith((head_before, head_after)) or commit in tags, (got, head_before, tags)
    assert re.search(r"[0-9a-f]{40}$", commit) or commit in tags
    # (``-dirty`` is not checked: the tree may be edited while the suite runs)


def test_code_version_outside_git_and_without_git_is_none(fresh_code_version, tmp_path):
    outside = tmp_path / "site-packages" / "retrain"
    outside.mkdir(parents=True)
    fresh_code_version.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    fresh_code_version.setattr(registry_module, "__file__", str(outside / "registry.py"))
    assert code_version() is None
    code_version.cache_clear()
    fresh_code_version.setattr(registry_module, "__file__", registry_module.__spec__.origin)
    fresh_code_version.setenv("PATH", str(tmp_path))      # in the checkout, but no git program at all
    assert code_version() is None


def test_code_version_from_the_environment_wins(fresh_code_version):
    fresh_code_version.setenv("DRIFTLOOP_CODE_VERSION", "release-2026.12-" + "x" * 80)
    assert code_version() == ("release-2026.12-" + "x" * 80)[:64]


def test_register_external_model_then_tamper(env, model_file, fresh_code_version):
    fresh_code_version.setenv("DRIFTLOOP_CODE_VERSION", "build-7f3c")   # what the registry must record
    path, cfg, store, reg = env
    version, events = reg.register("agr", model_file[0], frame(ROWS), actor="tester", trust=model_file_types(model_file),
                                   note="trained offline", promote=True)
    assert version == 1 and [e.event for e in events] == ["registered", "promoted"]
    assert switch_target(events[1]).version == "1"
    v = reg.champion("agr")
    assert v.status == "champion" and v.source == "register" and v.reference_rows == 600
    assert v.library_versions["scikit-learn"] and v.artifact_sha256 and v.code_version == "build-7f3c"
    est = reg.load_model("agr", 1)
    assert (predict(est, ROWS[:50]) == predict(model_file[1], ROWS[:50])).all()
    ref = load_reference(cfg, store, "agr", 1)
    assert list(ref.columns) == [*cfg.models["agr"].features, "label"] and len(ref) == 600
    assert ref["elevel"].iloc[0] == ROWS[0][0]["elevel"] and ref["label"].iloc[0] == str(ROWS[0][1])
    # flip one byte of the registered artifact and of the reference sample
    for rel in (v.artifact_path, v.reference_path):
        p = reg.path(rel)
        b = bytearray(p.read_bytes())
        b[-1] ^= 0x01
        p.write_bytes(bytes(b))
    with pytest.raises(ArtifactIntegrityError, match=r"model.skops was modified or is corrupt"):
        reg.load_model("agr", 1)
    with pytest.raises(ArtifactIntegrityError, match=r"reference.json.gz was modified or is corrupt"):
        load_reference(cfg, store, "agr", 1)
    assert cli(["models", "show", "-c", str(path), "agr", "--verify", "--json"]) == 1


def model_file_types(model_file):
    return sio.get_untrusted_types(file=model_file[0])


def test_register_refuses_pickle_and_untrusted_types(env, model_file, tmp_path):
    _, _, _, reg = env
    pkl = tmp_path / "model.pkl"
    pkl.write_bytes(pickle.dumps(model_file[1]))
    with pytest.raises(ArtifactError, match="not a readable skops file"):
        reg.register("agr", pkl, frame(ROWS), actor="t")
    with pytest.raises(UntrustedArtifactError, match=r"sklearn\.tree\._tree\.Tree.*--trust TYPE"):
        reg.register("agr", model_file[0], frame(ROWS), actor="t")
    with pytest.raises(RegistryError, match=r"reference sample lacks the columns \['age'\]"):
        reg.register("agr", model_file[0], frame(ROWS).drop(columns=["age"]), actor="t",
                     trust=model_file_types(model_file))
    with pytest.raises(RegistryError, match="column 'age' is not numeric"):
        reg.register("agr", model_file[0], frame(ROWS).assign(age="x"), actor="t", trust=model_file_types(model_file))
    assert reg.versions("agr") == []


def test_promote_rollback_and_history(env, model_file):
    _, _, store, reg = env
    trust = model_file_types(model_file)
    t0 = 1_700_000_000_000
    for i in range(3):
        reg.register("agr", model_file[0], frame(ROWS), actor="t", trust=trust, promote=(i == 0), now=t0 + i)
    assert [v.status for v in reg.versions("agr")] == ["champion", "registered", "registered"]
    reg.promote("agr", 2, actor="alice", reason="better offline", now=t0 + 10)
    reg.promote("agr", 3, actor="alice", now=t0 + 20)
    ev = reg.rollback("agr", actor="bob", reason="v3 misbehaves", now=t0 + 30)
    assert (ev.event, ev.version, ev.champion_version, ev.previous_champion) == ("rolled_back", "3", "2", "3")
    assert switch_target(ev).version == "2"
    assert [v.status for v in reg.versions("agr")] == ["archived", "champion", "archived"]
    assert reg.champion_at("agr", t0 + 15) == 2 and reg.champion_at("agr", t0 + 25) == 3
    assert reg.champion_at("agr", t0 + 35) == 2 and reg.champion_at("agr", t0 - 1) is None
    hist = reg.history("agr")
    assert [(h.event, h.champion_version) for h in hist][-3:] == [("promoted", 2), ("promoted", 3), ("rolled_back", 2)]
    assert hist[-1].actor == "bob" and hist[-1].reason == "v3 misbehaves"
    reg.rollback("agr", to_version=1, actor="bob", now=t0 + 40)
    assert reg.champion("agr").version == 1
    with pytest.raises(RegistryError, match="already the champion"):
        reg.promote("agr", 1, actor="x")
    with pytest.raises(RegistryError, match="no version 9"):
        reg.promote("agr", 9, actor="x")
    events = _outbox_events(store)
    assert [e.history_id for e in events] == [h.id for h in reg.history("agr")]


def test_cli_models_commands(env, model_file, tmp_path, capsys):
    path, _, _, reg = env
    c = str(path)
    ref = tmp_path / "ref.csv"
    frame(ROWS).to_csv(ref, index=False)
    trust = model_file_types(model_file)
    assert cli(["models", "register", "-c", c, "agr", "--artifact", str(model_file[0]), "--reference", str(ref),
                "--trust", *trust, "--metrics", '{"accuracy": 0.9}', "--promote", "--no-publish"]) == 0
    assert cli(["models", "register", "-c", c, "agr", "--artifact", str(model_file[0]), "--reference", str(ref),
                "--trust", *trust, "--no-publish"]) == 0
    assert cli(["models", "promote", "-c", c, "agr", "2", "--reason", "try it", "--no-publish"]) == 0
    assert cli(["models", "rollback", "-c", c, "agr", "--no-publish"]) == 0
    capsys.readouterr()
    assert cli(["models", "list", "-c", c, "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["version"], r["status"]) for r in rows] == [(1, "champion"), (2, "archived")]
    assert cli(["models", "show", "-c", c, "agr", "--verify"]) == 0
    out = capsys.readouterr().out
    assert "agr version 1  [champion]" in out and "SHA-256 matches" in out and "rolled_back" in out
    assert cli(["models", "promote", "-c", c, "agr", "7", "--no-publish"]) == 1
    assert "has no version 7" in capsys.readouterr().err
    assert cli(["retrain", "-c", c, "agr", "--no-publish"]) == 1     # no labelled examples yet
    assert "only 0 labelled examples" in capsys.readouterr().err
    assert np.isfinite(reg.get("agr", 1).metrics["accuracy"])
