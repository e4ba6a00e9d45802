"""The ops dashboard shows the catalog: each product's plans and modules, prices, and who follows each."""

from __future__ import annotations

import html
from collections.abc import Iterator
from dataclasses import replace

import pytest
from starlette.testclient import TestClient

from regua.runtime import Runtime
from regua.settings import Settings
from tests.integration.conftest import AUTH, Api
from tests.integration.ops_helpers import OPS_TOKEN, basic, ops_app
from webhooks.base import Provider
from workers.actors import Jobs


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return replace(settings, ops_token=OPS_TOKEN)


@pytest.fixture
def client(runtime: Runtime, providers: dict[str, Provider], jobs: Jobs) -> Iterator[TestClient]:
    with TestClient(ops_app(runtime, providers, jobs), raise_server_exceptions=True) as test_client:
        yield test_client


def test_the_catalog_page_lists_plans_and_modules_with_their_prices_and_subscriptions(
    client: TestClient, api: Api
) -> None:
    for path, body in (
        ("/api/plans/pro", {"product": "platform", "name": "Pro", "monthly_price_cents": 19990}),
        ("/api/plans/basic", {"product": "platform", "name": "Básico", "monthly_price_cents": 9990}),
        ("/api/modules/delivery", {"product": "platform", "name": "Delivery", "monthly_price_cents": 3000}),
        ("/api/plans/mentor", {"product": "mentorship", "name": "Mentoria", "monthly_price_cents": 50000}),
    ):
        assert client.put(path, json=body, headers=AUTH).status_code == 201
    api.put_account("padaria-central")
    api.subscribe("padaria-central", "platform", plan="pro", modules=["delivery"], monthly_price_cents=None)
    page = html.unescape(client.get("/ops/catalog", headers=basic()).text)
    assert '<a href="/ops/catalog" aria-current="page">Catalog</a>' in page
    for item, price, count in (
        ("plan:pro", "R$ 199,90", 1),
        ("plan:basic", "R$ 99,90", 0),
        ("module:delivery", "R$ 30,00", 1),
        ("plan:mentor", "R$ 500,00", 0),
    ):
        row = page.split(f'data-item="{item}"', 1)[1].split("</tr>", 1)[0]
        assert price in row
        assert f'<td class="num">{count}</td>' in row


def test_the_catalog_page_needs_the_ops_password(client: TestClient) -> None:
    assert client.get("/ops/catalog").status_code == 401
