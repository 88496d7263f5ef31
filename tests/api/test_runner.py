"""start_api: the one call ``driftloop monitor`` makes."""
from __future__ import annotations

import urllib.error
import urllib.request

import msgspec

from driftloop.app.api.runner import start_api
from driftloop.core.config.api import ApiConfig
from tests.api.seed import Seeded


def test_disabled_serves_nothing(seeded: Seeded) -> None:
    assert start_api(seeded.cfg, seeded.store, api_config=ApiConfig(enabled=False)) is None


def test_serves_from_the_config(seeded: Seeded) -> None:
    handle = start_api(seeded.cfg, seeded.store, api_config=ApiConfig.from_dict({"port": 0, "token": "t"}))
    try:
        with urllib.request.urlopen(handle.url + "/healthz", timeout=5) as r:
            assert r.status == 200
        req = urllib.request.Request(handle.url + "/api/models/fraud/rollback", method="POST", data=b"{}",
                                     headers={"Content-Type": "application/json"})
        try:
            urllib.request.urlopen(req, timeout=5)
            raise AssertionError("no token, yet accepted")
        except urllib.error.HTTPError as exc:
            assert exc.code == 401
    finally:
        handle.stop()


def test_reads_cfg_api(seeded: Seeded) -> None:
    cfg = msgspec.structs.replace(seeded.cfg, api={"port": 0})
    handle = start_api(cfg, seeded.store)
    try:
        assert handle.port > 0 and handle.host == "127.0.0.1"
    finally:
        handle.stop()
