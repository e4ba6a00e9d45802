"""The baseline: a bare Starlette endpoint under uvicorn that only answers 200, with the same server settings."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

ACCEPTED = Response(b'{"status": "accepted"}', media_type="application/json")


async def accept(request: Request) -> Response:
    await request.body()
    return ACCEPTED


app = Starlette(routes=[Route("/webhooks/{provider}", accept, methods=["POST"])])
