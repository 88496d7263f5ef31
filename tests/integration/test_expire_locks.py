"""PostgreSQL with several monitors: expiring pending halves and the join serialise per model.

The race, made deterministic: monitor A's batch brings the prediction of an event whose label
has waited past its TTL. A reads the stored rows of its batch (the label is there) and is held
right there, before its update, by a hook on ``consumers.join._existing``. Meanwhile monitor B's
housekeeping runs :func:`consumers.join.expire_pending` on another connection. Then A goes on.

Without the model lock in ``expire_pending``, B deletes the label row while A holds it in hand;
A's update then finds no row: the batch counts the prediction, the label and a join, and the
examples table has none of them (the label, and the prediction with it, is lost). With the lock,
B waits for A's transaction and then finds a joined row, which is not pending: nothing expires.
"""
from __future__ import annotations

import threading
from typing import Any

import pytest
import sqlalchemy as sa

import consumers.join as join
from consumers.ingest import RawRecord, commit, prepare
from consumers.join import expire_pending
from driftloop.app.stats import collect_stats
from driftloop.core.store import Store, examples, now_ms
from tests.fault_helpers import wait_until
from tests.kafka_helpers import label, prediction

pytestmark = pytest.mark.postgres

TTL_MS = 60_000


def _records(topic: str, events: list[dict[str, Any]]) -> list[RawRecord]:
    import orjson
    return [RawRecord(topic, 0, i, orjson.dumps(ev)) for i, ev in enumerate(events)]


def _waiting_for_advisory_lock(store: Store) -> bool:
    """Someone in this test's database waits for a model lock."""
    with store.engine.connect() as c:
        return bool(c.execute(sa.text(
            "SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database "
            "WHERE l.locktype = 'advisory' AND NOT l.granted AND d.datname = current_database()")).scalar())


class _HoldAfterRead:
    """Wraps ``join._existing``: after the batch's read, signal ``read`` and wait for ``go``."""

    def __init__(self) -> None:
        self.read, self.go = threading.Event(), threading.Event()
        self.real = join._existing

    def __call__(self, *args: Any) -> Any:
        rows = self.real(*args)
        self.read.set()
        assert self.go.wait(60), "the test never released the join"
        return rows


def _run(target: Any, out: dict[str, Any], key: str) -> threading.Thread:
    def body() -> None:
        try:
            out[key] = target()
        except BaseException as exc:  # noqa: BLE001 - re-raised by the test
            out[key] = exc
    t = threading.Thread(target=body, daemon=True, name=key)
    t.start()
    return t


def test_expiry_waits_for_the_join_that_holds_the_pending_half(make_config, postgres_url, monkeypatch):
    _path, cfg = make_config(store_url=postgres_url)
    store = Store.from_config(cfg.store)
    store.create_schema()
    P, L = cfg.topics.predictions, cfg.topics.labels
    now = now_ms()
    try:
        # the label of p1 came TTL + 1 s ago and still waits for its prediction
        old = now - TTL_MS - 1000
        commit(store, cfg, prepare(_records(L, [label(1)]), cfg, old), group="a", expected={(L, 0): None}, now=old)
        hold = _HoldAfterRead()
        monkeypatch.setattr(join, "_existing", hold)
        out: dict[str, Any] = {}
        batch = prepare(_records(P, [prediction(1)]), cfg, now)
        joiner = _run(lambda: commit(store, cfg, batch, group="a", expected={(P, 0): None}, now=now), out, "join")
        assert hold.read.wait(30), "the join never read its rows"

        def expire() -> Any:
            with store.transaction() as conn:
                expired = expire_pending(conn, now, TTL_MS, TTL_MS)
                store.add_counters(conn, expired)
                return expired
        expirer = _run(expire, out, "expire")
        # the expiry either finished (no lock: the race is on) or waits for the join's model lock
        wait_until(lambda: "expire" in out or _waiting_for_advisory_lock(store), 30,
                   "expire_pending finished or waits for the model lock")
        hold.go.set()
        for t in (joiner, expirer):
            t.join(60)
        for key in ("join", "expire"):
            if isinstance(out.get(key), BaseException):
                raise out[key]
        with store.engine.connect() as c:
            rows = c.execute(sa.select(examples.c.event_id, examples.c.pred_ts, examples.c.label)
                             .where(examples.c.model == "fraud")).all()
        st = collect_stats(cfg, store)["models"]["fraud"]
    finally:
        store.dispose()
    assert out["join"].deltas[("fraud", "joined")] == 1
    assert [(r.event_id, r.pred_ts is not None, r.label is not None) for r in rows] == [("p1", True, True)], \
        f"the joined example is stored (the label is not lost); counters {st}"
    assert (st["joined"], st["labels"], st["predictions"], st.get("expired_labels", 0)) == (1, 1, 1, 0)
    assert out["expire"] == {}, "a half held by a running join is not pending: nothing expires"
