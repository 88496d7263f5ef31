"""``driftloop incidents list/show -c CONFIG [--json]``: incidents, newest first, and one whole.

``list`` prints one line per incident (status, severity, model version, members, kinds, when it
last changed, its sentence); ``show`` the incident, its root-cause hint ranked step by step,
its member alerts (a group's members indented under it) and its timeline (every announced
change, with the deliveries per sink). ``--json`` prints the same as the HTTP API's
``/api/incidents`` and ``/api/incidents/{incident_id}``.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any, TextIO

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from driftloop.alerts import tables as t
from driftloop.alerts.cli import list_alerts, shorten
from driftloop.alerts.messages import model_label, rfc3339
from driftloop.core.store import Store

__all__ = ["add_commands", "list_incidents", "show_incident", "open_incident_counts"]


def _row(r: Any) -> dict[str, Any]:
    st = t.loads(r.state)
    return {
        "incident_id": r.incident_id, "status": r.status, "severity": r.severity, "model": r.model,
        "model_version": r.model_version, "ordinal": r.ordinal, "sequence": r.seq,
        "members": st.get("members") or [], "kinds": st.get("kinds") or [],
        "started_at": rfc3339(r.started_at), "opened_at": rfc3339(st.get("opened_at")),
        "updated_at": rfc3339(r.updated_at), "resolved_at": rfc3339(st.get("resolved_at")),
        "resolve_reason": st.get("resolve_reason"), "summary": r.summary,
        "hint": st.get("hint") or {"text": "", "parts": []},
    }


def list_incidents(store: Store, *, status: str | None = None, model: str | None = None,
                   limit: int = 100, conn: Connection | None = None) -> list[dict[str, Any]]:
    """Incidents, newest change first (``status``: ``active`` for pending or open ones);
    ``conn``: read through it (the API's lock-free reader) instead of the store's engine."""
    i = t.incidents
    q = sa.select(i).order_by(i.c.updated_at.desc(), i.c.incident_id).limit(limit)
    if status == "active":
        q = q.where(i.c.status != "resolved")
    elif status:
        q = q.where(i.c.status == status)
    if model:
        q = q.where(i.c.model == model)
    with store._conn(conn) as c:
        return [_row(r) for r in c.execute(q)]


def show_incident(store: Store, incident_id: str, *, conn: Connection | None = None) -> dict[str, Any] | None:
    """``{"incident", "members", "timeline"}`` or None: the members are ``list_alerts`` rows (a
    group's members after it), the timeline every announced change with its deliveries."""
    i, e, d = t.incidents, t.alert_events, t.alert_deliveries
    with store._conn(conn) as c:
        row = c.execute(sa.select(i).where(i.c.incident_id == incident_id)).first()
        if row is None:
            return None
        events = list(c.execute(sa.select(e).where(e.c.alert_id == incident_id).order_by(e.c.seq)))
        sent: dict[str, dict[str, str]] = {}
        for dr in c.execute(sa.select(d.c.idempotency_key, d.c.sink, d.c.status).where(d.c.alert_id == incident_id)):
            sent.setdefault(dr.idempotency_key, {})[dr.sink] = dr.status
        alerts = {a["alert_id"]: a for a in list_alerts(store, model=row.model, limit=10_000, conn=c)}
    incident = _row(row)
    members: list[dict[str, Any]] = []
    for aid in incident["members"]:
        if aid in alerts:
            members.append(alerts[aid])
            members += [alerts[m] for m in (alerts[aid].get("members") or []) if m in alerts]
    timeline = [{"seq": ev.seq, "status": ev.status, "reason": ev.reason, "at": rfc3339(ev.created_at),
                 "summary": t.loads(ev.message).get("summary"), "deliveries": sent.get(ev.idempotency_key, {})}
                for ev in events]
    return {"incident": incident, "members": members, "timeline": timeline}


def open_incident_counts(store: Store) -> dict[str, int]:
    """Per model, incidents open now (announced, not resolved). For ``driftloop stats``."""
    i = t.incidents
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(i.c.model, sa.func.count()).where(i.c.status == "open").group_by(i.c.model))
        return {m: int(n) for m, n in rows}


def print_list(rows: list[dict[str, Any]], out: TextIO) -> None:
    if not rows:
        print("no incidents", file=out)
        return
    print(f"{'updated':<20} {'incident':<21} {'status':<9} {'severity':<9} {'model':<16} {'alerts':>6}  summary",
          file=out)
    for r in rows:
        when = (r["updated_at"] or "")[:19].replace("T", " ")
        print(f"{when:<20} {r['incident_id']:<21} {r['status']:<9} {r['severity']:<9} "
              f"{shorten(model_label(r['model'], r['model_version']), 16):<16} {len(r['members']):>6}  "
              f"{shorten(r['summary'], 110)}", file=out)


def print_show(doc: dict[str, Any], out: TextIO) -> None:
    inc = doc["incident"]
    print(f"incident {inc['incident_id']}: {model_label(inc['model'], inc['model_version'])}, {inc['status']}, "
          f"{inc['severity']}; started {inc['started_at']}, opened {inc['opened_at'] or '-'}, "
          f"resolved {inc['resolved_at'] or '-'}", file=out)
    print(f"\nhint: {inc['hint'].get('text') or '-'}", file=out)
    for n, part in enumerate(inc["hint"].get("parts") or [], 1):
        print(f"  {n}. [{part.get('step')}] {part.get('text')}", file=out)
    print(f"\nmembers ({len(inc['members'])}):", file=out)
    for m in doc["members"]:
        indent = "    " if m["group_id"] else "  "
        print(f"{indent}{m['status']:<10} {m['severity']:<9} {m['kind']:<18} {m['feature'] or '-':<16} "
              f"{shorten(m['summary'], 90)}", file=out)
    print("\ntimeline:", file=out)
    for ev in doc["timeline"]:
        sinks = ", ".join(f"{k} {v}" for k, v in sorted(ev["deliveries"].items())) or "no sink"
        print(f"  {ev['at'][:19].replace('T', ' ')}  #{ev['seq']} {ev['reason']:<10} ({sinks}) "
              f"{shorten(ev['summary'], 90)}", file=out)


def _open_store(args: argparse.Namespace) -> Store:
    from driftloop.core.config import load_config

    store = Store.from_config(load_config(args.config).store)
    store.create_schema()
    return store


def cmd_incidents_list(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    store = _open_store(args)
    try:
        rows = list_incidents(store, status=args.status, model=args.model, limit=args.limit)
    finally:
        store.dispose()
    if args.json:
        print(json.dumps(rows, indent=2, default=str), file=out)
    else:
        print_list(rows, out)
    return 0


def cmd_incidents_show(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    store = _open_store(args)
    try:
        doc = show_incident(store, args.incident_id)
    finally:
        store.dispose()
    if doc is None:
        print(f"driftloop: no incident {args.incident_id!r}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(doc, indent=2, default=str), file=out)
    else:
        print_show(doc, out)
    return 0


def add_commands(subparsers: Any) -> None:
    """Add ``incidents list`` and ``incidents show`` to the main parser's subcommands."""
    p = subparsers.add_parser("incidents", help="incidents: list, show")
    sub = p.add_subparsers(dest="incidents_command", required=True)
    ls = sub.add_parser("list", help="incidents, newest first")
    ls.add_argument("-c", "--config", required=True, help="YAML or TOML configuration file")
    ls.add_argument("--json", action="store_true", help="JSON instead of a table")
    ls.add_argument("--status", choices=("active", "pending", "open", "resolved"), default=None,
                    help="only incidents in this state (active: pending or open)")
    ls.add_argument("--model", default=None, help="only this model's incidents")
    ls.add_argument("--limit", type=int, default=100, help="at most this many (default 100)")
    ls.set_defaults(func=cmd_incidents_list)
    sh = sub.add_parser("show", help="one incident: hint, members, timeline")
    sh.add_argument("incident_id")
    sh.add_argument("-c", "--config", required=True, help="YAML or TOML configuration file")
    sh.add_argument("--json", action="store_true", help="JSON instead of text")
    sh.set_defaults(func=cmd_incidents_show)
