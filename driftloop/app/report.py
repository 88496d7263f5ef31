"""A self-contained HTML report of a replayed stream (``driftloop replay --report FILE``).

Per model: each feature's drift statistic over the windows of the stream against its threshold
(drifting windows marked), the realised and estimated performance over time against the
baseline, and the alerts in order. Charts are inline SVG: the file opens anywhere, offline,
with no script.
"""
from __future__ import annotations

import html
from collections import defaultdict
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from driftloop.core.store import Store
from driftloop.monitoring.history import detector_history, performance_history

__all__ = ["write_report", "svg_series"]

_W, _H, _PAD = 520, 150, 34


def _fmt(v: float) -> str:
    return f"{v:.3g}"


def svg_series(points: Sequence[tuple[float, float]], *, threshold: float | None = None,
               marks: Sequence[bool] = (), title: str = "", band: Sequence[tuple[float, float]] = ()) -> str:
    """A small line chart: ``points`` (x, y), an optional dashed ``threshold``, red dots where
    ``marks`` is true, and an optional shaded ``band`` of (low, high) per point.

    >>> svg = svg_series([(0, 1.0), (1, 2.0)], threshold=1.5, marks=[False, True], title="x")
    >>> svg.startswith("<svg") and "stroke-dasharray" in svg and "<circle" in svg
    True
    """
    if not points:
        return ""
    lo, hi, x0, x1 = _extent(points, threshold, band)

    def sx(x: float) -> float:
        return _PAD + (x - x0) / (x1 - x0) * (_W - 2 * _PAD)

    def sy(y: float) -> float:
        return _H - _PAD + 8 - (y - lo) / (hi - lo) * (_H - _PAD - 8 - 10)

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{_W}" height="{_H}" class="chart">',
             f'<text x="{_PAD}" y="12" class="t">{html.escape(title)}</text>',
             f'<text x="2" y="{sy(hi) + 4:.1f}" class="a">{_fmt(hi)}</text>',
             f'<text x="2" y="{sy(lo) + 4:.1f}" class="a">{_fmt(lo)}</text>']
    if band:
        parts.append(_band_polygon(points, band, sx, sy))
    if threshold is not None:
        parts.append(f'<line x1="{_PAD}" x2="{_W - _PAD}" y1="{sy(threshold):.1f}" y2="{sy(threshold):.1f}" '
                     f'class="thr" stroke-dasharray="5,4"/>')
    path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in points if y == y)
    parts.append(f'<polyline points="{path}" class="line"/>')
    for (x, y), m in zip(points, marks):
        if m and y == y:
            parts.append(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="3.5" class="hit"/>')
    parts.append("</svg>")
    return "".join(parts)


def _extent(points: Sequence[tuple[float, float]], threshold: float | None,
            band: Sequence[tuple[float, float]]) -> tuple[float, float, float, float]:
    """The chart's (y low, y high, x first, x last): NaNs left out, the threshold and band
    included, never an empty range."""
    xs = [p[0] for p in points]
    ys = [p[1] for p in points if p[1] == p[1]]
    ys += [v for b in band for v in b if v == v]
    if threshold is not None:
        ys.append(threshold)
    lo, hi = (min(ys), max(ys)) if ys else (0.0, 1.0)
    if hi == lo:
        hi = lo + 1.0
    x0, x1 = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1
    return lo, hi, x0, x1


def _band_polygon(points: Sequence[tuple[float, float]], band: Sequence[tuple[float, float]],
                  sx: Callable[[float], float], sy: Callable[[float], float]) -> str:
    """The shaded band: along the highs, back along the lows (NaN bounds left out)."""
    upper = " ".join(f"{sx(x):.1f},{sy(b[1]):.1f}" for (x, _), b in zip(points, band) if b[1] == b[1])
    lower = " ".join(f"{sx(x):.1f},{sy(b[0]):.1f}" for (x, _), b in reversed(list(zip(points, band)))
                     if b[0] == b[0])
    return f'<polygon points="{upper} {lower}" class="band"/>'


_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222;max-width:1150px}
h1{font-size:22px}h2{font-size:18px;margin-top:28px;border-bottom:1px solid #ddd}
.grid{display:flex;flex-wrap:wrap;gap:8px}.chart{border:1px solid #eee;background:#fff}
.t{font-size:12px;font-weight:600}.a{font-size:10px;fill:#777}
.line{fill:none;stroke:#2563eb;stroke-width:1.6}.thr{stroke:#dc2626;stroke-width:1}
.hit{fill:#dc2626}.band{fill:#93c5fd;opacity:.35}
table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ddd;padding:3px 6px;text-align:left}
.firing{color:#b91c1c;font-weight:600}.resolved{color:#15803d}
"""


def _when(ms: int | None) -> str:
    return "" if ms is None else datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")


def write_report(path: str | Path, store: Store, alerts: Sequence[dict[str, Any]], *,
                 title: str = "driftloop replay report", stats: dict[str, Any] | None = None,
                 incidents: Sequence[dict[str, Any]] = ()) -> Path:
    """Write the report from the history tables of ``store``, the alert messages and the
    incidents (``driftloop incidents list --json`` rows)."""
    with store.engine.connect() as c:
        drift = list(c.execute(sa.select(detector_history).order_by(detector_history.c.model,
                                                                   detector_history.c.seq)))
        perf = list(c.execute(sa.select(performance_history).order_by(performance_history.c.model,
                                                                      performance_history.c.seq)))
    models = sorted({r.model for r in drift} | {r.model for r in perf} | {a["model"] for a in alerts})
    out = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
           f"<style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1>"]
    if stats:
        t = stats.get("totals", {})
        out.append("<p>" + ", ".join(f"{html.escape(k)}: {v:,}" for k, v in t.items()) + "</p>")
    for model in models:
        out.append(f"<h2>{html.escape(model)}</h2>")
        out += _drift_section([r for r in drift if r.model == model])
        out += _performance_section([r for r in perf if r.model == model])
        out += _incidents_section([i for i in incidents if i["model"] == model])
        out += _alerts_section([a for a in alerts if a["model"] == model])
    out.append(f"<p style='color:#777'>written {_when(int(datetime.now(UTC).timestamp() * 1000))} UTC</p>"
               "</body></html>")
    p = Path(path)
    p.write_text("".join(out), encoding="utf-8")
    return p


def _drift_section(drift: list[Any]) -> list[str]:
    """One model's drift charts: a statistic per window against its threshold, per detector."""
    series: dict[tuple[str, str, str], list[Any]] = defaultdict(list)
    for r in drift:
        series[(r.kind, r.feature, r.detector)].append(r)
    out = ["<h3>Drift per window (dashed: threshold; red: drifting)</h3><div class='grid'>"]
    for (kind, feature, detector), rows in sorted(series.items()):
        pts = [(float(r.seq), float("nan") if r.statistic is None else float(r.statistic)) for r in rows]
        thr = next((r.threshold for r in reversed(rows) if r.threshold is not None), None)
        name = f"{kind}: {feature or 'all features'} ({detector})"
        out.append(svg_series(pts, threshold=thr, marks=[bool(r.drifting) for r in rows], title=name))
    out.append("</div>")
    return out


def _performance_section(perf: list[Any]) -> list[str]:
    """One model's performance charts (none without performance history): a metric per window
    against its baseline, with its confidence band."""
    pseries: dict[tuple[str, str], list[Any]] = defaultdict(list)
    for r in perf:
        pseries[(r.metric, r.source)].append(r)
    if not pseries:
        return []
    out = ["<h3>Performance per window (dashed: baseline; band: 95% CI; red: degraded)</h3><div class='grid'>"]
    for (metric, source), rows in sorted(pseries.items()):
        pts = [(float(i), float("nan") if r.value is None else float(r.value)) for i, r in enumerate(rows)]
        base = next((r.baseline for r in reversed(rows) if r.baseline is not None), None)
        band = [(float("nan") if r.ci_low is None else r.ci_low,
                 float("nan") if r.ci_high is None else r.ci_high) for r in rows]
        out.append(svg_series(pts, threshold=base, marks=[bool(r.degraded) for r in rows],
                              title=f"{metric} ({source})", band=band))
    out.append("</div>")
    return out


def _incidents_section(rows: list[dict[str, Any]]) -> list[str]:
    """One model's incidents, oldest first: what paged, with the root-cause hint."""
    out = [f"<h3>Incidents ({len(rows)})</h3>"]
    if not rows:
        return out
    out.append("<table><tr><th>incident</th><th>version</th><th>status</th><th>severity</th><th>started</th>"
               "<th>resolved</th><th>alerts</th><th>root-cause hint</th></tr>")
    for i in rows:
        cells = (i["incident_id"], i.get("model_version") or "", i["status"], i["severity"], i.get("started_at") or "",
                 i.get("resolved_at") or "", str(len(i.get("members") or [])), (i.get("hint") or {}).get("text") or "")
        out.append("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>")
    out.append("</table>")
    return out


def _alerts_section(rows: list[dict[str, Any]]) -> list[str]:
    """One model's alert messages as a table, in order."""
    out = [f"<h3>Alerts ({len(rows)} changes)</h3>"]
    if not rows:
        return out
    out.append("<table><tr><th>detected</th><th>status</th><th>severity</th><th>kind / detector</th>"
               "<th>feature</th><th>summary</th></tr>")
    for a in rows:
        out.append(f"<tr><td>{html.escape(str(a.get('detected_at') or ''))}</td>"
                   f"<td class='{html.escape(a['status'])}'>{html.escape(a['status'])}</td>"
                   f"<td>{html.escape(a['severity'])}</td>"
                   f"<td>{html.escape(a['kind'])} / {html.escape(a['detector'])}</td>"
                   f"<td>{html.escape(str(a.get('feature') or ''))}</td>"
                   f"<td>{html.escape(a['summary'])}</td></tr>")
    out.append("</table>")
    return out
