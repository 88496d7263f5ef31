"""One call for ``driftloop monitor``: build the app from ``cfg.api`` and serve it in a thread.

    api = start_api(cfg, store, monitor=monitor, analyser=analyser, alerts=alert_service)
    try:
        monitor.run()
    finally:
        if api is not None:
            api.stop()
"""
from __future__ import annotations

import ipaddress
import logging
from typing import Any

from driftloop.app.api.server import ServerHandle, serve_in_thread
from driftloop.core.config.api import ApiConfig

__all__ = ["start_api"]

log = logging.getLogger(__name__)


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def start_api(cfg: Any, store: Any, *, monitor: Any = None, analyser: Any = None, alerts: Any = None,
              registry: Any = None, on_change: Any = None, api_config: ApiConfig | None = None) -> ServerHandle | None:
    """Serve the API and dashboard as ``cfg.api`` says; None when ``api.enabled`` is false.

    Raises :class:`OSError` when the port is taken (the monitor should not start half-way).
    """
    from driftloop.app.api.app import create_app

    api = api_config or ApiConfig.from_dict(getattr(cfg, "api", None) or {})
    if not api.enabled:
        return None
    app = create_app(cfg, store, monitor=monitor, analyser=analyser, api_config=api, alerts=alerts,
                     registry=registry, on_change=on_change)
    handle = serve_in_thread(app, api.host, api.port)
    if not _loopback(api.host):
        log.warning("the API listens on %s: reads are open to that network%s", api.host,
                    "" if app.state.ctx.token else "; changes are disabled (no api.token)")
    return handle
