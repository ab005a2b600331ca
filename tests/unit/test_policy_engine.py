"""Table-driven tests of the policy decision (``relaygate.policy.engine.decide``)."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from relaygate.config.policy_schema import PolicyConfig
from relaygate.policy import Candidate, Decision, Exclusion, Facts, RequestFacts, compile_policy, decide

# Candidate providers; the deployment id is "<provider>/m". Letters keep the table readable.
PROVIDERS: dict[str, tuple[str, Facts]] = {
    "A": ("openai", Facts("US", (), 30, False, ("zdr-available",))),  # regions unknown
    "B": ("openai-us", Facts("US", ("US",), 30, False)),
    "C": ("mistral", Facts("FR", ("FR",), 30, False)),
    "D": ("eu-zero", Facts("DE", ("DE", "EU"), 0, False)),
    "E": ("deepseek", Facts("CN", ("CN",), None, None)),  # retention + training unknown
    "F": ("qwen-cn", Facts("CN", ("CN",), 30, False)),
    "G": ("free", Facts("US", ("US",), None, True, ("free-tier",))),
    "H": ("local", Facts(None, (), None, False, ("self-hosted",))),  # only training known
}
ALL = "ABCDEFGH"
CANDIDATES = [Candidate(f"{name}/m", "m", name, facts) for name, facts in PROVIDERS.values()]

RULES = [
    {  # 0
        "name": "eu-personal-only",
        "match": {"tenant_region": ["EU"], "min_data_class": "personal"},
        "allow_only": "provider.regions.all(r, r in groups.EU) && provider.jurisdiction in groups.EEA",
    },
    {  # 1
        "name": "no-training",
        "match": {"data_class": ["internal", "personal", "restricted"]},
        "deny": "provider.trains_on_inputs",
    },
    {  # 2
        "name": "cn-domestic-only",
        "match": {"tenant_region": ["CN"]},
        "allow_only": 'provider.jurisdiction == "CN" && provider.regions.all(r, r == "CN")',
    },
    {  # 3
        "name": "restricted-zero-retention",
        "match": {"data_class": ["restricted"]},
        "allow_only": "provider.data_retention_days == 0",
    },
    {  # 4
        "name": "us-personal-no-cn",
        "match": {"tenant_region": ["US"], "min_data_class": "personal"},
        "deny": 'provider.jurisdiction == "CN"',
    },
    {  # 5
        "name": "free-tier-public-only",
        "match": {"tags": ["free-tier"]},
        "deny": 'request.data_class != "public"',
    },
    {  # 6
        "name": "code-not-self-hosted",
        "match": {"route": ["code"]},
        "deny": '"self-hosted" in provider.tags',
    },
    {  # 7
        "name": "acme-not-openai",
        "match": {"tenant": ["acme"]},
        "allow_only": 'provider.name != "openai"',
    },
]
POLICY = compile_policy(PolicyConfig.model_validate({"rules": RULES}))

ALLOW = "policy_allow_only"
DENY = "policy_deny"
UNKNOWN = "fact_unknown"
CUT = "cutoff"


@dataclass
class Case:
    id: str
    region: str | None
    data_class: str
    allowed: str
    excluded: dict[str, tuple[str, str | None]]
    route: str = "chat"
    tenant: str = "t1"
    cutoffs: set[tuple[str, str]] = field(default_factory=set)


EU_PERSONAL_EXCL = {
    # A: regions unknown, but CEL's `&&` absorbs the error because `US in EEA` is false.
    "A": (ALLOW, "eu-personal-only"),
    "B": (ALLOW, "eu-personal-only"),
    "E": (ALLOW, "eu-personal-only"),
    "F": (ALLOW, "eu-personal-only"),
    "G": (ALLOW, "eu-personal-only"),
    "H": (UNKNOWN, "eu-personal-only"),  # both operands unknown: fail closed
}
INTERNAL_EXCL = {"E": (UNKNOWN, "no-training"), "G": (DENY, "no-training")}

CASES = [
    # --- EU tenant
    Case("eu-personal", "EU", "personal", "CD", EU_PERSONAL_EXCL),
    Case("eu-personal-lowercase-region", "eu", "personal", "CD", EU_PERSONAL_EXCL),
    Case(
        "eu-restricted",
        "EU",
        "restricted",
        "D",
        {**EU_PERSONAL_EXCL, "C": (ALLOW, "restricted-zero-retention")},
    ),
    Case("eu-internal", "EU", "internal", "ABCDFH", INTERNAL_EXCL),
    Case("eu-public", "EU", "public", ALL, {}),
    Case(
        "eu-public-code-route", "EU", "public", "ABCDEFG", {"H": (DENY, "code-not-self-hosted")}, route="code"
    ),
    Case("eu-personal-acme", "EU", "personal", "CD", EU_PERSONAL_EXCL, tenant="acme"),
    # --- CN tenant
    Case(
        "cn-internal",
        "CN",
        "internal",
        "F",
        {
            "A": (ALLOW, "cn-domestic-only"),
            "B": (ALLOW, "cn-domestic-only"),
            "C": (ALLOW, "cn-domestic-only"),
            "D": (ALLOW, "cn-domestic-only"),
            "E": (UNKNOWN, "no-training"),
            "G": (DENY, "no-training"),
            "H": (UNKNOWN, "cn-domestic-only"),
        },
    ),
    Case(
        "cn-public",
        "CN",
        "public",
        "EF",
        {
            "A": (ALLOW, "cn-domestic-only"),
            "B": (ALLOW, "cn-domestic-only"),
            "C": (ALLOW, "cn-domestic-only"),
            "D": (ALLOW, "cn-domestic-only"),
            "G": (ALLOW, "cn-domestic-only"),
            "H": (UNKNOWN, "cn-domestic-only"),
        },
    ),
    Case(
        "cn-personal",
        "CN",
        "personal",
        "F",
        {
            "A": (ALLOW, "cn-domestic-only"),
            "B": (ALLOW, "cn-domestic-only"),
            "C": (ALLOW, "cn-domestic-only"),
            "D": (ALLOW, "cn-domestic-only"),
            "E": (UNKNOWN, "no-training"),
            "G": (DENY, "no-training"),
            "H": (UNKNOWN, "cn-domestic-only"),
        },
    ),
    Case(
        "cn-restricted",
        "CN",
        "restricted",
        "",
        {
            "A": (ALLOW, "cn-domestic-only"),
            "B": (ALLOW, "cn-domestic-only"),
            "C": (ALLOW, "cn-domestic-only"),
            "D": (ALLOW, "cn-domestic-only"),
            "E": (UNKNOWN, "no-training"),
            "F": (ALLOW, "restricted-zero-retention"),
            "G": (DENY, "no-training"),
            "H": (UNKNOWN, "cn-domestic-only"),
        },
    ),
    # --- US tenant
    Case(
        "us-personal",
        "US",
        "personal",
        "ABCD",
        {
            "E": (UNKNOWN, "no-training"),
            "F": (DENY, "us-personal-no-cn"),
            "G": (DENY, "no-training"),
            "H": (UNKNOWN, "us-personal-no-cn"),
        },
    ),
    Case("us-internal", "US", "internal", "ABCDFH", INTERNAL_EXCL),
    Case("us-public", "US", "public", ALL, {}),
    Case(
        "us-restricted",
        "US",
        "restricted",
        "D",
        {
            "A": (ALLOW, "restricted-zero-retention"),
            "B": (ALLOW, "restricted-zero-retention"),
            "C": (ALLOW, "restricted-zero-retention"),
            "E": (UNKNOWN, "no-training"),
            "F": (ALLOW, "restricted-zero-retention"),
            "G": (DENY, "no-training"),
            "H": (UNKNOWN, "restricted-zero-retention"),
        },
    ),
    Case("us-public-acme", "US", "public", "BCDEFGH", {"A": (ALLOW, "acme-not-openai")}, tenant="acme"),
    # --- no region / other regions: only region-less rules apply
    Case("none-personal", None, "personal", "ABCDFH", INTERNAL_EXCL),
    Case("none-public", None, "public", ALL, {}),
    Case("blank-region-public", "  ", "public", ALL, {}),
    Case("br-personal", "BR", "personal", "ABCDFH", INTERNAL_EXCL),
    Case("jp-internal", "JP", "internal", "ABCDFH", INTERNAL_EXCL),
    Case(
        "none-internal-code-route",
        None,
        "internal",
        "ABCDF",
        {**INTERNAL_EXCL, "H": (DENY, "code-not-self-hosted")},
        route="code",
    ),
    Case("none-public-acme", None, "public", "BCDEFGH", {"A": (ALLOW, "acme-not-openai")}, tenant="acme"),
    Case("free-tier-public-ok", "US", "public", ALL, {}),
    Case(
        "free-tier-restricted-none-region",
        None,
        "restricted",
        "D",
        {
            "A": (ALLOW, "restricted-zero-retention"),
            "B": (ALLOW, "restricted-zero-retention"),
            "C": (ALLOW, "restricted-zero-retention"),
            "E": (UNKNOWN, "no-training"),
            "F": (ALLOW, "restricted-zero-retention"),
            "G": (DENY, "no-training"),
            "H": (UNKNOWN, "restricted-zero-retention"),
        },
    ),
    # --- cutoffs
    Case(
        "cutoff-exact-region",
        "EU",
        "personal",
        "D",
        {**EU_PERSONAL_EXCL, "C": (CUT, None)},
        cutoffs={("mistral", "EU")},
    ),
    Case(
        "cutoff-all-regions",
        "EU",
        "personal",
        "D",
        {**EU_PERSONAL_EXCL, "C": (CUT, None)},
        cutoffs={("mistral", "*")},
    ),
    Case(
        "cutoff-other-region-unaffected",
        "EU",
        "personal",
        "CD",
        EU_PERSONAL_EXCL,
        cutoffs={("mistral", "US")},
    ),
    Case("cutoff-region-needs-tenant-region", None, "public", ALL, {}, cutoffs={("openai", "CN")}),
    Case(
        "cutoff-star-hits-region-less",
        None,
        "public",
        "BCDEFGH",
        {"A": (CUT, None)},
        cutoffs={("openai", "*")},
    ),
    Case(
        "cutoff-case-insensitive",
        "CN",
        "public",
        "F",
        {
            "A": (ALLOW, "cn-domestic-only"),
            "B": (ALLOW, "cn-domestic-only"),
            "C": (ALLOW, "cn-domestic-only"),
            "D": (ALLOW, "cn-domestic-only"),
            "E": (CUT, None),
            "G": (ALLOW, "cn-domestic-only"),
            "H": (UNKNOWN, "cn-domestic-only"),
        },
        cutoffs={("deepseek", "cn")},
    ),
    Case(
        "policy-reason-wins-over-cutoff",
        "US",
        "personal",
        "ACD",
        {
            "B": (CUT, None),
            "E": (UNKNOWN, "no-training"),
            "F": (DENY, "us-personal-no-cn"),
            "G": (DENY, "no-training"),
            "H": (UNKNOWN, "us-personal-no-cn"),
        },
        cutoffs={("openai-us", "US"), ("deepseek", "US")},
    ),
    Case(
        "cutoff-empties-eu-restricted",
        "EU",
        "restricted",
        "",
        {**EU_PERSONAL_EXCL, "C": (ALLOW, "restricted-zero-retention"), "D": (CUT, None)},
        cutoffs={("eu-zero", "EU")},
    ),
    Case("cutoff-us-tenant-ignores-eu-cut", "US", "public", ALL, {}, cutoffs={("eu-zero", "EU")}),
]


def _ids(letters: str) -> tuple[str, ...]:
    return tuple(f"{PROVIDERS[x][0]}/m" for x in letters)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_decide_table(case: Case) -> None:
    req = RequestFacts(case.tenant, case.region, case.data_class, case.route)  # type: ignore[arg-type]
    decision = decide(req, CANDIDATES, POLICY, case.cutoffs)
    assert decision.allowed == _ids(case.allowed)
    got = {ex.deployment_id: (ex.code, ex.rule) for ex in decision.excluded}
    want = {_ids(k)[0]: v for k, v in case.excluded.items()}
    assert got == want
    # Every candidate is either allowed or excluded exactly once, in candidate order.
    order = [c.deployment_id for c in CANDIDATES]
    assert sorted(decision.allowed + tuple(got), key=order.index) == order


def test_table_is_big_enough() -> None:
    assert len(CASES) >= 30


def test_exclusion_messages_explain() -> None:
    req = RequestFacts("t1", "US", "personal", "chat")
    d = decide(req, CANDIDATES, POLICY, {("openai-us", "us")})
    by_id = {e.deployment_id: e for e in d.excluded}
    assert "provider.trains_on_inputs" in by_id["deepseek/m"].message
    assert "unknown" in by_id["deepseek/m"].message and "fail closed" in by_id["deepseek/m"].message
    assert by_id["deepseek/m"].rule_index == 1
    assert "provider.jurisdiction" in by_id["local/m"].message
    assert by_id["openai-us/m"].message == "provider 'openai-us' is cut off for region US"
    assert by_id["openai-us/m"].rule_index is None and by_id["openai-us/m"].rule is None
    assert "denies providers where" in by_id["qwen-cn/m"].message


def test_reason_code_and_to_dict() -> None:
    req = RequestFacts("t1", "EU", "personal", "chat")
    d = decide(req, CANDIDATES, POLICY, {("mistral", "EU")})
    assert d.reason_code == "excluded=7;rules=eu-personal-only;cutoffs=1"
    data = d.to_dict()
    assert data["allowed"] == ["eu-zero/m"]
    assert data["reason_code"] == d.reason_code
    assert {"deployment", "code", "rule_index", "rule", "message"} <= set(data["excluded"][0])
    assert Decision.from_dict(data) == d
    assert decide(RequestFacts("t1", None, "public", "chat"), CANDIDATES, POLICY, ()).reason_code == "none"


def test_reason_code_caps_rule_names() -> None:
    excl = tuple(Exclusion(f"d{i}", "policy_deny", "m", i, f"r{i}") for i in range(10))
    assert Decision((), excl).reason_code == "excluded=10;rules=r0,r1,r2,r3,r4,r5,r6,r7,+2"


def test_no_rules_allows_everything_but_cutoffs() -> None:
    empty = compile_policy(PolicyConfig())
    d = decide(RequestFacts("t", "EU", "restricted", "r"), CANDIDATES, empty, {("local", "eu")})
    assert d.allowed == _ids("ABCDEFG")
    assert [(e.deployment_id, e.code) for e in d.excluded] == [("local/m", "cutoff")]


def test_candidate_order_is_preserved() -> None:
    reversed_cands = list(reversed(CANDIDATES))
    d = decide(RequestFacts("t1", None, "public", "chat"), reversed_cands, POLICY, ())
    assert d.allowed == tuple(c.deployment_id for c in reversed_cands)


def test_verdicts_are_memoized() -> None:
    policy = compile_policy(PolicyConfig.model_validate({"rules": RULES}))
    req = RequestFacts("t1", "EU", "personal", "chat")
    first = decide(req, CANDIDATES, policy, ())
    misses = policy.cache_info().misses
    for _ in range(5):
        assert decide(req, CANDIDATES, policy, ()) == first
    info = policy.cache_info()
    assert info.misses == misses and info.hits >= 5 * len(CANDIDATES)
    # A new cutoff is seen at once although rule verdicts come from the cache.
    assert decide(req, CANDIDATES, policy, {("eu-zero", "*")}).allowed == ("mistral/m",)
    policy.clear_cache()
    assert policy.cache_info().currsize == 0


def test_cache_is_bounded() -> None:
    policy = compile_policy(PolicyConfig.model_validate({"rules": RULES}), cache_size=4)
    for i in range(20):
        decide(RequestFacts(f"t{i}", "EU", "personal", "chat"), CANDIDATES[:2], policy, ())
    assert policy.cache_info().currsize <= 4


def test_policy_defaults_carried() -> None:
    policy = compile_policy(PolicyConfig(default_data_class="personal", pii_detection=False))
    assert policy.default_data_class == "personal" and policy.pii_detection is False


def test_request_facts_validate_class() -> None:
    with pytest.raises(ValueError, match="data class"):
        RequestFacts("t", "EU", "secret", "r")  # type: ignore[arg-type]
