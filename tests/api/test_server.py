"""serve_in_thread: a real uvicorn server on a loopback port, stopped cleanly."""
from __future__ import annotations

import json
import socket
import urllib.request

import pytest

from driftloop.app.api import create_app, serve_in_thread
from tests.api.seed import Seeded


def test_serves_and_stops(seeded: Seeded) -> None:
    handle = serve_in_thread(create_app(seeded.cfg, seeded.store), "127.0.0.1", 0)
    try:
        assert handle.port > 0 and handle.running
        with urllib.request.urlopen(handle.url + "/healthz", timeout=5) as r:
            assert json.loads(r.read()) == {"status": "ok"}
        with urllib.request.urlopen(handle.url + "/metrics", timeout=5) as r:
            assert b"driftloop_events_total" in r.read()
    finally:
        handle.stop()
    assert not handle.running
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", handle.port), timeout=1).close()


def test_port_in_use_fails_in_the_caller(seeded: Seeded) -> None:
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    try:
        with pytest.raises(OSError):
            serve_in_thread(create_app(seeded.cfg, seeded.store), "127.0.0.1", busy.getsockname()[1])
    finally:
        busy.close()
