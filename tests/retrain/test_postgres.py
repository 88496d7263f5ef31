"""The registry, the policy and a job's transaction on PostgreSQL (same code as SQLite)."""
from __future__ import annotations

import time
from types import SimpleNamespace

import pytest
import skops.io as sio
import sqlalchemy as sa

from driftloop.core.store import Store
from driftloop.core.tables import model_versions
from retrain.events import encode
from retrain.policy import RetrainScheduler
from retrain.registry import Registry
from retrain.worker import RetrainWorker
from tests.retrain.helpers import Alert, agrawal, config_data, fitted_model, frame, insert_examples, write_config

pytestmark = pytest.mark.postgres

NOW = int(time.time() * 1000)


def test_job_and_registry_on_postgres(postgres_url, tmp_path):
    _, cfg = write_config(tmp_path, config_data(tmp_path, store_url=postgres_url))
    store = Store.from_config(cfg.store)
    store.create_schema()
    try:
        reg = Registry(cfg, store)
        pre = agrawal(1200, 0, 1)
        sio.dump(fitted_model(pre), tmp_path / "v1.skops")
        reg.register("agr", tmp_path / "v1.skops", frame(pre), actor="t", promote=True,
                     trust=sio.get_untrusted_types(file=tmp_path / "v1.skops"))
        insert_examples(store, "agr", agrawal(1600, 2, 2), start_ts=NOW - 3_600_000, joined_at=NOW - 1000)
        sched = RetrainScheduler(cfg, store)
        with store.transaction() as conn:
            (job,) = sched.on_alerts(conn, "agr", [Alert("a1")], NOW)
            assert sched.on_alerts(conn, "agr", [Alert("a2")], NOW) == []          # in flight
        worker = RetrainWorker(cfg, store)
        out = worker.handle(SimpleNamespace(topic="r", partition=0, offset=0, value=encode(job)), None)
        assert out.status == "done" and out.event.event == "promoted" and out.version == 2
        again = worker.handle(SimpleNamespace(topic="r", partition=0, offset=1, value=encode(job)), 1)
        assert again.status == "skipped"
        assert len(reg.load_reference("agr", 2)) == 1200
        reg.rollback("agr", actor="t")
        assert reg.champion("agr").version == 1
        # the database itself refuses a second champion
        with pytest.raises(sa.exc.IntegrityError), store.transaction() as conn:
            conn.execute(model_versions.update().where(model_versions.c.version == 2).values(status="champion"))
        assert [h.event for h in reg.history("agr")] == ["registered", "promoted", "promoted", "rolled_back"]
    finally:
        store.dispose()
