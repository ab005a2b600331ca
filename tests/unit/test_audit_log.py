"""The hash-chained audit log on SQLite and (when reachable) PostgreSQL: appends, listing,
tamper detection (edit, delete, swap, renumber, rewrite), and concurrent writers.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from relaygate.ledger.audit import GENESIS_HASH, AuditLog, event_hash
from relaygate.ledger.db import create_db_engine
from relaygate.ledger.migrate import open_database
from relaygate.ledger.schema import audit_events

SRC = Path(__file__).resolve().parents[2] / "src"


def fill(log: AuditLog, n: int = 8) -> None:
    for i in range(1, n + 1):
        log.append("key.create", "cli:alice", f"key_{i:08x}", {"tenant": "acme", "n": i})


def sql(engine: sa.Engine, statement: str, **params: Any) -> None:
    with engine.begin() as conn:
        conn.execute(sa.text(statement), params)


def sqls(engine: sa.Engine, *statements: str) -> None:
    for statement in statements:
        sql(engine, statement)


def rows(engine: sa.Engine) -> dict[int, dict[str, Any]]:
    with engine.connect() as conn:
        return {r["id"]: dict(r) for r in conn.execute(sa.select(audit_events)).mappings()}


def test_append_builds_a_chain_from_64_zeros(engine: sa.Engine) -> None:
    log = AuditLog(engine)
    first = log.append("cutoff.set", "cli:alice", "openai:CN", {"reason": "law"})
    second = log.append("config.reload", "gateway", "relaygate.yaml")
    assert (first.id, second.id) == (1, 2)
    assert first.prev_hash == GENESIS_HASH == "0" * 64
    assert second.prev_hash == first.hash
    assert second.details == {}
    assert first.hash == event_hash(
        1, first.ts, "cutoff.set", "cli:alice", "openai:CN", {"reason": "law"}, "0" * 64
    )
    assert log.list() == [first, second]
    assert first.ts.tzinfo is not None


def test_canonical_encoding_is_sorted_compact_json() -> None:
    ts = datetime(2025, 1, 2, 3, 4, 5, 6, tzinfo=UTC)
    expected = (
        '{"actor":"cli:root","details":{"a":[1,2.5,"\\u00e9"],"b":null},"id":7,"kind":"key.revoke",'
        '"prev_hash":"' + "ab" * 32 + '","subject":"key_1","ts":"2025-01-02T03:04:05.000006+00:00"}'
    )
    digest = event_hash(7, ts, "key.revoke", "cli:root", "key_1", {"b": None, "a": [1, 2.5, "é"]}, "ab" * 32)
    assert digest == hashlib.sha256(expected.encode()).hexdigest()


def test_details_read_back_exactly_as_hashed(engine: sa.Engine) -> None:
    log = AuditLog(engine)
    details = {
        "big": 1e300,
        "small": 1e-7,
        "float": 1.0,
        "int": 2**62,
        "text": "naïve 中文 \x00 nul",
        "nested": {"list": [1, "two", None, True], "tuple": (1, 2)},
    }
    event = log.append("tenant.upsert", "admin-api", "acme\x00", details)
    assert event.subject == "acme\ufffd"  # PostgreSQL refuses NUL in text
    assert event.details["nested"]["tuple"] == [1, 2]
    (back,) = log.list()
    assert back == event
    assert log.verify().ok


@pytest.mark.parametrize(
    ("kind", "actor", "details"),
    [
        ("", "cli:a", {}),
        ("x" * 65, "cli:a", {}),
        ("key.create", "", {}),
        ("key.create", "cli:a", {"when": datetime.now(UTC)}),
        ("key.create", "cli:a", {"nan": float("nan")}),
        ("key.create", "cli:a", ["not", "an", "object"]),
    ],
)
def test_append_rejects_bad_events(engine: sa.Engine, kind: str, actor: str, details: Any) -> None:
    log = AuditLog(engine)
    with pytest.raises(ValueError):
        log.append(kind, actor, "s", details)
    assert log.list() == []


def test_list_filters_by_time_kind_and_limit(engine: sa.Engine) -> None:
    now = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
    clock = iter([now - timedelta(hours=h) for h in (5, 4, 3, 2, 1)])
    log = AuditLog(engine, clock=lambda: next(clock))
    log.append("cutoff.set", "cli:a", "openai:CN")
    log.append("cutoff.clear", "cli:a", "openai:CN")
    log.append("cutoffs.other", "cli:a", "x")
    log.append("key.create", "cli:a", "key_1")
    log.append("cutoff_set", "cli:a", "y")  # `_` is a LIKE wildcard: must not match "cutoff."

    assert [e.id for e in log.list()] == [1, 2, 3, 4, 5]
    assert [e.kind for e in log.list(kind="cutoff.")] == ["cutoff.set", "cutoff.clear"]
    assert [e.kind for e in log.list(kind="cutoff")] == ["cutoff.set", "cutoff.clear"]
    assert [e.kind for e in log.list(kind="cutoff.clear")] == ["cutoff.clear"]
    assert [e.id for e in log.list(since=now - timedelta(hours=2, minutes=30))] == [4, 5]
    assert [e.id for e in log.list(since=(now - timedelta(hours=3)).replace(tzinfo=None))] == [3, 4, 5]
    assert [e.id for e in log.list(limit=2)] == [4, 5]  # the newest two, oldest first
    assert [e.id for e in log.list(kind="cutoff.", limit=1)] == [2]


def test_verify_empty_and_intact_chain(engine: sa.Engine) -> None:
    log = AuditLog(engine)
    empty = log.verify()
    assert (empty.ok, empty.checked, empty.first_bad_id, empty.head_hash) == (True, 0, None, None)
    fill(log)
    result = log.verify()
    assert (result.ok, result.checked, result.first_bad_id, result.problem) == (True, 8, None, None)
    assert result.head_hash == log.list()[-1].hash


def swap_contents(engine: sa.Engine, a: int, b: int) -> None:
    """Exchange every column but the id between events ``a`` and ``b``."""
    stored = rows(engine)
    with engine.begin() as conn:
        for target, source in ((a, b), (b, a)):
            values = {k: v for k, v in stored[source].items() if k != "id"}
            conn.execute(audit_events.update().where(audit_events.c.id == target).values(**values))


def rewrite_with_fresh_hash(engine: sa.Engine, event_id: int) -> None:
    """Edit an event and recompute its own hash, as a careful tamperer would."""
    old = rows(engine)[event_id]
    details = {**old["details"], "tenant": "mallory"}
    digest = event_hash(
        event_id, old["ts"], old["kind"], old["actor"], old["subject"], details, old["prev_hash"]
    )
    with engine.begin() as conn:
        conn.execute(
            audit_events.update().where(audit_events.c.id == event_id).values(details=details, hash=digest)
        )


def shift_time(engine: sa.Engine, event_id: int) -> None:
    old = rows(engine)[event_id]["ts"]
    with engine.begin() as conn:
        conn.execute(
            audit_events.update().where(audit_events.c.id == event_id).values(ts=old - timedelta(seconds=1))
        )


TAMPERING = {
    "edit details": (
        lambda e: sql(e, "UPDATE audit_events SET details = '{\"n\": 99}' WHERE id = 4"),
        4,
        "edited",
    ),
    "edit actor": (
        lambda e: sql(e, "UPDATE audit_events SET actor = 'cli:mallory' WHERE id = 3"),
        3,
        "edited",
    ),
    "edit kind": (lambda e: sql(e, "UPDATE audit_events SET kind = 'key.revoke' WHERE id = 8"), 8, "edited"),
    "edit time": (lambda e: shift_time(e, 2), 2, "edited"),
    "details not an object": (
        lambda e: sql(e, "UPDATE audit_events SET details = '[1]' WHERE id = 5"),
        5,
        "edited",
    ),
    "delete one": (lambda e: sql(e, "DELETE FROM audit_events WHERE id = 5"), 5, "missing"),
    "delete first": (lambda e: sql(e, "DELETE FROM audit_events WHERE id = 1"), 1, "missing"),
    "swap two": (lambda e: swap_contents(e, 3, 6), 3, "edited"),
    "swap neighbours": (lambda e: swap_contents(e, 6, 7), 6, "edited"),
    "change an id": (lambda e: sql(e, "UPDATE audit_events SET id = 100 WHERE id = 4"), 4, "missing"),
    "renumber after delete": (
        lambda e: sqls(
            e, "DELETE FROM audit_events WHERE id = 6", "UPDATE audit_events SET id = 6 WHERE id = 7"
        ),
        6,
        "edited",
    ),
    "reorder ids": (
        lambda e: sqls(
            e,
            "UPDATE audit_events SET id = 1000 WHERE id = 2",
            "UPDATE audit_events SET id = 2 WHERE id = 3",
            "UPDATE audit_events SET id = 3 WHERE id = 1000",
        ),
        2,
        "edited",
    ),
    "rewrite with fresh hash": (lambda e: rewrite_with_fresh_hash(e, 4), 4, "rewritten"),
    "forge genesis link": (
        lambda e: sql(e, "UPDATE audit_events SET prev_hash = :h WHERE id = 1", h="1" * 64),
        1,
        "edited",
    ),
}


@pytest.mark.parametrize("case", list(TAMPERING))
def test_verify_names_the_first_tampered_event(engine: sa.Engine, case: str) -> None:
    tamper, first_bad, word = TAMPERING[case]
    log = AuditLog(engine)
    fill(log)
    assert log.verify().ok
    tamper(engine)
    result = log.verify()
    assert result.ok is False
    assert result.first_bad_id == first_bad, result.problem
    assert result.problem is not None and word in result.problem
    assert result.head_hash is None


def test_details_edited_into_invalid_json_is_reported_not_raised(tmp_path: Path) -> None:
    engine = open_database(f"sqlite:///{tmp_path / 'a.db'}")  # PostgreSQL's json type refuses it
    try:
        log = AuditLog(engine)
        fill(log, 3)
        sql(engine, "UPDATE audit_events SET details = '{not json' WHERE id = 2")
        result = log.verify()
        assert (result.ok, result.first_bad_id) == (False, 2)
        assert log.list()[1].details == {"_unreadable": "{not json"}
    finally:
        engine.dispose()


def test_several_tamperings_report_the_earliest(engine: sa.Engine) -> None:
    log = AuditLog(engine)
    fill(log)
    sql(engine, "DELETE FROM audit_events WHERE id = 7")
    sql(engine, "UPDATE audit_events SET subject = 'x' WHERE id = 2")
    result = log.verify()
    assert (result.first_bad_id, result.checked) == (2, 2)


def test_truncating_the_tail_shows_only_in_the_head_hash(engine: sa.Engine) -> None:
    """The documented limit: an anchored head hash is what reveals removed trailing events."""
    log = AuditLog(engine)
    fill(log)
    anchored = log.verify().head_hash
    sql(engine, "DELETE FROM audit_events WHERE id = 8")
    after = log.verify()
    assert after.ok and after.checked == 7
    assert after.head_hash != anchored


def test_verify_pages_through_long_chains(engine: sa.Engine) -> None:
    log = AuditLog(engine)
    with engine.begin() as conn:  # fast bulk fill with correct hashes
        prev, ts = GENESIS_HASH, datetime(2025, 1, 1, tzinfo=UTC)
        batch = []
        for i in range(1, 2502):
            digest = event_hash(i, ts, "config.reload", "gateway", "", {"i": i}, prev)
            batch.append(
                {"id": i, "ts": ts, "kind": "config.reload", "actor": "gateway", "subject": ""}
                | {"details": {"i": i}, "prev_hash": prev, "hash": digest}
            )
            prev = digest
        conn.execute(audit_events.insert(), batch)
    assert log.verify().checked == 2501
    assert log.append("config.reload", "gateway").id == 2502
    sql(engine, "UPDATE audit_events SET details = '{\"i\": 0}' WHERE id = 2001")
    assert log.verify().first_bad_id == 2001


def run_threads(targets: list[Any]) -> None:
    errors: list[BaseException] = []

    def guard(fn: Any) -> None:
        try:
            fn()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=guard, args=(t,)) for t in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors


def test_concurrent_appends_from_threads_keep_one_valid_chain(engine: sa.Engine) -> None:
    log = AuditLog(engine)

    def writer(w: int) -> Any:
        return lambda: [log.append("key.create", f"worker-{w}", f"k{i}", {"i": i}) for i in range(20)]

    run_threads([writer(w) for w in range(8)])
    result = log.verify()
    assert result.ok and result.checked == 160, result.problem
    events = log.list(limit=None)
    assert [e.id for e in events] == list(range(1, 161))
    assert {(e.actor, e.details["i"]) for e in events} == {
        (f"worker-{w}", i) for w in range(8) for i in range(20)
    }


def test_two_engines_on_one_database_keep_one_valid_chain(db_url: str) -> None:
    first, second = open_database(db_url), create_db_engine(db_url)
    try:
        logs = [AuditLog(first), AuditLog(second)]
        run_threads(
            [
                (lambda log=log, w=w: [log.append("config.reload", f"p{w}", str(i)) for i in range(15)])
                for w, log in enumerate(logs * 3)
            ]
        )
        result = logs[1].verify()
        assert result.ok and result.checked == 90, result.problem
    finally:
        first.dispose()
        second.dispose()


def test_another_process_appending_at_the_same_time(db_url: str) -> None:
    engine = open_database(db_url)
    script = (
        "import sys\n"
        "from relaygate.ledger.audit import AuditLog\n"
        "from relaygate.ledger.db import create_db_engine\n"
        "log = AuditLog(create_db_engine(sys.argv[1]))\n"
        "for i in range(40): log.append('config.reload', 'other-process', str(i))\n"
    )
    env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    try:
        child = subprocess.Popen([sys.executable, "-c", script, db_url], env=env, stderr=subprocess.PIPE)
        log = AuditLog(engine)
        for i in range(40):
            log.append("cutoff.set", "this-process", str(i))
        _, stderr = child.communicate(timeout=60)
        assert child.returncode == 0, stderr.decode()
        result = log.verify()
        assert result.ok and result.checked == 80, result.problem
    finally:
        engine.dispose()


async def test_async_wrappers(engine: sa.Engine) -> None:
    log = AuditLog(engine)
    event = await log.aappend("config.reload_rejected", "gateway", "relaygate.yaml", {"error": "bad rule 3"})
    assert event.id == 1
    assert (await log.averify()).ok
