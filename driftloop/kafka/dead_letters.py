"""Dead-letter records (topic ``driftloop.dlq``): why an input was refused, and the input itself.

``raw`` keeps at most the first 1 MiB of the input, and less when needed so that the whole
record stays under :data:`MAX_RECORD_BYTES`: Kafka brokers refuse larger messages by default
(``message.max.bytes`` 1 MiB), and a dead letter the broker refuses would hold up the outbox.
A cut never splits a UTF-8 character (the text stays text), and ``raw_truncated`` says when
anything was left out.

>>> import orjson
>>> rec = orjson.loads(dead_letter("bad", "t", 0, 5, "é".encode() * 600_000, 0))
>>> rec["raw_encoding"], rec["raw_truncated"], len(rec["raw"]) < 600_000
('text', True, True)
"""
from __future__ import annotations

import base64
from datetime import UTC, datetime

import orjson

__all__ = ["dead_letter", "MAX_RECORD_BYTES"]

_MAX_RAW = 1_048_576
MAX_RECORD_BYTES = 1_000_000
"""Upper bound of one encoded dead-letter record (Kafka's default ``message.max.bytes`` is 1,048,588)."""


def _as_text(raw: bytes, cut: bool) -> tuple[str, str]:
    try:
        return raw.decode("utf-8"), "text"
    except UnicodeDecodeError as exc:
        # a cut may split the last character: drop its first bytes rather than switch to base64
        if cut and exc.reason == "unexpected end of data" and exc.end == len(raw):
            return raw[:exc.start].decode("utf-8"), "text"
        return base64.b64encode(raw).decode("ascii"), "base64"


def dead_letter(error: str, topic: str, partition: int, offset: int, raw: bytes, received_ms: int,
                model: str | None = None, size: int | None = None) -> bytes:
    """The DLQ message value for one refused event.

    ``size`` is the input's full length when ``raw`` is already only its beginning.
    """
    total = len(raw) if size is None else max(size, len(raw))
    keep = min(len(raw), _MAX_RAW)
    received = datetime.fromtimestamp(received_ms / 1000, UTC).isoformat().replace("+00:00", "Z")
    while True:
        text, encoding = _as_text(raw[:keep], keep < total)
        body = orjson.dumps({
            "error": error[:4096],
            "source_topic": topic,
            "partition": partition,
            "offset": offset,
            "raw": text,
            "raw_encoding": encoding,
            "raw_truncated": keep < total,
            "model": model,
            "received_at": received,
        })
        if len(body) <= MAX_RECORD_BYTES or keep == 0:
            return body
        # JSON escaping or base64 made it too big: shrink in proportion, with a margin
        keep = min(keep - 1, int(keep * MAX_RECORD_BYTES / len(body) * 0.95))
