"""The HTTP API, Prometheus metrics and dashboard that ``driftloop monitor`` serves.

* :mod:`driftloop.api.app` - :func:`create_app` (FastAPI/Starlette, ASGI);
* :mod:`driftloop.api.server` - :func:`serve_in_thread` (uvicorn beside the consumer loop);
* :mod:`driftloop.api.config` - :class:`ApiConfig`, the ``api:`` section;
* :mod:`driftloop.api.history` - the drift/performance history tables and
  :func:`record_detector_statistics`, which the monitor calls in its batch transaction;
* :mod:`driftloop.api.metrics` - ``/metrics``; :mod:`driftloop.api.queries` - the store reads;
* :mod:`driftloop.api.live` - live figures of the in-process monitor, ``/readyz`` checks,
  :func:`partition_lag` for the monitor's loop;
* :mod:`driftloop.api.routes`, :mod:`driftloop.api.actions` - read and mutating endpoints;
* ``static/`` - the dashboard (HTML, JS, CSS; uPlot vendored under ``static/vendor``).

Importing this package registers its tables on :data:`driftloop.store.metadata`.
"""
from driftloop.api.config import ApiConfig
from driftloop.api.history import record_detector_statistics, windows_judged
from driftloop.api.live import partition_lag

__all__ = ["ApiConfig", "create_app", "serve_in_thread", "record_detector_statistics", "windows_judged",
           "partition_lag"]


def __getattr__(name: str):  # the web stack is imported only when the app is built
    if name == "create_app":
        from driftloop.api.app import create_app

        return create_app
    if name == "serve_in_thread":
        from driftloop.api.server import serve_in_thread

        return serve_in_thread
    raise AttributeError(name)
