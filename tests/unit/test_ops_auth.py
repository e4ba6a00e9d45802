"""Who may open /ops, and the CSRF tokens of its forms."""

from __future__ import annotations

import base64

from starlette.requests import Request

from regua.ops.auth import csrf_token, csrf_valid, operator
from regua.settings import Settings


def request(authorization: str | None = None) -> Request:
    headers = [(b"authorization", authorization.encode())] if authorization else []
    return Request({"type": "http", "method": "GET", "path": "/ops", "headers": headers})


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_without_a_token_only_dev_is_open() -> None:
    assert operator(request(), Settings(env="dev")) == "dev"
    assert operator(request(), Settings(env="test")) is None
    assert operator(request(basic("ops", "")), Settings(env="production")) is None


def test_the_token_is_the_password_and_the_user_name_is_who_acted() -> None:
    settings = Settings(env="production", ops_token="s3cret-token")
    assert operator(request(basic("ops", "s3cret-token")), settings) == "ops"
    assert operator(request(basic("Ana  Souza", "s3cret-token")), settings) == "Ana Souza"
    assert operator(request(basic("", "s3cret-token")), settings) == "ops"
    assert operator(request(basic("ops", "s3cret-tokeN")), settings) is None
    assert operator(request("Bearer s3cret-token"), settings) == "ops"
    assert operator(request("Bearer nope"), settings) is None
    assert operator(request("Basic !!!"), settings) is None
    assert operator(request(), settings) is None


def test_a_csrf_token_is_bound_to_the_key_the_person_and_twelve_hours() -> None:
    token = csrf_token("key", "ana", now=1_000_000)
    assert csrf_valid("key", "ana", token, now=1_000_000 + 12 * 3600)
    assert not csrf_valid("key", "ana", token, now=1_000_000 + 12 * 3600 + 1)
    assert not csrf_valid("key", "bia", token, now=1_000_000)
    assert not csrf_valid("other-key", "ana", token, now=1_000_000)
    assert not csrf_valid("key", "ana", token, now=999_999)
    assert not csrf_valid("key", "ana", "not-a-token", now=1_000_000)
