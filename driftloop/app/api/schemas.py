"""Request bodies and response shapes, for validation and the OpenAPI document.

Responses are encoded straight from the store's rows (:class:`driftloop.app.api.context.JSON`);
these models describe them. ``extra="allow"``: a response may carry more fields than listed
(new optional fields are how the contract grows).
"""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "Health", "Ready", "Check", "PromoteBody", "RollbackBody", "ResolveBody", "ActionResult", "ModelSummary",
    "ModelList", "ModelDetail", "LiveVersion", "ShadowReport", "Traffic", "Versions", "SeriesRange", "DriftPoint", "DriftHistory", "PerformancePoint", "PerformanceHistory",
    "SegmentDrift", "SegmentView", "SegmentsView", "DataQualityCheck", "DataQualityView",
    "Alert", "AlertList", "AlertEvent", "AlertEvents", "AlertEpisode", "Timeline", "RetrainJobs", "Problem",
]


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class Problem(BaseModel):
    """An error: what is wrong, for a person."""

    detail: str


class Health(BaseModel):
    status: Literal["ok"]


class Check(BaseModel):
    ok: bool | None = Field(description="null: not applicable here (skipped)")
    detail: str


class Ready(BaseModel):
    ready: bool
    checks: dict[str, Check]


class PromoteBody(BaseModel):
    """Make a registered version the champion."""

    model_config = ConfigDict(extra="forbid")
    version: int = Field(ge=1, description="the version to promote")
    reason: str = Field("promoted through the API", max_length=1000)
    actor: str | None = Field(None, max_length=200, description="who asks (recorded in the audit trail)")


class RollbackBody(BaseModel):
    """Restore the previous champion, or a named version."""

    model_config = ConfigDict(extra="forbid")
    to_version: int | None = Field(None, ge=1, description="default: the champion before the current one")
    reason: str = Field("rolled back through the API", max_length=1000)
    actor: str | None = Field(None, max_length=200)


class ResolveBody(BaseModel):
    """Resolve an alert now (no hold-down)."""

    model_config = ConfigDict(extra="forbid")
    reason: str = Field("resolved through the API", max_length=1000)
    actor: str | None = Field(None, max_length=200)


class ActionResult(_Open):
    ok: bool
    action: Literal["promoted", "rolled_back", "resolved"]
    model: str | None = None
    event: dict[str, Any] | None = Field(None, description="the driftloop.models event (promote, rollback)")
    changes: list[dict[str, Any]] | None = Field(None, description="the announced alert changes (resolve)")


class ModelSummary(_Open):
    name: str
    task: str | None
    features: dict[str, str]
    configured: bool
    champion_version: int | None
    counts: dict[str, int]
    firing_alerts: int = Field(description="active alerts as `driftloop stats` counts them: a group counts once")
    open_incidents: int = Field(0, description="open incidents, as `driftloop stats` counts them")
    reference: dict[str, Any] | None = Field(None, description=(
        "where the reference comes from: source registry (champion_version) or config (path), or null"))
    events: dict[str, int | None] | None = Field(None, description=(
        "first/newest: event time (epoch ms) of the first window start and the newest window end judged"))
    windows_judged: dict[str, int] | None
    last_judged_at: int | None = Field(description="epoch ms (wall clock) of the newest drift statistics")


class ModelList(BaseModel):
    models: list[ModelSummary]


class LiveVersion(_Open):
    """A version the detectors judge now (``VersionedMonitor.status()["versions"]``)."""

    version: str = Field(description='"" when no version is known (no registry, none named)')
    phase: str | None = Field(description="serving, or draining (the old champion, taking its late labels)")
    reference_version: str | None = Field(description="the version whose reference sample it is judged on")
    predictions: int
    labelled: int
    firing: int = Field(description="its detectors' firing detections")
    firing_alerts: int = Field(description="its active alerts (firing or resolving)")
    last_event_at: int | None
    champion: bool
    traffic_share: float | None = Field(
        description="share of the model's newest predictions it served (see `traffic`); null: none stored")


class ShadowReport(_Open):
    """A shadow challenger against the served version on the same labelled requests
    (``ShadowComparison.report()``)."""

    n: int
    metric: str
    served_metric: float | None
    shadow_metric: float | None
    p_value: float | None
    better: bool
    worse: bool
    summary: str
    served_version: str
    shadow_version: str


class Traffic(BaseModel):
    n: int = Field(description="predictions counted")
    since: int = Field(description="epoch ms: predictions with an event time from here on")
    window_ms: int
    sample: int = Field(description="at most the newest this many predictions of the window are counted")


class ModelDetail(ModelSummary):
    versions: list[dict[str, Any]] = Field(description="the registered versions (the registry)")
    history: list[dict[str, Any]]
    alerts: list[dict[str, Any]]
    live_versions: dict[str, LiveVersion] = Field(
        default_factory=dict, description="the versions the detectors judge now, each on its own")
    versions_capped: dict[str, int] = Field(
        default_factory=dict, description="versions refused a monitor by versions.max_live: events not judged")
    status_source: str | None = Field(None, description="live (in-process analyser), store or none")
    traffic: Traffic | None = Field(None, description="what `traffic_share` counts; null: no live version")
    shadows: dict[str, ShadowReport] | None = Field(
        None, description="per shadow version: its comparison with the served version (absent: no shadow)")


class Versions(BaseModel):
    model: str
    champion_version: int | None
    versions: list[dict[str, Any]]
    history: list[dict[str, Any]] = Field(description="registered, promoted, rejected, rolled_back; oldest first")


class SeriesRange(_Open):
    since: int | None = Field(description="event time (epoch ms) applied: windows ending at or after it")
    until: int | None
    first: int | None = Field(description="event time of the model's first judged window start")
    newest: int | None = Field(description="event time of the model's newest judged window end")
    range_ms: int | None


class DriftPoint(_Open):
    t: int = Field(description="the x: event time (epoch ms) of the window's end (ts when unknown)")
    t_source: Literal["event", "judged"] = "event"
    ts: int = Field(description="when the window was judged (epoch ms, wall clock)")
    window_start: int | None
    window_end: int | None = Field(description="event time of the window's last prediction, when known")
    n: int | None
    kind: str
    detector: str
    feature: str
    statistic: float | None
    threshold: float | None
    p_value: float | None
    drifting: bool
    model_version: str | None
    seq: int


class DriftHistory(BaseModel):
    model: str
    model_version: str | None = Field(None, description="the version filter, if one was given")
    thresholds: dict[str, float] = Field(description="the effect-size threshold in force per feature (live)")
    range: SeriesRange | None = None
    points: list[DriftPoint]


class PerformancePoint(_Open):
    t: int = Field(description="the x: event time (epoch ms) of the window's end (ts when unknown)")
    t_source: Literal["event", "judged"] = "event"
    ts: int
    window_start: int | None
    window_end: int | None
    n: int | None
    source: Literal["realised", "estimated"]
    metric: str
    value: float | None
    baseline: float | None
    ci_low: float | None
    ci_high: float | None
    p_value: float | None
    threshold: float | None
    degraded: bool
    model_version: str | None
    seq: int


class PerformanceHistory(BaseModel):
    model: str
    model_version: str | None = Field(None, description="the version filter, if one was given")
    range: SeriesRange | None = None
    points: list[PerformancePoint]


class SegmentDrift(_Open):
    """One drift test of the last window a segment (or all traffic) was judged on."""

    kind: Literal["data_drift", "prediction_drift"]
    feature: str
    detector: str
    effect: float | None = Field(description="the effect size (the statistic the threshold applies to)")
    threshold: float | None
    p_value: float | None
    p_adjusted: float | None = Field(description="adjusted with all traffic's and every segment's tests of the window")
    drifting: bool
    n: int | None


class SegmentView(_Open):
    """A segment (``feature=value``) or all traffic (``segment`` null): its last statistics."""

    segment: str | None = Field(description='"country=BR"; null: all traffic')
    feature: str | None
    value: str | None
    label: str
    rows: dict[str, int | None] | None = Field(description="predictions / labelled rows it took")
    drift: list[SegmentDrift]
    performance: dict[str, Any] | None = Field(description=(
        "its last labelled window: n, window, metrics (value, baseline, ci, p_value, degraded, ...); null: none yet"))
    drifting: list[str]
    degraded: list[str]


class SegmentsView(BaseModel):
    model: str
    model_version: str | None
    source: str = Field(description="live, store, or none (no detector state yet)")
    configured: list[str] = Field(description="the segment features of models.<name>.segments")
    window: dict[str, Any] = Field(description="the last judged windows (predictions, labelled) of all traffic")
    overall: SegmentView
    segments: list[SegmentView]


class DataQualityCheck(_Open):
    key: str = Field(description="check:feature")
    check: str
    feature: str | None
    share: float | None
    expected: float | None = Field(description="the share the reference leads one to expect")
    threshold: float | None = Field(description="the share that counts as a breach")
    p_value: float | None
    p_adjusted: float | None
    n: int | None
    breach: bool = Field(description="breached in the last window")
    firing: bool = Field(description="a finding the detectors report as firing now")
    evidence: dict[str, Any]


class DataQualityView(BaseModel):
    model: str
    model_version: str | None
    source: str
    window: dict[str, Any]
    breaching: int
    checks: list[DataQualityCheck]


class Alert(_Open):
    alert_id: str
    model: str
    kind: str
    detector: str
    feature: str | None
    segment: dict[str, str] | None = Field(None, description="the slice of traffic, {feature: value}; null: all")
    status: str
    severity: str
    summary: str | None
    updated_at: int


class AlertList(BaseModel):
    alerts: list[Alert]


class AlertEvent(_Open):
    alert_id: str
    seq: int
    status: str
    model: str
    severity: str
    reason: str
    at: int
    summary: str | None


class AlertEvents(BaseModel):
    events: list[AlertEvent]


class AlertEpisode(_Open):
    alert_id: str
    model: str
    start: int
    end: int | None = Field(description="null while firing")
    start_event: int | None = Field(None, description="event time of the window that fired it")
    end_event: int | None = Field(None, description="event time of the window that cleared it")
    severity: str


class Timeline(BaseModel):
    episodes: list[AlertEpisode]


class RetrainJobs(BaseModel):
    jobs: list[dict[str, Any]]
