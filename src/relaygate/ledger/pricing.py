"""Cost of one request in USD from token counts and a deployment's prices.

Prices are USD per 1M tokens (as providers publish them). Cached prompt tokens are billed at
``cached_input`` when set, else at ``input``.
"""

from __future__ import annotations

from relaygate.config.schema import Price

__all__ = ["cost_usd"]


def cost_usd(
    price: Price, prompt_tokens: int | None, completion_tokens: int | None, cached_tokens: int | None = None
) -> float | None:
    """USD cost; None when upstream reported no usage at all.

    ``prompt_tokens`` includes ``cached_tokens`` (OpenAI's convention: cached tokens are a
    subset of prompt tokens, ``usage.prompt_tokens_details.cached_tokens``).
    """
    if prompt_tokens is None and completion_tokens is None:
        return None
    prompt = prompt_tokens or 0
    cached = min(cached_tokens or 0, prompt)
    cached_rate = price.cached_input if price.cached_input is not None else price.input
    total = (prompt - cached) * price.input + cached * cached_rate + (completion_tokens or 0) * price.output
    return round(total / 1_000_000, 12)
