"""SSEDecoder: events survive any chunking, raw bytes are kept exactly, data/event are parsed."""

from __future__ import annotations

import itertools
import random

import pytest

try:  # property tests run when hypothesis is installed; the tables below always run
    from hypothesis import given, settings
    from hypothesis import strategies as st

    HAVE_HYPOTHESIS = True
except ImportError:  # pragma: no cover
    HAVE_HYPOTHESIS = False

from relaygate.protocols.sse import SSEDecoder, SSEEvent, encode_event

Triple = tuple[bytes, bytes | None, str | None]


def decode(stream: bytes, cuts: list[int] | None = None) -> tuple[list[Triple], Triple | None]:
    """Feed ``stream`` split at ``cuts`` (None: one chunk); return the events and finish()."""
    d = SSEDecoder()
    bounds = [0, *sorted(set(cuts or [])), len(stream)]
    events: list[SSEEvent] = []
    for a, b in itertools.pairwise(bounds):
        events.extend(d.feed(stream[a:b]))
    tail = d.finish()
    return [(e.raw, e.data, e.event) for e in events], (
        (tail.raw, tail.data, tail.event) if tail is not None else None
    )


def bytewise(stream: bytes) -> tuple[list[Triple], Triple | None]:
    return decode(stream, list(range(1, len(stream))))


# (stream, expected events as (raw, data, event), expected finish() as (raw, data, event) or None)
CASES = [
    pytest.param(b"data: hello\n\n", [(b"data: hello\n\n", b"hello", None)], None, id="lf"),
    pytest.param(b"data: hello\r\n\r\n", [(b"data: hello\r\n\r\n", b"hello", None)], None, id="crlf"),
    pytest.param(
        b"data: a\r\n\ndata: b\n\n",
        [(b"data: a\r\n\n", b"a", None), (b"data: b\n\n", b"b", None)],
        None,
        id="crlf-line-then-lf-blank",
    ),
    pytest.param(b"data:x\n\n", [(b"data:x\n\n", b"x", None)], None, id="no-space"),
    pytest.param(b"data:  x \n\n", [(b"data:  x \n\n", b" x ", None)], None, id="only-one-space-stripped"),
    pytest.param(b"data: \n\n", [(b"data: \n\n", b"", None)], None, id="empty-data"),
    pytest.param(
        b"data: a\ndata: b\ndata: c\n\n",
        [(b"data: a\ndata: b\ndata: c\n\n", b"a\nb\nc", None)],
        None,
        id="multi-line-data",
    ),
    pytest.param(
        b"data: a\r\ndata: b\r\n\r\n",
        [(b"data: a\r\ndata: b\r\n\r\n", b"a\nb", None)],
        None,
        id="multi-line-data-crlf",
    ),
    pytest.param(b": keep-alive\n\n", [(b": keep-alive\n\n", None, None)], None, id="comment"),
    pytest.param(
        b": c1\ndata: x\n: c2\n\n",
        [(b": c1\ndata: x\n: c2\n\n", b"x", None)],
        None,
        id="comments-inside-event",
    ),
    pytest.param(
        b'event: error\ndata: {"error":{}}\n\n',
        [(b'event: error\ndata: {"error":{}}\n\n', b'{"error":{}}', "error")],
        None,
        id="named-event",
    ),
    pytest.param(
        b"id: 7\nretry: 100\nevent:ping\n\n",
        [(b"id: 7\nretry: 100\nevent:ping\n\n", None, "ping")],
        None,
        id="other-fields-only",
    ),
    pytest.param(
        b"data: [DONE]\n\n",
        [(b"data: [DONE]\n\n", b"[DONE]", None)],
        None,
        id="done",
    ),
    pytest.param(
        b"data: 1\n\ndata: 2\n\n: c\n\ndata: [DONE]\n\n",
        [
            (b"data: 1\n\n", b"1", None),
            (b"data: 2\n\n", b"2", None),
            (b": c\n\n", None, None),
            (b"data: [DONE]\n\n", b"[DONE]", None),
        ],
        None,
        id="several",
    ),
    pytest.param(
        'data: {"content":"h\u00e9 \u2713 \U0001f600"}\n\n'.encode(),
        [
            (
                'data: {"content":"h\u00e9 \u2713 \U0001f600"}\n\n'.encode(),
                '{"content":"h\u00e9 \u2713 \U0001f600"}'.encode(),
                None,
            )
        ],
        None,
        id="utf8-multibyte",
    ),
    pytest.param(b"data: partial", [], (b"data: partial", b"partial", None), id="trailing-partial"),
    pytest.param(
        b"data: 1\n\ndata: 2\n",
        [(b"data: 1\n\n", b"1", None)],
        (b"data: 2\n", b"2", None),
        id="trailing-partial-with-newline",
    ),
    pytest.param(
        b"data: 1\n\ndata: a\ndata: b",
        [(b"data: 1\n\n", b"1", None)],
        (b"data: a\ndata: b", b"a\nb", None),
        id="trailing-partial-multiline",
    ),
    pytest.param(b"data: 1\n\n\n", [(b"data: 1\n\n", b"1", None)], None, id="trailing-blank-only"),
    pytest.param(b"", [], None, id="empty"),
]


@pytest.mark.parametrize(("stream", "events", "tail"), CASES)
def test_decode_one_chunk(stream: bytes, events: list[Triple], tail: Triple | None) -> None:
    assert decode(stream) == (events, tail)


@pytest.mark.parametrize(("stream", "events", "tail"), CASES)
def test_decode_byte_by_byte(stream: bytes, events: list[Triple], tail: Triple | None) -> None:
    assert bytewise(stream) == (events, tail)


@pytest.mark.parametrize(("stream", "events", "tail"), CASES)
def test_decode_random_chunks(stream: bytes, events: list[Triple], tail: Triple | None) -> None:
    rng = random.Random(1234)
    for _ in range(30):
        cuts = [rng.randrange(1, len(stream)) for _ in range(rng.randrange(0, 5))] if len(stream) > 1 else []
        assert decode(stream, cuts) == (events, tail), cuts


@pytest.mark.parametrize(("stream", "events", "tail"), CASES)
def test_raw_bytes_reassemble_the_stream(stream: bytes, events: list[Triple], tail: Triple | None) -> None:
    got, t = bytewise(stream)
    joined = b"".join(raw for raw, _, _ in got) + (t[0] if t else b"")
    # Everything but a whitespace-only remainder (dropped by finish()) is forwarded exactly.
    assert stream.startswith(joined)
    assert stream[len(joined) :].strip() == b""


def test_feed_returns_events_as_soon_as_terminated() -> None:
    d = SSEDecoder()
    assert d.feed(b"data: a\n") == []
    (e,) = d.feed(b"\ndata: b")
    assert e.data == b"a"
    assert d.feed(b"\n") == []
    (e,) = d.feed(b"\n")
    assert (e.raw, e.data) == (b"data: b\n\n", b"b")
    assert d.finish() is None


def test_finish_resets_the_buffer() -> None:
    d = SSEDecoder()
    d.feed(b"data: x")
    tail = d.finish()
    assert tail is not None and tail.data == b"x"
    assert d.finish() is None
    assert [e.data for e in d.feed(b"data: y\n\n")] == [b"y"]


def delivered(stream: bytes, cuts: list[int] | None = None) -> list[Triple]:
    """Every event in order, whether feed() or finish() handed it over."""
    events, tail = decode(stream, cuts)
    return events + ([tail] if tail is not None else [])


# Mixed and CR line ends (WHATWG 9.2.5: a line ends with CRLF, LF or CR; a blank line ends
# the event). A decoder may hold an event that ends in CR until it knows no LF follows, so
# these are checked on what is delivered in total, for every way of cutting the stream.
# (stream, delivered events)
LINE_END_CASES = [
    pytest.param(
        b"data: a\r\rdata: b\r\r", [(b"data: a\r\r", b"a", None), (b"data: b\r\r", b"b", None)], id="cr-only"
    ),
    pytest.param(
        b"data: a\n\r\ndata: b\n\n",
        [(b"data: a\n\r\n", b"a", None), (b"data: b\n\n", b"b", None)],
        id="lf-line-crlf-blank",
    ),
    pytest.param(
        b"data: a\rdata: b\r\n\r\n",
        [(b"data: a\rdata: b\r\n\r\n", b"a\nb", None)],
        id="cr-line-then-crlf-lines",
    ),
    pytest.param(
        b"data: a\r\r\ndata: b\n\n",
        [(b"data: a\r\r\n", b"a", None), (b"data: b\n\n", b"b", None)],
        id="cr-line-crlf-blank",
    ),
    pytest.param(
        b"data: a\n\rdata: b\r\n\r\n",
        [(b"data: a\n\r", b"a", None), (b"data: b\r\n\r\n", b"b", None)],
        id="lf-line-cr-blank",
    ),
]


@pytest.mark.parametrize(("stream", "events"), LINE_END_CASES)
def test_line_end_variants_any_chunking(stream: bytes, events: list[Triple]) -> None:
    assert delivered(stream) == events
    assert delivered(stream, list(range(1, len(stream)))) == events
    for a in range(1, len(stream)):
        for b in range(a, len(stream)):
            assert delivered(stream, [a, b]) == events, (a, b)


def test_crlf_terminator_split_inside_is_not_cut_early() -> None:
    # "\r\n\r" already looks like two line ends; the event must still carry its whole terminator.
    d = SSEDecoder()
    assert d.feed(b"data: a\r\n\r") == []
    assert [e.raw for e in d.feed(b"\ndata: b\r\n\r\n")] == [b"data: a\r\n\r\n", b"data: b\r\n\r\n"]
    assert d.finish() is None


def test_cr_only_event_is_delivered_by_the_next_byte() -> None:
    d = SSEDecoder()
    first = d.feed(b"data: a\r\r")
    second = d.feed(b"d")
    assert [e.raw for e in first + second] == [b"data: a\r\r"]
    tail = d.finish()
    assert tail is not None and tail.raw == b"d"


@pytest.mark.parametrize(
    ("data", "event", "wire"),
    [
        (b"x", None, b"data: x\n\n"),
        (b'{"a":1}', "error", b'event: error\ndata: {"a":1}\n\n'),
        (b"[DONE]", None, b"data: [DONE]\n\n"),
    ],
)
def test_encode_event_round_trips(data: bytes, event: str | None, wire: bytes) -> None:
    assert encode_event(data, event) == wire
    assert decode(wire) == ([(wire, data, event)], None)


if HAVE_HYPOTHESIS:
    # Property: for LF-, CRLF- or CR-framed streams of well-formed events, any chunking gives the
    # same events (raw bytes included) as the expected framing.
    _line = st.text(
        alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"), max_size=12
    )
    _event = st.tuples(
        st.lists(
            st.one_of(_line.map(lambda s: "data: " + s), _line.map(lambda s: ": " + s)),
            min_size=1,
            max_size=3,
        ),
        st.one_of(st.none(), st.sampled_from(["error", "ping"])),
    )

    @settings(max_examples=300, database=None, deadline=None)
    @given(
        events=st.lists(_event, max_size=5),
        eol=st.sampled_from(["\n", "\r\n", "\r"]),
        cuts=st.lists(st.integers(min_value=1, max_value=400), max_size=8),
    )
    def test_chunking_property(events: list[tuple[list[str], str | None]], eol: str, cuts: list[int]) -> None:
        raws: list[bytes] = []
        expected: list[Triple] = []
        for lines, name in events:
            all_lines = ([f"event: {name}"] if name else []) + lines
            raw = (eol.join(all_lines) + eol + eol).encode()
            raws.append(raw)
            datas = [ln[len("data: ") :].encode() for ln in lines if ln.startswith("data: ")]
            expected.append((raw, b"\n".join(datas) if datas else None, name))
        stream = b"".join(raws)
        cuts = [c for c in cuts if c < len(stream)]
        assert delivered(stream, cuts) == expected
        assert delivered(stream) == expected
        if eol != "\r":  # LF / CRLF framing: every event comes out of feed() as soon as it is complete
            assert decode(stream, cuts) == (expected, None)
else:

    @pytest.mark.skip(reason="hypothesis is not installed: pip install hypothesis")
    def test_chunking_property() -> None:
        pass


def test_lf_only_fast_path_matches_the_general_splitter() -> None:
    # LF-only input takes a plain-search path; the same events written with CRLF take the
    # general (regex) one. Both must give the same events, whatever the chunking.
    rng = random.Random(7)
    lines = [b'data: {"a": 1}', b"data:x", b"data: ", b"event: ping", b": comment", b"id: 3", b"data: two"]
    for _ in range(200):
        events = [
            b"\n".join(rng.choices(lines, k=rng.randint(1, 3))) + b"\n\n" for _ in range(rng.randint(1, 6))
        ]
        lf = b"".join(events) + rng.choice([b"", b"\n", b"data: tail"])
        cuts = [rng.randrange(len(lf) + 1) for _ in range(rng.randint(0, 5))]
        got_lf, tail_lf = decode(lf, cuts)
        got_crlf, tail_crlf = decode(lf.replace(b"\n", b"\r\n"))
        assert [(raw.replace(b"\r\n", b"\n"), d, e) for raw, d, e in got_crlf] == got_lf
        assert (tail_crlf is None) == (tail_lf is None)
