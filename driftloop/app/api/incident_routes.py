"""``/api/incidents``: the incidents (:mod:`driftloop.alerts.incidents`), as ``driftloop incidents
list/show --json`` prints them."""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request

from driftloop.alerts.incidents_cli import list_incidents, show_incident
from driftloop.app.api import queries
from driftloop.app.api.context import JSON, Context

__all__ = ["router"]

router = APIRouter(prefix="/api", default_response_class=JSON)


def _ctx(request: Request) -> Context:
    return request.app.state.ctx


@router.get("/incidents", summary="Incidents, most recently changed first (each with its root-cause hint)")
def get_incidents(request: Request, model: str | None = None,
                  status: Annotated[str | None, Query(pattern="^(pending|open|resolved|active)$",
                                                      description="active: pending or open")] = None,
                  limit: Annotated[int, Query(ge=1, le=10_000)] = 200) -> JSON:
    ctx = _ctx(request)
    rows = queries.safe(ctx.store, lambda c: list_incidents(ctx.store, status=status, model=model, limit=limit,
                                                             conn=c), [])
    return JSON({"incidents": rows})


@router.get("/incidents/{incident_id}", summary="One incident: its hint, members and timeline",
            responses={404: {"description": "unknown incident"}})
def get_incident(request: Request, incident_id: str) -> JSON:
    ctx = _ctx(request)
    doc = queries.safe(ctx.store, lambda c: show_incident(ctx.store, incident_id, conn=c), None)
    if doc is None:
        raise HTTPException(404, f"unknown incident {incident_id!r}")
    return JSON(doc)
