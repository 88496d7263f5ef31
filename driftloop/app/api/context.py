"""What every request handler reads: the configuration, the store and the optional live objects."""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from starlette.responses import Response

from driftloop.app.api.live import Readiness
from driftloop.core.config.api import ApiConfig
from driftloop.core.jsonio import dumps
from driftloop.core.store import Store, detector_state

__all__ = ["Context", "JSON", "dumps"]

log = logging.getLogger(__name__)


class JSON(Response):
    """A JSON response encoded by :func:`dumps`."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return dumps(content)


@dataclass
class Context:
    """Shared by the handlers of one app (``request.app.state.ctx``)."""

    cfg: Any
    store: Store
    api: ApiConfig
    token: str | None = None
    read_token: str | None = None     # None: reads are open (api.read_token_env unset)
    monitor: Any = None
    analyser: Any = None
    alerts: Any = None
    registry: Any = None
    on_change: Any = None
    readiness: Readiness | None = None
    _status_cache: dict[str, tuple[int, dict[str, Any]]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # -- lazily built collaborators (other teams' packages) ----------------------------------
    def alert_manager(self) -> Any:
        """The alert service/manager given to the app, else one built on the store."""
        if self.alerts is None:
            from driftloop.alerts.manager import AlertManager

            with self._lock:
                if self.alerts is None:
                    self.alerts = AlertManager(self.cfg, self.store)
        return self.alerts

    def model_registry(self) -> Any:
        """The registry given to the app, else :class:`retrain.registry.Registry` on the store."""
        if self.registry is None:
            from retrain.registry import Registry

            with self._lock:
                if self.registry is None:
                    self.registry = Registry(self.cfg, self.store)
        return self.registry

    def changed(self) -> None:
        """A mutation committed: let the host publish its outbox (``on_change``)."""
        if self.on_change is not None:
            try:
                self.on_change()
            except Exception:  # the change is committed; publishing retries later
                log.exception("on_change hook failed")

    # -- detector status ---------------------------------------------------------------------
    def model_status(self, model: str) -> tuple[dict[str, Any] | None, str]:
        """``VersionedMonitor.status()`` of a model (its champion's, and every version's in
        ``versions``) and where it came from: ``live`` (the
        in-process analyser), ``store`` (the committed detector state), or ``none``."""
        mons = getattr(self.analyser, "monitors", None) or {}
        mon = mons.get(model) if isinstance(mons, dict) else None
        if mon is not None:
            for _ in range(3):  # the consumer thread may be updating it right now
                try:
                    return mon.status(), "live"
                except (RuntimeError, ValueError, KeyError, IndexError):
                    continue
        return self._stored_status(model)

    def version_status(self, model: str, version: str | None) -> dict[str, Any] | None:
        """One version's full status (``VersionedMonitor.version_status``): live when the analyser
        runs here; from the store only for the champion (the stored status is the champion's
        in full, the others' in short). ``version`` None: the champion's."""
        status, _ = self.model_status(model)
        if version is None or (status or {}).get("model_version") == (version or None):
            return status
        mons = getattr(self.analyser, "monitors", None) or {}
        mon = mons.get(model) if isinstance(mons, dict) else None
        if mon is not None and version in getattr(mon, "versions", {}):
            for _ in range(3):  # the consumer thread may be updating it right now
                try:
                    return dict(mon.version_status(version))
                except (RuntimeError, ValueError, KeyError, IndexError):
                    continue
        return None

    def _stored_status(self, model: str) -> tuple[dict[str, Any] | None, str]:
        from driftloop.app.api.queries import reader

        try:
            with reader(self.store).connect() as c:
                updated = c.execute(sa.select(detector_state.c.updated_at)
                                    .where(detector_state.c.model == model)).scalar()
                cached = self._status_cache.get(model)
                if cached is not None and cached[0] == updated:
                    return cached[1], "store"
                row = c.execute(sa.select(detector_state.c.state, detector_state.c.updated_at)
                                .where(detector_state.c.model == model)).first()
        except sa.exc.SQLAlchemyError:
            return None, "none"
        if row is None:
            return None, "none"
        blob, updated = bytes(row[0]), row[1]
        try:
            from detectors.versions import VersionedMonitor

            status = VersionedMonitor.from_snapshot(blob).status()
        except Exception as exc:  # noqa: BLE001 - a state from another version of the code
            log.warning("cannot read the stored detector state of %s: %s", model, exc)
            return None, "none"
        self._status_cache[model] = (updated, status)
        return status, "store"
