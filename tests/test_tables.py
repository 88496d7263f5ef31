"""Every table is declared in :mod:`driftloop.core.tables` and created by ``Store.create_schema``
whatever else is imported: a process that imports only the store gets the whole schema."""
from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]

# the entry points of every process driftloop runs: together they import every module with a table
_FULL_APP = ("driftloop.app.cli", "driftloop.app.service", "driftloop.app.api.app", "driftloop.app.report",
             "driftloop.alerts.cli", "retrain.cli", "retrain.worker", "consumers.monitor")
# the layers that declared tables of their own before driftloop.core.tables (importing them registered those)
_UPPER_LAYERS = ("consumers", "retrain", "driftloop.alerts", "driftloop.monitoring", "driftloop.app")

_CHILD = """
import json, sys
import sqlalchemy as sa
from driftloop.core.store import Store
store = Store(sys.argv[1])
store.create_schema()
names = sorted(sa.inspect(store.engine).get_table_names())
upper = sorted(m for m in sys.modules if m.startswith(tuple(sys.argv[2].split(","))))
print(json.dumps({"tables": names, "upper_layers": upper}))
"""


def _full_app_tables() -> dict[str, sa.Table]:
    """Every ``sa.Table`` a module of the full application holds, by name."""
    for name in _FULL_APP:
        importlib.import_module(name)
    found: dict[str, sa.Table] = {}
    for mod_name, mod in list(sys.modules.items()):
        if mod is None or not mod_name.startswith(("driftloop", "consumers", "retrain", "detectors")):
            continue
        for value in vars(mod).values():
            if isinstance(value, sa.Table):
                found[value.name] = value
    return found


def _create_alone(url: str, processes: int = 1) -> list[dict[str, list[str]]]:
    """Run ``Store(url).create_schema()`` in fresh processes (at once) that import only the store."""
    procs = [subprocess.Popen([sys.executable, "-c", _CHILD, url, ",".join(_UPPER_LAYERS)], cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(processes)]
    out = []
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 0, stderr
        out.append(json.loads(stdout.strip().splitlines()[-1]))
    return out


def _check_alone(children: list[dict[str, list[str]]]) -> None:
    expected = _full_app_tables()
    for child in children:
        assert child["upper_layers"] == []                # none of the upper layers was imported
        missing = sorted(set(expected) - set(child["tables"]))
        assert not missing, f"a store created alone lacks {missing}"   # ... and yet every table exists
        assert sorted(child["tables"]) == sorted(expected)


def test_a_store_alone_creates_every_table_the_app_uses(tmp_path: Path) -> None:
    _check_alone(_create_alone(f"sqlite:///{tmp_path / 'fresh.db'}"))


@pytest.mark.postgres
def test_stores_alone_create_every_table_on_postgres_at_once(postgres_url: str) -> None:
    """Two processes create the whole schema on one fresh database at the same moment."""
    _check_alone(_create_alone(postgres_url, processes=2))


def test_every_table_is_declared_in_core_tables() -> None:
    from driftloop.core import tables

    for name, table in _full_app_tables().items():
        assert table.metadata is tables.metadata, name
        assert getattr(tables, name) is table, f"{name} is not declared in driftloop.core.tables"


def test_a_store_alone_upgrades_an_older_store(tmp_path: Path) -> None:
    """``detector_state`` and ``retrain_jobs`` as an older release wrote them (without the columns
    added since), one row each: a process that imports only the store adds the columns, and the
    old rows take their server defaults."""
    from driftloop.core import tables

    url = f"sqlite:///{tmp_path / 'old.db'}"
    added_later = {"detector_state": ("generation", "reference_version"), "retrain_jobs": ("give_backs",)}
    old = sa.MetaData()
    for name, columns in added_later.items():
        sa.Table(name, old, *[c._copy() for c in tables.metadata.tables[name].columns if c.name not in columns])
    engine = sa.create_engine(url)
    old.create_all(engine)
    with engine.begin() as conn:
        conn.execute(old.tables["detector_state"].insert(), {"model": "m", "state": b"s", "updated_at": 1})
        conn.execute(old.tables["retrain_jobs"].insert(), {
            "job_id": "j", "model": "m", "trigger": "manual", "reason": [], "status": "queued",
            "requested_at": 1, "attempts": 0, "payload": b"{}"})
    engine.dispose()

    _create_alone(url)
    engine = sa.create_engine(url)
    inspector = sa.inspect(engine)
    for name, columns in added_later.items():
        assert set(columns) <= {c["name"] for c in inspector.get_columns(name)}, name
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT generation FROM detector_state")).scalar_one() == 0
        assert conn.execute(sa.text("SELECT give_backs FROM retrain_jobs")).scalar_one() == 0
    engine.dispose()
