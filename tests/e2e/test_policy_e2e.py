"""Jurisdiction policy end to end: the real gateway, the official openai SDK (no retries) and
``relaygate sim`` upstreams.

Three providers share one simulator but each serves its own upstream model name, so the sim's
per-model counters say exactly which provider a request reached:

- ``eu`` (jurisdiction FR, inference in DE/FR) serves ``eu-m``;
- ``us`` (jurisdiction US, inference in US) serves ``us-m``;
- ``cn`` (jurisdiction CN, inference in CN) serves ``cn-m``;
- ``mystery`` declares no facts at all (serves ``mystery-m``): policy must fail closed on it.

Rules: EU tenants' ``personal`` data may only go to providers whose every inference region is in
the EU; CN tenants may not use US-jurisdiction providers.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from relaygate.sim import SimHandle, run_sim_in_thread
from tests.e2e.harness import RunningGateway, run_gateway

EU_KEY = "eu-tenant-" + "e" * 30
CN_KEY = "cn-tenant-" + "c" * 30
US_KEY = "us-tenant-" + "u" * 30
MSG: Any = [{"role": "user", "content": "summarise our meeting notes"}]
PERSONAL = {"x-relaygate-data-class": "personal"}
INTERNAL = {"x-relaygate-data-class": "internal"}
EU_RULE = "eu-personal-only"
CN_RULE = "cn-no-us-jurisdiction"
HEALTHY: dict[str, Any] = {
    "eu-m": {"reply": "served in the EU"},
    "us-m": {"reply": "served in the US"},
    "cn-m": {"reply": "served in CN"},
    "mystery-m": {"reply": "served by a provider with no facts"},
}


@pytest.fixture(scope="module")
def sim() -> Iterator[SimHandle]:
    with run_sim_in_thread({"models": HEALTHY}) as handle:
        yield handle


def config(sim_url: str) -> str:
    return f"""
providers:
  eu: {{protocol: openai, base_url: "{sim_url}", jurisdiction: FR, regions: [DE, FR]}}
  us: {{protocol: openai, base_url: "{sim_url}", jurisdiction: US, regions: [US]}}
  cn: {{protocol: openai, base_url: "{sim_url}", jurisdiction: CN, regions: [CN]}}
  mystery: {{protocol: openai, base_url: "{sim_url}"}}
routes:
  chat:
    deployments:
      - {{provider: eu, model: eu-m}}
      - {{provider: us, model: us-m}}
  cnchat:
    deployments:
      - {{provider: us, model: us-m}}
      - {{provider: mystery, model: mystery-m}}
      - {{provider: cn, model: cn-m}}
  usonly:
    deployments:
      - {{provider: us, model: us-m}}
tenants:
  acme-eu: {{region: EU, keys: [{{key_env: RG_E2E_EU_KEY}}]}}
  acme-cn: {{region: CN, keys: [{{key_env: RG_E2E_CN_KEY}}]}}
  acme-us: {{region: US, keys: [{{key_env: RG_E2E_US_KEY}}]}}
policy:
  rules:
    - name: {EU_RULE}
      match: {{tenant_region: [EU], data_class: [personal]}}
      allow_only: "provider.regions.all(r, r in groups.EU)"
    - name: {CN_RULE}
      match: {{tenant_region: [CN]}}
      deny: 'provider.jurisdiction == "US"'
retry: {{max_attempts: 2, backoff_base_ms: 1, backoff_max_ms: 5}}
auth: {{mode: keys}}
"""


@pytest.fixture
def gw(sim: SimHandle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[RunningGateway]:
    monkeypatch.setenv("RG_E2E_EU_KEY", EU_KEY)
    monkeypatch.setenv("RG_E2E_CN_KEY", CN_KEY)
    monkeypatch.setenv("RG_E2E_US_KEY", US_KEY)
    sim.set_scenario({"models": HEALTHY})
    sim.reset()
    with run_gateway(config(sim.url), storage_url=f"sqlite:///{tmp_path}/t.db") as running:
        yield running


@pytest.fixture
def client(gw: RunningGateway, e2e_openai: Callable[..., openai.OpenAI]) -> Callable[[str], openai.OpenAI]:
    return lambda key: e2e_openai(gw.base_url, key, timeout=20)


def count(sim: SimHandle, model: str) -> int:
    return int(sim.stats()["models"].get(model, {}).get("requests", 0))


def failing(sim: SimHandle, model: str, status: int = 503) -> None:
    sim.set_scenario({"models": {**HEALTHY, model: {"error": {"status": status}}}})
    sim.reset()


def db_dump(gw: RunningGateway) -> str:
    """Every row of every table of the gateway's database, as SQL text."""
    gw.flush_ledger()
    assert gw.storage_url is not None
    conn = sqlite3.connect(gw.storage_url.removeprefix("sqlite:///"))
    try:
        return "\n".join(conn.iterdump())
    finally:
        conn.close()


# --- EU personal data stays in the EU ---------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
def test_eu_personal_never_crosses_the_border_when_the_eu_deployment_fails(
    gw: RunningGateway, sim: SimHandle, client: Callable[[str], openai.OpenAI], stream: bool
) -> None:
    failing(sim, "eu-m", 503)
    with pytest.raises(openai.APIStatusError) as exc:
        client(EU_KEY).chat.completions.create(
            model="chat", messages=MSG, extra_headers=PERSONAL, stream=stream
        )
    assert exc.value.status_code == 503
    err = exc.value.response.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    # the message says why the US deployment was not even tried: the rule, by name
    assert "excluded before routing" in err["message"]
    assert "us/us-m" in err["message"] and EU_RULE in err["message"]
    assert exc.value.response.headers["x-relaygate-policy"] == f"excluded=1;rules={EU_RULE}"
    # no silent cross-border call: the US model was never asked
    assert count(sim, "us-m") == 0
    assert count(sim, "eu-m") == 2  # max_attempts 2 on the only allowed deployment
    row = gw.ledger_rows(1)[0]
    assert row.status == 503 and row.served_deployment is None
    assert row.data_class == "personal" and row.tenant == "acme-eu" and row.tenant_region == "EU"
    assert [a.deployment for a in row.attempts] == ["eu/eu-m", "eu/eu-m"]
    assert row.policy is not None and row.policy["allowed"] == ["eu/eu-m"]
    (ex,) = row.policy["excluded"]
    assert (ex["deployment"], ex["code"], ex["rule"]) == ("us/us-m", "policy_allow_only", EU_RULE)


def test_eu_personal_is_served_in_the_eu_with_the_decision_recorded(
    gw: RunningGateway, sim: SimHandle, client: Callable[[str], openai.OpenAI]
) -> None:
    raw = client(EU_KEY).chat.completions.with_raw_response.create(
        model="chat", messages=MSG, extra_headers=PERSONAL
    )
    assert raw.parse().choices[0].message.content == "served in the EU"
    assert raw.headers["x-relaygate-deployment"] == "eu/eu-m"
    assert raw.headers["x-relaygate-attempts"] == "1"
    assert raw.headers["x-relaygate-data-class"] == "personal"
    assert raw.headers["x-relaygate-policy"] == f"excluded=1;rules={EU_RULE}"
    assert count(sim, "us-m") == 0
    row = gw.ledger_rows(1)[0]
    assert row.status == 200 and row.served_deployment == "eu/eu-m"
    assert row.policy == {
        "allowed": ["eu/eu-m"],
        "excluded": [
            {
                "deployment": "us/us-m",
                "code": "policy_allow_only",
                "rule_index": 0,
                "rule": EU_RULE,
                "message": row.policy["excluded"][0]["message"],
            }
        ],
        "reason_code": f"excluded=1;rules={EU_RULE}",
        "data_class_source": "header",
    }
    assert "us" in row.policy["excluded"][0]["message"]


def test_eu_internal_may_fail_over_to_the_us(
    gw: RunningGateway, sim: SimHandle, client: Callable[[str], openai.OpenAI]
) -> None:
    failing(sim, "eu-m", 503)
    raw = client(EU_KEY).chat.completions.with_raw_response.create(
        model="chat", messages=MSG, extra_headers=INTERNAL
    )
    assert raw.parse().choices[0].message.content == "served in the US"
    assert raw.headers["x-relaygate-deployment"] == "us/us-m"
    assert raw.headers["x-relaygate-data-class"] == "internal"
    assert "x-relaygate-policy" not in raw.headers  # the rule is for personal data only
    assert count(sim, "us-m") == 1
    row = gw.ledger_rows(1)[0]
    assert row.data_class == "internal" and row.pii_entities is None
    assert row.policy is not None and row.policy["allowed"] == ["eu/eu-m", "us/us-m"]
    assert row.policy["excluded"] == []


def test_no_header_defaults_to_internal_for_the_eu_tenant(
    gw: RunningGateway, sim: SimHandle, client: Callable[[str], openai.OpenAI]
) -> None:
    failing(sim, "eu-m", 503)
    raw = client(EU_KEY).chat.completions.with_raw_response.create(model="chat", messages=MSG)
    assert raw.headers["x-relaygate-deployment"] == "us/us-m"
    row = gw.ledger_rows(1)[0]
    assert row.data_class == "internal"
    assert row.policy is not None and row.policy["data_class_source"] == "policy"


PII_CASES = [
    pytest.param("Please reply to jane.doe@example.com about the contract.", "EMAIL_ADDRESS", id="email"),
    pytest.param("Refund to IBAN DE89 3704 0044 0532 0130 00 by Friday.", "IBAN_CODE", id="iban"),
]


@pytest.mark.parametrize(("prompt", "entity"), PII_CASES)
def test_pii_raises_the_class_to_personal_and_keeps_it_in_the_eu(
    gw: RunningGateway, sim: SimHandle, client: Callable[[str], openai.OpenAI], prompt: str, entity: str
) -> None:
    msgs: Any = [{"role": "user", "content": prompt}]
    c = client(EU_KEY)
    # with the EU deployment down, the PII prompt (no header) must not go to the US either
    failing(sim, "eu-m", 503)
    with pytest.raises(openai.APIStatusError) as exc:
        c.chat.completions.create(model="chat", messages=msgs)
    assert exc.value.status_code == 503
    assert EU_RULE in exc.value.response.json()["error"]["message"]
    assert exc.value.response.headers["x-relaygate-data-class"] == "personal"
    assert count(sim, "us-m") == 0
    # healthy again: served in the EU, class raised by detection
    sim.set_scenario({"models": HEALTHY})
    raw = c.chat.completions.with_raw_response.create(model="chat", messages=msgs)
    assert raw.headers["x-relaygate-deployment"] == "eu/eu-m"
    assert raw.headers["x-relaygate-data-class"] == "personal"
    assert raw.headers["x-relaygate-policy"] == f"excluded=1;rules={EU_RULE}"
    assert count(sim, "us-m") == 0
    rows = gw.ledger_rows(2)
    assert len(rows) == 2
    for row in rows:
        assert row.data_class == "personal"
        assert row.pii_entities == [entity]
        assert row.policy is not None and row.policy["data_class_source"] == "pii"
    # the entity type is recorded, never the value: not in any table of the database
    dump = db_dump(gw)
    assert entity in dump
    for secret in ("jane.doe@example.com", "DE89 3704", "DE89370400440532013000", "370400440532013000"):
        assert secret not in dump


def test_header_cannot_lower_a_pii_prompt_below_personal_but_restricted_stays(
    gw: RunningGateway, sim: SimHandle, client: Callable[[str], openai.OpenAI]
) -> None:
    msgs: Any = [{"role": "user", "content": "mail jane.doe@example.com"}]
    c = client(EU_KEY)
    raw = c.chat.completions.with_raw_response.create(
        model="chat", messages=msgs, extra_headers={"x-relaygate-data-class": "public"}
    )
    assert raw.headers["x-relaygate-data-class"] == "personal"
    assert raw.headers["x-relaygate-deployment"] == "eu/eu-m"
    raw = c.chat.completions.with_raw_response.create(
        model="chat", messages=msgs, extra_headers={"x-relaygate-data-class": "restricted"}
    )
    assert raw.headers["x-relaygate-data-class"] == "restricted"
    assert count(sim, "us-m") == 0


def test_bad_data_class_header_is_a_clean_400(
    gw: RunningGateway, sim: SimHandle, client: Callable[[str], openai.OpenAI]
) -> None:
    with pytest.raises(openai.BadRequestError) as exc:
        client(EU_KEY).chat.completions.create(
            model="chat", messages=MSG, extra_headers={"x-relaygate-data-class": "secret-ish"}
        )
    err = exc.value.response.json()["error"]
    assert err["param"] == "x-relaygate-data-class" and err["code"] == "invalid_data_class"
    assert sim.stats()["total"] == 0


# --- CN tenants skip US-jurisdiction providers --------------------------------------------------


def test_cn_tenant_skips_the_us_jurisdiction_provider(
    gw: RunningGateway, sim: SimHandle, client: Callable[[str], openai.OpenAI]
) -> None:
    raw = client(CN_KEY).chat.completions.with_raw_response.create(model="cnchat", messages=MSG)
    assert raw.parse().choices[0].message.content == "served in CN"
    assert raw.headers["x-relaygate-deployment"] == "cn/cn-m"
    assert raw.headers["x-relaygate-attempts"] == "1"  # nothing tried and failed first
    # us/us-m by the deny rule; mystery/mystery-m because its jurisdiction is unknown (fail closed)
    assert raw.headers["x-relaygate-policy"] == f"excluded=2;rules={CN_RULE}"
    assert count(sim, "us-m") == 0 and count(sim, "mystery-m") == 0
    row = gw.ledger_rows(1)[0]
    assert row.policy is not None and row.policy["allowed"] == ["cn/cn-m"]
    codes = {e["deployment"]: (e["code"], e["rule"]) for e in row.policy["excluded"]}
    assert codes == {
        "us/us-m": ("policy_deny", CN_RULE),
        "mystery/mystery-m": ("fact_unknown", CN_RULE),
    }


def test_cn_tenant_gets_503_rather_than_the_us_provider_when_cn_fails(
    gw: RunningGateway, sim: SimHandle, client: Callable[[str], openai.OpenAI]
) -> None:
    failing(sim, "cn-m", 500)
    with pytest.raises(openai.APIStatusError) as exc:
        client(CN_KEY).chat.completions.create(model="cnchat", messages=MSG)
    assert exc.value.status_code == 503
    msg = exc.value.response.json()["error"]["message"]
    assert CN_RULE in msg and "us/us-m" in msg
    assert count(sim, "us-m") == 0 and count(sim, "mystery-m") == 0


@pytest.mark.parametrize("key", [EU_KEY, US_KEY], ids=["eu", "us"])
def test_the_cn_rule_does_not_touch_other_regions(
    gw: RunningGateway, sim: SimHandle, client: Callable[[str], openai.OpenAI], key: str
) -> None:
    raw = client(key).chat.completions.with_raw_response.create(model="cnchat", messages=MSG)
    assert raw.headers["x-relaygate-deployment"] == "us/us-m"
    assert "x-relaygate-policy" not in raw.headers
    assert count(sim, "us-m") == 1


def test_policy_that_leaves_nothing_is_a_clean_403_that_reaches_no_upstream(
    gw: RunningGateway, sim: SimHandle, client: Callable[[str], openai.OpenAI]
) -> None:
    with pytest.raises(openai.PermissionDeniedError) as exc:
        client(CN_KEY).chat.completions.create(model="usonly", messages=MSG)
    err = exc.value.response.json()["error"]
    assert err["code"] == "policy_denied" and err["param"] == "model"
    assert CN_RULE in err["message"] and "us/us-m" in err["message"] and "region CN" in err["message"]
    assert exc.value.response.headers["x-relaygate-attempts"] == "0"
    assert sim.stats()["total"] == 0
    row = gw.ledger_rows(1)[0]
    assert (row.status, row.error_code, row.tenant) == (403, "policy_denied", "acme-cn")


def test_policy_denied_response_and_ledger_row_carry_the_decision(
    gw: RunningGateway, sim: SimHandle, client: Callable[[str], openai.OpenAI]
) -> None:
    with pytest.raises(openai.PermissionDeniedError) as exc:
        client(CN_KEY).chat.completions.create(model="usonly", messages=MSG)
    row = gw.ledger_rows(1)[0]
    assert row.data_class == "internal"
    assert row.policy is not None and row.policy["allowed"] == []
    assert [(e["deployment"], e["rule"]) for e in row.policy["excluded"]] == [("us/us-m", CN_RULE)]
    assert exc.value.response.headers["x-relaygate-policy"] == f"excluded=1;rules={CN_RULE}"


def test_stream_carries_the_policy_headers_too(
    gw: RunningGateway, sim: SimHandle, client: Callable[[str], openai.OpenAI]
) -> None:
    with client(EU_KEY).chat.completions.with_streaming_response.create(
        model="chat", messages=MSG, extra_headers=PERSONAL, stream=True
    ) as resp:
        assert resp.headers["x-relaygate-deployment"] == "eu/eu-m"
        assert resp.headers["x-relaygate-policy"] == f"excluded=1;rules={EU_RULE}"
        assert resp.headers["x-relaygate-data-class"] == "personal"
        text = "".join(ch.choices[0].delta.content or "" for ch in resp.parse() if ch.choices)
    assert text == "served in the EU"
    row = gw.ledger_rows(1)[0]
    assert row.stream and row.policy is not None and row.policy["allowed"] == ["eu/eu-m"]
    assert count(sim, "us-m") == 0
