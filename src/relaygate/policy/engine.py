"""The policy decision: which candidate deployments may serve a request, and why the others may not.

``compile_policy`` compiles every rule once at load (bad rules fail start-up naming their index);
``decide`` is a pure function of (request facts, candidates, compiled policy, cutoffs in force).

Semantics, in order, for each candidate:

1. Every rule whose match fits the request (and, for ``match.tags``, the candidate) applies, in
   config order. ``allow_only`` keeps the candidate only if its condition is true; ``deny``
   removes it if its condition is true. Rules only ever narrow the set, so failover across the
   allowed list can never reach a deployment policy excluded.
2. Fail closed: a condition that reads an unknown fact (absent from ``provider``), errors, or is
   not a bool removes the candidate under both effects (``fact_unknown`` / ``eval_error``).
3. A candidate that survives the rules is removed if its provider is cut off for the request's
   tenant region (``(provider, REGION)`` or ``(provider, "*")`` in ``cutoffs``).

The first reason that removes a candidate is the one recorded. Rule verdicts are static given
the config, so ``CompiledPolicy`` memoizes them per (candidate, request facts) in a bounded LRU;
cutoffs change at run time and are checked on every call.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from relaygate.config.policy_schema import DATA_CLASSES, DataClass, PolicyConfig
from relaygate.policy.expression import (
    GROUPS,
    Expression,
    ExpressionError,
    compile_expression,
    evaluate,
    new_context,
)
from relaygate.policy.model import Candidate, Decision, Exclusion, RequestFacts

__all__ = ["CompiledPolicy", "CompiledRule", "PolicyError", "compile_policy", "decide"]

ALL_REGIONS = "*"
DEFAULT_CACHE_SIZE = 65_536


class PolicyError(ValueError):
    """A rule failed to compile. ``str()`` is ``policy.rules.<index> (<name>): <message>``."""

    def __init__(self, index: int, name: str, message: str) -> None:
        super().__init__(f"policy.rules.{index} ({name}): {message}")
        self.index, self.name, self.message = index, name, message


@dataclass(frozen=True, slots=True)
class CompiledRule:
    """One rule, ready to run. Match sets are ``None`` for "any"."""

    index: int
    name: str
    effect: Literal["allow_only", "deny"]
    expression: Expression
    tenant_regions: frozenset[str] | None
    data_classes: frozenset[str] | None
    min_rank: int | None
    routes: frozenset[str] | None
    tenants: frozenset[str] | None
    tags: frozenset[str] | None

    def matches(self, request: RequestFacts) -> bool:
        """Does this rule apply to the request? A request with no region only matches rules without one."""
        if self.tenant_regions is not None and request.tenant_region not in self.tenant_regions:
            return False
        if self.data_classes is not None and request.data_class not in self.data_classes:
            return False
        if self.min_rank is not None and DATA_CLASSES.index(request.data_class) < self.min_rank:
            return False
        if self.routes is not None and request.route not in self.routes:
            return False
        return self.tenants is None or request.tenant in self.tenants

    def covers(self, candidate: Candidate) -> bool:
        """Does this rule look at this candidate? (``match.tags``: any provider tag in common.)"""
        return self.tags is None or not self.tags.isdisjoint(candidate.facts.tags)


class CompiledPolicy:
    """Compiled rules plus the policy defaults; memoizes rule verdicts (bounded LRU, per instance).

    ``verdict(candidate, request)`` is the hot-path call: a cache hit costs a hash and a dict
    lookup. ``cache_info()`` exposes the hit/miss counters (for metrics and the benchmark).
    """

    __slots__ = ("_matching", "_verdict", "default_data_class", "pii_detection", "rules")

    def __init__(
        self,
        rules: Sequence[CompiledRule],
        *,
        default_data_class: DataClass = "internal",
        pii_detection: bool = True,
        cache_size: int = DEFAULT_CACHE_SIZE,
    ) -> None:
        self.rules: tuple[CompiledRule, ...] = tuple(rules)
        self.default_data_class: DataClass = default_data_class
        self.pii_detection = pii_detection
        # Closures over the rules tuple (not ``self``), so no reference cycle through the caches.
        matching: Callable[[RequestFacts], tuple[CompiledRule, ...]] = functools.lru_cache(maxsize=4096)(
            functools.partial(_matching_rules, self.rules)
        )
        self._matching = matching
        self._verdict: Any = functools.lru_cache(maxsize=cache_size)(functools.partial(_judge, matching))

    def verdict(self, candidate: Candidate, request: RequestFacts) -> Exclusion | None:
        """The exclusion the rules impose on ``candidate`` for ``request``, or ``None`` if it may serve."""
        result: Exclusion | None = self._verdict(candidate, request)
        return result

    def cache_info(self) -> Any:
        """``functools`` cache statistics of the verdict memo (hits, misses, maxsize, currsize)."""
        return self._verdict.cache_info()

    def clear_cache(self) -> None:
        self._verdict.cache_clear()
        self._matching.cache_clear()  # type: ignore[attr-defined]


def compile_policy(cfg: PolicyConfig, *, cache_size: int = DEFAULT_CACHE_SIZE) -> CompiledPolicy:
    """Compile every rule of ``cfg``; raise ``PolicyError(index, name, message)`` on the first bad one.

    Bad means: CEL syntax error, unknown variable / field / function, or a condition that is
    not a bool. Cost: ~1-3 ms per rule (the first call also imports the CEL library, ~0.25 s).
    """
    compiled = []
    for i, rule in enumerate(cfg.rules):
        try:
            expr = compile_expression(rule.condition)
        except ExpressionError as exc:
            raise PolicyError(i, rule.name, f"{rule.effect}: {exc}") from exc
        m = rule.match
        compiled.append(
            CompiledRule(
                index=i,
                name=rule.name,
                effect=rule.effect,
                expression=expr,
                tenant_regions=_regions(m.tenant_region) if m.tenant_region else None,
                data_classes=_set(m.data_class) if m.data_class else None,
                min_rank=DATA_CLASSES.index(m.min_data_class) if m.min_data_class else None,
                routes=_set(m.route) if m.route else None,
                tenants=_set(m.tenant) if m.tenant else None,
                tags=_set(m.tags) if m.tags else None,
            )
        )
    return CompiledPolicy(
        compiled,
        default_data_class=cfg.default_data_class,
        pii_detection=cfg.pii_detection,
        cache_size=cache_size,
    )


def decide(
    request: RequestFacts,
    candidates: Sequence[Candidate],
    policy: CompiledPolicy,
    cutoffs: Collection[tuple[str, str]],
) -> Decision:
    """Filter ``candidates`` (in router order) for ``request``; pure, no I/O.

    ``cutoffs`` holds ``(provider_name, region)`` pairs in force; region ``"*"`` cuts every region,
    and regions compare case-insensitively with ``request.tenant_region`` (already upper-cased).
    A request without a tenant region is hit only by ``"*"`` cutoffs. Returns the allowed
    deployment ids in candidate order and one ``Exclusion`` per removed candidate.
    """
    cut = _normalize_cutoffs(cutoffs) if cutoffs else frozenset()
    allowed: list[str] = []
    excluded: list[Exclusion] = []
    region = request.tenant_region
    for cand in candidates:
        ex = policy.verdict(cand, request)
        if ex is None and cut:
            scope = _cut_scope(cut, cand.provider, region)
            if scope is not None:
                where = "every region" if scope == ALL_REGIONS else f"region {scope}"
                ex = Exclusion(
                    cand.deployment_id, "cutoff", f"provider {cand.provider!r} is cut off for {where}"
                )
        if ex is None:
            allowed.append(cand.deployment_id)
        else:
            excluded.append(ex)
    return Decision(tuple(allowed), tuple(excluded))


def _set(values: Any) -> frozenset[str]:
    return frozenset(values)


def _normalize_cutoffs(cutoffs: Collection[tuple[str, str]]) -> frozenset[tuple[str, str]]:
    return frozenset((p, r if r == ALL_REGIONS else r.upper()) for p, r in cutoffs)


def _cut_scope(cut: frozenset[tuple[str, str]], provider: str, region: str | None) -> str | None:
    if (provider, ALL_REGIONS) in cut:
        return ALL_REGIONS
    if region is not None and (provider, region) in cut:
        return region
    return None


def _matching_rules(rules: tuple[CompiledRule, ...], request: RequestFacts) -> tuple[CompiledRule, ...]:
    return tuple(r for r in rules if r.matches(request))


def _judge(
    matching: Callable[[RequestFacts], tuple[CompiledRule, ...]], candidate: Candidate, request: RequestFacts
) -> Exclusion | None:
    """Run the applicable rules on one candidate (uncached); first removal wins."""
    rules = [r for r in matching(request) if r.covers(candidate)]
    if not rules:
        return None
    variables = {
        "provider": candidate.facts.cel_map(candidate.provider),
        "deployment": {"id": candidate.deployment_id, "model": candidate.model},
        "request": request.cel_map(),
    }
    context = new_context(variables, with_groups=any(r.expression.uses_groups for r in rules))
    for rule in rules:
        ex = _apply(rule, candidate, evaluate(rule.expression, context))
        if ex is not None:
            return ex
    return None


def _apply(rule: CompiledRule, cand: Candidate, outcome: Any) -> Exclusion | None:
    where = f"rule {rule.name!r} (policy.rules.{rule.index})"
    src = rule.expression.source.strip()
    if outcome.unknown is not None:
        subject = "this request" if outcome.unknown.startswith("request.") else f"provider {cand.provider!r}"
        msg = f"{where} needs {outcome.unknown}, which is unknown for {subject}; excluded (fail closed)"
        return Exclusion(cand.deployment_id, "fact_unknown", msg, rule.index, rule.name)
    if outcome.value is None:
        msg = (
            f"{where} could not be evaluated for provider {cand.provider!r} ({outcome.error}); "
            "excluded (fail closed)"
        )
        return Exclusion(cand.deployment_id, "eval_error", msg, rule.index, rule.name)
    if rule.effect == "allow_only" and not outcome.value:
        msg = f"{where} allows only providers where `{src}`; provider {cand.provider!r} does not qualify"
        return Exclusion(cand.deployment_id, "policy_allow_only", msg, rule.index, rule.name)
    if rule.effect == "deny" and outcome.value:
        msg = f"{where} denies providers where `{src}`; provider {cand.provider!r} does"
        return Exclusion(cand.deployment_id, "policy_deny", msg, rule.index, rule.name)
    return None


def _regions(names: list[str]) -> frozenset[str]:
    """Rule regions, upper case, with groups expanded: ``[EU]`` matches a tenant in ``DE`` too."""
    out: set[str] = set()
    for name in names:
        out.add(name.upper())
        out.update(GROUPS.get(name.upper(), ()))
    return frozenset(out)
