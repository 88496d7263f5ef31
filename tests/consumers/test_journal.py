"""Analysis apart from ingestion (analysis.mode: apart): the journal and its exactly-once judge.

The same batches, judged in the batch transaction (inline) and through the journal, give the
same detector state and the same detections; a judgement that does not commit is judged again
once; a judge whose model was moved on by another process discards its work.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from consumers.ingest import commit, prepare
from driftloop.core.config import ConfigError, load_config_dict
from driftloop.core.store import Store
from driftloop.core.tables import analysis_journal
from driftloop.monitoring.analysis import DriftAnalyser
from driftloop.monitoring.journal import JournalWriter, backlog
from driftloop.monitoring.judge import Judge, progress
from tests.consumers.test_analysis import events
from tests.consumers.test_ingest_unit import NOW, Rec

SETTINGS = {"window_size": 500, "warmup": 250, "multivariate": False, "calibration_draws": 20}


def config(tmp_path, name):
    rng = np.random.default_rng(3)
    ref = pd.DataFrame({"amount": rng.normal(50, 10, 4000), "country": rng.choice(["DE", "FR"], 4000),
                        "label": rng.choice([0, 1], 4000)})
    ref.to_csv(tmp_path / "ref.csv", index=False)
    return load_config_dict({"analysis": {"entries_per_judgement": 3}, "models": {"fraud": {
        "task": "classification", "features": {"amount": "numeric", "country": "categorical"},
        "reference": "ref.csv", "detectors": SETTINGS}}}, base_dir=tmp_path, environ={})


@pytest.fixture
def stores(tmp_path):
    made = []

    def make(name):
        store = Store(f"sqlite:///{tmp_path}/{name}.db")
        store.create_schema()
        made.append(store)
        return store
    yield make
    for s in made:
        s.dispose()


def batches():
    rng = np.random.default_rng(11)
    out, start = [], 0
    for i in range(12):     # 12 batches of 300: windows of 500 end mid-batch; a shift from batch 6
        out.append(events(rng, start, 300, shift=8.0 if i >= 6 else 0.0))
        start += 300
    return out


def ingest(cfg, store, hook, values, offset, expected):
    recs = [Rec(cfg.topics.predictions, 0, offset + j, v) for j, v in enumerate(values)]
    commit(store, cfg, prepare(recs, cfg, NOW), group="g", expected=expected, now=NOW, analyser=hook)


def feed(cfg, store, hook, after=None):
    P = cfg.topics.predictions
    offset = 0
    for values in batches():
        ingest(cfg, store, hook, values, offset, {(P, 0): offset or None})
        offset += len(values)
        if after is not None:
            after()


def firing(seen):
    return sorted(((d.kind, d.detector, d.feature, d.firing) for d in seen), key=str)


def test_the_journal_judged_apart_equals_the_batch_transaction(tmp_path, stores):
    cfg = config(tmp_path, "x")
    inline_store, apart_store = stores("inline"), stores("apart")
    seen_inline, seen_apart = [], []
    inline = DriftAnalyser(cfg, inline_store, on_detections=lambda c, m, d, n: seen_inline.extend(d))
    feed(cfg, inline_store, inline)

    analyser = DriftAnalyser(cfg, apart_store, on_detections=lambda c, m, d, n: seen_apart.extend(d))
    judge = Judge(cfg, apart_store, analyser)
    writer = JournalWriter(cfg.models)
    feed(cfg, apart_store, writer, after=lambda: judge.judge_pending() if writer.entries % 4 == 0 else None)
    with apart_store.engine.connect() as c:
        assert backlog(c).entries > 0          # some batches wait
    while judge.judge_pending():
        pass
    with apart_store.engine.connect() as c:
        assert backlog(c).entries == 0 and progress(c, "fraud") == 12
    assert apart_store.load_detector_state("fraud") == inline_store.load_detector_state("fraud")
    assert any(d.firing and d.feature == "amount" for d in seen_inline)
    assert firing(seen_apart) == firing(seen_inline)


def test_a_judgement_that_does_not_commit_is_judged_again_once(tmp_path, stores):
    cfg = config(tmp_path, "x")
    ref_store, store = stores("ref"), stores("crash")
    feed(cfg, ref_store, DriftAnalyser(cfg, ref_store))
    feed(cfg, store, JournalWriter(cfg.models))

    calls = {"n": 0}

    def fails_once(conn, model, dets, now):
        calls["n"] += 1
        if calls["n"] == 1:
            raise sa.exc.OperationalError("INSERT", {}, Exception("disk I/O error"))
    judge = Judge(cfg, store, DriftAnalyser(cfg, store, on_detections=fails_once))
    with pytest.raises(sa.exc.OperationalError):
        while judge.judge_pending():
            pass
    # a new judging process (the old one died with the failed transaction) finishes the journal
    judge = Judge(cfg, store, DriftAnalyser(cfg, store))
    while judge.judge_pending():
        pass
    assert store.load_detector_state("fraud") == ref_store.load_detector_state("fraud")
    with store.engine.connect() as c:
        assert progress(c, "fraud") == 12 and backlog(c).events == 0


def test_a_judge_whose_model_moved_on_discards_its_work_and_judges_from_the_store(tmp_path, stores):
    cfg = config(tmp_path, "x")
    ref_store, store = stores("ref"), stores("two")
    feed(cfg, ref_store, DriftAnalyser(cfg, ref_store))
    feed(cfg, store, JournalWriter(cfg.models))
    first = Judge(cfg, store, DriftAnalyser(cfg, store))
    second = Judge(cfg, store, DriftAnalyser(cfg, store))
    assert first.judge_pending() == 3
    assert second.judge_pending() == 3     # the stored generation moved: it reloads before judging
    assert second.moved == 0
    # first judges 7..9 on its stale state while second moves the model on meanwhile: first's
    # judgement is refused at its commit, then redone from the store
    assert first.judge_pending() == 3      # stale generation: judged under the lock, from the store
    judge_alone = first.analyser.judge

    def second_moves_meanwhile(*a, **kw):
        first.analyser.judge = judge_alone
        assert second.judge_pending() == 3
        return judge_alone(*a, **kw)
    second.analyser.rollback()             # second catches up with the store before it moves on
    first.analyser.judge = second_moves_meanwhile
    assert first.judge_pending() == 0 and first.moved == 1
    while first.judge_pending() or second.judge_pending():
        pass
    assert store.load_detector_state("fraud") == ref_store.load_detector_state("fraud")
    with store.engine.connect() as c:
        assert progress(c, "fraud") == 12
        assert c.execute(sa.select(sa.func.count()).select_from(analysis_journal)).scalar() == 0


def test_analysis_settings_are_checked_naming_the_key(tmp_path):
    for key, value in (("max_backlog_events", 0), ("entries_per_judgement", 0), ("max_pause_s", 0), ("judge_threads", 0)):
        with pytest.raises(ConfigError, match=f"analysis.{key}"):
            load_config_dict({"analysis": {key: value}}, environ={})
    with pytest.raises(ConfigError, match="analysis"):
        load_config_dict({"analysis": {"mode": "elsewhere"}}, environ={})


def test_unversioned_events_are_stamped_with_the_champion_before_any_state_is_stored(tmp_path, stores):
    """Stamped as the inline analyser stamps them: the version its detectors follow, which before
    the first judgement is the registry's champion (a late label then goes to that version's
    detectors, whatever the champion is by then)."""
    cfg = config(tmp_path, "x")
    store = stores("stamp")
    writer = JournalWriter(cfg.models, champion=lambda model, conn: "1")
    ingest(cfg, store, writer, batches()[0][:10], 0, {(cfg.topics.predictions, 0): None})
    with store.engine.connect() as c:
        versions = {v for (v,) in c.execute(sa.text("SELECT model_version FROM examples"))}
    assert versions == {"1"}


def broken_batches():
    """Batches whose events carry pipeline defects from the fifth on: a string in the numeric
    `amount` (refused, dead-lettered), a renamed key, and repeated event ids."""
    rng = np.random.default_rng(12)
    out, start = [], 0
    for i in range(10):
        values = events(rng, start, 300)
        if i >= 4:
            values = [v.replace(b'"amount":', b'"amount":"', 1).replace(b',"country"', b'","country"', 1)
                      if j % 5 == 0 else v.replace(b'"country"', b'"country_code"') if j % 5 == 1 else v
                      for j, v in enumerate(values)] + values[-60:]
        out.append(values)
        start += 300
    return out


def test_pipeline_counts_reach_the_checks_through_the_journal_as_they_do_inline(tmp_path, stores):
    """Refused types, renamed keys and duplicates are not in the columns: validation and the dedupe
    count them, the journal carries the counts, and the judge's data-quality checks see what the
    in-transaction analyser sees."""
    cfg = config(tmp_path, "x")
    P = cfg.topics.predictions
    seen: dict[str, list] = {"inline": [], "apart": []}
    inline_store, apart_store = stores("inline"), stores("apart")
    inline = DriftAnalyser(cfg, inline_store, on_detections=lambda c, m, d, n: seen["inline"].extend(d))
    analyser = DriftAnalyser(cfg, apart_store, on_detections=lambda c, m, d, n: seen["apart"].extend(d))
    judge, writer = Judge(cfg, apart_store, analyser), JournalWriter(cfg.models)
    offset = 0
    for values in broken_batches():
        ingest(cfg, inline_store, inline, values, offset, {(P, 0): offset or None})
        ingest(cfg, apart_store, writer, values, offset, {(P, 0): offset or None})
        offset += len(values)
    while judge.judge_pending():
        pass
    quality = {(d.detector, d.feature) for d in seen["inline"] if d.firing and d.kind == "data_quality"}
    assert {("type_change", "amount"), ("duplicates", None)} <= quality
    assert firing(seen["apart"]) == firing(seen["inline"])
    assert apart_store.load_detector_state("fraud") == inline_store.load_detector_state("fraud")
