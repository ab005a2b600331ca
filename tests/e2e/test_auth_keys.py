"""Virtual keys end to end: ``auth.mode: keys`` with a config (env var) key and a database key,
revocation within the lookup cache TTL, route allow-lists, ``/v1/models``; and ``auth.mode: open``.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import openai
import pytest

from relaygate.ledger import KeyStore, open_database
from relaygate.sim import SimHandle
from tests.e2e.harness import RunningGateway, run_gateway

ACME_KEY = "acme-" + "k" * 30
MSG: Any = [{"role": "user", "content": "hi"}]
TENANTS = """
tenants:
  acme: {region: EU, keys: [{key_env: ACME_KEY}], allowed_routes: [chat]}
"""
REVOKE_TTL_S = 5.0  # KeyStore's default positive cache TTL


@dataclass
class KeysGateway:
    gw: RunningGateway
    http: httpx.Client
    sdk: Callable[..., openai.OpenAI]
    keys: KeyStore  # the same database, opened by the test as `relaygate keys` would
    globex_key: str
    globex_key_id: str

    def client(self, key: str) -> openai.OpenAI:
        return self.sdk(self.gw.base_url, key)

    def rows(self) -> list[Any]:
        self.gw.flush_ledger()
        return list(reversed(self.gw.gateway.ledger._sink.list_usage(1000)))


@pytest.fixture
def keys_gw(
    monkeypatch: pytest.MonkeyPatch,
    e2e_config: Callable[..., str],
    e2e_db_url: str,
    e2e_http: httpx.Client,
    e2e_openai: Callable[..., openai.OpenAI],
) -> Iterator[KeysGateway]:
    monkeypatch.setenv("ACME_KEY", ACME_KEY)
    engine = open_database(e2e_db_url)
    try:
        store = KeyStore(engine)
        key_id, key = store.create_key("globex", "US")
        with run_gateway(e2e_config(auth="keys", extra=TENANTS), storage_url=e2e_db_url) as gw:
            yield KeysGateway(gw, e2e_http, e2e_openai, store, key, key_id)
    finally:
        engine.dispose()


def _assert_error(resp: httpx.Response, status: int, type_: str, code: str | None) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    err = resp.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert (err["type"], err["code"]) == (type_, code), err
    return err


def test_missing_key_is_401(keys_gw: KeysGateway, e2e_sim: SimHandle) -> None:
    resp = keys_gw.http.post(
        keys_gw.gw.base_url + "/chat/completions", json={"model": "chat", "messages": MSG}
    )
    _assert_error(resp, 401, "authentication_error", "missing_api_key")
    # a non-Bearer scheme is no key either
    resp = keys_gw.http.post(
        keys_gw.gw.base_url + "/chat/completions",
        json={"model": "chat", "messages": MSG},
        headers={"authorization": f"Basic {ACME_KEY}"},
    )
    _assert_error(resp, 401, "authentication_error", "missing_api_key")
    with pytest.raises(openai.AuthenticationError) as info:
        keys_gw.client("unused").chat.completions.create(
            model="chat", messages=MSG, extra_headers={"Authorization": openai.Omit()}
        )
    assert (info.value.status_code, info.value.code) == (401, "missing_api_key")
    assert e2e_sim.stats()["total"] == 0
    rows = keys_gw.rows()
    assert [(r.status, r.tenant) for r in rows] == [(401, None)] * 3


@pytest.mark.parametrize(
    "key",
    ["sk-not-a-relaygate-key", "rg-" + "x" * 43, ACME_KEY + "x", ""],
    ids=["foreign", "unknown_rg", "near_miss", "empty"],
)
def test_unknown_key_is_401(keys_gw: KeysGateway, e2e_sim: SimHandle, key: str) -> None:
    with pytest.raises(openai.AuthenticationError) as info:
        keys_gw.client(key).chat.completions.create(model="chat", messages=MSG)
    assert info.value.status_code == 401
    assert info.value.type == "authentication_error"
    if key:
        assert key not in info.value.message  # never echo a whole key back
    assert e2e_sim.stats()["total"] == 0
    assert [r.status for r in keys_gw.rows()] == [401]


def test_config_env_key_serves_tenant_acme(keys_gw: KeysGateway, e2e_sim: SimHandle) -> None:
    out = keys_gw.client(ACME_KEY).chat.completions.create(model="chat", messages=MSG)
    assert out.choices[0].message.content == "hello there"
    (row,) = keys_gw.rows()
    assert (row.tenant, row.status, row.route, row.served_deployment) == ("acme", 200, "chat", "up/m1")
    assert row.key_id and ACME_KEY not in row.key_id
    assert e2e_sim.stats()["total"] == 1
    # the key is not forwarded upstream
    assert ACME_KEY not in str(e2e_sim.requests()[-1]["headers"])


def test_database_key_serves_its_tenant(keys_gw: KeysGateway, e2e_sim: SimHandle) -> None:
    out = keys_gw.client(keys_gw.globex_key).chat.completions.create(model="second", messages=MSG)
    assert out.choices[0].message.content == "second deployment"
    (row,) = keys_gw.rows()
    assert (row.tenant, row.key_id, row.status) == ("globex", keys_gw.globex_key_id, 200)
    assert keys_gw.globex_key not in str(e2e_sim.requests()[-1]["headers"])


def test_key_created_while_running_works_at_once(keys_gw: KeysGateway) -> None:
    _, fresh = keys_gw.keys.create_key("initech", "EU")
    out = keys_gw.client(fresh).chat.completions.create(model="chat", messages=MSG)
    assert out.choices[0].message.content == "hello there"
    assert keys_gw.rows()[-1].tenant == "initech"


def test_revoked_key_is_rejected_within_the_cache_ttl(keys_gw: KeysGateway) -> None:
    client = keys_gw.client(keys_gw.globex_key)
    client.chat.completions.create(model="chat", messages=MSG)  # now cached by the gateway
    assert keys_gw.keys.revoke(keys_gw.globex_key_id)
    revoked_at = time.monotonic()
    while True:
        try:
            client.chat.completions.create(model="chat", messages=MSG)
        except openai.AuthenticationError:
            break
        assert time.monotonic() - revoked_at < REVOKE_TTL_S + 2, "revoked key still accepted after the TTL"
        time.sleep(0.2)
    # and it stays rejected
    with pytest.raises(openai.AuthenticationError):
        client.chat.completions.create(model="chat", messages=MSG)
    statuses = [r.status for r in keys_gw.rows()]
    assert statuses[0] == 200 and statuses[-2:] == [401, 401]


def test_route_outside_allow_list_is_403(keys_gw: KeysGateway, e2e_sim: SimHandle) -> None:
    with pytest.raises(openai.PermissionDeniedError) as info:
        keys_gw.client(ACME_KEY).chat.completions.create(model="second", messages=MSG)
    err = info.value
    assert err.status_code == 403
    assert (err.type, err.code, err.param) == ("permission_denied", "model_not_allowed", "model")
    assert e2e_sim.stats()["total"] == 0
    (row,) = keys_gw.rows()
    assert (row.tenant, row.status, row.route) == ("acme", 403, "second")
    # unknown routes stay 404 for a restricted tenant too
    with pytest.raises(openai.NotFoundError):
        keys_gw.client(ACME_KEY).chat.completions.create(model="no-such", messages=MSG)


def test_models_lists_only_the_allowed_routes(keys_gw: KeysGateway) -> None:
    acme = [m.id for m in keys_gw.client(ACME_KEY).models.list()]
    assert acme == ["chat"]
    globex = [m.id for m in keys_gw.client(keys_gw.globex_key).models.list()]
    assert globex == ["chat", "second", "bad", "down", "failover"]
    with pytest.raises(openai.AuthenticationError):
        keys_gw.client("sk-nope").models.list()
    resp = keys_gw.http.get(keys_gw.gw.base_url + "/models")
    _assert_error(resp, 401, "authentication_error", "missing_api_key")


# --- open mode ------------------------------------------------------------------------------


@pytest.fixture
def open_gw(e2e_config: Callable[..., str], e2e_db_url: str) -> Iterator[RunningGateway]:
    with run_gateway(e2e_config(auth="open"), storage_url=e2e_db_url) as gw:
        yield gw


@pytest.mark.parametrize(
    "key",
    ["placeholder", "sk-anything", "rg-" + secrets.token_urlsafe(32), None],
    ids=["placeholder", "sk", "unknown_rg", "no_header"],
)
def test_open_mode_serves_any_key_as_default(
    open_gw: RunningGateway,
    e2e_openai: Callable[..., openai.OpenAI],
    e2e_http: httpx.Client,
    e2e_sim: SimHandle,
    key: str | None,
) -> None:
    if key is None:
        resp = e2e_http.post(open_gw.base_url + "/chat/completions", json={"model": "chat", "messages": MSG})
        assert resp.status_code == 200, resp.text
        assert "authorization" not in resp.request.headers
        assert resp.json()["choices"][0]["message"]["content"] == "hello there"
        models = e2e_http.get(open_gw.base_url + "/models").json()
    else:
        out = e2e_openai(open_gw.base_url, key).chat.completions.create(model="chat", messages=MSG)
        assert out.choices[0].message.content == "hello there"
        models = e2e_http.get(open_gw.base_url + "/models", headers={"authorization": f"Bearer {key}"}).json()
    assert [m["id"] for m in models["data"]] == ["chat", "second", "bad", "down", "failover"]
    open_gw.flush_ledger()
    (row,) = open_gw.gateway.ledger._sink.list_usage(10)
    assert (row.tenant, row.key_id, row.status) == ("default", None, 200)
    assert e2e_sim.stats()["total"] == 1


def test_open_mode_still_maps_a_known_key_to_its_tenant(
    monkeypatch: pytest.MonkeyPatch,
    e2e_config: Callable[..., str],
    e2e_db_url: str,
    e2e_openai: Callable[..., openai.OpenAI],
) -> None:
    monkeypatch.setenv("ACME_KEY", ACME_KEY)
    with run_gateway(e2e_config(auth="open", extra=TENANTS), storage_url=e2e_db_url) as gw:
        e2e_openai(gw.base_url, ACME_KEY).chat.completions.create(model="chat", messages=MSG)
        with pytest.raises(openai.PermissionDeniedError):  # acme's allow-list still applies
            e2e_openai(gw.base_url, ACME_KEY).chat.completions.create(model="second", messages=MSG)
        e2e_openai(gw.base_url, "placeholder").chat.completions.create(model="second", messages=MSG)
        gw.flush_ledger()
        rows = list(reversed(gw.gateway.ledger._sink.list_usage(10)))
    assert [(r.tenant, r.status) for r in rows] == [("acme", 200), ("acme", 403), ("default", 200)]
