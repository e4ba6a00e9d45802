"""Checks an HTTP answer against the OpenAPI document: the status is listed, the body matches its schema."""

from __future__ import annotations

import re
from functools import cache
from typing import Any

import httpx
from jsonschema import Draft202012Validator

from regua.docs import openapi_document


def _pointer(*parts: str) -> str:
    return "#/" + "/".join(part.replace("~", "~0").replace("/", "~1") for part in parts)


@cache
def _templates() -> list[tuple[re.Pattern[str], str]]:
    """Path templates as regular expressions, concrete paths first (as the OpenAPI spec matches them)."""
    paths = openapi_document()["paths"]
    ordered = sorted(paths, key=lambda path: (path.count("{"), -len(path)))
    return [(re.compile("^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(path)) + "$"), path) for path in ordered]


@cache
def _validator(pointer: str) -> Draft202012Validator:
    # The whole document is the root resource, so the schemas' own "#/components/..." references resolve.
    checker = Draft202012Validator.FORMAT_CHECKER
    return Draft202012Validator({**openapi_document(), "$ref": pointer}, format_checker=checker)


def validate_body(pointer: str, body: Any) -> None:
    errors = sorted(_validator(pointer).iter_errors(body), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)


def template_for(path: str) -> str | None:
    return next((template for pattern, template in _templates() if pattern.match(path)), None)


def assert_matches_openapi(response: httpx.Response) -> None:
    """The answer is one the document promises for this operation, its JSON body valid against the schema.

    A path the document does not know must be answered 404 or 405 in the error shape.
    """
    document = openapi_document()
    request = response.request
    method = request.method.lower()
    status = str(response.status_code)
    media_type = response.headers.get("content-type", "").split(";")[0].strip()
    template = template_for(request.url.path)
    if template is None or method not in document["paths"][template]:
        unknown = f"{request.method} {request.url.path}"
        assert status in ("404", "405"), f"{unknown} is not in the document but answered {status}"
        validate_body(_pointer("components", "schemas", "Error"), response.json())
        return
    responses = document["paths"][template][method]["responses"]
    assert status in responses, f"{request.method} {template} answered {status}, which the document does not list"
    base = ("paths", template, method, "responses", status)
    answer = responses[status]
    if "$ref" in answer:
        base = tuple(answer["$ref"].removeprefix("#/").split("/"))
        answer = document["components"]["responses"][base[-1]]
    content = answer.get("content", {})
    assert media_type in content, f"{request.method} {template} {status} answered {media_type!r}, not {list(content)}"
    if media_type == "application/json":
        validate_body(_pointer(*base, "content", media_type, "schema"), response.json())


def check_every_response(client: httpx.Client) -> None:
    """Hooks the check onto a client: every answer it receives is checked as it arrives."""

    def hook(response: httpx.Response) -> None:
        response.read()
        assert_matches_openapi(response)

    client.event_hooks = {**client.event_hooks, "response": [*client.event_hooks.get("response", []), hook]}
