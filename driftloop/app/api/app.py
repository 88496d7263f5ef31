"""The app factory: :func:`create_app` builds the ASGI app ``driftloop monitor`` serves.

========================================  ===================================================
``GET /``                                 the dashboard (static files, no build step)
``GET /healthz``                          the process answers (liveness)
``GET /readyz``                           broker reachable, store writable, consumer assigned
``GET /metrics``                          Prometheus text format (:mod:`driftloop.app.api.metrics`) (*)
``GET /openapi.json``                     the OpenAPI 3.1 document of everything below
``GET /api/...``                          JSON: models, versions, alerts, drift history, stats (*)
``POST /api/...``                         promote, rollback, resolve: bearer token required
========================================  ===================================================

(*) bearer token required when ``api.read_token_env`` is set (the read token or the change token;
see :mod:`driftloop.core.config.api`). Prometheus sends one with ``authorization: {credentials_file:
...}`` in its scrape config.

Everything is read from the store, so the app works in a process of its own as well as inside
the monitor; the in-process ``monitor`` adds live consumer figures (lag, batch timings,
assignment) and ``analyser`` the detectors' live status.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from importlib import resources
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import FileResponse, Response

from driftloop.app.api import actions, incident_routes, routes, schemas
from driftloop.app.api.auth import Unauthorized, check_read_token
from driftloop.app.api.context import JSON, Context
from driftloop.app.api.live import Readiness
from driftloop.app.api.metrics import make_registry
from driftloop.core.config.api import ApiConfig
from driftloop.core.store import Store

__all__ = ["create_app", "STATIC_DIR"]

log = logging.getLogger(__name__)

STATIC_DIR = resources.files("driftloop.app.api") / "static"

_SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
_CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")


def _api_config(cfg: Any, given: ApiConfig | dict[str, Any] | None) -> ApiConfig:
    if isinstance(given, ApiConfig):
        return given
    return ApiConfig.from_dict(given if given is not None else (getattr(cfg, "api", None) or {}))


def create_app(cfg: Any, store: Store, *, monitor: Any = None, analyser: Any = None, token: str | None = None,
               api_config: ApiConfig | dict[str, Any] | None = None, alerts: Any = None, registry: Any = None,
               on_change: Callable[[], None] | None = None) -> FastAPI:
    """Build the app.

    ``cfg``: the :class:`~driftloop.core.config.Config`; ``store``: its store. Optional: ``monitor``
    (the in-process :class:`consumers.monitor.Monitor`), ``analyser`` (its
    :class:`driftloop.monitoring.analysis.DriftAnalyser`), ``token`` (else ``api_config``'s / ``cfg.api``'s
    token), ``alerts`` (the monitor's :class:`~driftloop.alerts.service.AlertService`, so that
    resolutions wake its dispatcher; else an :class:`~driftloop.alerts.manager.AlertManager`
    is built on the store), ``registry`` (else :class:`retrain.registry.Registry`),
    ``on_change`` (called after promote/rollback/resolve commit, e.g. to publish the outbox).
    """
    api = _api_config(cfg, api_config)
    store.create_schema()  # every table (driftloop.core.tables), if the monitor has not made them yet
    ctx = Context(cfg=cfg, store=store, api=api, token=token if token is not None else api.resolved_token(),
                  read_token=api.resolved_read_token(),
                  monitor=monitor, analyser=analyser, alerts=alerts, registry=registry, on_change=on_change,
                  readiness=Readiness(cfg, store, monitor, timeout_s=api.readiness_timeout_s))
    app = FastAPI(title="driftloop", version=_version(), docs_url=None, redoc_url=None,
                  description="Drift monitoring and retraining on Kafka: models, alerts, drift history, metrics. "
                              "Times are epoch milliseconds. POST endpoints need `Authorization: Bearer <token>`.",
                  default_response_class=JSON)
    app.state.ctx = ctx
    app.state.metrics = make_registry(cfg, store, monitor, status_of=ctx.model_status)
    _handlers(app)
    if api.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=list(api.cors_origins), allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "Content-Type"])

    @app.middleware("http")
    async def _headers(request: Request, call_next: Any) -> Response:
        response = await call_next(request)
        for k, v in _SECURITY_HEADERS.items():
            response.headers.setdefault(k, v)
        if response.media_type == "text/html" or request.url.path == "/":
            response.headers.setdefault("Content-Security-Policy", _CSP)
        return response

    @app.get("/healthz", response_model=schemas.Health, tags=["health"], summary="Liveness: the process answers")
    def healthz() -> JSON:
        return JSON({"status": "ok"})

    @app.get("/readyz", response_model=schemas.Ready, tags=["health"],
             responses={503: {"model": schemas.Ready, "description": "not ready; the checks say why"}},
             summary="Readiness: broker reachable, store writable, consumer assigned")
    def readyz() -> JSON:
        result = ctx.readiness.check() if ctx.readiness is not None else {"ready": True, "checks": {}}
        return JSON(result, status_code=200 if result["ready"] else 503)

    @app.get("/metrics", tags=["health"], response_class=Response, summary="Prometheus metrics (text format)",
             responses={200: {"content": {CONTENT_TYPE_LATEST.split(";")[0]: {"schema": {"type": "string"}}},
                              "description": "Prometheus text exposition format 0.0.4"}})
    def metrics(_: None = Depends(require_read_token)) -> Response:
        return Response(generate_latest(app.state.metrics), media_type=CONTENT_TYPE_LATEST)

    app.include_router(routes.router, tags=["read"], dependencies=[Depends(require_read_token)])
    app.include_router(incident_routes.router, tags=["read"], dependencies=[Depends(require_read_token)])
    app.include_router(actions.router, tags=["change"])

    static = STATIC_DIR

    @app.get("/", include_in_schema=False)
    def dashboard() -> FileResponse:
        return FileResponse(str(static / "index.html"), media_type="text/html",
                            headers={"Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=str(static)), name="static")
    return app


def require_read_token(request: Request) -> None:
    """The dependency of every read endpoint and /metrics: 401 unless reading is open or the
    request carries the read (or the change) token."""
    ctx: Context = request.app.state.ctx
    try:
        check_read_token(ctx.read_token, ctx.token, request.headers.get("authorization"))
    except Unauthorized as exc:
        raise HTTPException(401, str(exc), headers={"WWW-Authenticate": "Bearer"}) from None


def _handlers(app: FastAPI) -> None:
    """Errors as ``{"detail": ...}`` JSON, never a stack trace."""

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSON:
        return JSON({"detail": exc.detail}, status_code=exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSON:
        return JSON({"detail": "invalid request", "errors": [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg")} for e in exc.errors()]}, status_code=422)

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception) -> JSON:
        log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        return JSON({"detail": f"internal error: {type(exc).__name__}"}, status_code=500)


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("driftloop")
    except metadata.PackageNotFoundError:
        return "0"
