"""The API's OpenAPI document, at /openapi.json, and its reference page at /docs, both from the package."""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path
from typing import Any

import jinja2
import yaml
from markupsafe import Markup, escape
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

PACKAGE = Path(__file__).resolve().parent
DOCUMENT = PACKAGE / "openapi.yaml"
METHODS = ("get", "put", "patch", "post", "delete")


@cache
def openapi_document() -> dict[str, Any]:
    """The reviewed document shipped in the package, parsed once."""
    document = yaml.safe_load(DOCUMENT.read_text(encoding="utf-8"))
    assert isinstance(document, dict)
    return document


@cache
def _openapi_bytes() -> bytes:
    return json.dumps(openapi_document(), ensure_ascii=False, separators=(",", ":")).encode()


def schema_name(schema: Any) -> str:
    """How the page names a schema: its component's name, or its type."""
    if not isinstance(schema, dict):
        return ""
    if "$ref" in schema:
        return str(schema["$ref"]).rsplit("/", 1)[-1]
    kind = schema.get("type", "object" if "properties" in schema else "")
    if kind == "array":
        return f"array of {schema_name(schema.get('items'))}"
    if isinstance(kind, list):
        kind = " or ".join(str(k) for k in kind)
    if "const" in schema:
        return f"{kind or 'const'} = {json.dumps(schema['const'])}".strip()
    if "enum" in schema:
        return f"{kind}: {', '.join(json.dumps(value) for value in schema['enum'])}"
    return str(kind)


def prose(text: str | None) -> Markup:
    """The document's descriptions as HTML: paragraphs, and `code` in backticks; everything else escaped."""
    paragraphs = [part.strip() for part in (text or "").split("\n\n") if part.strip()]
    html = [re.sub(r"`([^`]+)`", r"<code>\1</code>", str(escape(part))) for part in paragraphs]
    return Markup("".join(f"<p>{part}</p>" for part in html))


def _resolve(document: dict[str, Any], item: Any) -> Any:
    """A `$ref` to components/responses or components/parameters, followed once."""
    if isinstance(item, dict) and "$ref" in item:
        node: Any = document
        for part in str(item["$ref"]).removeprefix("#/").split("/"):
            node = node[part]
        return node
    return item


def _operations(document: dict[str, Any]) -> list[dict[str, Any]]:
    """Every operation with its parameters and responses resolved, in the document's order."""
    operations = []
    for path, item in document["paths"].items():
        shared = item.get("parameters", [])
        for method in METHODS:
            if method not in item:
                continue
            operation = item[method]
            responses = []
            for status, response in operation.get("responses", {}).items():
                resolved = _resolve(document, response)
                media = next(iter(resolved.get("content", {}).items()), None)
                responses.append(
                    {
                        "status": status,
                        "description": resolved.get("description", ""),
                        "media_type": media[0] if media else "",
                        "schema": media[1].get("schema") if media else None,
                    }
                )
            body = operation.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
            operations.append(
                {
                    "method": method.upper(),
                    "path": path,
                    "id": operation.get("operationId", f"{method}-{path}"),
                    "tag": (operation.get("tags") or ["other"])[0],
                    "summary": operation.get("summary", ""),
                    "description": operation.get("description", ""),
                    "security": [next(iter(s)) for s in operation.get("security", [])],
                    "parameters": [_resolve(document, p) for p in [*shared, *operation.get("parameters", [])]],
                    "body": body,
                    "responses": responses,
                }
            )
    return operations


@cache
def _docs_page() -> bytes:
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(PACKAGE / "templates"),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters["schema_name"] = schema_name
    environment.filters["prose"] = prose
    document = openapi_document()
    operations = _operations(document)
    tags = [tag for tag in document.get("tags", []) if any(op["tag"] == tag["name"] for op in operations)]
    page = environment.get_template("docs.html").render(
        info=document["info"],
        tags=tags,
        operations=operations,
        schemas=document["components"]["schemas"],
    )
    return page.encode()


async def openapi_json(_request: Request) -> Response:
    return Response(_openapi_bytes(), media_type="application/json")


async def docs_page(_request: Request) -> Response:
    return HTMLResponse(_docs_page())


def docs_routes() -> list[Route]:
    return [
        Route("/openapi.json", openapi_json, methods=["GET"]),
        Route("/docs", docs_page, methods=["GET"]),
    ]
