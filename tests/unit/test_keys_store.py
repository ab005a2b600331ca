"""KeyStore on SQLite: key format, only the hash at rest, and the lookup cache."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from relaygate.ledger.db import StorageError
from relaygate.ledger.key_store import KeyInfo, KeyStore, hash_key
from relaygate.ledger.migrate import open_database


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class CountingKeyStore(KeyStore):
    """Counts database lookups (cache misses)."""

    fetches = 0

    def _fetch(self, digest: str) -> KeyInfo | None:
        self.fetches += 1
        return super()._fetch(digest)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "relaygate.db"


@pytest.fixture
def engine(db_path: Path) -> Iterator[sa.Engine]:
    eng = open_database(f"sqlite:///{db_path}")
    yield eng
    eng.dispose()


def test_key_format(engine: sa.Engine) -> None:
    key_id, plaintext = KeyStore(engine).create_key("acme")
    assert re.fullmatch(r"key_[0-9a-f]{8}", key_id)
    assert re.fullmatch(r"rg-[A-Za-z0-9_-]{43}", plaintext)
    assert hash_key(plaintext) == hashlib.sha256(plaintext.encode()).hexdigest()


def test_only_the_hash_reaches_the_disk(engine: sa.Engine, db_path: Path) -> None:
    store = KeyStore(engine)
    created = [store.create_key(f"tenant-{i}", "EU") for i in range(3)]
    engine.dispose()  # close connections: the WAL is checkpointed into the main file
    on_disk = b"".join(p.read_bytes() for p in db_path.parent.iterdir() if p.name.startswith(db_path.name))
    for _key_id, plaintext in created:
        assert plaintext.encode() not in on_disk
        assert plaintext[8:].encode() not in on_disk  # not even the secret part after the display prefix
        assert hash_key(plaintext).encode() in on_disk


@pytest.mark.parametrize("tenant", ["", " acme", "x" * 129])
def test_bad_tenant_names_are_refused(engine: sa.Engine, tenant: str) -> None:
    with pytest.raises(ValueError):
        KeyStore(engine).create_key(tenant)


def test_positive_answers_are_cached_for_the_ttl(engine: sa.Engine) -> None:
    clock = FakeClock()
    reader = CountingKeyStore(engine, ttl_s=5.0, clock=clock)
    admin = KeyStore(engine)
    key_id, plaintext = admin.create_key("acme")
    assert reader.lookup(plaintext) == reader.lookup(plaintext)
    assert reader.fetches == 1
    admin.revoke(key_id)  # another instance (another process): reader learns at TTL expiry
    clock.now += 4.9
    assert reader.lookup(plaintext) is not None
    clock.now += 0.2
    assert reader.lookup(plaintext) is None
    assert reader.fetches == 2


def test_negative_answers_are_cached_briefly(engine: sa.Engine) -> None:
    clock = FakeClock()
    store = CountingKeyStore(engine, negative_ttl_s=1.0, clock=clock)
    unknown = "rg-" + "A" * 43
    assert store.lookup(unknown) is None
    assert store.lookup(unknown) is None
    assert store.fetches == 1
    clock.now += 1.1
    assert store.lookup(unknown) is None
    assert store.fetches == 2


def test_malformed_keys_never_reach_the_database(engine: sa.Engine) -> None:
    store = CountingKeyStore(engine)
    for bad in ["", "sk-abc", "Bearer rg-x", "rg-" + "a" * 300]:
        assert store.lookup(bad) is None
    assert store.fetches == 0


def test_own_revoke_and_create_take_effect_at_once(engine: sa.Engine) -> None:
    store = CountingKeyStore(engine, ttl_s=60.0, negative_ttl_s=60.0, clock=FakeClock())
    key_id, plaintext = store.create_key("acme", "EU")
    assert store.lookup(plaintext) is not None
    assert store.revoke(key_id)
    assert store.lookup(plaintext) is None


def test_cache_is_bounded(engine: sa.Engine) -> None:
    store = KeyStore(engine, max_cached=3, clock=FakeClock())
    for i in range(10):
        store.lookup(f"rg-unknown-{i:040d}")
    assert len(store._cache) <= 3


async def test_alookup_hits_the_cache_without_a_thread(
    engine: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = CountingKeyStore(engine, clock=FakeClock())
    key_id, plaintext = store.create_key("acme", "US")
    first = await store.alookup(plaintext)
    assert first == KeyInfo(key_id, "acme", "US")

    async def no_thread(*_args: object) -> None:
        raise AssertionError("cache hit must not use a worker thread")

    monkeypatch.setattr("relaygate.ledger.key_store.asyncio.to_thread", no_thread)
    assert await store.alookup(plaintext) is first
    assert store.fetches == 1


class FlakyKeyStore(KeyStore):
    """Its database can be switched off."""

    down = False

    def _fetch(self, digest: str) -> KeyInfo | None:
        if self.down:
            raise StorageError("database is locked", transient=True)
        return super()._fetch(digest)


async def test_recently_valid_keys_survive_a_database_outage(engine: sa.Engine) -> None:
    clock = FakeClock()
    store = FlakyKeyStore(engine, ttl_s=5.0, stale_if_error_s=60.0, clock=clock)
    _key_id, plaintext = store.create_key("acme")
    assert store.lookup(plaintext) is not None
    store.down = True
    clock.now += 30
    assert store.lookup(plaintext) is not None
    assert await store.alookup(plaintext) is not None
    with pytest.raises(StorageError):  # never seen: no stale answer to fall back on
        store.lookup("rg-" + "B" * 43)
    clock.now += 40  # 65 s past expiry: too stale
    with pytest.raises(StorageError):
        await store.alookup(plaintext)
