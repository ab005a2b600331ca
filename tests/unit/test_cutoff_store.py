"""CutoffStore on SQLite and (when reachable) PostgreSQL: set/clear/expire/probe, the version
counter, history, and the audit event written in the same transaction as each change.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from relaygate.ledger.audit import AuditLog
from relaygate.ledger.cutoff_store import CutoffStore, normalize_region
from relaygate.ledger.db import StorageError
from relaygate.ledger.migrate import open_database
from relaygate.ledger.schema import cutoffs

T0 = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


class Clock:
    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(engine: sa.Engine, clock: Clock) -> CutoffStore:
    return CutoffStore(engine, clock=clock)


def kinds(engine: sa.Engine) -> list[str]:
    return [e.kind for e in AuditLog(engine).list(limit=None)]


def test_new_database_has_version_zero_and_no_cutoffs(store: CutoffStore) -> None:
    assert store.version() == 0
    assert store.active() == []
    assert store.history() == []


def test_set_creates_an_audited_cutoff_and_bumps_the_version(engine: sa.Engine, store: CutoffStore) -> None:
    cutoff = store.set("openai", "cn", "export rules", actor="cli:alice")
    assert (cutoff.provider, cutoff.region, cutoff.reason, cutoff.source) == (
        "openai",
        "CN",
        "export rules",
        "operator",
    )
    assert cutoff.created_at == T0 and cutoff.created_by == "cli:alice" and cutoff.id is not None
    assert cutoff.target == "openai:CN"
    assert store.active() == [cutoff]
    assert store.get("openai", "CN") == cutoff
    assert store.version() == 1

    (event,) = AuditLog(engine).list()
    assert (event.kind, event.actor, event.subject) == ("cutoff.set", "cli:alice", "openai:CN")
    assert event.details == {
        "cutoff_id": cutoff.id,
        "provider": "openai",
        "region": "CN",
        "reason": "export rules",
        "source": "operator",
        "expires_at": None,
        "updated": False,
    }


def test_set_is_idempotent_and_updates_the_reason(engine: sa.Engine, store: CutoffStore) -> None:
    first = store.set("openai", "CN", "r1", actor="cli:a")
    again = store.set("openai", "cn", "r1", actor="cli:b")
    assert again == first
    assert store.version() == 1 and len(kinds(engine)) == 1  # a repeat is neither bumped nor audited

    changed = store.set("openai", "CN", "r2", actor="cli:b")
    assert changed.id == first.id and changed.reason == "r2"
    assert store.version() == 2
    assert kinds(engine) == ["cutoff.set", "cutoff.set"]
    assert AuditLog(engine).list()[-1].details["updated"] is True
    assert len(store.history()) == 1


def test_region_defaults_to_every_region(store: CutoffStore) -> None:
    assert store.set("mistral", None, "r", actor="a").region == "*"
    assert store.set("mistral", " * ", "r", actor="a").region == "*"
    assert len(store.active()) == 1


def test_detected_and_operator_sources(engine: sa.Engine, store: CutoffStore) -> None:
    detected = store.set("gemini", "EU", "HTTP 451 from upstream", "detected", actor="gateway")
    assert detected.source == "detected"
    assert kinds(engine) == ["cutoff.detected"]

    promoted = store.set("gemini", "EU", "confirmed by legal", "operator", actor="cli:a")
    assert promoted.source == "operator"  # an operator's word makes it operator-owned
    untouched = store.set("gemini", "EU", "HTTP 451 again", "detected", actor="gateway")
    assert untouched == promoted  # a detection never overrides an operator's cutoff
    assert kinds(engine) == ["cutoff.detected", "cutoff.set"]


def test_clear_keeps_history(engine: sa.Engine, store: CutoffStore, clock: Clock) -> None:
    store.set("openai", "CN", "r", actor="cli:a")
    clock.advance(minutes=5)
    assert store.clear("openai", "cn", actor="cli:b", reason="lifted") is True
    assert store.active() == [] and store.get("openai", "CN") is None
    (old,) = store.history()
    assert old.cleared_at == T0 + timedelta(minutes=5)
    assert (old.cleared_by, old.clear_reason) == ("cli:b", "lifted")
    assert store.version() == 2
    assert kinds(engine) == ["cutoff.set", "cutoff.clear"]
    assert AuditLog(engine).list()[-1].details["clear_reason"] == "lifted"

    assert store.clear("openai", "CN", actor="cli:b") is False
    assert store.version() == 2

    clock.advance(minutes=1)
    reset = store.set("openai", "CN", "again", actor="cli:a")
    assert reset.id != old.id
    assert [c.id for c in store.history()] == [reset.id, old.id]  # newest first
    assert store.clear("openai", "EU", actor="x") is False  # a region is its own pair


def test_expiry(engine: sa.Engine, store: CutoffStore, clock: Clock) -> None:
    cutoff = store.set("openai", "CN", "r", expires_at=T0 + timedelta(hours=2), actor="cli:a")
    assert cutoff.expires_at == T0 + timedelta(hours=2)
    assert store.active(T0 + timedelta(hours=1)) == [cutoff]
    assert store.active(T0 + timedelta(hours=2)) == []
    version = store.version()

    clock.advance(hours=3)
    assert store.active() == []  # excluded at once, even before anything closed it
    (closed,) = store.expire()
    assert closed.cleared_at == T0 + timedelta(hours=2) and closed.clear_reason == "expired"
    assert store.version() == version + 1
    assert kinds(engine)[-1] == "cutoff.expired"
    assert store.expire() == []

    # set() on an expired pair records the expiry, then opens a fresh cutoff
    store.set("anthropic", "EU", "r", expires_at=clock.now + timedelta(minutes=1), actor="cli:a")
    clock.advance(minutes=2)
    fresh = store.set("anthropic", "EU", "r2", actor="cli:a")
    assert fresh.expires_at is None and store.active() == [fresh]
    assert kinds(engine)[-2:] == ["cutoff.expired", "cutoff.set"]
    assert AuditLog(engine).verify().ok


def test_expiry_can_be_changed_and_removed(store: CutoffStore) -> None:
    store.set("openai", "CN", "r", expires_at=T0 + timedelta(hours=1), actor="a")
    assert store.set("openai", "CN", "r", actor="a").expires_at is None
    naive = store.set("openai", "CN", "r", expires_at=datetime(2025, 6, 1, 15, 0), actor="a")
    assert naive.expires_at == datetime(2025, 6, 1, 15, 0, tzinfo=UTC)


def test_probes(store: CutoffStore, clock: Clock) -> None:
    store.set("openai", "CN", "403 unsupported_country_region_territory", "detected", actor="gateway")
    v = store.version()
    clock.advance(minutes=5)
    one = store.record_probe("openai", "CN", True)
    assert one is not None and (one.probe_successes, one.last_probe_at) == (1, clock.now)
    assert store.version() == v + 1  # views must see the new probe time
    two = store.record_probe("openai", "cn", True)
    assert two is not None and two.probe_successes == 2
    failed = store.record_probe("openai", "CN", False)
    assert failed is not None and failed.probe_successes == 0
    store.record_probe("openai", "CN", True)
    assert store.active()[0].probe_successes == 1

    again = store.set("openai", "CN", "403 unsupported_country_region_territory", "detected", actor="gateway")
    assert again.probe_successes == 0  # detected again: the streak restarts

    assert store.record_probe("openai", "EU", True) is None
    store.clear("openai", "CN", actor="gateway", reason="3 successful probes")
    assert store.record_probe("openai", "CN", True) is None


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("openai", "CN", "  "), "reason"),
        (("", "CN", "r"), "provider"),
        (("open:ai", "CN", "r"), "provider"),
        (("openai", "C N", "r"), "region"),
        (("openai", "**", "r"), "region"),
        (("openai", "x" * 33, "r"), "region"),
    ],
)
def test_set_rejects_bad_arguments(store: CutoffStore, args: tuple[str, str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        store.set(*args, actor="a")


def test_set_rejects_bad_source_and_past_expiry(store: CutoffStore) -> None:
    with pytest.raises(ValueError, match="source"):
        store.set("openai", "CN", "r", "someone", actor="a")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="future"):
        store.set("openai", "CN", "r", expires_at=T0, actor="a")
    assert store.version() == 0


def test_bad_actor_is_refused_before_anything_is_written(engine: sa.Engine, store: CutoffStore) -> None:
    with pytest.raises(ValueError, match="actor"):
        store.set("openai", "CN", "r", actor="x" * 200)
    store.set("openai", "CN", "r", actor="cli:a")
    with pytest.raises(ValueError, match="actor"):
        store.clear("openai", "CN", actor="")
    assert store.get("openai", "CN") is not None and store.version() == 1 and len(kinds(engine)) == 1


def test_audit_and_change_commit_together(
    engine: sa.Engine, store: CutoffStore, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If the audit append fails, the cutoff change and the version bump roll back with it."""
    store.set("openai", "CN", "r", expires_at=T0 + timedelta(minutes=1), actor="cli:a")

    def broken(*_args: object, **_kwargs: object) -> None:
        raise StorageError("audit table unavailable", transient=True)

    monkeypatch.setattr("relaygate.ledger.cutoff_store.append_event", broken)
    with pytest.raises(StorageError):
        store.set("anthropic", "EU", "r", actor="cli:a")
    with pytest.raises(StorageError):
        store.clear("openai", "CN", actor="cli:a")
    clock.advance(minutes=2)
    with pytest.raises(StorageError):
        store.expire()
    assert [c.target for c in store.history()] == ["openai:CN"]
    assert store.history()[0].cleared_at is None
    assert store.version() == 1 and len(kinds(engine)) == 1


def test_one_open_row_per_pair_is_enforced_by_the_database(engine: sa.Engine, store: CutoffStore) -> None:
    store.set("openai", "CN", "r", actor="a")
    with pytest.raises(StorageError) as info, engine.begin() as conn:
        try:
            conn.execute(
                cutoffs.insert().values(
                    provider="openai",
                    region="CN",
                    reason="dup",
                    source="operator",
                    created_at=T0,
                    created_by="a",
                )
            )
        except sa.exc.IntegrityError as exc:
            raise StorageError.from_sqlalchemy(exc) from exc
    assert info.value.conflict


def test_concurrent_sets_of_one_pair_make_one_cutoff(engine: sa.Engine, db_url: str) -> None:
    stores = [CutoffStore(engine), CutoffStore(open_database(db_url))]
    errors: list[BaseException] = []

    def detect(store: CutoffStore) -> None:
        try:
            for _ in range(5):
                store.set("openai", "CN", "HTTP 451", "detected", actor="gateway")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=detect, args=(stores[i % 2],)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    stores[1]._engine.dispose()
    assert not errors, errors
    assert len(stores[0].history()) == 1
    assert kinds(engine) == ["cutoff.detected"]
    assert stores[0].version() == 1


def test_every_change_is_in_a_valid_chain(engine: sa.Engine, store: CutoffStore, clock: Clock) -> None:
    store.set("openai", "CN", "r", actor="cli:a")
    store.set("deepseek", "*", "r", "detected", expires_at=T0 + timedelta(minutes=30), actor="gateway")
    store.clear("openai", "CN", actor="cli:a")
    clock.advance(hours=1)
    store.expire(actor="gateway")
    assert kinds(engine) == ["cutoff.set", "cutoff.detected", "cutoff.clear", "cutoff.expired"]
    result = AuditLog(engine).verify()
    assert result.ok and result.checked == 4


async def test_async_wrappers(store: CutoffStore) -> None:
    await store.aset("openai", "CN", "r", "detected", actor="gateway")
    assert [c.target for c in await store.aactive()] == ["openai:CN"]
    assert await store.aversion() == 1
    probed = await store.arecord_probe("openai", "CN", True)
    assert probed is not None and probed.probe_successes == 1
    assert await store.aexpire() == []
    assert await store.aclear("openai", "CN", actor="gateway") is True


@pytest.mark.parametrize(
    ("text", "expected"), [(None, "*"), ("", "*"), (" eu ", "EU"), ("us-east-1", "US-EAST-1"), ("*", "*")]
)
def test_normalize_region(text: str | None, expected: str) -> None:
    assert normalize_region(text) == expected
