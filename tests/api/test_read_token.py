"""``api.read_token_env``: the read endpoints and /metrics need a bearer token once it is set;
/healthz, /readyz and the dashboard's static files stay open, and the dashboard takes the token."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from driftloop.core.config import ConfigError
from driftloop.core.config.api import ApiConfig
from tests.api.conftest import TOKEN, app_for
from tests.api.seed import Seeded

READ = "read-token-7c1e"
READS = ["/api/models", "/api/models/fraud", "/api/models/fraud/versions", "/api/models/fraud/drift",
         "/api/models/fraud/performance", "/api/models/fraud/status", "/api/alerts", "/api/alerts/events",
         "/api/alerts/timeline", "/api/retrain/jobs", "/api/stats", "/api/monitor", "/metrics"]
OPEN = ["/healthz", "/", "/static/app.js", "/openapi.json"]


@pytest.fixture(scope="module")
def guarded(seeded: Seeded):
    os.environ["DRIFTLOOP_TEST_READ_TOKEN"] = READ
    try:
        with app_for(seeded, token=TOKEN, api_config={"read_token_env": "DRIFTLOOP_TEST_READ_TOKEN"}) as c:
            yield c
    finally:
        del os.environ["DRIFTLOOP_TEST_READ_TOKEN"]


@pytest.mark.parametrize("path", READS)
@pytest.mark.parametrize("header", [None, "Bearer wrong", f"Bearer {READ}x", f"Basic {READ}", "Bearer "])
def test_reads_refused_without_the_read_token(guarded, path: str, header: str | None) -> None:
    r = guarded.get(path, headers={} if header is None else {"Authorization": header})
    assert r.status_code == 401, (path, r.text)
    assert r.headers["www-authenticate"] == "Bearer"
    assert "token" in r.json()["detail"]


@pytest.mark.parametrize("path", READS)
@pytest.mark.parametrize("token", [READ, TOKEN])   # the change token reads too
def test_reads_answered_with_the_token(guarded, path: str, token: str) -> None:
    r = guarded.get(path, headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200, (path, r.text)


@pytest.mark.parametrize("path", OPEN)
def test_health_and_the_dashboard_page_stay_open(guarded, path: str) -> None:
    assert guarded.get(path).status_code == 200


def test_readyz_stays_open(guarded) -> None:
    assert guarded.get("/readyz").status_code in (200, 503)    # never 401


def test_without_read_token_env_reads_stay_open(client) -> None:
    for path in READS:
        assert client.get(path).status_code == 200, path


def test_a_named_but_unset_variable_fails_at_start(seeded: Seeded, monkeypatch) -> None:
    monkeypatch.delenv("DRIFTLOOP_TEST_UNSET_READ", raising=False)
    with pytest.raises(ConfigError, match=r"api\.read_token_env: .*DRIFTLOOP_TEST_UNSET_READ.*not set"):
        app_for(seeded, api_config={"read_token_env": "DRIFTLOOP_TEST_UNSET_READ"})


@pytest.mark.parametrize("bad", ["", "1ABC", "MY-TOKEN", "A B"])
def test_read_token_env_must_name_a_variable(bad: str) -> None:
    with pytest.raises(ConfigError, match=r"api\.read_token_env"):
        ApiConfig.from_dict({"read_token_env": bad})


def test_repr_shows_the_variable_name_only() -> None:
    cfg = ApiConfig.from_dict({"read_token_env": "RT"})
    assert "read_token_env='RT'" in repr(cfg)
    assert cfg.resolved_read_token({"RT": "abc"}) == "abc"
    assert ApiConfig.from_dict({}).resolved_read_token({"RT": "abc"}) is None


CHROMIUM = "/usr/bin/chromium"


@pytest.mark.browser
def test_the_dashboard_takes_the_token_from_the_address(seeded: Seeded, tmp_path: Path, monkeypatch) -> None:
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is absent; CI installs it")
        pytest.skip(f"{CHROMIUM} is absent (apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    from driftloop.app.api import create_app, serve_in_thread
    from tests.api.test_dashboard_browser import FLAGS

    monkeypatch.setenv("DRIFTLOOP_TEST_READ_TOKEN", READ)
    handle = serve_in_thread(create_app(seeded.cfg, seeded.store,
                                        api_config={"read_token_env": "DRIFTLOOP_TEST_READ_TOKEN"}), "127.0.0.1", 0)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch_persistent_context(str(tmp_path / "profile"), executable_path=CHROMIUM,
                                                           headless=True, args=FLAGS, timeout=60_000)
            try:
                page = browser.new_page()
                page.goto(handle.url + f"/#token={READ}", wait_until="load")
                page.wait_for_selector("body[data-ready='1'], body[data-ready='error']", state="attached",
                                       timeout=30_000)
                assert page.get_attribute("body", "data-ready") == "1", page.inner_text("#error")
                assert "token" not in page.url          # taken out of the address bar (and history)
                assert page.inner_text("#cards").count("v2") == 1
            finally:
                browser.close()
    finally:
        handle.stop()
