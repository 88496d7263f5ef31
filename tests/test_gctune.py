"""driftloop.core.gctune: the collector's schedule after start-up."""
import gc

from driftloop.core.config import load_config_dict
from driftloop.core.gctune import settle_heap


def _restore(threshold: tuple[int, int, int]) -> None:
    gc.unfreeze()
    gc.set_threshold(*threshold)


def test_zero_keeps_the_interpreters_defaults() -> None:
    before, frozen = gc.get_threshold(), gc.get_freeze_count()
    settle_heap(0)
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == frozen


def test_the_configured_threshold_is_applied_and_the_start_up_heap_frozen() -> None:
    before = gc.get_threshold()
    cfg = load_config_dict({"kafka": {"bootstrap_servers": "k:9092"}, "ingest": {"gc_young_threshold": 12_345}},
                           environ={})
    kept = [[i] for i in range(1000)]            # objects alive at start-up
    try:
        settle_heap(cfg.ingest.gc_young_threshold)
        assert gc.get_threshold() == (12_345, 10, 10)
        assert gc.get_freeze_count() >= len(kept)
    finally:
        _restore(before)
    assert gc.get_freeze_count() == 0


def test_the_default_is_fifty_thousand() -> None:
    cfg = load_config_dict({"kafka": {"bootstrap_servers": "k:9092"}}, environ={})
    assert cfg.ingest.gc_young_threshold == 50_000
