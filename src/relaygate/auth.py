"""Virtual-key authentication: ``Authorization: Bearer <key>`` -> ``Principal`` (tenant).

Keys come from two places: the database (``relaygate keys create``, stored as sha256) and
the config (``tenants.<name>.keys``: an env var holding the key, or its sha256). In
``auth.mode: open`` (loopback only) a request whose key is missing or unknown is the
``default`` tenant: the SDKs insist on some key, so any placeholder works; a known key still
maps to its own tenant.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from typing import Protocol

from relaygate.config.schema import Config
from relaygate.errors import AuthenticationError

__all__ = ["Authenticator", "KeyLookup", "Principal", "is_virtual_key"]

log = logging.getLogger("relaygate.auth")


@dataclass(frozen=True, slots=True)
class Principal:
    tenant: str
    region: str | None
    key_id: str | None
    allowed_routes: frozenset[str] | None  # None: every route


class _KeyInfo(Protocol):
    @property
    def key_id(self) -> str: ...
    @property
    def tenant(self) -> str: ...
    @property
    def region(self) -> str | None: ...


class KeyLookup(Protocol):
    async def alookup(self, plaintext: str) -> _KeyInfo | None: ...


class Authenticator:
    def __init__(self, config: Config, keys: KeyLookup | None) -> None:
        self.config = config
        self.keys = keys
        self._config_keys: dict[str, str] = {}  # sha256 hex -> tenant
        self._warned: set[tuple[str, str]] = set()
        for tname, tenant in config.tenants.items():
            for ref in tenant.keys:
                digest = ref.key_sha256
                if ref.key_env:
                    value = os.environ.get(ref.key_env)
                    if not value:
                        log.warning(
                            "tenant %s: env var %s is not set; that key is disabled", tname, ref.key_env
                        )
                        continue
                    digest = hashlib.sha256(value.encode()).hexdigest()
                if digest:
                    self._config_keys[digest] = tname

    def _principal(self, tenant: str, region: str | None, key_id: str | None) -> Principal:
        """The config's tenant region wins over the database's: a key created with another
        region must not move a tenant out from under its policy (e.g. an EU-only rule)."""
        tc = self.config.tenants.get(tenant)
        allowed = frozenset(tc.allowed_routes) if tc and tc.allowed_routes is not None else None
        if tc is not None and tc.region:
            if region and region.upper() != tc.region.upper() and (tenant, region) not in self._warned:
                self._warned.add((tenant, region))
                log.warning(
                    "tenant %s: the database says region %s, the config says %s; using the config",
                    tenant,
                    region,
                    tc.region,
                )
            region = tc.region
        region = region or self.config.auth.default_region
        return Principal(tenant, region.upper() if region else None, key_id, allowed)

    async def authenticate(self, authorization: str | None, x_api_key: str | None = None) -> Principal:
        """Raises ``AuthenticationError`` (401) for a missing or unknown/revoked key (``keys`` mode)."""
        key = _bearer(authorization) or (x_api_key or "").strip() or None
        if key is None:
            if self.config.auth.mode == "open":
                return self._principal("default", None, None)
            raise AuthenticationError(
                "You didn't provide an API key. You need to provide your API key in an Authorization "
                "header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
                code="missing_api_key",
            )
        digest = hashlib.sha256(key.encode()).hexdigest()
        tenant = self._config_keys.get(digest)
        if tenant is not None:
            return self._principal(tenant, None, f"cfg_{digest[:8]}")
        info = await self.keys.alookup(key) if self.keys is not None else None
        if info is None:
            if self.config.auth.mode == "open":
                return self._principal("default", None, None)
            shown = key[:6] + "..." if len(key) > 10 else "***"
            raise AuthenticationError(
                f"Incorrect API key provided: {shown}. Create one with `relaygate keys create --tenant NAME`."
            )
        return self._principal(info.tenant, info.region, info.key_id)


async def is_virtual_key(auth: Authenticator, token: str) -> bool:
    """Is ``token`` a valid virtual key (config or database)? Used to answer 403, not 401,
    when one is presented where only the admin key is accepted."""
    if hashlib.sha256(token.encode()).hexdigest() in auth._config_keys:
        return True
    return auth.keys is not None and await auth.keys.alookup(token) is not None


def _bearer(value: str | None) -> str | None:
    if not value:
        return None
    scheme, _, token = value.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None
