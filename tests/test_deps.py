"""tests/deps.py: a missing dependency skips locally and FAILS under CI; under CI no skip goes through."""
from __future__ import annotations

import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.deps import HOW_CI_INSTALLS, require_binary, require_module
from tests.kafka_helpers import ROOT

ABSENT_MODULE = "driftloop_no_such_module_3f9a"
ABSENT_PROGRAM = "driftloop-no-such-program-3f9a"


@pytest.fixture
def ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")


@pytest.fixture
def local(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)


def test_a_missing_module_fails_under_ci_naming_it(ci):
    with pytest.raises(pytest.fail.Exception) as err:
        require_module(ABSENT_MODULE)
    assert ABSENT_MODULE in str(err.value) and "under CI" in str(err.value)


def test_a_missing_module_skips_locally(local):
    with pytest.raises(pytest.skip.Exception, match=ABSENT_MODULE):
        require_module(ABSENT_MODULE)


@pytest.mark.parametrize("name", ["river", "confluent_kafka", "psycopg", "playwright"])
def test_the_message_says_how_ci_installs_a_test_extra(ci, name, monkeypatch):
    monkeypatch.setitem(sys.modules, name, None)     # import of it raises ModuleNotFoundError
    with pytest.raises(pytest.fail.Exception) as err:
        require_module(name)
    assert repr(name) in str(err.value) and HOW_CI_INSTALLS[name] in str(err.value)


def test_a_module_that_is_there_is_returned_under_ci(ci):
    assert require_module("json").dumps([1]) == "[1]"


def test_a_missing_program_fails_under_ci_and_skips_locally(monkeypatch):
    monkeypatch.setenv("CI", "1")
    with pytest.raises(pytest.fail.Exception, match=ABSENT_PROGRAM):
        require_binary(ABSENT_PROGRAM, "/nonexistent/bin/x")
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match=ABSENT_PROGRAM):
        require_binary(ABSENT_PROGRAM)


def test_chromium_message_names_apt_and_ci_run(ci, monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(pytest.fail.Exception, match=r"apt: \.ci/run runs `apt-get install chromium`"):
        require_binary("chromium", "/nonexistent/chromium")


def test_a_program_on_path_or_at_a_fallback_is_found(ci, tmp_path, monkeypatch):
    prog = tmp_path / "tool"
    prog.write_text("#!/bin/sh\n")
    prog.chmod(0o755)
    monkeypatch.setenv("PATH", "/nonexistent")
    assert require_binary("tool", "/nonexistent/tool", str(prog)) == str(prog)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert require_binary("tool") == str(prog)


# -- the safety net, in a pytest run of its own --------------------------------------------------
INNER = '''
import pytest

def test_passes():
    pass

def test_bare_skip():
    pytest.skip("a bare skip")

def test_importorskip():
    pytest.importorskip("{absent}")

@pytest.mark.skipif(True, reason="a skipif mark")
def test_skipif_mark():
    pass

@pytest.fixture
def skipping_fixture():
    pytest.skip("a fixture skips")

def test_fixture_skip(skipping_fixture):
    pass

@pytest.mark.xfail(reason="known")
def test_xfail():
    assert False

@pytest.mark.allow_skip_in_ci(reason="only meaningful elsewhere")
def test_allowed_skip():
    pytest.skip("allowed")
'''


def _inner_run(tmp_path: Path, ci: bool) -> dict[str, str]:
    """Run INNER with tests/deps.py as a plugin; each test's outcome from the JUnit XML."""
    (tmp_path / "test_inner.py").write_text(textwrap.dedent(INNER.format(absent=ABSENT_MODULE)))
    (tmp_path / "module_skip").mkdir()
    (tmp_path / "module_skip" / "test_mod.py").write_text(
        f'import pytest\npytest.importorskip("{ABSENT_MODULE}")\n\ndef test_never():\n    pass\n')
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    env = {k: v for k, v in __import__("os").environ.items() if k != "CI"} | {"PYTHONPATH": str(ROOT)}
    if ci:
        env["CI"] = "true"
    xml = tmp_path / "out.xml"
    res = subprocess.run([sys.executable, "-m", "pytest", "-p", "tests.deps", "-p", "no:cacheprovider",
                          "-c", str(tmp_path / "pytest.ini"), "--rootdir", str(tmp_path), f"--junitxml={xml}",
                          "--continue-on-collection-errors", str(tmp_path)],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert xml.exists(), res.stdout + res.stderr
    out: dict[str, str] = {}
    for case in ET.parse(xml).getroot().iter("testcase"):
        kinds = [child.tag for child in case if child.tag in ("failure", "error", "skipped")]
        out[case.get("name") or ""] = kinds[0] if kinds else "passed"
        if kinds and kinds[0] == "skipped" and "xfail" in (case.find("skipped").get("type") or ""):
            out[case.get("name") or ""] = "xfail"
    out["_stdout"] = res.stdout
    return out


def test_under_ci_every_skip_is_a_failure(tmp_path):
    got = _inner_run(tmp_path, ci=True)
    want = {"test_passes": "passed", "test_bare_skip": "failure", "test_importorskip": "failure",
            "test_skipif_mark": "error", "test_fixture_skip": "error", "test_xfail": "xfail",
            "test_allowed_skip": "skipped"}
    assert {k: got.get(k) for k in want} == want, got["_stdout"][-3000:]
    assert "skipped under CI, which fails instead: Skipped: a bare skip" in got["_stdout"]
    assert "module_skip/test_mod.py" in got["_stdout"] and "error" in got["_stdout"].splitlines()[-1]


def test_locally_skips_stay_skips(tmp_path):
    got = _inner_run(tmp_path, ci=False)
    want = {"test_passes": "passed", "test_bare_skip": "skipped", "test_importorskip": "skipped",
            "test_skipif_mark": "skipped", "test_fixture_skip": "skipped", "test_xfail": "xfail",
            "test_allowed_skip": "skipped"}
    assert {k: got.get(k) for k in want} == want, got["_stdout"][-3000:]
    assert "error" not in got["_stdout"].splitlines()[-1]
