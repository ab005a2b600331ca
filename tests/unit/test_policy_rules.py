"""Rule compilation errors (named by index) and fail-closed evaluation of single rules."""

from __future__ import annotations

import pytest

from relaygate.config.policy_schema import PolicyConfig
from relaygate.policy import Candidate, Facts, PolicyError, RequestFacts, compile_policy, decide

KNOWN = Candidate("known/m", "m", "known", Facts("DE", ("DE",), 0, False, ("eu",)))
BARE = Candidate("bare/m", "m", "bare", Facts())
REQ = RequestFacts("t", "EU", "personal", "chat")


def _policy(*conditions: tuple[str, str]) -> PolicyConfig:
    rules = [{"name": f"rule-{i}", effect: cond} for i, (effect, cond) in enumerate(conditions)]
    return PolicyConfig.model_validate({"rules": rules})


@pytest.mark.parametrize(
    ("condition", "message"),
    [
        ("provider.(", "syntax error"),
        ("provider.jurisdiction ==", "syntax error"),
        ("tenant == 'x'", "unknown variable 'tenant'"),
        ("provider.jurisdicton == 'US'", "unknown field provider.jurisdicton"),
        ("request.region == 'EU'", "unknown field request.region"),
        ("has(provider.retention)", "unknown field provider.retention"),
        ("groups.ASEAN.size() > 0", "unknown field groups.ASEAN"),
        ("lowerAscii(provider.name) == 'x'", "unknown function 'lowerAscii'"),
        ("provider.data_retention_days", "must be a bool"),
        ("provider.name", "must be a bool"),
    ],
)
def test_compile_errors_name_the_rule_index(condition: str, message: str) -> None:
    cfg = _policy(("deny", "false"), ("deny", "true"), ("allow_only", "true"), ("deny", condition))
    with pytest.raises(PolicyError) as err:
        compile_policy(cfg)
    assert str(err.value).startswith("policy.rules.3 (rule-3): deny: ")
    assert message in str(err.value)
    assert err.value.index == 3 and err.value.name == "rule-3"
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    "condition",
    [
        "provider.regions.all(r, r in groups.EU)",
        "provider.regions.exists(region, region.startsWith('eu'))",
        "'string with provider.bogus inside' != provider.name",
        "has(provider.jurisdiction) && provider.jurisdiction in groups.EEA",
        "deployment.model.matches('^gpt-') || deployment.id.endsWith('/m')",
        "request.data_class in ['personal', 'restricted'] && request.route == 'chat'",
        "size(provider.tags) == 0 || 'eu' in provider.tags",
        "[1, 2, 3].map(x, x * 2).size() == 3",
    ],
)
def test_valid_conditions_compile(condition: str) -> None:
    compile_policy(_policy(("allow_only", condition)))


def _only(effect: str, condition: str, cand: Candidate = BARE, req: RequestFacts = REQ) -> tuple[str, ...]:
    d = decide(req, [cand], compile_policy(_policy((effect, condition))), ())
    return tuple(e.code for e in d.excluded)


@pytest.mark.parametrize(
    ("effect", "condition", "expected"),
    [
        # Unknown facts are absent from `provider`: reading one errors, the candidate goes.
        ("allow_only", "provider.jurisdiction == 'DE'", ("fact_unknown",)),
        ("deny", "provider.jurisdiction == 'CN'", ("fact_unknown",)),
        ("deny", "provider.trains_on_inputs", ("fact_unknown",)),
        ("allow_only", "!provider.trains_on_inputs", ("fact_unknown",)),
        ("allow_only", "provider.data_retention_days <= 30", ("fact_unknown",)),
        ("deny", "provider.data_retention_days > 30", ("fact_unknown",)),
        ("allow_only", "provider.regions.all(r, r in groups.EU)", ("fact_unknown",)),
        # has() lets a rule decide about unknown facts explicitly.
        ("allow_only", "has(provider.jurisdiction) && provider.jurisdiction == 'DE'", ("policy_allow_only",)),
        ("deny", "!has(provider.trains_on_inputs)", ("policy_deny",)),
        # Tags are always known (empty list), so a tag test never fails closed.
        ("deny", "'eu' in provider.tags", ()),
        # Runtime type error or non-bool: excluded as eval_error.
        ("deny", "provider.name > 3", ("eval_error",)),
        ("allow_only", "provider.tags.size() == 0 ? provider.name : true", ("eval_error",)),
    ],
)
def test_fail_closed_on_bare_provider(effect: str, condition: str, expected: tuple[str, ...]) -> None:
    assert _only(effect, condition) == expected


@pytest.mark.parametrize(
    ("effect", "condition", "expected"),
    [
        ("allow_only", "provider.jurisdiction == 'DE'", ()),
        ("deny", "provider.trains_on_inputs", ()),
        ("allow_only", "provider.data_retention_days == 0", ()),
        ("allow_only", "provider.regions.all(r, r in groups.EU)", ()),
        ("deny", "'eu' in provider.tags", ("policy_deny",)),
        ("deny", "provider.name > 3", ("eval_error",)),
    ],
)
def test_same_rules_on_known_provider(effect: str, condition: str, expected: tuple[str, ...]) -> None:
    assert _only(effect, condition, KNOWN) == expected


def test_unknown_request_region_fails_closed() -> None:
    req = RequestFacts("t", None, "internal", "chat")
    d = decide(req, [KNOWN], compile_policy(_policy(("allow_only", "request.tenant_region == 'EU'"))), ())
    (ex,) = d.excluded
    assert (
        ex.code == "fact_unknown" and "request.tenant_region" in ex.message and "this request" in ex.message
    )


def test_first_excluding_rule_is_recorded() -> None:
    cfg = _policy(("deny", "provider.name == 'known'"), ("allow_only", "false"))
    (ex,) = decide(REQ, [KNOWN], compile_policy(cfg), ()).excluded
    assert (ex.rule_index, ex.rule, ex.code) == (0, "rule-0", "policy_deny")
    (ex,) = decide(REQ, [BARE], compile_policy(cfg), ()).excluded
    assert (ex.rule_index, ex.code) == (1, "policy_allow_only")


def test_rules_only_narrow() -> None:
    # A later allow_only that would accept everything cannot bring back what a deny removed.
    cfg = _policy(("deny", "provider.name == 'known'"), ("allow_only", "true"))
    assert decide(REQ, [KNOWN, BARE], compile_policy(cfg), ()).allowed == ("bare/m",)


def test_groups_constants() -> None:
    fr = Candidate("fr/m", "m", "fr", Facts("FR", ("FR",), 0, False))
    no = Candidate("no/m", "m", "no", Facts("NO", ("NO",), 0, False))
    ch = Candidate("ch/m", "m", "ch", Facts("CH", ("CH",), 0, False))
    eu = compile_policy(_policy(("allow_only", "provider.jurisdiction in groups.EU")))
    eea = compile_policy(_policy(("allow_only", "provider.jurisdiction in groups.EEA")))
    assert decide(REQ, [fr, no, ch], eu, ()).allowed == ("fr/m",)
    assert decide(REQ, [fr, no, ch], eea, ()).allowed == ("fr/m", "no/m")


def test_deployment_variables() -> None:
    cfg = _policy(("deny", "deployment.model.startsWith('gpt-') && deployment.id == 'a/gpt-4o'"))
    cands = [Candidate("a/gpt-4o", "gpt-4o", "a"), Candidate("b/gpt-4o", "gpt-4o", "b")]
    assert decide(REQ, cands, compile_policy(cfg), ()).allowed == ("b/gpt-4o",)


@pytest.mark.parametrize(
    ("tenant_region", "matched"),
    [("DE", True), ("fr", True), ("EU", True), ("NO", False), ("US", False), (None, False)],
)
def test_match_tenant_region_group_covers_member_states(tenant_region: str | None, matched: bool) -> None:
    policy = compile_policy(
        PolicyConfig.model_validate(
            {
                "rules": [
                    {"name": "eu-only", "match": {"tenant_region": ["EU"]}, "deny": 'provider.name == "us"'}
                ]
            }
        )
    )
    cands = [Candidate("us/m", "m", "us", Facts(jurisdiction="US")), Candidate("eu/m", "m", "eu", Facts())]
    d = decide(RequestFacts("t", tenant_region, "internal", "chat"), cands, policy, ())
    assert ("us/m" not in d.allowed) is matched
