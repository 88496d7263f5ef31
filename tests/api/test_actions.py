"""Mutating endpoints: refused without the right bearer token (401), then real registry and
alert-manager changes with it."""
from __future__ import annotations

import pytest

from driftloop.app.api import auth
from tests.api.conftest import TOKEN, app_for
from tests.api.seed import Seeded

ACTIONS = [("/api/models/fraud/promote", {"version": 1}), ("/api/models/fraud/rollback", {}),
           ("/api/alerts/{alert}/resolve", {})]


def _firing(s: Seeded) -> str:
    from driftloop.app.api import queries

    with s.store.engine.connect() as c:
        (alert,) = queries.alerts_list(c, status="firing")
    return alert["alert_id"]


@pytest.fixture(scope="module")
def client(mutable: Seeded):
    with app_for(mutable, token=TOKEN) as c:
        yield c


@pytest.mark.parametrize("path,body", ACTIONS)
@pytest.mark.parametrize("header", [None, "Bearer wrong-token", "Basic dGVzdA==", f"Bearer {TOKEN}x",
                                    f"bearer{TOKEN}", "Bearer "])
def test_refused_without_the_token(client, mutable: Seeded, path: str, body: dict, header: str | None) -> None:
    headers = {} if header is None else {"Authorization": header}
    r = client.post(path.format(alert=_firing(mutable)), json=body, headers=headers)
    assert r.status_code == 401, r.text
    assert r.headers["www-authenticate"] == "Bearer"
    assert "detail" in r.json()


@pytest.mark.parametrize("path,body", ACTIONS)
def test_refused_when_no_token_is_configured(mutable: Seeded, path: str, body: dict, monkeypatch) -> None:
    monkeypatch.delenv("DRIFTLOOP_API_TOKEN", raising=False)
    with app_for(mutable, api_config={"token_env": "DRIFTLOOP_API_TOKEN"}) as c:
        r = c.post(path.format(alert=_firing(mutable)), json=body, headers={"Authorization": "Bearer "})
        r2 = c.post(path.format(alert=_firing(mutable)), json=body, headers={"Authorization": "Bearer x"})
    assert r.status_code == r2.status_code == 401
    assert "no API token is configured" in r2.json()["detail"]


def test_token_compared_in_constant_time(client, monkeypatch) -> None:
    calls = []
    real = auth.hmac.compare_digest

    def spy(a, b):
        calls.append((type(a), type(b)))
        return real(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", spy)
    assert client.post("/api/models/fraud/rollback", json={"to_version": 99},
                       headers={"Authorization": "Bearer nope"}).status_code == 401
    assert calls == [(bytes, bytes)]


def test_token_from_the_environment(mutable: Seeded, monkeypatch) -> None:
    monkeypatch.setenv("DRIFTLOOP_API_TOKEN", "from-env")
    with app_for(mutable, api_config={"token_env": "DRIFTLOOP_API_TOKEN"}) as c:
        r = c.post("/api/models/fraud/rollback", json={"to_version": 99}, headers={"Authorization": "Bearer from-env"})
    assert r.status_code == 404          # past the token check: version 99 does not exist


def test_promote_and_rollback(client, mutable: Seeded) -> None:
    auth_ = {"Authorization": f"Bearer {TOKEN}"}
    r = client.post("/api/models/fraud/promote", json={"version": 1, "reason": "v2 misbehaves", "actor": "alice"},
                    headers=auth_)
    assert r.status_code == 200, r.text
    ev = r.json()["event"]
    assert (ev["event"], ev["version"], ev["champion_version"], ev["previous_champion"]) == ("promoted", "1", "1", "2")
    assert client.get("/api/models/fraud/versions").json()["champion_version"] == 1
    assert client.post("/api/models/fraud/promote", json={"version": 1}, headers=auth_).status_code == 409
    assert client.post("/api/models/fraud/promote", json={"version": 7}, headers=auth_).status_code == 404
    assert client.post("/api/models/fraud/promote", json={"version": "x"}, headers=auth_).status_code == 422
    r = client.post("/api/models/fraud/rollback", headers=auth_)
    assert r.status_code == 200, r.text
    assert r.json()["event"]["champion_version"] == "2"
    hist = client.get("/api/models/fraud/versions").json()["history"]
    assert [h["event"] for h in hist[-2:]] == ["promoted", "rolled_back"]
    assert hist[-2]["actor"].startswith("api:alice@") and hist[-2]["reason"] == "v2 misbehaves"


def test_resolve(mutable: Seeded) -> None:
    woken = []
    with app_for(mutable, token=TOKEN, on_change=lambda: woken.append(1)) as c:
        alert = _firing(mutable)
        auth_ = {"Authorization": f"Bearer {TOKEN}"}
        assert c.post("/api/alerts/nope/resolve", headers=auth_).status_code == 404
        r = c.post(f"/api/alerts/{alert}/resolve", json={"reason": "known: a new market opened"}, headers=auth_)
        assert r.status_code == 200, r.text
        assert r.json()["changes"][0]["status"] == "resolved"
        assert woken == [1]
        detail = c.get(f"/api/alerts/{alert}").json()
        assert detail["status"] == "resolved"
        assert "a new market opened" in detail["resolve_reason"]
        assert detail["events"][-1]["status"] == "resolved"
        assert c.post(f"/api/alerts/{alert}/resolve", headers=auth_).status_code == 409
