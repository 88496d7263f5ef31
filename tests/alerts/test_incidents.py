"""Incidents, pure logic: the alerts of one model version that fire together page once."""
from __future__ import annotations

from driftloop.alerts.incidents import IncidentBook, IncidentPolicy, incident_id
from driftloop.alerts.lifecycle import AlertLifecycle, Policy, fingerprint, group_fingerprint
from tests.alerts.helpers import det

S = 1000


def books(wait_s: float = 30, **policy) -> tuple[AlertLifecycle, IncidentBook]:
    alerts = AlertLifecycle(Policy(**({"group_window_ms": 0, "hold_down_ms": 0, "cooldown_ms": 0} | policy)), {})
    return alerts, IncidentBook(IncidentPolicy(wait_ms=int(wait_s * S)), {}, {})


def step(alerts: AlertLifecycle, book: IncidentBook, dets, now: int, version: str = "1"):
    return [(c.reason, c.seq, sorted(c.state.members), c.joined)
            for c in book.apply(alerts.observe_many(dets, "housing", version, now), alerts, now)]


def test_five_kinds_firing_within_the_wait_page_once_with_every_member():
    alerts, book = books()
    assert step(alerts, book, [det("Latitude"), det("Longitude")], 1 * S) == []     # a data-drift group
    assert step(alerts, book, [det(None, kind="prediction_drift", detector="psi")], 2 * S) == []
    assert step(alerts, book, [det(None, kind="multivariate_drift", detector="domain_classifier")], 3 * S) == []
    assert step(alerts, book, [det(None, kind="performance", detector="accuracy"),
                               det(None, kind="concept_drift", detector="adwin")], 20 * S) == []
    [opened] = step(alerts, book, [], 31 * S)
    group = group_fingerprint("housing", "data_drift", "1")
    assert opened[:2] == ("opened", 1)
    assert group in opened[2] and len(opened[2]) == 4 + 1     # the group and four single alerts
    assert fingerprint("housing", "data_drift", "psi", "Latitude", "1") not in opened[2]   # reached via its group
    [inc] = book.incidents.values()
    assert inc.kinds == ["concept_drift", "data_drift", "multivariate_drift", "performance", "prediction_drift"]
    assert all(alerts.states[m].incident_id == inc.incident_id for m in inc.members)


def test_an_alert_firing_while_the_incident_is_open_grows_it_and_pages_once():
    alerts, book = books()
    step(alerts, book, [det("Latitude")], 0)
    step(alerts, book, [], 30 * S)
    perf = det(None, kind="performance", detector="accuracy")
    [grown] = step(alerts, book, [perf], 60 * S)
    assert grown[0] == "grown" and grown[1] == 2
    assert grown[3] == (fingerprint("housing", "performance", "accuracy", None, "1"),)
    assert step(alerts, book, [perf], 61 * S) == []            # a re-detection is no change


def test_escalation_pages_once_then_resolution_when_every_member_resolved():
    alerts, book = books()
    step(alerts, book, [det("Latitude"), det(None, kind="performance", detector="accuracy")], 0)
    step(alerts, book, [], 30 * S)
    [esc] = step(alerts, book, [det("Latitude", severity="critical")], 40 * S)
    assert esc[0] == "escalated"
    assert step(alerts, book, [det("Latitude", severity="critical")], 41 * S) == []
    assert step(alerts, book, [det("Latitude", firing=False)], 50 * S) == []   # one member still fires
    [res] = step(alerts, book, [det(None, kind="performance", detector="accuracy", firing=False)], 60 * S)
    assert res[0] == "resolved" and res[1] == 3
    [inc] = book.incidents.values()
    assert inc.status == "resolved" and inc.resolved_at == 60 * S


def test_an_incident_whose_members_resolve_before_it_pages_stays_silent():
    alerts, book = books()
    step(alerts, book, [det("Latitude")], 0)
    assert step(alerts, book, [det("Latitude", firing=False)], 10 * S) == []
    assert step(alerts, book, [], 40 * S) == []
    [inc] = book.incidents.values()
    assert inc.status == "resolved" and inc.seq == 0


def test_versions_have_their_own_incidents_and_ids_are_ordinals_not_clock_times():
    alerts, book = books(wait_s=0)
    step(alerts, book, [det("Latitude")], 0, version="1")
    step(alerts, book, [det("Latitude")], 5 * S, version="2")
    ids = {(i.model_version, i.ordinal): i.incident_id for i in book.incidents.values()}
    assert ids == {("1", 1): incident_id("housing", "1", 1), ("2", 1): incident_id("housing", "2", 1)}
    step(alerts, book, [det("Latitude", firing=False)], 10 * S, version="1")
    step(alerts, book, [det("Latitude")], 99 * S, version="1")      # the same problem again, later
    assert incident_id("housing", "1", 2) in book.incidents
    # a replay of the same detections at other clock times gives the same ids
    alerts2, book2 = books(wait_s=0)
    step(alerts2, book2, [det("Latitude")], 7 * S, version="1")
    step(alerts2, book2, [det("Latitude")], 8 * S, version="2")
    assert set(book2.incidents) == {incident_id("housing", "1", 1), incident_id("housing", "2", 1)}


def test_wait_zero_pages_at_once():
    alerts, book = books(wait_s=0)
    [opened] = step(alerts, book, [det("Latitude")], 0)
    assert opened[0] == "opened"


def test_the_stored_hint_reads_the_members_last_evidence_whichever_changed_last():
    """Live and replay cut micro-batches differently; the hint they store must not depend on
    which member's announced change came last, only on the members' last states."""
    from driftloop.alerts.manager import _hint

    def run(batches):
        alerts = AlertLifecycle(Policy(group_window_ms=0, hold_down_ms=0, cooldown_ms=0), {})
        book = IncidentBook(IncidentPolicy(wait_ms=0), {}, {}, hint=_hint)
        for now, dets in batches:
            book.apply(alerts.observe_many(dets, "housing", "1", now), alerts, now)
        [inc] = book.incidents.values()
        return inc.hint["text"]

    def adwin(stat: float):
        return det(None, kind="concept_drift", detector="adwin", stat=stat)

    def ph(stat: float):
        return det(None, kind="concept_drift", detector="page_hinkley", stat=stat)

    # ADWIN is the stronger at first; Page–Hinkley ends the stronger, through a re-detection (no announcement)
    together = run([(0, [adwin(0.9), ph(0.2)]), (S, [adwin(0.3), ph(0.8)])])
    apart = run([(0, [adwin(0.9)]), (S // 2, [ph(0.2)]), (S, [adwin(0.3), ph(0.8)])])
    assert together == apart
    assert together.index("Page") < together.index("ADWIN"), together      # the last evidence orders them
