"""The mutating endpoints: promote, rollback (the registry) and resolve (the alert manager).

Each needs ``Authorization: Bearer <token>`` (:mod:`driftloop.app.api.auth`); without a configured
token they refuse everyone. Each is one transaction in the store, like the CLI's commands, and
its message (``driftloop.models`` event, ``driftloop.alerts`` change) leaves through the outbox
or the alert dispatcher afterwards.
"""
from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from driftloop.app.api import queries, schemas
from driftloop.app.api.auth import Unauthorized, check_token
from driftloop.app.api.context import JSON, Context
from driftloop.core.store import now_ms
from retrain.registry import RegistryError

__all__ = ["router"]

_bearer = HTTPBearer(auto_error=False, description="the token of api.token / api.token_env")

ERRORS: dict[int | str, dict[str, Any]] = {   # FastAPI's `responses` type
    401: {"model": schemas.Problem, "description": "no token, or a wrong one"},
    404: {"model": schemas.Problem, "description": "unknown model, version or alert"},
    409: {"model": schemas.Problem, "description": "not possible in the current state"},
}


def require_token(request: Request,
                  creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> str:
    """The dependency every mutating endpoint has; returns the caller's address."""
    ctx: Context = request.app.state.ctx
    header = None if creds is None else f"{creds.scheme} {creds.credentials}"
    try:
        check_token(ctx.token, header)
    except Unauthorized as exc:
        raise HTTPException(401, str(exc), headers={"WWW-Authenticate": "Bearer"}) from None
    return request.client.host if request.client else "unknown"


router = APIRouter(prefix="/api", default_response_class=JSON, dependencies=[Depends(require_token)],
                   responses=ERRORS)


def _actor(request: Request, given: str | None) -> str:
    host = request.client.host if request.client else "unknown"
    return f"api:{given}@{host}" if given else f"api@{host}"


def _registry_call(fn: Any) -> Any:
    """``fn()``, a :class:`~retrain.registry.RegistryError` as 404 (no such version) or 409."""
    try:
        return fn()
    except RegistryError as exc:
        msg = str(exc)
        raise HTTPException(404 if "has no version" in msg else 409, msg) from None


def _event(ev: Any) -> dict[str, Any]:
    import msgspec

    try:
        return msgspec.to_builtins(ev)
    except TypeError:
        return dict(ev) if isinstance(ev, dict) else {"event": str(ev)}


@router.post("/models/{model}/promote", response_model=schemas.ActionResult,
             summary="Make a registered version the champion (needs the token)")
def promote(request: Request, model: str, body: schemas.PromoteBody) -> JSON:
    ctx: Context = request.app.state.ctx
    reg = ctx.model_registry()
    ev = _registry_call(lambda: reg.promote(model, body.version, actor=_actor(request, body.actor),
                                             reason=body.reason))
    ctx.changed()
    return JSON({"ok": True, "action": "promoted", "model": model, "event": _event(ev)})


@router.post("/models/{model}/rollback", response_model=schemas.ActionResult,
             summary="Restore the previous champion, or a named version (needs the token)")
def rollback(request: Request, model: str, body: schemas.RollbackBody | None = None) -> JSON:
    ctx: Context = request.app.state.ctx
    body = body or schemas.RollbackBody()
    reg = ctx.model_registry()
    ev = _registry_call(lambda: reg.rollback(model, to_version=body.to_version,
                                              actor=_actor(request, body.actor), reason=body.reason))
    ctx.changed()
    return JSON({"ok": True, "action": "rolled_back", "model": model, "event": _event(ev)})


@router.post("/alerts/{alert_id}/resolve", response_model=schemas.ActionResult,
             summary="Resolve an alert now, without hold-down (needs the token)")
def resolve(request: Request, alert_id: str, body: schemas.ResolveBody | None = None) -> JSON:
    ctx: Context = request.app.state.ctx
    body = body or schemas.ResolveBody()
    current = queries.safe(ctx.store, lambda c: queries.alert_brief(c, alert_id), None)
    if current is None:
        raise HTTPException(404, f"unknown alert {alert_id!r}")
    if current["status"] == "resolved":
        raise HTTPException(409, f"alert {alert_id} is already resolved")
    manager = ctx.alert_manager()
    reason = f"{body.reason} ({_actor(request, body.actor)})"
    with ctx.store.transaction() as conn:
        changes = manager.resolve(conn, [alert_id], reason, now_ms())
    ctx.changed()
    return JSON({"ok": True, "action": "resolved", "model": current["model"],
                 "changes": [{"alert_id": ch.alert_id, "status": ch.status, "seq": ch.seq, "reason": ch.reason}
                             for ch in changes]})
