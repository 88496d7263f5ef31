"""``driftloop alerts list -c CONFIG [--json]``: alerts, newest first.

Registered by :func:`add_commands` on the main parser's subcommands. The table shows one line
per alert (status, severity, model, kind, feature, when it last changed, the sentence); group
members are indented under their group. ``--json`` prints the same rows with every field,
including the deliveries per sink of the alert's last announced change.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any, TextIO

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from driftloop.alerts import tables as t
from driftloop.alerts.messages import model_label, rfc3339
from driftloop.core.store import Store

__all__ = ["add_commands", "cmd_alerts_list", "list_alerts", "firing_counts", "shorten"]


def list_alerts(store: Store, *, status: str | None = None, model: str | None = None,
                limit: int = 100, conn: Connection | None = None) -> list[dict[str, Any]]:
    """Alerts, newest change first, each with its deliveries per sink (for its last event);
    ``conn``: read through it instead of the store's engine."""
    a, d = t.alerts, t.alert_deliveries
    q = sa.select(a).order_by(a.c.updated_at.desc(), a.c.alert_id).limit(limit)
    if status == "active":
        q = q.where(a.c.status != "resolved")
    elif status:
        q = q.where(a.c.status == status)
    if model:
        q = q.where(a.c.model == model)
    out: list[dict[str, Any]] = []
    e = t.alert_events
    with store._conn(conn) as c:
        rows = list(c.execute(q))
        ids = [r.alert_id for r in rows if r.seq]
        deliveries: dict[str, dict[str, Any]] = {}
        for i in range(0, len(ids), 500):
            dq = (sa.select(d.c.alert_id, d.c.sink, d.c.status, d.c.attempts, d.c.last_error)
                  .join(e, e.c.idempotency_key == d.c.idempotency_key)
                  .join(a, sa.and_(a.c.alert_id == e.c.alert_id, a.c.seq == e.c.seq))
                  .where(d.c.alert_id.in_(ids[i:i + 500])))
            for dr in c.execute(dq):
                deliveries.setdefault(dr.alert_id, {})[dr.sink] = {
                    "status": dr.status, "attempts": dr.attempts, "last_error": dr.last_error}
    for r in rows:
        st = t.loads(r.state)
        det = st.get("detection") or {}
        out.append({
            "alert_id": r.alert_id, "status": r.status, "severity": r.severity, "model": r.model,
            "model_version": r.model_version, "kind": r.kind, "detector": r.detector, "feature": r.feature,
            "segment": st.get("segment"), "group_id": r.group_id, "members": st.get("members"), "incident_id": st.get("incident_id"),
            "sequence": r.seq,
            "statistic": det.get("statistic"), "p_value": det.get("p_value"), "threshold": det.get("threshold"),
            "started_at": rfc3339(r.started_at), "updated_at": rfc3339(r.updated_at),
            "resolved_at": rfc3339(st.get("resolved_at")), "cooldown_until": rfc3339(st.get("cooldown_until")),
            "summary": r.summary,
            "deliveries": deliveries.get(r.alert_id, {}),
        })
    return out


def firing_counts(store: Store) -> dict[str, int]:
    """Per model, alerts currently firing (announced and not resolved; group members count
    through their group). For ``driftloop stats``."""
    a = t.alerts
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(a.c.model, sa.func.count())
                            .where(a.c.status.in_(("firing", "resolving")), a.c.group_id.is_(None))
                            .group_by(a.c.model))
        return {m: int(n) for m, n in rows}


def shorten(text: str | None, width: int) -> str:
    """``text`` on one line, cut to ``width`` characters with an ellipsis."""
    text = (text or "").replace("\n", " ")
    return text if len(text) <= width else text[: width - 1] + "…"


def print_table(rows: list[dict[str, Any]], out: TextIO) -> None:
    if not rows:
        print("no alerts", file=out)
        return
    head = f"{'updated':<20} {'status':<10} {'severity':<9} {'model':<16} {'kind':<18} {'feature':<16} summary"
    print(head, file=out)
    for r in rows:
        when = (r["updated_at"] or "")[:19].replace("T", " ")
        indent = "  " if r["group_id"] else ""
        feature = r["feature"] or (f"{len(r['members'] or [])} members" if r["members"] is not None else "-")
        print(f"{when:<20} {indent + r['status']:<10} {r['severity']:<9} "
              f"{shorten(model_label(r['model'], r['model_version']), 16):<16} {r['kind']:<18} "
              f"{shorten(feature, 16):<16} {shorten(r['summary'], 100)}", file=out)


def cmd_alerts_list(args: argparse.Namespace, out: TextIO | None = None) -> int:
    from driftloop.core.config import load_config

    out = out or sys.stdout
    cfg = load_config(args.config)
    store = Store.from_config(cfg.store)
    try:
        store.create_schema()
        rows = list_alerts(store, status=args.status, model=args.model, limit=args.limit)
    finally:
        store.dispose()
    if args.json:
        print(json.dumps(rows, indent=2, default=str), file=out)
    else:
        print_table(rows, out)
    return 0


def add_commands(subparsers: Any) -> None:
    """Add ``alerts list`` to the main parser's subcommands."""
    p = subparsers.add_parser("alerts", help="alerts: list")
    sub = p.add_subparsers(dest="alerts_command", required=True)
    ls = sub.add_parser("list", help="alerts, newest first")
    ls.add_argument("-c", "--config", required=True, help="YAML or TOML configuration file")
    ls.add_argument("--json", action="store_true", help="JSON instead of a table")
    ls.add_argument("--status", choices=("active", "pending", "firing", "resolving", "resolved"), default=None,
                    help="only alerts in this state (active: anything not resolved)")
    ls.add_argument("--model", default=None, help="only this model's alerts")
    ls.add_argument("--limit", type=int, default=100, help="at most this many (default 100)")
    ls.set_defaults(func=cmd_alerts_list)
