"""The fuzz targets of bench/fuzz_decoder.py and bench/fuzz_config.py, without atheris.

Each harness's target runs over its seed corpus (the hostile examples) and over fixed
mutations of it (truncations, flipped bytes, other mode bytes), so CI checks the same promises
the fuzzers do: nothing but a dead letter (events) or a ConfigError (configuration) comes out.
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"_harness_{name}", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


decoder = _load("fuzz_decoder")
config = _load("fuzz_config")


def _mutations(seed: bytes) -> list[bytes]:
    out = [seed, seed[: max(1, len(seed) // 2)], seed[:-1]]
    out += [bytes([seed[0] ^ k]) + seed[1:] for k in (1, 2, 8)]       # other topic / split / mode
    for pos in (1, len(seed) // 3, len(seed) - 2):
        if 1 <= pos < len(seed):
            for byte in (0x00, 0x22, 0x5C, 0xFF):      # NUL, quote, backslash, not UTF-8
                out.append(seed[:pos] + bytes([byte]) + seed[pos + 1:])
    return out


@pytest.mark.parametrize("i", range(len(decoder.CORPUS)))
def test_decoder_harness_over_the_hostile_corpus(i):
    for data in _mutations(decoder.CORPUS[i]):
        decoder.check_message(data)


def test_decoder_harness_catches_a_broken_promise(monkeypatch):
    """The checks can fail: a decoder that lets an event with U+0000 through is caught."""
    import consumers.ingest as ingest
    from driftloop.core.events import Decoded
    real = ingest.decode_message

    def leaky(raw, kind, **kw):
        out = real(raw, kind, **kw)
        if out.errors and "NUL" in out.errors[0].error:
            return Decoded(events=[kind.one.decode(raw)], errors=[])
        return out

    monkeypatch.setattr(ingest, "decode_message", leaky)
    seed = next(s for s in decoder.CORPUS if b"\\u0000" in s and s[0] == 0)
    with pytest.raises(AssertionError):
        decoder.check_message(seed, do_commit=False)


@pytest.mark.parametrize("i", range(len(config.CORPUS)))
def test_config_harness_over_the_hostile_corpus(i):
    for data in _mutations(config.CORPUS[i]):
        config.check_config(data)


def test_config_harness_accepts_the_valid_seeds():
    before = config.stats["accepted"]
    for seed in config.CORPUS[:4]:
        config.check_config(seed)
    assert config.stats["accepted"] - before == 4


def test_config_harness_does_not_leave_the_import_guard_behind():
    import driftloop.core.config.retrain as rc
    config.check_config(config.CORPUS[0])
    assert rc.import_object is config._real_import
