"""The response cache: exact-match (in-process LRU or Redis) and opt-in semantic lookups, scoped
per tenant and route. ``keys`` is pure; ``service.ResponseCache`` is what the gateway calls."""

from relaygate.cache.entry import CacheEntry
from relaygate.cache.keys import KEY_VERSION, CacheKeys, cache_keys, skip_reason
from relaygate.cache.service import Lookup, ResponseCache, build_response_cache

__all__ = [
    "KEY_VERSION",
    "CacheEntry",
    "CacheKeys",
    "Lookup",
    "ResponseCache",
    "build_response_cache",
    "cache_keys",
    "skip_reason",
]
