"""The garbage collector's schedule for a long-running process that allocates in batches.

A batch of 5,000 events allocates a few hundred thousand short-lived containers (decoded events,
their feature dicts, insert rows). With CPython's default thresholds (700, 10, 10) that is
hundreds of young collections per batch and, every few batches, a full one that walks the whole
heap: the service's modules, its configuration, the detectors' references and state, none of
which is ever garbage. :func:`settle_heap` moves what exists at the end of start-up into the
permanent generation (``gc.freeze``: never scanned again) and collects the young generation
every ``gen0`` allocations instead of 700 (objects die young here: the batch's containers are
freed by reference counting as soon as the batch is written; only cycles wait for the collector,
and a young collection of a larger generation costs the same per object).

>>> import gc
>>> old = gc.get_threshold()
>>> settle_heap(gen0=10_000)
>>> gc.get_threshold()[0], gc.get_freeze_count() > 0
(10000, True)
>>> gc.unfreeze(); gc.set_threshold(*old)
"""
from __future__ import annotations

import gc

__all__ = ["settle_heap", "GEN0_THRESHOLD"]

GEN0_THRESHOLD = 50_000
"""Allocations between two young collections (CPython's default: 700)."""


def settle_heap(gen0: int = GEN0_THRESHOLD) -> None:
    """Collect once, freeze what survives start-up, and collect the young generation every ``gen0``
    allocations (the older generations keep CPython's ratios: every 10th young collection looks at
    the middle one, every 10th of those may look at the whole unfrozen heap).

    ``gen0`` 0 or less: nothing changes (CPython's defaults). Call it once a process has built
    what it keeps (``driftloop monitor``, its judging child, ``driftloop replay``), never in a
    library function: frozen objects that later become cyclic garbage are not freed. Configured
    as ``ingest.gc_young_threshold``; measured in ``bench/ingest.py --full`` (``--gc-default``:
    without it).
    """
    if gen0 <= 0:
        return
    gc.collect()
    gc.freeze()
    gc.set_threshold(gen0, 10, 10)
