"""Shared test helpers: detections, a real local HTTP receiver, alert stores."""
from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from detectors.base import Detection, Window


def det(feature: str | None = "amount", *, firing: bool = True, kind: str = "data_drift", detector: str = "psi",
        stat: float = 0.31, severity: str = "warning", p: float | None = 1e-7, n: int = 5000) -> Detection:
    subject = f"feature `{feature}`" if feature else kind
    summary = (f"{subject} drifted (PSI {stat:.2f} > 0.1, KS p<1e-6) over the last {n:,} predictions "
               f"(reference: 20,000 training rows)." if firing else f"{subject} no longer drifts (PSI {stat:.2f}).")
    return Detection(kind, detector, feature, stat, p, 0.1, Window(0, 60_000, n), firing=firing,
                     severity=severity, effect_size=stat, summary=summary,  # type: ignore[arg-type]  # test data: a Severity value
                     evidence={"reference_n": 20_000, "statistics": {"psi": stat}})


@dataclass
class Request:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def key(self) -> str | None:
        return {k.lower(): v for k, v in self.headers.items()}.get("idempotency-key")


@dataclass
class Behaviour:
    """How the receiver answers one path: ``fail`` N times (status ``fail_status``), or ``hang``
    until ``release`` is set."""

    fail: int = 0
    fail_status: int = 500
    hang: bool = False
    release: threading.Event = field(default_factory=threading.Event)
    hanging: threading.Event = field(default_factory=threading.Event)


class Receiver:
    """A real HTTP server on 127.0.0.1 recording every POST (including failed ones)."""

    def __init__(self) -> None:
        self.requests: list[Request] = []      # accepted (answered 2xx)
        self.attempts: list[Request] = []      # every request received
        self.behaviour: dict[str, Behaviour] = {}
        self.lock = threading.Lock()
        recv = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                req = Request(self.path, dict(self.headers.items()), body, time.monotonic())
                b = recv.behaviour.get(self.path)
                with recv.lock:
                    recv.attempts.append(req)
                status = 200
                if b is not None:
                    if b.hang and not b.release.is_set():
                        b.hanging.set()
                        b.release.wait(60)
                    with recv.lock:
                        if b.fail > 0:
                            b.fail -= 1
                            status = b.fail_status
                if status < 300:
                    with recv.lock:
                        recv.requests.append(req)
                try:
                    self.send_response(status)
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"{}")
                except OSError:
                    pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def on(self, path: str) -> list[Request]:
        with self.lock:
            return [r for r in self.requests if r.path == path]

    def wait_for(self, path: str, n: int, timeout_s: float = 20.0) -> list[Request]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            got = self.on(path)
            if len(got) >= n:
                return got
            time.sleep(0.02)
        raise AssertionError(f"{path}: {len(self.on(path))} requests, wanted {n}")

    def wait_for_attempts(self, path: str, n: int, timeout_s: float = 20.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self.lock:
                if sum(r.path == path for r in self.attempts) >= n:
                    return
            time.sleep(0.02)
        raise AssertionError(f"{path}: fewer than {n} attempts")

    def close(self) -> None:
        for b in self.behaviour.values():
            b.release.set()
        self.server.shutdown()
        self.server.server_close()
