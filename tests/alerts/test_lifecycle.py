"""The pure lifecycle with a fake clock: firing once, hold-down, cooldown, severity, grouping."""
from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from driftloop.alerts.lifecycle import AlertLifecycle, Policy, fingerprint, group_fingerprint
from tests.alerts.helpers import det

S = 1000  # ms


def book(**kw) -> AlertLifecycle:
    base = dict(hold_down_ms=60 * S, cooldown_ms=600 * S, group_window_ms=0, group_min=2)
    base.update(kw)
    return AlertLifecycle(Policy(**base), {})


def statuses(changes):
    return [(c.status, c.reason) for c in changes]


def test_fingerprint_is_stable_and_distinguishes_fields():
    a = fingerprint("fraud", "data_drift", "psi", "amount")
    assert a == fingerprint("fraud", "data_drift", "psi", "amount")
    others = {fingerprint("fraud", "data_drift", "psi", "age"), fingerprint("fraud", "data_drift", "ks", "amount"),
              fingerprint("fraud", "prediction_drift", "psi", "amount"), fingerprint("price", "data_drift", "psi", "amount"),
              fingerprint("fraud", "data_drift", "psi", None), group_fingerprint("fraud", "data_drift"),
              fingerprint("fraud", "data_drift", "psi", "amount", "2"), group_fingerprint("fraud", "data_drift", "2")}
    assert a not in others and len(others) == 8
    assert fingerprint("fraud", "data_drift", "psi", "amount", "2") != fingerprint("fraud", "data_drift", "psi", "amount", "3")


def test_fires_once_and_redetections_only_update():
    b = book()
    assert statuses(b.observe(det(stat=0.3), "fraud", "3", now=0)) == [("firing", "fired")]
    for i in range(1, 20):
        assert b.observe(det(stat=0.3 + i / 100), "fraud", "3", now=i * S) == []
    st = b.states[fingerprint("fraud", "data_drift", "psi", "amount", "3")]
    assert st.status == "firing" and st.seq == 1
    assert st.detection["statistic"] == 0.49 and st.detected_at == 19 * S   # evidence updated


def test_hold_down_resolves_only_after_clear_for_the_whole_period():
    b = book()
    b.observe(det(), "fraud", "3", now=0)
    assert b.observe(det(firing=False), "fraud", "3", now=10 * S) == []
    assert b.tick(69 * S) == []
    # re-detected within the hold-down: it keeps firing, nothing announced, hold-down cancelled
    assert b.observe(det(), "fraud", "3", now=65 * S) == []
    assert b.tick(200 * S) == []
    b.observe(det(firing=False), "fraud", "3", now=300 * S)
    assert b.tick(359 * S) == []
    [ch] = b.tick(360 * S)
    assert (ch.status, ch.reason, ch.seq) == ("resolved", "cleared", 2)
    assert ch.state.clear["summary"].endswith("no longer drifts (PSI 0.31).")


def test_cooldown_holds_a_new_firing_until_it_ends_and_drops_it_if_cleared():
    b = book(hold_down_ms=0)
    b.observe(det(), "fraud", "3", now=0)
    [res] = b.observe(det(firing=False), "fraud", "3", now=10 * S)
    assert res.status == "resolved"
    # detected again inside the cooldown (ends at 610 s): pending, no page
    assert b.observe(det(), "fraud", "3", now=100 * S) == []
    assert b.tick(609 * S) == []
    [ch] = b.tick(610 * S)
    assert (ch.status, ch.seq) == ("firing", 3)
    # a new episode cleared before its cooldown ends is never announced
    b.observe(det(firing=False), "fraud", "3", now=620 * S)
    b.tick(620 * S)
    assert b.observe(det(), "fraud", "3", now=700 * S) == []
    assert b.observe(det(firing=False), "fraud", "3", now=800 * S) == []
    assert b.tick(10_000 * S) == []


def test_severity_from_detector_and_configured_effect_size_and_escalation_once():
    b = book(critical={"psi": 0.5})
    [c1] = b.observe(det(stat=0.3), "fraud", "3", now=0)
    assert c1.state.severity == "warning"
    [c2] = b.observe(det(stat=0.6), "fraud", "3", now=S)     # effect size crosses the critical threshold
    assert (c2.status, c2.reason, c2.state.severity, c2.previous_severity) == ("firing", "escalated", "critical",
                                                                                "warning")
    assert b.observe(det(stat=0.7), "fraud", "3", now=2 * S) == []          # already critical
    assert b.observe(det(stat=0.2), "fraud", "3", now=3 * S) == []          # never de-escalates in an episode
    assert b.states[c1.alert_id].severity == "critical"
    assert b.observe(det("age", severity="critical"), "fraud", "3", now=4 * S)[0].state.severity == "critical"


def test_escalation_can_be_silenced():
    b = book(notify_escalation=False)
    b.observe(det(), "fraud", "3", now=0)
    assert b.observe(det(severity="critical"), "fraud", "3", now=S) == []


def test_fifteen_features_at_once_page_once_with_the_list():
    b = book()
    changes = b.observe_many([det(f"f{i:02d}", stat=0.2 + i / 100) for i in range(15)], "fraud", "3", now=0)
    [ch] = changes
    assert ch.status == "firing" and ch.state.detector == "group" and ch.state.feature is None
    assert sorted(m.feature for m in ch.members) == [f"f{i:02d}" for i in range(15)]
    assert ch.alert_id == group_fingerprint("fraud", "data_drift", "3")
    # the group's evidence is its strongest member's
    assert ch.state.detection["statistic"] == 0.34
    members = [s for s in b.states.values() if s.group_id == ch.alert_id]
    assert len(members) == 15 and all(m.seq == 0 and m.status == "firing" for m in members)


def test_group_window_collects_alerts_across_calls():
    b = book(group_window_ms=10 * S)
    assert b.observe_many([det(f"a{i}") for i in range(3)], "fraud", "3", now=0) == []
    assert b.observe_many([det(f"b{i}") for i in range(12)], "fraud", "3", now=4 * S) == []
    assert b.tick(9 * S) == []
    [ch] = b.tick(10 * S)
    assert len(ch.members) == 15
    # a late joiner of the same (model, kind) joins silently
    assert b.observe(det("late"), "fraud", "3", now=30 * S) == []
    assert b.tick(40 * S) == []
    assert b.states[fingerprint("fraud", "data_drift", "psi", "late", "3")].group_id == ch.alert_id


def test_single_alert_is_not_grouped_and_kinds_group_separately():
    b = book()
    changes = b.observe_many([det("amount"), det(None, kind="multivariate_drift", detector="pca")], "fraud", "3", now=0)
    assert sorted(c.state.detector for c in changes) == ["pca", "psi"]


def test_group_resolves_when_its_last_member_does_and_escalates_once():
    b = book(hold_down_ms=0)
    [g] = b.observe_many([det(f"f{i}") for i in range(4)], "fraud", "3", now=0)
    [esc] = b.observe(det("f1", severity="critical"), "fraud", "3", now=S)
    assert (esc.alert_id, esc.reason, esc.state.severity) == (g.alert_id, "escalated", "critical")
    for i in range(3):
        assert b.observe(det(f"f{i}", firing=False), "fraud", "3", now=(2 + i) * S) == []
    [res] = b.observe(det("f3", firing=False), "fraud", "3", now=9 * S)
    assert (res.alert_id, res.status, res.reason, res.seq) == (g.alert_id, "resolved", "members_resolved", 3)


def test_resolve_on_request_skips_the_hold_down():
    b = book()
    [a] = b.observe(det("amount"), "fraud", "3", now=0)
    grp = b.observe_many([det(f"p{i}", kind="performance", detector="accuracy") for i in range(3)], "fraud", "3", now=S)
    changes = b.resolve([a.alert_id, grp[0].alert_id, "unknown"], "retrained: fraud v4 promoted", now=2 * S)
    assert sorted((c.alert_id, c.status) for c in changes) == sorted(
        [(a.alert_id, "resolved"), (grp[0].alert_id, "resolved")])
    assert all(c.reason == "retrained: fraud v4 promoted" for c in changes)
    members = [s for s in b.states.values() if s.group_id == grp[0].alert_id]
    assert all(m.status == "resolved" and m.cooldown_until == 2 * S + 600 * S for m in members)
    assert b.resolve([a.alert_id], "again", now=3 * S) == []


def test_cleared_before_announced_is_dropped_quietly():
    b = book(group_window_ms=10 * S)
    b.observe(det(), "fraud", "3", now=0)
    b.observe(det(firing=False), "fraud", "3", now=5 * S)
    assert b.tick(100 * S) == []


# -- invariants over random histories ---------------------------------------------------------------
EVENTS = st.lists(st.tuples(st.sampled_from(["fire", "clear", "crit", "tick", "resolve"]),
                            st.sampled_from(["a", "b", "c"]), st.integers(0, 120)), max_size=60)


@settings(max_examples=150, deadline=None)
@given(EVENTS, st.integers(0, 30), st.integers(0, 120), st.integers(0, 20))
def test_announcements_are_well_formed(events, hold, cool, window):
    b = AlertLifecycle(Policy(hold_down_ms=hold * S, cooldown_ms=cool * S, group_window_ms=window * S, group_min=2), {})
    now, log = 0, []
    for what, feat, dt in events:
        now += dt * S
        if what == "tick":
            log += b.tick(now)
        elif what == "resolve":
            log += b.resolve(list(b.states), "request", now)
        else:
            log += b.observe(det(feat, firing=what != "clear", severity="critical" if what == "crit" else "warning"),
                             "fraud", "1", now=now)
    per: dict[str, list] = {}
    for c in log:
        per.setdefault(c.alert_id, []).append(c)
    keys = [c.idempotency_key for c in log]
    assert len(keys) == len(set(keys))
    for _aid, cs in per.items():
        assert [c.seq for c in cs] == list(range(cs[0].seq, cs[0].seq + len(cs)))
        assert cs[0].seq == 1 and cs[0].status == "firing" and cs[0].reason == "fired"
        state = "resolved"
        for c in cs:
            if c.status == "firing":
                assert c.reason in ("fired", "escalated")
                assert (state == "resolved") == (c.reason == "fired")
                state = "firing"
            else:
                assert state == "firing"
                state = "resolved"
    # a group member never announces on its own
    assert all(c.state.group_id is None for c in log)


def test_segments_are_alerts_of_their_own_and_a_group_page_names_the_worst():
    """Contract v1.1: a segment's problem has its own alert id and carries ``segment``; segments
    that fire together page once, naming the worst segments first."""
    from driftloop.alerts.messages import alert_message

    def seg(country: str, stat: float):
        d = det(None, kind="performance", detector="accuracy", stat=stat)
        d.segment = {"country": country}
        d.summary = f"accuracy {stat:.2f} in country={country} vs 0.93 overall: accuracy dropped."
        return d

    assert fingerprint("m", "performance", "accuracy", None, "3", {"country": "BR"}) != \
        fingerprint("m", "performance", "accuracy", None, "3", {"country": "DE"})
    book = AlertLifecycle(Policy(group_window_ms=1000), {})
    book.observe_many([seg("DE", 0.15), seg("BR", 0.9), det(None, kind="performance", detector="accuracy")],
                      "m", "3", now=0)
    [page] = book.tick(now=1000)
    msg = alert_message(page)
    assert msg["segment"] is None and msg["evidence"]["segments"] == ["country=BR", "country=DE"]
    assert "Worst segments: country=BR, country=DE." in msg["summary"]
    assert {m["segment"]["country"] for m in msg["evidence"]["members"] if m["segment"]} == {"BR", "DE"}
    alone = AlertLifecycle(Policy(group_window_ms=0), {})
    [one] = alone.observe(seg("BR", 0.7), "m", "3", now=0)
    assert alert_message(one)["segment"] == {"country": "BR"} and one.state.segment == {"country": "BR"}
    assert "in country=BR vs 0.93 overall" in alert_message(one)["summary"]
