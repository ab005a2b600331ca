"""The admin API (``/admin/*``) end to end: who may call it, keys, cutoffs, the policy dry run,
the OpenAPI description, and tenant isolation of ``GET /v1/usage``.

Chat traffic goes through the official openai SDK (no retries) to ``relaygate sim`` upstreams;
admin calls are plain HTTP.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from relaygate.sim import SimHandle, run_sim_in_thread
from tests.e2e.harness import RunningGateway, run_gateway

ADMIN_KEY = "admin-" + "a" * 30
A_KEY = "tenant-a-" + "a" * 30
B_KEY = "tenant-b-" + "b" * 30
KEY_CACHE_TTL_S = 5.0  # KeyStore's default positive cache TTL
MSG: Any = [{"role": "user", "content": "hello"}]
SCENARIO: dict[str, Any] = {"models": {"eu-m": {"reply": "from the EU"}, "us-m": {"reply": "from the US"}}}
EU_RULE = "eu-personal-only"


@pytest.fixture(scope="module")
def sim() -> Iterator[SimHandle]:
    with run_sim_in_thread(SCENARIO) as handle:
        yield handle


def config(sim_url: str) -> str:
    return f"""
providers:
  eu: {{protocol: openai, base_url: "{sim_url}", jurisdiction: DE, regions: [DE]}}
  us: {{protocol: openai, base_url: "{sim_url}", jurisdiction: US, regions: [US]}}
routes:
  chat:
    deployments:
      - {{provider: eu, model: eu-m}}
      - {{provider: us, model: us-m}}
  second:
    deployments:
      - {{provider: us, model: us-m}}
tenants:
  tenant-a: {{region: EU, keys: [{{key_env: RG_E2E_A_KEY}}]}}
  tenant-b: {{region: US, keys: [{{key_env: RG_E2E_B_KEY}}]}}
policy:
  rules:
    - name: {EU_RULE}
      match: {{tenant_region: [EU], data_class: [personal]}}
      allow_only: "provider.regions.all(r, r in groups.EU)"
    - name: no-us-for-restricted
      match: {{min_data_class: restricted}}
      deny: 'provider.jurisdiction == "US"'
retry: {{max_attempts: 1}}
cutoffs: {{poll_interval_s: 0.1}}
auth: {{mode: keys}}
"""


@dataclass
class Admin:
    gw: RunningGateway
    http: httpx.Client
    sim: SimHandle
    sdk: Callable[..., openai.OpenAI]

    def call(self, method: str, path: str, key: str | None = ADMIN_KEY, **kw: Any) -> httpx.Response:
        headers = {"authorization": f"Bearer {key}".strip()} if key is not None else {}
        return self.http.request(method, self.gw.url + path, headers=headers, **kw)

    def client(self, key: str) -> openai.OpenAI:
        return self.sdk(self.gw.base_url, key, timeout=20)

    def served_by(self, key: str, model: str = "chat") -> str:
        raw = self.client(key).chat.completions.with_raw_response.create(model=model, messages=MSG)
        return raw.headers["x-relaygate-deployment"]

    def audit_kinds(self, prefix: str) -> list[str]:
        return [e["kind"] for e in self.call("GET", f"/admin/audit?kind={prefix}").json()["data"]]


@pytest.fixture
def admin(
    sim: SimHandle,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    e2e_http: httpx.Client,
    e2e_openai: Callable[..., openai.OpenAI],
) -> Iterator[Admin]:
    monkeypatch.setenv("RELAYGATE_ADMIN_KEY", ADMIN_KEY)
    monkeypatch.setenv("RG_E2E_A_KEY", A_KEY)
    monkeypatch.setenv("RG_E2E_B_KEY", B_KEY)
    sim.set_scenario(SCENARIO)
    sim.reset()
    with run_gateway(config(sim.url), storage_url=f"sqlite:///{tmp_path}/t.db") as gw:
        yield Admin(gw, e2e_http, sim, e2e_openai)


# Every admin endpoint, with a body that would be valid for the admin key.
ENDPOINTS: list[tuple[str, str, dict[str, Any] | None]] = [
    ("GET", "/admin/tenants", None),
    ("PUT", "/admin/tenants/intruder", {"region": "US"}),
    ("GET", "/admin/keys", None),
    ("POST", "/admin/keys", {"tenant": "intruder"}),
    ("DELETE", "/admin/keys/key_00000000", None),
    ("POST", "/admin/keys/key_00000000/rotate", None),
    ("GET", "/admin/cutoffs", None),
    ("POST", "/admin/cutoffs", {"provider": "us", "region": "EU", "reason": "x"}),
    ("DELETE", "/admin/cutoffs/us/EU", None),
    ("POST", "/admin/policy/explain", {"tenant": "tenant-a", "request": {"model": "chat", "messages": MSG}}),
    ("POST", "/admin/reload", None),
    ("GET", "/admin/audit", None),
]
ENDPOINT_IDS = [f"{m} {p}" for m, p, _ in ENDPOINTS]


# --- who may call it -----------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "path", "body"), ENDPOINTS, ids=ENDPOINT_IDS)
def test_admin_endpoints_refuse_missing_wrong_and_virtual_keys(
    admin: Admin, method: str, path: str, body: dict[str, Any] | None
) -> None:
    db_key = admin.call("POST", "/admin/keys", json={"tenant": "dbco", "region": "US"}).json()["key"]
    before = admin.audit_kinds("")
    for key, status, code in [
        (None, 401, "missing_api_key"),
        ("", 401, "missing_api_key"),
        ("admin-" + "z" * 30, 401, None),
        (ADMIN_KEY + "x", 401, None),
        (A_KEY, 403, "admin_key_required"),  # a tenant's virtual key declared in the config
        (db_key, 403, "admin_key_required"),  # a tenant's virtual key created in the database
    ]:
        resp = admin.call(method, path, key=key, json=body)
        assert resp.status_code == status, (key, resp.text)
        err = resp.json()["error"]
        assert set(err) == {"message", "type", "param", "code"}
        if code is not None:
            assert err["code"] == code
        assert ADMIN_KEY not in resp.text
    # nothing was done: no new audit events, no cutoff, no new tenant
    assert admin.audit_kinds("") == before
    assert admin.gw.gateway.cutoffs.view.cutoffs == ()
    names = {t["name"] for t in admin.call("GET", "/admin/tenants").json()["data"]}
    assert "intruder" not in names
    assert admin.sim.stats()["total"] == 0


def test_admin_api_is_disabled_without_an_admin_key(admin: Admin, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RELAYGATE_ADMIN_KEY")
    resp = admin.call("GET", "/admin/tenants")
    assert resp.status_code == 403
    assert resp.json()["error"]["code"] == "admin_disabled"
    assert "RELAYGATE_ADMIN_KEY" in resp.json()["error"]["message"]
    assert admin.call("GET", "/admin/tenants", key="").status_code == 403


def test_virtual_keys_cannot_use_the_admin_key_for_chat(admin: Admin) -> None:
    """The admin key is not a virtual key: it does not authenticate chat requests."""
    with pytest.raises(openai.AuthenticationError):
        admin.client(ADMIN_KEY).chat.completions.create(model="chat", messages=MSG)
    assert admin.sim.stats()["total"] == 0


def test_openapi_schema_is_served(admin: Admin) -> None:
    resp = admin.call("GET", "/admin/openapi.json", key=None)
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("application/json")
    doc = resp.json()
    assert doc["openapi"].startswith("3.") and doc["info"]["title"]
    paths = doc["paths"]
    for path in ("/admin/keys", "/admin/cutoffs", "/admin/policy/explain", "/admin/reload", "/admin/audit"):
        assert path in paths, sorted(paths)
    assert "post" in paths["/admin/keys"] and "get" in paths["/admin/keys"]
    assert "/admin/keys/{key_id}/rotate" in paths
    assert all(p.startswith("/admin/") for p in paths)  # the schema is the admin API's only


# --- keys --------------------------------------------------------------------------------------


def _wait_rejected(admin: Admin, key: str, within_s: float) -> float:
    t0 = time.monotonic()
    while True:
        try:
            admin.client(key).chat.completions.create(model="chat", messages=MSG)
        except openai.AuthenticationError:
            return time.monotonic() - t0
        assert time.monotonic() - t0 < within_s, "old key still accepted"
        time.sleep(0.1)


def test_key_create_use_rotate_revoke(admin: Admin) -> None:
    created = admin.call("POST", "/admin/keys", json={"tenant": "newco", "region": "EU"})
    assert created.status_code == 201, created.text
    body = created.json()
    key, key_id = body["key"], body["key_id"]
    assert body["tenant"] == "newco" and body["region"] == "EU" and key.startswith("rg-")

    out = admin.client(key).chat.completions.create(model="chat", messages=MSG)
    assert out.choices[0].message.content == "from the EU"
    row = admin.gw.ledger_rows(1)[0]
    assert (row.tenant, row.key_id, row.tenant_region) == ("newco", key_id, "EU")

    # the key's region makes it an EU tenant for policy too
    raw = admin.client(key).chat.completions.with_raw_response.create(
        model="chat", messages=MSG, extra_headers={"x-relaygate-data-class": "personal"}
    )
    assert raw.headers["x-relaygate-policy"] == f"excluded=1;rules={EU_RULE}"

    listed = admin.call("GET", "/admin/keys?tenant=newco").json()["data"]
    assert [(k["key_id"], k["revoked_at"]) for k in listed] == [(key_id, None)]
    assert key not in admin.call("GET", "/admin/keys").text  # never the secret again
    assert {"name": "newco", "region": "EU", "source": "database"}.items() <= next(
        t for t in admin.call("GET", "/admin/tenants").json()["data"] if t["name"] == "newco"
    ).items()

    rotated = admin.call("POST", f"/admin/keys/{key_id}/rotate")
    assert rotated.status_code == 201, rotated.text
    new_key, new_id = rotated.json()["key"], rotated.json()["key_id"]
    assert rotated.json()["replaces"] == key_id and new_id != key_id and new_key != key
    assert _wait_rejected(admin, key, within_s=KEY_CACHE_TTL_S + 1) <= KEY_CACHE_TTL_S + 1
    assert admin.client(new_key).chat.completions.create(model="chat", messages=MSG).choices
    assert admin.call("POST", f"/admin/keys/{key_id}/rotate").status_code == 404  # already revoked

    revoked = admin.call("DELETE", f"/admin/keys/{new_id}")
    assert revoked.status_code == 200 and revoked.json() == {"key_id": new_id, "revoked": True}
    _wait_rejected(admin, new_key, within_s=KEY_CACHE_TTL_S + 1)
    again = admin.call("DELETE", f"/admin/keys/{new_id}")
    assert again.status_code == 404 and again.json()["error"]["code"] == "key_not_found"

    listed = admin.call("GET", "/admin/keys?tenant=newco").json()["data"]
    assert {k["key_id"] for k in listed} == {key_id, new_id}
    assert all(k["revoked_at"] for k in listed)
    assert admin.audit_kinds("key.") == ["key.create", "key.create", "key.revoke", "key.revoke"]
    events = admin.call("GET", "/admin/audit?kind=key.").json()["data"]
    assert all(e["actor"] == "admin-api" for e in events)
    assert key not in str(events) and new_key not in str(events)
    assert admin.call("GET", "/admin/audit?verify=1").json()["ok"] is True


@pytest.mark.parametrize(
    "body",
    [{}, {"tenant": ""}, {"tenant": "x", "colour": "red"}, {"tenant": 5}],
    ids=["missing", "empty", "unknown-field", "not-a-string"],
)
def test_key_create_rejects_bad_bodies(admin: Admin, body: dict[str, Any]) -> None:
    resp = admin.call("POST", "/admin/keys", json=body)
    assert resp.status_code == 400
    assert resp.json()["error"]["type"] == "invalid_request_error"
    assert admin.audit_kinds("key.") == []


# --- cutoffs ------------------------------------------------------------------------------------


def test_cutoff_set_and_clear_through_the_api(admin: Admin) -> None:
    assert admin.served_by(A_KEY) == "eu/eu-m"
    made = admin.call("POST", "/admin/cutoffs", json={"provider": "eu", "region": "eu", "reason": "audit"})
    assert made.status_code == 201, made.text
    assert (made.json()["provider"], made.json()["region"], made.json()["source"]) == ("eu", "EU", "operator")
    # applies at once, to the EU tenant only
    raw = admin.client(A_KEY).chat.completions.with_raw_response.create(model="chat", messages=MSG)
    assert raw.headers["x-relaygate-deployment"] == "us/us-m"
    assert raw.headers["x-relaygate-policy"] == "excluded=1;cutoffs=1"
    assert admin.call("GET", "/admin/cutoffs").json()["data"][0]["reason"] == "audit"

    cleared = admin.call("DELETE", "/admin/cutoffs/eu/EU")
    assert cleared.status_code == 200 and cleared.json()["cleared"] is True
    assert admin.served_by(A_KEY) == "eu/eu-m"
    assert admin.call("GET", "/admin/cutoffs").json()["data"] == []
    missing = admin.call("DELETE", "/admin/cutoffs/eu/EU")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "cutoff_not_found"
    assert admin.audit_kinds("cutoff.") == ["cutoff.set", "cutoff.clear"]


def test_cutoff_with_expiry_lifts_itself(admin: Admin) -> None:
    made = admin.call(
        "POST",
        "/admin/cutoffs",
        json={"provider": "eu", "region": "EU", "reason": "brief", "expires_in_s": 0.5},
    )
    assert made.status_code == 201 and made.json()["expires_at"]
    assert admin.served_by(A_KEY) == "us/us-m"
    deadline = time.monotonic() + 3
    while admin.served_by(A_KEY) != "eu/eu-m":
        assert time.monotonic() < deadline, "the cutoff did not expire"
        time.sleep(0.1)
    assert admin.audit_kinds("cutoff.") == ["cutoff.set", "cutoff.expired"]


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"provider": "nope", "region": "EU", "reason": "x"}, 404),
        ({"provider": "eu", "region": "EU"}, 400),
        ({"provider": "eu", "region": "EU", "reason": "x", "expires_in_s": -1}, 400),
        ({"provider": "eu", "region": "Narnia", "reason": "x"}, 400),
        ({"provider": "eu", "region": "XX", "reason": "x"}, 400),
        ({"provider": "eu", "region": "EU", "reason": "x", "expires_in": "soon"}, 400),
        ({"provider": "eu", "region": "EU", "reason": "x", "expires_in": "0h"}, 400),
        ({"provider": "eu", "region": "EU", "reason": "x", "expires_at": "2020-01-01T00:00:00Z"}, 400),
        ({"provider": "eu", "region": "EU", "reason": "x", "expires_at": "2999-01-01T00:00:00"}, 400),
        ({"provider": "eu", "region": "EU", "reason": "x", "expires_at": "tomorrow"}, 400),
        (
            {"provider": "eu", "reason": "x", "expires_in": "2h", "expires_at": "2999-01-01T00:00:00Z"},
            400,
        ),
    ],
    ids=[
        "unknown-provider",
        "no-reason",
        "negative-expiry",
        "made-up-region",
        "unassigned-region",
        "bad-duration",
        "zero-duration",
        "expiry-in-the-past",
        "expiry-without-offset",
        "expiry-not-a-time",
        "two-expiries",
    ],
)
def test_cutoff_set_rejects_bad_input(admin: Admin, body: dict[str, Any], status: int) -> None:
    resp = admin.call("POST", "/admin/cutoffs", json=body)
    assert resp.status_code == status
    assert admin.call("GET", "/admin/cutoffs").json()["data"] == []


# --- policy dry run -----------------------------------------------------------------------------


def explain(admin: Admin, **body: Any) -> httpx.Response:
    body.setdefault("request", {"model": "chat", "messages": MSG})
    return admin.call("POST", "/admin/policy/explain", json=body)


def test_explain_reports_allowed_and_excluded_with_reasons_and_sends_nothing(admin: Admin) -> None:
    resp = explain(admin, tenant="tenant-a", data_class="personal")
    assert resp.status_code == 200, resp.text
    d = resp.json()
    assert d["allowed"] == ["eu/eu-m"] and d["order"] == ["eu/eu-m"]
    assert (d["route"], d["region"], d["data_class"], d["data_class_source"]) == (
        "chat",
        "EU",
        "personal",
        "header",
    )
    (ex,) = d["excluded"]
    assert (ex["deployment"], ex["code"], ex["rule"], ex["rule_index"]) == (
        "us/us-m",
        "policy_allow_only",
        EU_RULE,
        0,
    )
    assert "us" in ex["message"]
    assert d["reason_code"] == f"excluded=1;rules={EU_RULE}"

    # internal data: both allowed, in route order
    d = explain(admin, tenant="tenant-a", data_class="internal").json()
    assert d["allowed"] == ["eu/eu-m", "us/us-m"] and d["excluded"] == []

    # a region given explicitly overrides the tenant's
    d = explain(admin, tenant="tenant-a", region="US", data_class="personal").json()
    assert d["allowed"] == ["eu/eu-m", "us/us-m"] and d["region"] == "US"

    # PII in the request body raises the class, and the decision says so
    pii = {"model": "chat", "messages": [{"role": "user", "content": "write to jane.doe@example.com"}]}
    d = explain(admin, tenant="tenant-a", request=pii).json()
    assert (d["data_class"], d["data_class_source"], d["pii_entities"]) == (
        "personal",
        "pii",
        ["EMAIL_ADDRESS"],
    )
    assert d["allowed"] == ["eu/eu-m"]
    assert "jane.doe" not in str(d)

    # cutoffs are part of the decision
    admin.call("POST", "/admin/cutoffs", json={"provider": "eu", "region": "EU", "reason": "x"})
    d = explain(admin, tenant="tenant-a", data_class="internal").json()
    assert d["allowed"] == ["us/us-m"]
    assert [(e["deployment"], e["code"]) for e in d["excluded"]] == [("eu/eu-m", "cutoff")]

    # a dry run: nothing reached the upstreams, nothing in the ledger
    assert admin.sim.stats()["total"] == 0
    admin.gw.flush_ledger()
    assert admin.gw.gateway.ledger._sink.count_usage() == 0


def test_explain_when_policy_allows_nothing(admin: Admin) -> None:
    resp = explain(
        admin, tenant="tenant-b", data_class="restricted", request={"model": "second", "messages": MSG}
    )
    assert resp.status_code == 200
    d = resp.json()
    assert d["allowed"] == []
    assert "no-us-for-restricted" in d["denied"]
    # and the real request is refused the same way, without reaching the upstream
    with pytest.raises(openai.PermissionDeniedError) as exc:
        admin.client(B_KEY).chat.completions.create(
            model="second", messages=MSG, extra_headers={"x-relaygate-data-class": "restricted"}
        )
    assert exc.value.response.json()["error"]["code"] == "policy_denied"
    assert "no-us-for-restricted" in exc.value.response.json()["error"]["message"]
    assert admin.sim.stats()["total"] == 0


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"tenant": "tenant-a", "request": {"model": "nope", "messages": MSG}}, 404),
        ({"tenant": "tenant-a", "request": {"messages": MSG}}, 400),
        ({"tenant": "tenant-a"}, 400),
        ({"tenant": "tenant-a", "data_class": "secret", "request": {"model": "chat", "messages": MSG}}, 400),
    ],
    ids=["unknown-route", "no-model", "no-request", "bad-class"],
)
def test_explain_rejects_bad_input(admin: Admin, body: dict[str, Any], status: int) -> None:
    resp = admin.call("POST", "/admin/policy/explain", json=body)
    assert resp.status_code == status, resp.text
    assert set(resp.json()["error"]) == {"message", "type", "param", "code"}
    assert admin.sim.stats()["total"] == 0


# --- tenant isolation ---------------------------------------------------------------------------


def test_a_tenant_key_reads_only_its_own_usage(admin: Admin) -> None:
    a, b = admin.client(A_KEY), admin.client(B_KEY)
    for _ in range(2):
        a.chat.completions.create(model="chat", messages=MSG)
    for _ in range(3):
        b.chat.completions.create(model="chat", messages=MSG)
    b.chat.completions.create(model="second", messages=MSG)
    admin.gw.ledger_rows(6)

    def usage(key: str) -> dict[str, Any]:
        resp = admin.http.get(
            admin.gw.base_url + "/usage?since=1h", headers={"authorization": f"Bearer {key}"}
        )
        assert resp.status_code == 200, resp.text
        return dict(resp.json())

    ua = usage(A_KEY)
    assert ua["tenant"] == "tenant-a"
    assert [(r["key"], r["requests"]) for r in ua["data"]] == [("chat", 2)]
    ub = usage(B_KEY)
    assert ub["tenant"] == "tenant-b"
    assert sorted((r["key"], r["requests"]) for r in ub["data"]) == [("chat", 3), ("second", 1)]

    # no query parameter widens it to another tenant
    for query in ("?tenant=tenant-b", "?since=1h&tenant=tenant-b&by=route", "?by=deployment&tenant=tenant-b"):
        resp = admin.http.get(
            admin.gw.base_url + "/usage" + query, headers={"authorization": f"Bearer {A_KEY}"}
        )
        assert resp.status_code == 200
        assert sum(r["requests"] for r in resp.json()["data"]) == 2
    # without a key there is no usage at all
    assert admin.http.get(admin.gw.base_url + "/usage").status_code == 401
    # and a tenant key cannot reach other tenants' data through the admin API either
    for key in (A_KEY, db_key_of(admin, "tenant-a")):
        for path in ("/admin/keys", "/admin/tenants", "/admin/audit", "/admin/keys?tenant=tenant-b"):
            resp = admin.call("GET", path, key=key)
            assert resp.status_code == 403, resp.text
            assert resp.json()["error"]["code"] == "admin_key_required"
            assert "tenant-b" not in resp.text


def db_key_of(admin: Admin, tenant: str) -> str:
    resp = admin.call("POST", "/admin/keys", json={"tenant": tenant})
    assert resp.status_code == 201
    return str(resp.json()["key"])


def test_tenant_upsert_sets_and_moves_the_region_with_an_audit_trail(admin: Admin) -> None:
    made = admin.call("PUT", "/admin/tenants/globex", json={"region": "de"})
    assert made.status_code == 200, made.text
    assert made.json()["region"] == "DE" and made.json()["note"] is None
    key = admin.call("POST", "/admin/keys", json={"tenant": "globex"}).json()["key"]
    plan = admin.gw.call(admin.gw.gateway.runtime.auth.authenticate(f"Bearer {key}"))
    assert plan.region == "DE"
    moved = admin.call("PUT", "/admin/tenants/globex", json={"region": "US"})
    assert moved.json()["region"] == "US"
    assert admin.gw.call(admin.gw.gateway.runtime.auth.authenticate(f"Bearer {key}")).region == "US"
    events = admin.call("GET", "/admin/audit?kind=tenant.").json()["data"]
    assert [e["details"].get("region_changed_from") for e in events] == [None, "DE"]
    bad = admin.call("PUT", "/admin/tenants/globex", json={"region": "Europe"})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "region"


def test_cutoff_expiry_as_a_duration_or_an_rfc3339_time(admin: Admin) -> None:
    """``expires_in`` as the CLI's --expires, ``expires_at`` as RFC 3339 with an offset."""
    t0 = datetime.now(UTC)
    made = admin.call(
        "POST", "/admin/cutoffs", json={"provider": "eu", "region": "cn", "reason": "r", "expires_in": "2h"}
    )
    assert made.status_code == 201, made.text
    expires = datetime.fromisoformat(made.json()["expires_at"])
    assert timedelta(minutes=119) < expires - t0 <= timedelta(hours=2, seconds=5)
    assert made.json()["region"] == "CN"

    at = "2999-01-02T03:04:05+02:00"
    made = admin.call("POST", "/admin/cutoffs", json={"provider": "us", "reason": "r", "expires_at": at})
    assert made.status_code == 201, made.text
    assert made.json()["region"] == "*"
    assert datetime.fromisoformat(made.json()["expires_at"]) == datetime.fromisoformat(at)
    listed = {c["provider"]: c for c in admin.call("GET", "/admin/cutoffs").json()["data"]}
    assert set(listed) == {"eu", "us"} and all(c["expires_at"] for c in listed.values())


def test_bad_region_error_names_the_field_and_the_rule(admin: Admin) -> None:
    resp = admin.call("POST", "/admin/cutoffs", json={"provider": "simus", "region": "Narnia", "reason": "x"})
    assert resp.status_code == 400
    err = resp.json()["error"]
    assert err["param"] == "region" and "ISO 3166-1 alpha-2" in err["message"]
    assert not err["message"].startswith("region: Value error")
    key = admin.call("POST", "/admin/keys", json={"tenant": "newco", "region": "Mars"})
    assert key.status_code == 400 and key.json()["error"]["param"] == "region"
    tenant = admin.call("PUT", "/admin/tenants/newco", json={"region": "Mars"})
    assert tenant.status_code == 400
    assert admin.audit_kinds("key.") == [] and admin.audit_kinds("tenant.") == []


def test_openapi_describes_every_request_body(admin: Admin) -> None:
    paths = admin.call("GET", "/admin/openapi.json", key=None).json()["paths"]

    def body(path: str, method: str) -> dict[str, Any]:
        schema: dict[str, Any] = paths[path][method]["requestBody"]["content"]["application/json"]["schema"]
        return schema

    cutoff = body("/admin/cutoffs", "post")
    assert set(cutoff["required"]) == {"provider", "reason"}
    assert {"provider", "region", "reason", "expires_in", "expires_at", "expires_in_s"} <= set(
        cutoff["properties"]
    )
    assert cutoff["additionalProperties"] is False
    assert body("/admin/keys", "post")["required"] == ["tenant"]
    assert "region" in body("/admin/tenants/{name}", "put")["properties"]
    assert "request" in body("/admin/policy/explain", "post")["required"]
