"""api/fast_path.py: hot POSTs reach their handler directly; everything else reaches the router."""

from __future__ import annotations

from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from starlette.testclient import TestClient

from relaygate.api.fast_path import FastPath


async def hot(request: Request) -> Response:
    return PlainTextResponse(f"hot {request.method} {request.url.path} " + (await request.body()).decode())


async def routed(request: Request) -> Response:
    return PlainTextResponse(f"routed {request.method} {request.url.path}")


def make_app(calls: list[str]) -> Starlette:
    async def counting_hot(request: Request) -> Any:
        calls.append(request.url.path)
        return await hot(request)

    return Starlette(
        routes=[
            Route("/v1/chat/completions", routed, methods=["POST"]),
            Route("/v1/models", routed, methods=["GET"]),
        ],
        middleware=[Middleware(FastPath, handlers={"/v1/chat/completions": counting_hot})],
    )


def test_hot_post_goes_straight_to_its_handler() -> None:
    calls: list[str] = []
    with TestClient(make_app(calls)) as client:
        r = client.post("/v1/chat/completions", content=b"body")
    assert (r.status_code, r.text) == (200, "hot POST /v1/chat/completions body")
    assert calls == ["/v1/chat/completions"]


def test_other_methods_and_paths_go_through_the_router() -> None:
    calls: list[str] = []
    with TestClient(make_app(calls)) as client:
        assert client.get("/v1/models").text == "routed GET /v1/models"
        assert client.get("/v1/chat/completions").status_code == 405  # the router's answer
        assert client.post("/v1/other").status_code == 404
    assert calls == []
