"""The HTTP API, Prometheus metrics and dashboard that ``driftloop monitor`` serves.

* :mod:`driftloop.app.api.app` - :func:`create_app` (FastAPI/Starlette, ASGI);
* :mod:`driftloop.app.api.server` - :func:`serve_in_thread` (uvicorn beside the consumer loop);
* :mod:`driftloop.core.config.api` - :class:`ApiConfig`, the ``api:`` section;
* :mod:`driftloop.monitoring.history` - the drift/performance history and
  :func:`record_detector_statistics`, which the monitor calls in its batch transaction;
* :mod:`driftloop.app.api.metrics` - ``/metrics``; :mod:`driftloop.app.api.queries` - the store reads;
* :mod:`driftloop.app.api.live` - live figures of the in-process monitor, ``/readyz`` checks;
  :func:`partition_lag` (the monitor's loop sets it, from :mod:`driftloop.kafka.lag`);
* :mod:`driftloop.app.api.routes`, :mod:`driftloop.app.api.actions` - read and mutating endpoints;
* ``static/`` - the dashboard (HTML, JS, CSS; uPlot vendored under ``static/vendor``).

Its ``api_heartbeat`` table is declared with every other in :mod:`driftloop.core.tables`.
Part of the application layer: may import every layer below it.
"""
from typing import Any

from driftloop.app.api.live import partition_lag
from driftloop.core.config.api import ApiConfig
from driftloop.monitoring.history import record_detector_statistics, windows_judged

__all__ = ["ApiConfig", "create_app", "serve_in_thread", "record_detector_statistics", "windows_judged",
           "partition_lag"]


def __getattr__(name: str) -> Any:  # the web stack is imported only when the app is built
    if name == "create_app":
        from driftloop.app.api.app import create_app

        return create_app
    if name == "serve_in_thread":
        from driftloop.app.api.server import serve_in_thread

        return serve_in_thread
    raise AttributeError(name)
