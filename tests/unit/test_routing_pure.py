"""Pure routing pieces: circuit breaker state machine, retry decisions, deployment order."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from relaygate.config.schema import BreakerConfig, DeploymentConfig, RetryConfig, RouteConfig
from relaygate.errors import ErrorClass, UpstreamError
from relaygate.routing.breaker import BreakerBook, BreakerState, CircuitBreaker
from relaygate.routing.retry import Action, backoff_s, counts_against_breaker, decide
from relaygate.routing.strategies import order_deployments

OPEN, CLOSED, HALF = BreakerState.OPEN, BreakerState.CLOSED, BreakerState.HALF_OPEN


def breaker(threshold: int = 3, cooldown: float = 10.0, probes: int = 1) -> CircuitBreaker:
    return CircuitBreaker(
        BreakerConfig(failure_threshold=threshold, cooldown_s=cooldown, half_open_requests=probes)
    )


def trip(br: CircuitBreaker, now: float) -> None:
    for _ in range(br.config.failure_threshold):
        assert br.allow(now)
        br.on_failure(now)
    assert br.state is OPEN


# --------------------------------------------------------------------------- breaker


def test_breaker_starts_closed_and_admits() -> None:
    br = breaker()
    assert br.state is CLOSED
    assert all(br.allow(float(t)) for t in range(100))
    assert br.retry_after(0.0) == 0.0


@pytest.mark.parametrize("threshold", [1, 2, 5])
def test_breaker_opens_after_threshold_consecutive_failures(threshold: int) -> None:
    br = breaker(threshold=threshold)
    for i in range(threshold - 1):
        br.on_failure(float(i))
        assert br.state is CLOSED and br.allow(float(i))
    br.on_failure(100.0)
    assert br.state is OPEN
    assert br.opened_at == 100.0
    assert not br.allow(100.0)


def test_success_resets_the_failure_count() -> None:
    br = breaker(threshold=3)
    for t in range(10):
        br.on_failure(t)
        br.on_failure(t + 0.5)
        br.on_success()  # never three in a row
        assert br.state is CLOSED and br.failures == 0
    br.on_failure(20.0)
    br.on_failure(21.0)
    br.on_failure(22.0)
    assert br.state is OPEN


def test_neutral_outcome_neither_counts_nor_resets_in_closed() -> None:
    br = breaker(threshold=2)
    br.on_failure(1.0)
    br.on_neutral()
    assert br.failures == 1 and br.state is CLOSED
    br.on_failure(2.0)
    assert br.state is OPEN


@pytest.mark.parametrize(
    ("now", "allowed", "retry_after"),
    [
        (100.0, False, 10.0),
        (100.001, False, 9.999),
        (105.0, False, 5.0),
        (109.999, False, 0.001),
        (110.0, True, 0.0),  # cooldown elapsed exactly: first probe goes through
        (250.0, True, 0.0),
    ],
)
def test_open_rejects_until_cooldown(now: float, allowed: bool, retry_after: float) -> None:
    br = breaker(threshold=1, cooldown=10.0)
    br.on_failure(100.0)
    assert br.retry_after(now) == pytest.approx(retry_after)
    assert br.allow(now) is allowed
    assert br.state is (HALF if allowed else OPEN)


@pytest.mark.parametrize("probes", [1, 2, 3])
def test_half_open_admits_exactly_n_probes(probes: int) -> None:
    br = breaker(threshold=1, cooldown=5.0, probes=probes)
    br.on_failure(0.0)
    admitted = [br.allow(5.0 + i * 0.01) for i in range(probes + 3)]
    assert admitted == [True] * probes + [False] * 3
    assert br.state is HALF
    assert br.retry_after(6.0) == 0.0  # not OPEN any more


@pytest.mark.parametrize("probes", [1, 2])
def test_probe_success_closes(probes: int) -> None:
    br = breaker(threshold=2, cooldown=5.0, probes=probes)
    trip(br, 0.0)
    assert br.allow(5.0)
    br.on_success()
    assert br.state is CLOSED and br.failures == 0 and br.probes == 0
    assert all(br.allow(5.0) for _ in range(10))
    br.on_failure(6.0)  # count started fresh: one failure does not re-open
    assert br.state is CLOSED


def test_probe_failure_reopens_with_fresh_cooldown() -> None:
    br = breaker(threshold=2, cooldown=10.0)
    trip(br, 0.0)
    assert br.allow(10.0)
    br.on_failure(12.0)
    assert br.state is OPEN and br.opened_at == 12.0
    assert br.retry_after(12.0) == pytest.approx(10.0)
    assert not br.allow(21.9)
    assert br.allow(22.0)
    assert br.state is HALF


def test_half_open_single_failure_reopens_even_with_high_threshold() -> None:
    br = breaker(threshold=5, cooldown=1.0)
    trip(br, 0.0)
    assert br.allow(1.0)
    br.on_failure(1.5)
    assert br.state is OPEN


@pytest.mark.parametrize("probes", [1, 2])
def test_neutral_frees_a_probe_slot(probes: int) -> None:
    br = breaker(threshold=1, cooldown=1.0, probes=probes)
    br.on_failure(0.0)
    for _ in range(probes):
        assert br.allow(1.0)
    assert not br.allow(1.0)
    br.on_neutral()
    assert br.state is HALF
    assert br.allow(1.0)
    assert not br.allow(1.0)


def test_neutral_never_goes_below_zero_probes() -> None:
    br = breaker(threshold=1, cooldown=1.0, probes=1)
    br.on_failure(0.0)
    assert br.allow(1.0)
    br.on_neutral()
    br.on_neutral()
    br.on_neutral()
    assert br.probes == 0
    assert br.allow(1.0)
    assert not br.allow(1.0)


def test_neutral_while_open_changes_nothing() -> None:
    br = breaker(threshold=1, cooldown=10.0)
    br.on_failure(0.0)
    br.on_neutral()
    assert br.state is OPEN and not br.allow(5.0)


def test_second_open_cycle_admits_probes_again() -> None:
    br = breaker(threshold=1, cooldown=1.0, probes=2)
    br.on_failure(0.0)
    assert br.allow(1.0) and br.allow(1.0) and not br.allow(1.0)
    br.on_failure(1.5)  # probe fails: re-open, probe slots reset
    assert not br.allow(2.0)
    assert br.allow(2.5) and br.allow(2.5) and not br.allow(2.5)


def test_breaker_book_one_per_deployment() -> None:
    book = BreakerBook(BreakerConfig(failure_threshold=1))
    a, b = book.get("a"), book.get("b")
    assert book.get("a") is a and a is not b
    a.on_failure(0.0)
    assert book.states() == {"a": OPEN, "b": CLOSED}


# --------------------------------------------------------------------------- retry


def up(cls: ErrorClass, retry_after_s: float | None = None) -> UpstreamError:
    return UpstreamError("x", error_class=cls, retry_after_s=retry_after_s)


CFG = RetryConfig(max_attempts=3, backoff_base_ms=100, backoff_max_ms=2_000, max_wait_ms=3_000)

MOVE_ON = [
    ErrorClass.REGION_BLOCKED,
    ErrorClass.QUOTA_EXHAUSTED,
    ErrorClass.TIMEOUT,
    ErrorClass.CONNECTION,
    ErrorClass.CONTEXT_LENGTH,
    ErrorClass.CONTENT_POLICY,
    ErrorClass.AUTH,
    ErrorClass.STREAM_CUT,
    ErrorClass.MALFORMED,
    ErrorClass.CIRCUIT_OPEN,
    ErrorClass.COOLDOWN,
    ErrorClass.UNSUPPORTED,
]


@pytest.mark.parametrize("attempt", [1, 2, 5])
def test_client_error_is_relayed(attempt: int) -> None:
    d = decide(up(ErrorClass.CLIENT_ERROR, retry_after_s=0.1), attempt, CFG, random.Random(0))
    assert d.action is Action.RELAY and d.delay_s == 0.0


@pytest.mark.parametrize("cls", MOVE_ON)
@pytest.mark.parametrize("retry_after", [None, 0.0, 1.0])
def test_non_retryable_classes_move_on_at_once(cls: ErrorClass, retry_after: float | None) -> None:
    d = decide(up(cls, retry_after), 1, CFG, random.Random(0))
    assert d.action is Action.NEXT and d.delay_s == 0.0


@pytest.mark.parametrize("cls", [ErrorClass.RATE_LIMITED, ErrorClass.SERVER_ERROR])
@pytest.mark.parametrize(
    ("attempt", "max_attempts", "action"),
    [
        (1, 1, Action.NEXT),
        (1, 2, Action.RETRY),
        (2, 2, Action.NEXT),
        (1, 3, Action.RETRY),
        (2, 3, Action.RETRY),
        (3, 3, Action.NEXT),
        (4, 3, Action.NEXT),
        (9, 10, Action.RETRY),
        (10, 10, Action.NEXT),
    ],
)
def test_retryable_until_max_attempts(
    cls: ErrorClass, attempt: int, max_attempts: int, action: Action
) -> None:
    cfg = RetryConfig(max_attempts=max_attempts)
    d = decide(up(cls), attempt, cfg, random.Random(0))
    assert d.action is action
    if action is Action.NEXT:
        assert d.delay_s == 0.0


@pytest.mark.parametrize(
    ("retry_after", "max_wait_ms", "action", "delay"),
    [
        (0.0, 3_000, Action.RETRY, 0.0),
        (0.5, 3_000, Action.RETRY, 0.5),
        (2.999, 3_000, Action.RETRY, 2.999),
        (3.0, 3_000, Action.RETRY, 3.0),  # exactly max_wait: still waited out
        (3.001, 3_000, Action.NEXT, 0.0),
        (60.0, 3_000, Action.NEXT, 0.0),
        (0.001, 0, Action.NEXT, 0.0),
        (0.0, 0, Action.RETRY, 0.0),
        (10.0, 10_000, Action.RETRY, 10.0),
    ],
)
@pytest.mark.parametrize("cls", [ErrorClass.RATE_LIMITED, ErrorClass.SERVER_ERROR])
def test_retry_after_within_max_wait(
    cls: ErrorClass, retry_after: float, max_wait_ms: int, action: Action, delay: float
) -> None:
    cfg = RetryConfig(max_attempts=3, max_wait_ms=max_wait_ms, backoff_base_ms=1, backoff_max_ms=1)
    d = decide(up(cls, retry_after), 1, cfg, random.Random(0))
    assert d.action is action
    assert d.delay_s == pytest.approx(delay)


def test_retry_after_does_not_extend_max_attempts() -> None:
    d = decide(up(ErrorClass.RATE_LIMITED, 0.1), 3, CFG, random.Random(0))
    assert d.action is Action.NEXT


@pytest.mark.parametrize(
    ("attempt", "base", "cap_ms", "bound_s"),
    [
        (1, 100, 2_000, 0.1),
        (2, 100, 2_000, 0.2),
        (3, 100, 2_000, 0.4),
        (5, 100, 2_000, 1.6),
        (6, 100, 2_000, 2.0),
        (10, 100, 2_000, 2.0),
        (1, 0, 2_000, 0.0),
        (3, 500, 1_000, 1.0),
        (1, 250, 0, 0.0),
    ],
)
def test_backoff_full_jitter_bounds(attempt: int, base: int, cap_ms: int, bound_s: float) -> None:
    cfg = RetryConfig(backoff_base_ms=base, backoff_max_ms=cap_ms)
    rng = random.Random(42)
    xs = [backoff_s(attempt, cfg, rng) for _ in range(2000)]
    assert all(0.0 <= x <= bound_s for x in xs)
    if bound_s > 0:
        # full jitter: spread over the whole range, not pinned to the cap
        assert min(xs) < 0.1 * bound_s and max(xs) > 0.9 * bound_s
        assert sum(xs) / len(xs) == pytest.approx(bound_s / 2, rel=0.1)


def test_backoff_is_deterministic_for_a_seed() -> None:
    a = [backoff_s(2, CFG, r) for r in [random.Random(7)] for _ in range(5)]
    b = [backoff_s(2, CFG, r) for r in [random.Random(7)] for _ in range(5)]
    assert a == b


@pytest.mark.parametrize("cls", [ErrorClass.RATE_LIMITED, ErrorClass.SERVER_ERROR])
@pytest.mark.parametrize("attempt", [1, 2])
def test_decide_uses_backoff_without_retry_after(cls: ErrorClass, attempt: int) -> None:
    d = decide(up(cls), attempt, CFG, random.Random(3))
    assert d.action is Action.RETRY
    assert d.delay_s == backoff_s(attempt, CFG, random.Random(3))
    assert 0.0 <= d.delay_s <= min(CFG.backoff_max_ms, CFG.backoff_base_ms * 2 ** (attempt - 1)) / 1000


@pytest.mark.parametrize(
    ("cls", "counts"),
    [
        (ErrorClass.SERVER_ERROR, True),
        (ErrorClass.TIMEOUT, True),
        (ErrorClass.CONNECTION, True),
        (ErrorClass.MALFORMED, True),
        (ErrorClass.STREAM_CUT, True),
        (ErrorClass.REGION_BLOCKED, True),
        (ErrorClass.AUTH, True),
        (ErrorClass.QUOTA_EXHAUSTED, True),
        (ErrorClass.RATE_LIMITED, False),
        (ErrorClass.CLIENT_ERROR, False),
        (ErrorClass.CONTEXT_LENGTH, False),
        (ErrorClass.CONTENT_POLICY, False),
        (ErrorClass.UNSUPPORTED, False),
    ],
)
def test_counts_against_breaker(cls: ErrorClass, counts: bool) -> None:
    assert counts_against_breaker(cls) is counts


# --------------------------------------------------------------------------- strategies


def route(strategy: str, weights: list[float]) -> RouteConfig:
    return RouteConfig(
        strategy=strategy,  # type: ignore[arg-type]
        deployments=[DeploymentConfig(provider="p", model=f"m{i}", weight=w) for i, w in enumerate(weights)],
    )


def ids(deps: list[DeploymentConfig]) -> list[str]:
    return [d.deployment_id for d in deps]


@pytest.mark.parametrize("weights", [[1.0], [1.0, 1.0], [5.0, 1.0, 0.1], [0.1, 0.2, 100.0, 3.0]])
def test_priority_keeps_config_order(weights: list[float]) -> None:
    r = route("priority", weights)
    for seed in range(20):
        assert ids(order_deployments(r, random.Random(seed))) == [f"p/m{i}" for i in range(len(weights))]


def test_order_returns_a_new_list() -> None:
    r = route("priority", [1.0, 1.0])
    out = order_deployments(r, random.Random(0))
    assert out == list(r.deployments) and out is not r.deployments


@pytest.mark.parametrize("weights", [[1.0], [1.0, 1.0], [9.0, 1.0], [3.0, 2.0, 1.0, 0.5, 0.01]])
def test_weighted_is_a_permutation(weights: list[float]) -> None:
    r = route("weighted", weights)
    rng = random.Random(11)
    for _ in range(300):
        out = ids(order_deployments(r, rng))
        assert sorted(out) == sorted(ids(list(r.deployments)))
        assert len(out) == len(set(out)) == len(weights)


@pytest.mark.parametrize(
    ("weights", "share_first"),
    [
        ([9.0, 1.0], [0.9, 0.1]),
        ([1.0, 9.0], [0.1, 0.9]),
        ([1.0, 1.0], [0.5, 0.5]),
        ([2.0, 1.0, 1.0], [0.5, 0.25, 0.25]),
    ],
)
def test_weighted_first_choice_follows_weights(weights: list[float], share_first: list[float]) -> None:
    r = route("weighted", weights)
    rng = random.Random(20240601)
    n = 2000
    firsts = Counter(order_deployments(r, rng)[0].model for _ in range(n))
    for i, share in enumerate(share_first):
        assert abs(firsts[f"m{i}"] / n - share) <= 0.03, (firsts, weights)


def test_weighted_9_to_1_over_many_seeds() -> None:
    r = route("weighted", [9.0, 1.0])
    for seed in range(5):
        rng = random.Random(seed)
        heavy_first = sum(order_deployments(r, rng)[0].model == "m0" for _ in range(2000))
        assert abs(heavy_first / 2000 - 0.9) <= 0.03, (seed, heavy_first)


def test_weighted_is_deterministic_for_a_seed() -> None:
    r = route("weighted", [3.0, 2.0, 1.0])
    a = [ids(order_deployments(r, random.Random(5))) for _ in range(3)]
    rng1, rng2 = random.Random(99), random.Random(99)
    assert [ids(order_deployments(r, rng1)) for _ in range(50)] == [
        ids(order_deployments(r, rng2)) for _ in range(50)
    ]
    assert a[0] == a[1] == a[2]


def test_weighted_fallback_order_also_follows_weights() -> None:
    # Sampling without replacement: with 6:3:1 the second place given m0 first is m1 with p = 3/4.
    r = route("weighted", [6.0, 3.0, 1.0])
    rng = random.Random(8)
    seconds: Counter[str] = Counter()
    for _ in range(4000):
        out = order_deployments(r, rng)
        if out[0].model == "m0":
            seconds[out[1].model] += 1
    total = sum(seconds.values())
    assert abs(seconds["m1"] / total - 0.75) <= 0.03
