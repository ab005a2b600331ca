"""``relaygate drill`` on a seeded ledger: shares and prices checked against hand arithmetic.

Config: three providers (openai: US, deepseek: CN, mistral: FR/EU), policy "EU personal data only
to EU regions", "CN tenants never to US operators", "restricted data nowhere". Every expected
number below is worked out by hand in a comment, never recomputed by the code under test.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from relaygate.cli.main import app
from relaygate.config import load_config, load_config_text
from relaygate.config.schema import Price
from relaygate.evals.drill import NO_ALLOWED, blended_price, run_drill
from relaygate.ledger.cutoff_store import CutoffStore
from relaygate.ledger.migrate import open_database
from relaygate.ledger.records import UsageRecord
from relaygate.ledger.usage_store import TrafficSummary, UsageStore
from relaygate.policy import compile_policy

CONFIG = """
providers:
  openai: {protocol: openai, base_url: "http://127.0.0.1:9/v1", jurisdiction: US, regions: [US]}
  deepseek: {protocol: openai, base_url: "http://127.0.0.1:9/v1", jurisdiction: CN, regions: [CN]}
  mistral: {protocol: openai, base_url: "http://127.0.0.1:9/v1", jurisdiction: FR, regions: [EU]}
routes:
  chat:
    deployments:
      - {provider: openai, model: gpt-4o, id: gpt-4o, price: {input: 2.5, output: 10.0}}
      - {provider: deepseek, model: deepseek-chat, id: ds-chat, price: {input: 0.27, output: 1.10}}
      - {provider: mistral, model: mistral-large, id: mistral-large, price: {input: 2.0, output: 6.0}}
  mini:
    strategy: weighted
    deployments:
      - {provider: openai, model: gpt-4o-mini, id: gpt-4o-mini, weight: 2, price: {input: 0.15, output: 0.60}}
      - {provider: deepseek, model: deepseek-chat, id: ds-mini, weight: 3, price: {input: 0.27, output: 1.10}}
      - {provider: mistral, model: small, id: mistral-small, weight: 1, price: {input: 0.2, output: 0.6}}
  eu-summarize:
    deployments:
      - {provider: mistral, model: mistral-large, id: mistral-sum, price: {input: 2.0, output: 6.0}}
tenants:
  acme: {region: EU}
  dragon: {region: CN}
  yankee: {region: US}
auth: {mode: keys}
policy:
  rules:
    - name: eu-personal-eu-only
      match: {tenant_region: [EU], min_data_class: personal}
      allow_only: 'provider.regions.exists(r, r in groups.EU)'
    - name: cn-no-us
      match: {tenant_region: [CN]}
      deny: 'provider.jurisdiction == "US"'
    - name: no-restricted
      match: {data_class: [restricted]}
      deny: 'true'
"""

NOW = datetime.now(UTC)

# (count, route, tenant, region, data class, deployment, provider, prompt, completion per row, age days)
SEED: list[tuple[Any, ...]] = [
    (4, "chat", "acme", "EU", "personal", "mistral-large", "mistral", 1000, 500, 0.1),
    (3, "chat", "acme", "EU", "internal", "gpt-4o", "openai", 1000, 200, 0.1),
    (1, "chat", "acme", "EU", "internal", "mistral-large", "mistral", 2000, 1000, 0.1),
    (2, "chat", "acme", "EU", "restricted", None, None, None, None, 0.1),  # refused by policy (403)
    (4, "chat", "dragon", "CN", "internal", "ds-chat", "deepseek", 800, 200, 0.1),
    (5, "chat", "yankee", "US", "internal", "gpt-4o", "openai", 500, 500, 0.1),
    (1, "chat", "yankee", "US", "internal", "ds-chat", "deepseek", 500, 500, 0.1),
    (1, "chat", "yankee", "US", "internal", "gpt-4o", "openai", 9999, 9999, 10),  # outside --since 7d
    (2, "chat", None, None, "internal", "gpt-4o", "openai", 100, 300, 0.1),  # no tenant region: "-"
    (2, "mini", "yankee", "US", "internal", "gpt-4o-mini", "openai", 1000, 1000, 0.1),
    (2, "mini", "yankee", "US", "internal", "ds-mini", "deepseek", 1000, 1000, 0.1),
]


def _records() -> list[UsageRecord]:
    out = []
    for count, route, tenant, region, dclass, dep, provider, prompt, completion, age in SEED:
        for _ in range(count):
            out.append(
                UsageRecord(
                    request_id=f"r{len(out)}",
                    ts=NOW - timedelta(days=age),
                    endpoint="/v1/chat/completions",
                    status=200 if dep else 403,
                    tenant=tenant,
                    route=route,
                    served_deployment=dep,
                    served_provider=provider,
                    prompt_tokens=prompt,
                    completion_tokens=completion,
                    tenant_region=region,
                    data_class=dclass,
                )
            )
    return out


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, str]:
    """(config path, database URL) with the seed rows inserted."""
    monkeypatch.delenv("RELAYGATE_DB_URL", raising=False)
    monkeypatch.delenv("RELAYGATE_CONFIG", raising=False)
    monkeypatch.setenv("RELAYGATE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("COLUMNS", "250")
    config = tmp_path / "relaygate.yaml"
    config.write_text(CONFIG)
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    engine = open_database(url)
    try:
        UsageStore(engine).insert_usage(_records())
    finally:
        engine.dispose()
    return str(config), url


def drill(env: tuple[str, str], *args: str) -> Result:
    config, url = env
    return CliRunner().invoke(app, ["drill", "--config", config, "--db", url, *args])


def drill_json(env: tuple[str, str], *args: str) -> tuple[int, dict[str, Any]]:
    result = drill(env, *args, "--format", "json")
    assert result.exit_code in (0, 3), result.output
    return result.exit_code, json.loads(result.stdout)


def groups(doc: dict[str, Any]) -> dict[tuple[str, str | None, str | None], dict[str, Any]]:
    return {(g["route"], g["tenant_region"], g["data_class"]): g for g in doc["groups"]}


def test_cut_openai_everywhere_matches_hand_arithmetic(env: tuple[str, str]) -> None:
    code, doc = drill_json(env, "--cutoff", "openai", "--since", "7d")
    assert code == 0 and doc["dangerous"] is False
    assert doc["cutoffs"] == ["openai:*"] and doc["active_cutoffs"] == [] and doc["idle_routes"] == []
    assert set(doc) == {"cutoffs", "active_cutoffs", "since", "groups", "idle_routes", "dangerous"}
    assert set(doc["groups"][0]) == {
        "route", "tenant_region", "data_class", "tenants", "requests", "affected_requests",
        "affected_share", "current_deployments", "replacement", "replacement_reason", "old_usd_per_1m",
        "new_usd_per_1m", "delta_usd_per_1m", "no_allowed_deployment", "refused_by_policy", "dangerous",
    }  # fmt: skip
    g = groups(doc)
    assert list(g) == [
        ("chat", "CN", "internal"),
        ("chat", "EU", "internal"),
        ("chat", "EU", "personal"),
        ("chat", "EU", "restricted"),
        ("chat", "US", "internal"),
        ("chat", None, "internal"),
        ("mini", "US", "internal"),
    ]

    eu = g[("chat", "EU", "internal")]
    # 3 of 4 requests went to gpt-4o. Affected mix: P = 3*1000 = 3000, C = 3*200 = 600.
    # old = (3000*2.50 + 600*10.00) / 3600 = 13500/3600 = 3.75
    # new (ds-chat: EU internal is not bound to EU regions) = (3000*0.27 + 600*1.10)/3600 = 1470/3600
    assert (eu["requests"], eu["affected_requests"], eu["affected_share"]) == (4, 3, 0.75)
    assert eu["current_deployments"] == ["gpt-4o", "mistral-large"]
    assert eu["replacement"] == "ds-chat" and "skipped gpt-4o (cut off)" in eu["replacement_reason"]
    assert eu["old_usd_per_1m"] == pytest.approx(3.75)
    assert eu["new_usd_per_1m"] == pytest.approx(0.408333, abs=1e-6)
    assert eu["delta_usd_per_1m"] == pytest.approx(-3.341667, abs=1e-6)

    us = g[("chat", "US", "internal")]
    # 5 of 6 in the window (the 10-day-old row is outside 7d). P = C = 5*500 = 2500.
    # old = (2500*2.50 + 2500*10.00)/5000 = 6.25; new = (2500*0.27 + 2500*1.10)/5000 = 0.685
    assert (us["requests"], us["affected_requests"]) == (6, 5)
    assert us["affected_share"] == pytest.approx(0.833333, abs=1e-6)
    assert us["replacement"] == "ds-chat"
    assert (us["old_usd_per_1m"], us["new_usd_per_1m"]) == (pytest.approx(6.25), pytest.approx(0.685))
    assert us["delta_usd_per_1m"] == pytest.approx(-5.565)

    anon = g[("chat", None, "internal")]
    # a "*" cutoff hits rows without a region: 2 of 2. P = 200, C = 600.
    # old = (200*2.50 + 600*10.00)/800 = 6500/800 = 8.125; new = (200*0.27 + 600*1.10)/800 = 714/800 = 0.8925
    assert (anon["affected_requests"], anon["affected_share"]) == (2, 1.0)
    assert (anon["old_usd_per_1m"], anon["new_usd_per_1m"]) == (pytest.approx(8.125), pytest.approx(0.8925))

    mini = g[("mini", "US", "internal")]
    # weighted: openai cut, ds-mini (weight 3) and mistral-small (weight 1) share 3/4 and 1/4.
    # P = C = 2*1000 = 2000. old = (2000*0.15 + 2000*0.60)/4000 = 0.375
    # new = 0.75*(2000*0.27 + 2000*1.10)/4000 + 0.25*(2000*0.20 + 2000*0.60)/4000
    #     = 0.75*0.685 + 0.25*0.40 = 0.51375 + 0.1 = 0.61375; delta = 0.23875
    assert (mini["affected_requests"], mini["affected_share"]) == (2, 0.5)
    assert mini["replacement"] == "weighted among ds-mini, mistral-small"
    assert mini["old_usd_per_1m"] == pytest.approx(0.375)
    assert mini["new_usd_per_1m"] == pytest.approx(0.61375)
    assert mini["delta_usd_per_1m"] == pytest.approx(0.23875)

    # Not affected: no price change, but the replacement still honours policy.
    personal = g[("chat", "EU", "personal")]
    assert personal["affected_requests"] == 0 and personal["old_usd_per_1m"] is None
    assert personal["replacement"] == "mistral-large"  # ds-chat runs in CN: not for EU personal data
    assert "ds-chat (rule eu-personal-eu-only)" in personal["replacement_reason"]
    cn = g[("chat", "CN", "internal")]
    assert cn["replacement"] == "ds-chat" and "gpt-4o (rule cn-no-us)" in cn["replacement_reason"]

    # Restricted data is refused by policy with or without cutoffs: reported, not dangerous.
    restricted = g[("chat", "EU", "restricted")]
    assert restricted["no_allowed_deployment"] is True and restricted["refused_by_policy"] is True
    assert restricted["dangerous"] is False and restricted["replacement"] is None


def test_cut_mistral_for_eu_is_dangerous(env: tuple[str, str]) -> None:
    code, doc = drill_json(env, "--cutoff", "mistral:eu")
    assert code == 3 and doc["dangerous"] is True and doc["cutoffs"] == ["mistral:EU"]
    g = groups(doc)

    personal = g[("chat", "EU", "personal")]
    # all 4 served by mistral-large; nothing else may take EU personal data.
    # old = (4000*2.0 + 2000*6.0)/6000 = 20000/6000 = 3.333333
    assert (personal["affected_requests"], personal["affected_share"]) == (4, 1.0)
    assert personal["replacement"] is None and personal["no_allowed_deployment"] is True
    assert personal["dangerous"] is True and personal["refused_by_policy"] is False
    assert personal["old_usd_per_1m"] == pytest.approx(3.333333, abs=1e-6)
    assert personal["new_usd_per_1m"] is None and personal["delta_usd_per_1m"] is None
    assert "mistral-large (cut off)" in personal["replacement_reason"]

    internal = g[("chat", "EU", "internal")]
    # 1 of 4 (mistral-large, P=2000, C=1000) moves to gpt-4o, first in priority order.
    # old = (2000*2.0 + 1000*6.0)/3000 = 3.333333; new = (2000*2.5 + 1000*10.0)/3000 = 5.0
    assert (internal["affected_requests"], internal["affected_share"]) == (1, 0.25)
    assert internal["replacement"] == "gpt-4o"
    assert internal["new_usd_per_1m"] == pytest.approx(5.0)
    assert internal["delta_usd_per_1m"] == pytest.approx(1.666667, abs=1e-6)

    # Other regions keep mistral; the weighted route keeps all three.
    assert g[("chat", "CN", "internal")]["affected_requests"] == 0
    assert (
        g[("mini", "US", "internal")]["replacement"] == "weighted among gpt-4o-mini, ds-mini, mistral-small"
    )

    # eu-summarize has no traffic, but tenant acme (EU) would lose its only deployment.
    assert [(i["route"], i["tenant_region"], i["tenants"], i["dangerous"]) for i in doc["idle_routes"]] == [
        ("eu-summarize", "EU", ["acme"], True)
    ]
    assert doc["idle_routes"][0]["reason"] == "every deployment excluded: mistral-sum (cut off)"


def test_dangerous_table_is_flagged(env: tuple[str, str]) -> None:
    result = drill(env, "--cutoff", "mistral:EU")
    assert result.exit_code == 3, result.output
    assert NO_ALLOWED in result.stdout and "eu-summarize" in result.stdout
    assert "left with NO ALLOWED DEPLOYMENT" in result.stderr and "(exit 3)" in result.stderr
    assert "requests since" not in result.stdout


def test_safe_table_and_summary(env: tuple[str, str]) -> None:
    result = drill(env, "--cutoff", "openai")
    assert result.exit_code == 0, result.output
    assert "weighted among ds-mini, mistral-small" in result.stdout
    # affected: 3 + 5 + 2 + 2 = 12 of 4+3+1+2+4+5+1+2+2+2 = 26 in the window (12/26 = 46.2%)
    assert "12 of 26 requests" in result.stderr and "(46.2%)" in result.stderr
    assert "every route/region keeps an allowed deployment" in result.stderr


def test_cutoffs_in_force_are_applied(env: tuple[str, str]) -> None:
    engine = open_database(env[1])
    try:
        CutoffStore(engine).set("deepseek", "US", "already blocked", actor="test")
    finally:
        engine.dispose()
    code, doc = drill_json(env, "--cutoff", "openai:US")
    assert code == 0 and doc["active_cutoffs"] == ["deepseek:US"]
    g = groups(doc)
    us = g[("chat", "US", "internal")]
    # only the drill's provider counts as affected (5 gpt-4o rows, not the ds-chat one);
    # openai and deepseek are both out for US, so mistral-large: (2500*2.0 + 2500*6.0)/5000 = 4.0
    assert us["affected_requests"] == 5 and us["replacement"] == "mistral-large"
    assert us["new_usd_per_1m"] == pytest.approx(4.0) and us["delta_usd_per_1m"] == pytest.approx(-2.25)
    mini = g[("mini", "US", "internal")]
    # one deployment left on the weighted route: (2000*0.2 + 2000*0.6)/4000 = 0.4
    assert mini["replacement"] == "mistral-small" and mini["new_usd_per_1m"] == pytest.approx(0.4)
    # openai:US does not touch EU or region-less rows
    assert g[("chat", "EU", "internal")]["affected_requests"] == 0
    assert g[("chat", None, "internal")]["affected_requests"] == 0


def test_several_cutoffs(env: tuple[str, str]) -> None:
    code, doc = drill_json(env, "--cutoff", "openai", "--cutoff", "deepseek")
    assert code == 0 and doc["cutoffs"] == ["openai:*", "deepseek:*"]
    cn = groups(doc)[("chat", "CN", "internal")]
    # 4 of 4 on ds-chat move to mistral-large: P = 3200, C = 800.
    # old = (3200*0.27 + 800*1.10)/4000 = (864 + 880)/4000 = 0.436; new = (3200*2 + 800*6)/4000 = 2.8
    assert cn["affected_share"] == 1.0 and cn["replacement"] == "mistral-large"
    assert (cn["old_usd_per_1m"], cn["new_usd_per_1m"]) == (pytest.approx(0.436), pytest.approx(2.8))


@pytest.mark.parametrize(
    "args",
    [
        ["--cutoff", "nosuch"],  # unknown provider
        ["--cutoff", ":CN"],  # no provider
        ["--cutoff", "openai:C N"],  # malformed region
        ["--cutoff", "openai", "--since", "soon"],
        ["--cutoff", "openai", "--since", "0d"],
        ["--cutoff", "openai", "--format", "xml"],
        [],  # --cutoff is required
    ],
)
def test_bad_arguments_exit_2(env: tuple[str, str], args: list[str]) -> None:
    result = drill(env, *args)
    assert result.exit_code == 2, result.output
    assert result.stdout == ""


def test_bad_config_exits_2(env: tuple[str, str], tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("routes: {chat: {deployments: []}}\n")
    result = CliRunner().invoke(app, ["drill", "--config", str(bad), "--db", env[1], "--cutoff", "openai"])
    assert result.exit_code == 2 and "config error" in result.stderr


def test_help_documents_exit_codes() -> None:
    result = CliRunner().invoke(app, ["drill", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    text = " ".join(result.stdout.split())
    assert "3 some route/region would be left" in text
    assert "4 database error" in text and "1 database error" not in text  # as README and code say


# -- the pure core on hand-written traffic ---------------------------------------------------------


@pytest.mark.parametrize(
    ("price", "prompt", "completion", "expected"),
    [
        (Price(input=2.5, output=10.0), 3000, 600, 3.75),  # 13500 / 3600
        (Price(input=1.0, output=3.0), 1, 1, 2.0),  # (1 + 3) / 2
        (Price(input=1.0, output=3.0), 0, 10, 3.0),  # completions only
        (Price(input=1.0, output=3.0), 0, 0, None),  # no tokens: no price
    ],
)
def test_blended_price(price: Price, prompt: int, completion: int, expected: float | None) -> None:
    assert blended_price(price, prompt, completion) == (None if expected is None else pytest.approx(expected))


def _traffic(**fields: Any) -> TrafficSummary:
    row: dict[str, Any] = {
        "route": "chat",
        "tenant_region": "EU",
        "data_class": "internal",
        "tenant": "acme",
        "served_deployment": "gpt-4o",
        "served_provider": "openai",
        "requests": 1,
        "prompt_tokens": 100,
        "completion_tokens": 100,
        "cost_usd": 0.0,
    }
    row.update(fields)
    return TrafficSummary(**row)  # type: ignore[typeddict-item]


def test_tenants_of_one_group_can_get_different_replacements() -> None:
    text = CONFIG + (
        "    - name: acme-no-cn\n"
        "      match: {tenant: [acme]}\n"
        "      deny: 'provider.jurisdiction == \"CN\"'\n"
    )
    cfg = load_config_text(text)
    traffic = [_traffic(tenant="acme"), _traffic(tenant="beta", prompt_tokens=300, completion_tokens=100)]
    report = run_drill(cfg, compile_policy(cfg.policy), traffic, [("openai", "eu")])
    (g,) = report.groups
    assert g.replacement == "acme: mistral-large; beta: ds-chat"
    # old = (400*2.5 + 200*10)/600 = 3000/600 = 5.0
    # new = acme (100*2.0 + 100*6.0) + beta (300*0.27 + 100*1.10) = 800 + 191 = 991; 991/600
    assert g.old_usd_per_1m == pytest.approx(5.0)
    assert g.new_usd_per_1m == pytest.approx(991 / 600)
    assert not report.dangerous


def test_route_no_longer_configured_uses_ledger_cost(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(CONFIG)
    cfg = load_config(path)
    gone = _traffic(
        route="retired", served_deployment="old", cost_usd=0.003, prompt_tokens=1000, completion_tokens=0
    )
    report = run_drill(cfg, compile_policy(cfg.policy), [gone], [("openai", "*")])
    (g,) = report.groups
    # 0.003 USD for 1000 tokens = 3.0 USD per 1M
    assert g.replacement is None and g.old_usd_per_1m == pytest.approx(3.0)
    assert "not in the config" in g.replacement_reason and not g.dangerous
