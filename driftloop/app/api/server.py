"""Run the API beside the monitor's consumer loop: uvicorn in a daemon thread.

    handle = serve_in_thread(app, "127.0.0.1", 8321)
    ...                       # the monitor's loop runs in the main thread
    handle.stop()             # on shutdown: finish open requests, close the socket

The listening socket is bound before this returns, so an address in use fails here, in the
caller, with :class:`OSError`, and ``handle.port`` is the real port (useful with port 0).
Signals stay with the main thread (uvicorn installs no handlers outside it), so the monitor's
SIGTERM handling is unchanged.
"""
from __future__ import annotations

import logging
import socket
import threading
import time
from typing import Any

import uvicorn

__all__ = ["ServerHandle", "serve_in_thread"]

log = logging.getLogger(__name__)


class ServerHandle:
    """A running server: ``url``, ``port``, ``stop()``."""

    def __init__(self, server: uvicorn.Server, thread: threading.Thread, sock: socket.socket) -> None:
        self.server = server
        self.thread = thread
        self._sock = sock
        addr = sock.getsockname()
        self.host = addr[0]
        self.port = int(addr[1])

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        if host in ("0.0.0.0", "[::]"):
            host = "127.0.0.1"
        return f"http://{host}:{self.port}"

    @property
    def running(self) -> bool:
        return self.thread.is_alive()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop accepting, let open requests finish (up to ``timeout_s``), join the thread."""
        self.server.should_exit = True
        self.thread.join(timeout_s)
        if self.thread.is_alive():
            self.server.force_exit = True
            self.thread.join(2.0)
        try:
            self._sock.close()
        except OSError:
            pass


def _bind(host: str, port: int) -> socket.socket:
    family, kind, proto, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(addr)
    except OSError:
        sock.close()
        raise
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def serve_in_thread(app: Any, host: str = "127.0.0.1", port: int = 8321, *, log_level: str = "warning",
                    ready_timeout_s: float = 10.0) -> ServerHandle:
    """Serve ``app`` (any ASGI app) from a daemon thread; returns once it accepts requests."""
    sock = _bind(host, port)
    config = uvicorn.Config(app, log_level=log_level, access_log=False, lifespan="off", loop="asyncio",
                            timeout_graceful_shutdown=5)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="driftloop-api", daemon=True)
    thread.start()
    deadline = time.monotonic() + ready_timeout_s
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            sock.close()
            raise RuntimeError(f"the API server did not start on {host}:{port}")
        time.sleep(0.01)
    handle = ServerHandle(server, thread, sock)
    log.info("API and dashboard on %s", handle.url)
    return handle
