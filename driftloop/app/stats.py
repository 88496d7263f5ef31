"""Per-model counts for ``driftloop stats``: predictions, labels, joined, invalid, duplicates, ..."""
from __future__ import annotations

from typing import Any

from driftloop.core.config import Config
from driftloop.core.store import UNATTRIBUTED, Store

__all__ = ["COUNTERS", "collect_stats"]

COUNTERS = ("predictions", "labels", "joined", "invalid", "duplicates", "expired_predictions", "expired_labels",
            "pruned_joined", "shadow_predictions", "shadow_joined", "shadow_duplicates", "expired_shadows",
            "pruned_shadows")


def collect_stats(cfg: Config, store: Store, firing_alerts: dict[str, int] | None = None,
                  open_incidents: dict[str, int] | None = None) -> dict[str, Any]:
    """Counters per configured model (zeros included), invalid events of unknown models, totals;
    ``firing_alerts`` (a group counts once) and ``open_incidents`` per model when given."""
    counts = store.read_counters()
    firing_alerts = firing_alerts or {}
    open_incidents = open_incidents or {}
    models: dict[str, Any] = {}
    for name in sorted(set(cfg.models) | {m for m in counts if m != UNATTRIBUTED}):
        row = {c: counts.get(name, {}).get(c, 0) for c in COUNTERS}
        row["pending_labels"] = row["labels"] - row["joined"] - row["expired_labels"]
        row["firing_alerts"] = firing_alerts.get(name, 0)
        row["open_incidents"] = open_incidents.get(name, 0)
        row["configured"] = name in cfg.models
        models[name] = row
    totals = {c: sum(m[c] for m in models.values()) for c in COUNTERS}
    unattributed = counts.get(UNATTRIBUTED, {}).get("invalid", 0)
    totals["invalid"] += unattributed
    return {"models": models, "unattributed": {"invalid": unattributed}, "totals": totals}
