"""Admin API under ``/admin/*``: tenants, keys, cutoffs, policy dry-run, reload, audit, usage.

Only the admin key (the value of env var ``admin.key_env``, default ``RELAYGATE_ADMIN_KEY``)
is accepted: a missing or wrong key is 401, a virtual key is 403, and with no admin key
configured the API answers 403 ``admin_disabled``. Every change writes an audit event with
actor ``admin-api``. The OpenAPI description is served at ``GET /admin/openapi.json``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hmac
import os
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.schemas import SchemaGenerator

from relaygate.api.error_render import openai_error_body
from relaygate.auth import Principal, is_virtual_key
from relaygate.config.regions import check_cutoff_region, check_region
from relaygate.durations import parse_duration
from relaygate.errors import (
    AuthenticationError,
    GatewayError,
    InvalidRequestError,
    NotFoundError,
    PermissionDeniedError,
)
from relaygate.pipeline import Gateway
from relaygate.protocols.openai import parse_chat_request

__all__ = ["admin_routes"]

ACTOR = "admin-api"
_JSON = "application/json"


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


_REGION_DOC = "ISO 3166-1 alpha-2 code (DE, CN, US), EU or EEA"


class KeyCreate(_Body):
    tenant: str = Field(min_length=1, max_length=128)
    region: str | None = Field(None, description=_REGION_DOC)

    @field_validator("region")
    @classmethod
    def _region(cls, v: str | None) -> str | None:
        return check_region(v)


class TenantUpsert(_Body):
    region: str | None = Field(None, description=_REGION_DOC)

    @field_validator("region")
    @classmethod
    def _region(cls, v: str | None) -> str | None:
        return check_region(v)


class CutoffSet(_Body):
    """At most one expiry: ``expires_in`` (a duration, as ``relaygate cutoff set --expires``),
    ``expires_at`` (RFC 3339 with an offset) or ``expires_in_s`` (seconds); none: until cleared."""

    provider: str = Field(min_length=1, description="a provider of the config")
    region: str = Field("*", description=f"{_REGION_DOC}, or * for every region")
    reason: str = Field(min_length=1)
    expires_in: str | None = Field(None, description="duration: 30m, 2h, 1d, 1w, 1h30m", examples=["2h"])
    expires_at: AwareDatetime | None = Field(None, description="RFC 3339, e.g. 2030-01-01T00:00:00Z")
    expires_in_s: float | None = Field(None, gt=0, description="seconds")

    @field_validator("region")
    @classmethod
    def _region(cls, v: str) -> str:
        return check_cutoff_region(v)

    @field_validator("expires_in")
    @classmethod
    def _duration(cls, v: str | None) -> str | None:
        if v is not None:
            parse_duration(v)
        return v

    @model_validator(mode="after")
    def _one_expiry(self) -> CutoffSet:
        given = [n for n in ("expires_in", "expires_at", "expires_in_s") if getattr(self, n) is not None]
        if len(given) > 1:
            both = " and ".join(given)
            raise ValueError(f"give at most one of expires_in, expires_at, expires_in_s, not {both}")
        return self

    def expiry(self, now: datetime) -> datetime | None:
        """When the cutoff lifts (aware UTC), or None. Raises ``ValueError`` for a past ``expires_at``."""
        if self.expires_at is not None:
            if self.expires_at <= now:
                raise ValueError(f"expires_at {self.expires_at.isoformat()} is not in the future")
            return self.expires_at.astimezone(UTC)
        if self.expires_in is not None:
            return now + parse_duration(self.expires_in)
        return now + timedelta(seconds=self.expires_in_s) if self.expires_in_s else None


class Explain(_Body):
    """A dry run: the request body as a client would send it, and who sends it."""

    tenant: str = "default"
    region: str | None = None
    data_class: str | None = None
    request: dict[str, Any]


def _json(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data, default=str, option=orjson.OPT_NON_STR_KEYS), status, media_type=_JSON)


async def _parse(request: Request, model: type[BaseModel]) -> Any:
    try:
        return model.model_validate_json(await request.body())
    except ValidationError as exc:
        first = exc.errors()[0]
        msg = str(first["msg"]).removeprefix("Value error, ")
        raise InvalidRequestError(
            f"{'.'.join(map(str, first['loc'])) or 'body'}: {msg}",
            param=".".join(map(str, first["loc"])) or None,
        ) from exc


async def _authorize(request: Request, gw: Gateway) -> None:
    env = gw.config.admin.key_env
    expected = os.environ.get(env)
    if not expected:
        raise PermissionDeniedError(
            f"The admin API is disabled: set the {env} environment variable.", code="admin_disabled"
        )
    header = request.headers.get("authorization", "")
    token = header[7:].strip() if header.lower().startswith("bearer ") else ""
    if not token:
        raise AuthenticationError(
            "The admin API needs the admin key: Authorization: Bearer <admin key>.", code="missing_api_key"
        )
    if hmac.compare_digest(token.encode(), expected.encode()):
        return
    if await is_virtual_key(gw.runtime.auth, token):
        raise PermissionDeniedError("Virtual keys cannot use the admin API.", code="admin_key_required")
    raise AuthenticationError("Incorrect admin key.")


def _endpoint(handler: Any) -> Any:
    async def wrapped(request: Request) -> Response:
        gw: Gateway = request.app.state.gateway
        try:
            await _authorize(request, gw)
            return await handler(request, gw)
        except GatewayError as err:
            return Response(openai_error_body(err), err.status, err.headers, media_type=_JSON)

    wrapped.__doc__ = handler.__doc__
    wrapped.__name__ = handler.__name__
    return wrapped


def _storage(request: Request) -> Any:
    storage = getattr(request.app.state, "storage", None)
    if storage is None:
        raise NotFoundError(
            "This gateway runs without storage; keys, tenants and audit are unavailable.",
            code="storage_disabled",
        )
    return storage


async def list_tenants(request: Request, gw: Gateway) -> Response:
    """
    summary: Tenants from the database and the config
    responses: {200: {description: "list of tenants"}}
    """
    rows = await asyncio.to_thread(_storage(request).keys.list_tenants)
    db = [
        {"name": t.name, "region": t.region, "created_at": t.created_at, "source": "database"} for t in rows
    ]
    cfg = [{"name": n, "region": t.region, "source": "config"} for n, t in gw.config.tenants.items()]
    return _json({"data": db + cfg})


async def upsert_tenant(request: Request, gw: Gateway) -> Response:
    """
    summary: Create a tenant or change its region (an ISO 3166-1 alpha-2 code, EU or EEA)
    responses: {200: {description: "the tenant"}, 400: {description: "bad name or region"}}
    """
    body = await _parse(request, TenantUpsert)
    name = request.path_params["name"]
    try:
        region = check_region(body.region)
        t = await asyncio.to_thread(_storage(request).keys.upsert_tenant, name, region, actor=ACTOR)
    except ValueError as exc:
        raise InvalidRequestError(str(exc), param="region") from exc
    note = None
    cfg = gw.config.tenants.get(name)
    if cfg is not None and cfg.region and cfg.region != region:
        note = f"the config sets region {cfg.region} for this tenant, and the config wins"
    return _json({"name": t.name, "region": t.region, "created_at": t.created_at, "note": note})


async def list_keys(request: Request, gw: Gateway) -> Response:
    """
    summary: Virtual keys (prefixes only), optionally for one tenant (?tenant=)
    responses: {200: {description: "list of keys"}}
    """
    keys = await asyncio.to_thread(_storage(request).keys.list_keys, request.query_params.get("tenant"))
    return _json({"data": [_asdict(k) for k in keys]})


def _asdict(obj: Any) -> dict[str, Any]:
    return dataclasses.asdict(obj)


async def create_key(request: Request, gw: Gateway) -> Response:
    """
    summary: Create a virtual key; the key is in the answer once and never again
    responses: {201: {description: "key_id and key"}, 400: {description: "bad tenant or region"}}
    """
    body = await _parse(request, KeyCreate)
    key_id, key = await asyncio.to_thread(
        _storage(request).keys.create_key, body.tenant, body.region, actor=ACTOR
    )
    return _json({"key_id": key_id, "key": key, "tenant": body.tenant, "region": body.region}, 201)


async def revoke_key(request: Request, gw: Gateway) -> Response:
    """
    summary: Revoke a virtual key
    responses: {200: {description: "revoked"}, 404: {description: "no such active key"}}
    """
    key_id = request.path_params["key_id"]
    if not await asyncio.to_thread(_storage(request).keys.revoke, key_id, actor=ACTOR):
        raise NotFoundError(f"No active key {key_id!r}.", code="key_not_found")
    return _json({"key_id": key_id, "revoked": True})


async def rotate_key(request: Request, gw: Gateway) -> Response:
    """
    summary: Replace a key with a new one for the same tenant (the old one is revoked)
    responses: {201: {description: "the new key"}, 404: {description: "no such active key"}}
    """
    store = _storage(request).keys
    key_id = request.path_params["key_id"]
    old = next(
        (k for k in await asyncio.to_thread(store.list_keys) if k.key_id == key_id and not k.revoked_at), None
    )
    if old is None:
        raise NotFoundError(f"No active key {key_id!r}.", code="key_not_found")
    new_id, key = await asyncio.to_thread(store.create_key, old.tenant, old.region, actor=ACTOR)
    await asyncio.to_thread(store.revoke, key_id, actor=ACTOR, reason=f"rotated to {new_id}")
    return _json({"key_id": new_id, "key": key, "tenant": old.tenant, "replaces": key_id}, 201)


async def list_cutoffs(request: Request, gw: Gateway) -> Response:
    """
    summary: Cutoffs in force (provider, region, reason, source, expiry)
    responses: {200: {description: "list of cutoffs"}}
    """
    return _json({"data": [_asdict(c) for c in gw.cutoffs.view.cutoffs]})


async def set_cutoff(request: Request, gw: Gateway) -> Response:
    """
    summary: Cut a provider off for a region (``*`` = every region), optionally until an expiry
    responses: {201: {description: "the cutoff"}, 400: {description: "bad region or expiry"},
      404: {description: "unknown provider"}}
    """
    body = await _parse(request, CutoffSet)
    try:
        expires = body.expiry(datetime.now(UTC))
    except ValueError as exc:
        raise InvalidRequestError(str(exc), param="expires_at") from exc
    if body.provider not in gw.config.providers:
        raise NotFoundError(
            f"Unknown provider {body.provider!r}.", param="provider", code="provider_not_found"
        )
    cut = await gw.cutoffs.set(body.provider, body.region, body.reason, ACTOR, expires)
    return _json(_asdict(cut), 201)


async def clear_cutoff(request: Request, gw: Gateway) -> Response:
    """
    summary: Clear a cutoff
    responses: {200: {description: "cleared"}, 404: {description: "no such cutoff"}}
    """
    provider, region = request.path_params["provider"], request.path_params["region"]
    if not await gw.cutoffs.clear(provider, region, ACTOR, request.query_params.get("reason", "")):
        raise NotFoundError(f"No cutoff {provider}:{region}.", code="cutoff_not_found")
    return _json({"provider": provider, "region": region, "cleared": True})


async def explain(request: Request, gw: Gateway) -> Response:
    """
    summary: Policy dry run for a request and tenant; nothing is sent upstream
    responses: {200: {description: "the decision with a reason for every exclusion"}}
    """
    body = await _parse(request, Explain)
    rt = gw.runtime
    req = parse_chat_request(orjson.dumps(body.request))
    tenant = rt.config.tenants.get(body.tenant)
    principal = Principal(body.tenant, body.region or (tenant.region if tenant else None), None, None)
    rt.resolve_route(principal, req.model)
    headers = {"x-relaygate-data-class": body.data_class} if body.data_class else {}
    try:
        plan = gw.plan(rt, principal, req, headers)
    except PermissionDeniedError as exc:
        return _json({"allowed": [], "denied": exc.message})
    order = [d.deployment_id for d in plan.candidates]
    return _json(
        {
            **plan.decision.to_dict(),
            "route": plan.route,
            "region": plan.region,
            "order": order,
            "data_class": plan.data_class,
            "data_class_source": plan.data_class_source,
            "pii_entities": sorted(plan.pii),
            "reason_code": plan.decision.reason_code,
        }
    )


async def reload(request: Request, gw: Gateway) -> Response:
    """
    summary: Reload the config file atomically; a bad file is rejected and the old config stays
    responses: {200: {description: "reloaded"}, 400: {description: "rejected, old config in force"}}
    """
    reloader = getattr(request.app.state, "reload", None)
    if reloader is None:
        raise InvalidRequestError(
            "This gateway was started without a config file; nothing to reload.", code="no_config_file"
        )
    await reloader(ACTOR)
    return _json({"reloaded": True, "routes": list(gw.config.routes)})


async def audit(request: Request, gw: Gateway) -> Response:
    """
    summary: Audit events (?since=ISO time, ?kind=prefix., ?limit=) and chain verification (?verify=1)
    responses: {200: {description: "events, or the verification result"}}
    """
    log = _storage(request).audit
    q = request.query_params
    if q.get("verify"):
        result = await log.averify()
        return _json(_asdict(result))
    since = datetime.fromisoformat(q["since"]) if q.get("since") else None
    events = await asyncio.to_thread(log.list, since, q.get("kind"), int(q.get("limit", "100")))
    return _json({"data": [_asdict(e) for e in events]})


def admin_routes() -> list[BaseRoute]:
    table = [
        ("/admin/tenants", list_tenants, ["GET"]),
        ("/admin/tenants/{name}", upsert_tenant, ["PUT"]),
        ("/admin/keys", list_keys, ["GET"]),
        ("/admin/keys", create_key, ["POST"]),
        ("/admin/keys/{key_id}", revoke_key, ["DELETE"]),
        ("/admin/keys/{key_id}/rotate", rotate_key, ["POST"]),
        ("/admin/cutoffs", list_cutoffs, ["GET"]),
        ("/admin/cutoffs", set_cutoff, ["POST"]),
        ("/admin/cutoffs/{provider}/{region}", clear_cutoff, ["DELETE"]),
        ("/admin/policy/explain", explain, ["POST"]),
        ("/admin/reload", reload, ["POST"]),
        ("/admin/audit", audit, ["GET"]),
    ]
    routes: list[BaseRoute] = [Route(path, _endpoint(fn), methods=m) for path, fn, m in table]
    # 3.1: its schema objects are JSON Schema 2020-12, what pydantic's model_json_schema() writes.
    schemas = SchemaGenerator({"openapi": "3.1.0", "info": {"title": "relaygate admin API", "version": "1"}})

    async def openapi(request: Request) -> Response:
        return _json(_with_bodies(schemas.get_schema(routes)))

    return [*routes, Route("/admin/openapi.json", openapi, methods=["GET"], include_in_schema=False)]


# The request body model of each endpoint that takes one, for the OpenAPI description.
_BODIES: dict[tuple[str, str], type[BaseModel]] = {
    ("/admin/tenants/{name}", "put"): TenantUpsert,
    ("/admin/keys", "post"): KeyCreate,
    ("/admin/cutoffs", "post"): CutoffSet,
    ("/admin/policy/explain", "post"): Explain,
}


def _with_bodies(doc: dict[str, Any]) -> dict[str, Any]:
    """``doc`` with a ``requestBody`` (the pydantic model's JSON Schema) on every endpoint in ``_BODIES``."""
    for (path, method), model in _BODIES.items():
        operation = doc.get("paths", {}).get(path, {}).get(method)
        if operation is not None:
            operation["requestBody"] = {
                "required": True,
                "content": {_JSON: {"schema": model.model_json_schema()}},
            }
    return doc
