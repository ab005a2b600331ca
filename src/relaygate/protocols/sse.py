"""Incremental Server-Sent Events splitter (WHATWG HTML, "Server-sent events", 9.2).

``SSEDecoder.feed(bytes)`` returns complete events as ``SSEEvent(raw, data, event)`` where
``raw`` is the event's exact bytes including its blank-line terminator, so a pass-through
stream can forward it unchanged. ``finish()`` returns a trailing event that had no
terminator (an upstream that closed mid-event), or None.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["SSEDecoder", "SSEEvent", "encode_event"]

# Two line ends in a row end an event; a line end is CRLF, LF or CR (WHATWG 9.2.5). Atomic groups
# keep a lone CRLF from counting as two line ends.
_BOUNDARY = re.compile(rb"(?>\r\n|\r|\n)(?>\r\n|\r|\n)")


@dataclass(slots=True)
class SSEEvent:
    raw: bytes
    data: bytes | None
    event: str | None


class SSEDecoder:
    """Splits a byte stream into SSE events. Comments (``:``-lines) yield events with no data."""

    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = b""

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        buf = self._buf + chunk if self._buf else chunk
        events: list[SSEEvent] = []
        pos = 0
        if b"\r" not in buf:  # LF line ends only (what providers send): a plain search is enough
            while (end := buf.find(b"\n\n", pos)) >= 0:
                events.append(_parse(buf[pos : end + 2], buf[pos:end]))
                pos = end + 2
            self._buf = buf[pos:]
            return events
        while True:
            m = _BOUNDARY.search(buf, pos)
            if m is None or (m.end() == len(buf) and buf.endswith(b"\r")):
                break  # a trailing CR may be the first half of a CRLF still in flight
            events.append(_parse(buf[pos : m.end()], buf[pos : m.start()]))
            pos = m.end()
        self._buf = buf[pos:]
        return events

    def finish(self) -> SSEEvent | None:
        rest, self._buf = self._buf, b""
        if not rest.strip():
            return None
        return _parse(rest, rest)


def _parse(raw: bytes, body: bytes) -> SSEEvent:
    if body.startswith(b"data: ") and b"\n" not in body and b"\r" not in body:
        return SSEEvent(raw, body[6:], None)  # the usual one-line event
    data_parts: list[bytes] = []
    event: str | None = None
    for line in body.splitlines():
        if line.startswith(b"data:"):
            v = line[5:]
            data_parts.append(v[1:] if v.startswith(b" ") else v)
        elif line.startswith(b"event:"):
            event = line[6:].strip().decode("utf-8", "replace")
    return SSEEvent(raw, b"\n".join(data_parts) if data_parts else None, event)


def encode_event(data: bytes, event: str | None = None) -> bytes:
    """One SSE event with a ``data:`` line (``data`` must not contain newlines)."""
    head = b"event: " + event.encode() + b"\n" if event else b""
    return head + b"data: " + data + b"\n\n"
