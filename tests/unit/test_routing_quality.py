"""``cheapest_non_inferior``: the order and reason from prices and published quality (tables), the
config keys behind it, and merging published records over the config."""

from __future__ import annotations

import random
from typing import Any

import pytest
from pydantic import ValidationError

from relaygate.config import load_config_text
from relaygate.config.quality_schema import PublishedQuality, QualityScore
from relaygate.config.schema import RouteConfig
from relaygate.errors import ConfigError
from relaygate.routing.quality import with_quality
from relaygate.routing.strategies import (
    blended_price,
    cheapest_non_inferior,
    order_deployments,
    routing_reason,
)

INC = "up/big"


def q(verdict: str = "PASS", incumbent: str = INC, **kw: Any) -> dict[str, Any]:
    return {"metric": "judge", "mean": 0.8, "n": 50, "verdict": verdict, "incumbent": incumbent, **kw}


def dep(name: str, inp: float, out: float, quality: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"provider": "up", "model": name, "price": {"input": inp, "output": out}, "quality": quality or {}}


def route(*deps: dict[str, Any], **kw: Any) -> RouteConfig:
    return RouteConfig.model_validate({"strategy": "cheapest_non_inferior", "deployments": list(deps), **kw})


BIG = dep("big", 3.0, 15.0)  # blended (9 + 15) / 4 = 6.0


@pytest.mark.parametrize(
    ("deps", "kw", "order", "chosen"),
    [
        pytest.param([BIG, dep("small", 0.1, 0.4, {"mt": q()})], {}, ["small", "big"], "up/small", id="pass"),
        pytest.param([BIG, dep("small", 0.1, 0.4)], {}, ["big", "small"], INC, id="no-quality-fails-closed"),
        pytest.param([BIG, dep("small", 0.1, 0.4, {"mt": q("FAIL")})], {}, ["big", "small"], INC, id="fail"),
        pytest.param(
            [BIG, dep("small", 0.1, 0.4, {"mt": q("INCONCLUSIVE")})], {}, ["big", "small"], INC, id="inconcl"
        ),
        pytest.param(
            [BIG, dep("small", 0.1, 0.4, {"mt": q(incumbent="up/other")})],
            {},
            ["big", "small"],
            INC,
            id="verdict-against-another-incumbent",
        ),
        pytest.param(
            [BIG, dep("small", 0.1, 0.4, {"mt": q(), "he": q("FAIL")})],
            {},
            ["big", "small"],
            INC,
            id="one-suite-fails",
        ),
        pytest.param(
            [BIG, dep("small", 0.1, 0.4, {"mt": q(), "he": q("FAIL")})],
            {"quality_suites": ["mt"]},
            ["small", "big"],
            "up/small",
            id="only-the-listed-suite-counts",
        ),
        pytest.param(
            [BIG, dep("small", 0.1, 0.4, {"mt": q()})],
            {"quality_suites": ["mt", "he"]},
            ["big", "small"],
            INC,
            id="listed-suite-missing",
        ),
        pytest.param(
            [dep("mid", 1.0, 2.0, {"mt": q()}), BIG, dep("small", 0.1, 0.4, {"mt": q()})],
            {"incumbent": INC},
            ["small", "big", "mid"],
            "up/small",
            id="cheapest-of-two-then-incumbent-then-config-order",
        ),
        pytest.param(
            [BIG, dep("pricey", 10.0, 30.0, {"mt": q()})], {}, ["big", "pricey"], INC, id="incumbent-cheapest"
        ),
        pytest.param(
            [dep("big", 1.0, 1.0), dep("twin", 1.0, 1.0, {"mt": q()})],
            {},
            ["big", "twin"],
            INC,
            id="tie-goes-to-incumbent",
        ),
        pytest.param(
            [BIG, dep("a", 0.5, 0.5, {"mt": q()}), dep("b", 0.5, 0.5, {"mt": q()})],
            {},
            ["a", "big", "b"],
            "up/a",
            id="tie-between-candidates-config-order",
        ),
        pytest.param(
            # (3 * 0.1 + 8) / 4 = 2.075 vs (3 * 2 + 0.1) / 4 = 1.525: the 3:1 blend decides
            [BIG, dep("cheap-in", 0.1, 8.0, {"mt": q()}), dep("cheap-out", 2.0, 0.1, {"mt": q()})],
            {},
            ["cheap-out", "big", "cheap-in"],
            "up/cheap-out",
            id="blend-weighs-input-3-to-1",
        ),
        pytest.param(
            [BIG, dep("cheaper", 0.1, 0.1), dep("ok", 1.0, 1.0, {"mt": q()})],
            {},
            ["ok", "big", "cheaper"],
            "up/ok",
            id="cheaper-without-quality-is-a-fallback",
        ),
    ],
)
def test_order(deps: list[dict[str, Any]], kw: dict[str, Any], order: list[str], chosen: str) -> None:
    r = route(*deps, **kw)
    got = cheapest_non_inferior(r)
    assert [d.model for d in got.order] == order
    assert got.chosen == chosen
    assert [d.model for d in order_deployments(r, random.Random(0))] == order
    assert got.reason.startswith("cheapest_non_inferior: ") and chosen in got.reason


def test_reason_names_the_choice_the_evidence_and_what_was_passed_over() -> None:
    r = route(BIG, dep("cheaper", 0.1, 0.1, {"mt": q("FAIL")}), dep("ok", 1.0, 1.0, {"mt": q()}))
    reason = cheapest_non_inferior(r).reason
    assert reason == (
        "cheapest_non_inferior: up/ok at 1 USD/1M (3:1 blend), non-inferior to up/big on mt; "
        "cheaper but not eligible: up/cheaper (FAIL on mt)"
    )
    only_inc = cheapest_non_inferior(route(BIG, dep("small", 0.1, 0.1))).reason
    assert only_inc == (
        "cheapest_non_inferior: incumbent up/big at 6 USD/1M (3:1 blend); "
        "cheaper but not eligible: up/small (no published quality)"
    )


def test_policy_filtered_copy_keeps_the_incumbent_and_its_evidence() -> None:
    """The router orders a copy holding only the deployments policy allows: with the incumbent
    cut off, a deployment published as non-inferior to it still leads; with none, config order."""
    r = route(BIG, dep("small", 0.1, 0.4, {"mt": q()}), dep("other", 0.2, 0.2))
    allowed = [d for d in r.deployments if d.model != "big"]
    copy = r.model_copy(update={"deployments": allowed})
    assert [d.model for d in order_deployments(copy, random.Random(0))] == ["small", "other"]
    assert "non-inferior to up/big" in (routing_reason(r, allowed) or "")
    none = r.model_copy(update={"deployments": [r.deployments[2]]})
    got = cheapest_non_inferior(none)
    assert [d.model for d in got.order] == ["other"] and got.chosen is None
    assert "config order" in got.reason


def test_reason_only_for_the_explaining_strategy() -> None:
    prio = RouteConfig.model_validate({"deployments": [BIG]})
    assert routing_reason(prio, prio.deployments) is None
    r = route(BIG)
    assert routing_reason(r, []) is None
    assert (
        routing_reason(r, r.deployments) == "cheapest_non_inferior: incumbent up/big at 6 USD/1M (3:1 blend)"
    )


def test_blended_price_is_three_to_one() -> None:
    r = route(dep("x", 2.0, 6.0))
    assert blended_price(r.deployments[0].price) == pytest.approx(3.0)


def test_config_keys_and_their_checks() -> None:
    r = route(BIG, dep("small", 0.1, 0.4))
    assert r.incumbent == INC  # pinned to the first deployment
    assert route(BIG, dep("small", 0.1, 0.4), incumbent="up/small").incumbent == "up/small"
    with pytest.raises(ValidationError, match="incumbent 'up/nope' is not a deployment"):
        route(BIG, incumbent="up/nope")
    with pytest.raises(ValidationError, match="verdict"):
        route(dep("x", 1, 1, {"mt": q("MAYBE")}))
    with pytest.raises(ValidationError, match="extra"):
        route(dep("x", 1, 1, {"mt": {**q(), "colour": "red"}}))
    text = """
providers: {up: {protocol: openai, base_url: "http://127.0.0.1:9/v1"}}
routes:
  chat:
    strategy: cheapest_non_inferior
    incumbent: up/big
    deployments:
      - {provider: up, model: big, price: {input: 3, output: 15}}
      - provider: up
        model: small
        quality: {mt: {metric: judge, mean: 0.7, verdict: PASS, incumbent: up/big}}
"""
    cfg = load_config_text(text, "q.yaml")
    assert cfg.routes["chat"].deployments[1].quality["mt"].verdict == "PASS"
    with pytest.raises(ConfigError, match=r"routes\.chat"):
        load_config_text(text.replace("incumbent: up/big\n", "incumbent: up/gone\n", 1), "q.yaml")


def test_with_quality_overlays_the_database_on_the_config() -> None:
    text = """
providers: {up: {protocol: openai, base_url: "http://127.0.0.1:9/v1"}}
routes:
  chat:
    strategy: cheapest_non_inferior
    deployments:
      - {provider: up, model: big, price: {input: 3, output: 15}}
      - provider: up
        model: small
        price: {input: 0.1, output: 0.4}
        quality: {mt: {metric: judge, mean: 0.7, verdict: FAIL, incumbent: up/big},
                  he: {metric: code, mean: 0.5, verdict: PASS, incumbent: up/big}}
"""
    cfg = load_config_text(text, "q.yaml")
    assert with_quality(cfg, []) is cfg
    newer = QualityScore.model_validate(q("PASS", run_id="r2"))
    merged = with_quality(
        cfg,
        [
            PublishedQuality("chat", "up/small", "mt", newer),
            PublishedQuality("chat", "up/gone", "mt", newer),  # no such deployment: ignored
            PublishedQuality("other", "up/small", "mt", newer),  # no such route: ignored
        ],
    )
    small = merged.routes["chat"].deployments[1]
    assert small.quality["mt"] == newer and small.quality["he"].verdict == "PASS"
    assert cfg.routes["chat"].deployments[1].quality["mt"].verdict == "FAIL"  # input untouched
    assert merged.routes["chat"].incumbent == "up/big" and merged.providers is cfg.providers
    assert cheapest_non_inferior(merged.routes["chat"]).chosen == "up/small"
    assert cheapest_non_inferior(cfg.routes["chat"]).chosen == "up/big"
