"""The OpenAPI document: valid OpenAPI 3.1, served as it is shipped, covering every route; the /docs page."""

from __future__ import annotations

import re

import httpx
import pytest
from openapi_spec_validator import validate
from starlette.routing import Mount, Route
from starlette.testclient import TestClient

from regua.docs import openapi_document
from tests.openapi_contract import assert_matches_openapi

SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def app_operations(routes: list[object], prefix: str = "") -> set[tuple[str, str]]:
    """(method, path) for every route of the app, mounts included; HEAD is Starlette's own."""
    found: set[tuple[str, str]] = set()
    for route in routes:
        if isinstance(route, Mount):
            found |= app_operations(list(route.routes), prefix + route.path)
        elif isinstance(route, Route):
            found |= {(method.lower(), prefix + route.path) for method in route.methods or () if method != "HEAD"}
    return found


def test_the_document_is_valid_openapi_3_1() -> None:
    document = openapi_document()
    assert document["openapi"].startswith("3.1")
    validate(document)


@SQLITE_ONLY
def test_every_route_of_the_app_is_in_the_document(client: TestClient) -> None:
    paths = openapi_document()["paths"]
    documented = {(method, path) for path, item in paths.items() for method in item if method != "parameters"}
    # Starlette's catch-all for the providers; each provider regua has is documented by its own path.
    served = {op for op in app_operations(list(client.app.routes)) if op != ("post", "/webhooks/{provider}")}
    assert served - documented == set()
    assert {("post", "/webhooks/standard"), ("post", "/webhooks/asaas"), ("post", "/webhooks/pix")} <= documented


@SQLITE_ONLY
def test_the_app_serves_the_document_it_ships(client: TestClient) -> None:
    response = client.get("/openapi.json")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == openapi_document()


@SQLITE_ONLY
def test_the_reference_page_lists_every_operation_and_loads_nothing_from_elsewhere(client: TestClient) -> None:
    response = client.get("/docs")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    page = response.text
    for path, item in openapi_document()["paths"].items():
        for method in item:
            if method != "parameters":
                assert f'id="{item[method]["operationId"]}"' in page, (method, path)
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)
    assert "<script" not in page


def _answer(method: str, path: str, status: int, body: object) -> httpx.Response:
    return httpx.Response(status, json=body, request=httpx.Request(method, f"http://testserver{path}"))


def test_the_contract_check_refuses_an_undocumented_field_a_wrong_type_and_an_unlisted_status() -> None:
    account = {
        "id": "padaria-central",
        "name": "Padaria Central Ltda",
        "document": "11222333000181",
        "contacts": [],
        "trial_ends_at": None,
        "gateway_customer_id": None,
    }
    assert_matches_openapi(_answer("GET", "/api/accounts/padaria-central", 200, account))
    with pytest.raises(AssertionError, match="secret"):
        assert_matches_openapi(_answer("GET", "/api/accounts/padaria-central", 200, {**account, "secret": "x"}))
    with pytest.raises(AssertionError, match="contacts"):
        assert_matches_openapi(_answer("GET", "/api/accounts/padaria-central", 200, {**account, "contacts": None}))
    with pytest.raises(AssertionError, match="418"):
        assert_matches_openapi(_answer("GET", "/api/accounts/padaria-central", 418, account))
    with pytest.raises(AssertionError, match="error"):
        assert_matches_openapi(_answer("GET", "/api/nowhere", 404, {"detail": "Not Found"}))
