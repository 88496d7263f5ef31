"""Closing the loop: the monitor follows the registry's champion.

Every monitor process tails ``driftloop.models`` (no consumer group: each process must see every
event). A ``promoted`` or ``rolled_back`` event makes the new champion's held-out sample (its
out-of-sample outputs give honest baselines) the model's reference: the detectors start over on
it, the alerts they had open resolve, and the alerts the retraining answered (the event's
``reason``) resolve too, all in one store transaction under the model's lock.

The registry, not the topic, is the truth: on start the analyser already builds each model's
detectors on the registry's champion (:class:`RegistryReferences`), and an event only triggers
a switch when the champion it names differs from the reference in use, so repeats (the topic is
at-least-once) and events already applied before a restart are no-ops.

A switch that fails for another reason than the store never stops the monitor:

* the new champion's sample cannot be read or is tampered with (``retrain.artifacts.ArtifactError``,
  or anything else loading it raises): the detectors keep the previous reference and keep
  working, the alerts the retraining answered stay open, and a ``detector_failure`` alert
  (detector ``champion_sample``) names the model, the version and the error. The service's
  periodic catch-up tries the switch again; once a switch succeeds (or the champion is back to
  the reference in use) the alert clears;
* the detectors raise while switching to the sample: the switch's transaction rolls back and the
  model is quarantined (stage ``champion_switch``, see :mod:`driftloop.monitoring.analysis`); the catch-up
  or the back-off rebuilds it.

Store errors still propagate (the detectors go back to the stored state; the catch-up redoes the
switch once the store answers).

The registry and the ``driftloop.models`` message format are the retraining layer's, above this
one: the application layer passes them in (``registry=`` a ``retrain.registry.Registry``,
``switch_target=`` ``retrain.events.switch_target``); this module names only what it uses of them
(:class:`ChampionRegistry`, :class:`SwitchTarget`).
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Protocol

import pandas as pd
from kafka import TopicPartition
from sqlalchemy.engine import Connection

from driftloop.core.config import Config
from driftloop.core.store import Store, now_ms
from driftloop.kafka.clients import make_consumer
from driftloop.monitoring.analysis import STORE_FAILURES, ConfigReferences, DriftAnalyser, registered

__all__ = ["RegistryReferences", "ChampionSwitcher", "ChampionRegistry", "SwitchTarget"]

log = logging.getLogger(__name__)


class ChampionRegistry(Protocol):
    """What :class:`RegistryReferences` reads of the model registry (``retrain.registry.Registry``)."""

    def champion(self, model: str, conn: Connection | None = None) -> Any: ...

    def get(self, model: str, version: str, conn: Connection | None = None) -> Any: ...

    def load_reference(self, model: str, version: str, sample: Any = "training",
                       conn: Connection | None = None) -> pd.DataFrame: ...


class SwitchTarget(Protocol):
    """What a ``driftloop.models`` message asks of the monitor (``retrain.events.Switch``)."""

    @property
    def model(self) -> str: ...

    @property
    def version(self) -> str: ...

    @property
    def event(self) -> str: ...

    @property
    def resolves(self) -> list[str]: ...


class RegistryReferences(ConfigReferences):
    """The registry champion's held-out sample; the configured file while there is no champion."""

    def __init__(self, cfg: Config, store: Store, frames: dict[str, pd.DataFrame] | None = None, *,
                 registry: ChampionRegistry) -> None:
        super().__init__(cfg, frames)
        self.store = store
        self.registry = registry

    def current_version(self, model: str, conn: Connection | None = None) -> str | None:
        champ = self.registry.champion(model, conn)
        return None if champ is None else str(champ.version)

    def frame(self, model: str, version: str | None, conn: Connection | None = None) -> pd.DataFrame | None:
        if version is None:
            return super().frame(model, None)
        info = self.registry.get(model, version, conn)
        return self.registry.load_reference(model, version, "holdout" if info.holdout_path else "training", conn)

    def knows(self, model: str, version: str, conn: Connection | None = None) -> bool:
        if conn is not None:
            return registered(conn, model, version)
        with self.store.engine.connect() as c:
            return registered(c, model, version)


class ChampionSwitcher:
    """Polled from the monitor's loop (the analyser is not thread-safe). ``switch_target`` reads a
    ``driftloop.models`` message: the switch it asks for, or None."""

    def __init__(self, cfg: Config, store: Store, analyser: DriftAnalyser, alerts: Any, *,
                 switch_target: Callable[[bytes], SwitchTarget | None]) -> None:
        self.cfg = cfg
        self.switch_target = switch_target
        self.store = store
        self.analyser = analyser
        self.alerts = alerts
        self.consumer: Any = None
        self.switched: list[tuple[str, str]] = []

    def start(self) -> None:
        self.consumer = make_consumer(self.cfg.kafka, group_id=None)
        parts = self.consumer.partitions_for_topic(self.cfg.topics.models) or {0}
        tps = [TopicPartition(self.cfg.topics.models, p) for p in sorted(parts)]
        self.consumer.assign(tps)
        self.consumer.seek_to_end(*tps)   # what came before is already in the registry, read at start

    def close(self) -> None:
        if self.consumer is not None:
            self.consumer.close()

    def poll(self) -> int:
        """Apply the switches the topic announced; then the analyser's idle step (failure
        alerts, rebuilds of quarantined models whose back-off is over). Returns the switches."""
        applied = self._poll_events() if self.consumer is not None else 0
        self.analyser.tend()
        return applied

    def _poll_events(self) -> int:
        applied = 0
        for recs in self.consumer.poll(timeout_ms=0).values():
            for rec in recs:
                sw = self.switch_target(rec.value)
                if sw is None or sw.model not in self.cfg.models:
                    continue
                self.apply(sw.model, str(sw.version), sw.resolves, f"{sw.event}: {sw.model} v{sw.version}")
                applied += 1
        return applied

    def apply(self, model: str, version: str, resolves: list[str], why: str, now: int | None = None) -> None:
        """Switch ``model`` to ``version`` (if not already) and resolve ``resolves``; ``now``:
        the switch's time (epoch ms; default the wall clock, replay passes event time).

        Raises only store errors; a sample that cannot be used or detectors that raise are
        contained (see the module docstring) and show as a ``detector_failure`` alert."""
        now = now_ms() if now is None else now
        frame = None
        if self.analyser.reference_version.get(model) != version:
            try:
                frame = self.analyser.source.frame(model, version)
            except STORE_FAILURES:
                raise
            except Exception as exc:  # noqa: BLE001 - unreadable or tampered sample: keep the old reference
                self.analyser.champion_sample_failed(model, version, exc, now)
                return
        try:
            self._switch(model, version, frame, resolves, why, now)
        except STORE_FAILURES:
            # the detectors go back to what the store holds (the old reference); the service's
            # periodic catch-up redoes the switch with its resolutions once the store answers
            self.analyser.rollback()
            raise
        except Exception as exc:  # noqa: BLE001 - the detectors raised on the new sample
            self.analyser.rollback()
            self.analyser.quarantine(model, "champion_switch", exc, now)
            return
        self.analyser.switch_failures.pop(model, None)    # its clearing committed with the switch
        if frame is not None:
            self.switched.append((model, version))
            log.info("%s: the detectors now use v%s's sample as the reference", model, version)

    def _switch(self, model: str, version: str, frame: pd.DataFrame | None, resolves: list[str], why: str,
                now: int) -> None:
        with self.store.transaction() as conn:
            self.store.lock_models(conn, [model])
            if frame is not None:
                self.analyser.set_reference(conn, model, version, frame, now)
            self.analyser.champion_followed(conn, model, now)
            if resolves and self.alerts is not None:
                self.alerts.resolve(conn, resolves, f"retrained: {why}", now)
