"""Customers at the simulated Asaas: created, found again by externalReference, refused as the sandbox refuses."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from regua.sandbox.simulator import create_simulator_app


@pytest.fixture
def sim() -> TestClient:
    return TestClient(create_simulator_app("", ""), base_url="http://sim.test")


def test_a_customer_is_created_and_found_again_by_its_external_reference(sim: TestClient) -> None:
    body = {"name": "Padaria Central Ltda", "cpfCnpj": "11.222.333/0001-81", "externalReference": "padaria"}
    headers = {"access_token": "any-key"}

    created = sim.post("/v3/customers", json=body, headers=headers)
    found = sim.get("/v3/customers", params={"externalReference": "padaria"}, headers=headers)
    other = sim.get("/v3/customers", params={"externalReference": "another"}, headers=headers)

    assert created.status_code == 200
    customer = created.json()
    assert customer["id"].startswith("cus_")
    assert (customer["object"], customer["cpfCnpj"], customer["personType"]) == (
        "customer",
        "11222333000181",
        "JURIDICA",
    )
    assert found.json()["totalCount"] == 1
    assert found.json()["data"] == [customer]
    assert sim.get(f"/v3/customers/{customer['id']}", headers=headers).json() == customer
    assert other.json()["data"] == []


def test_a_customer_needs_a_name_and_a_valid_document(sim: TestClient) -> None:
    headers = {"access_token": "any-key"}

    nameless = sim.post("/v3/customers", json={"cpfCnpj": "11222333000181"}, headers=headers)
    bad_document = sim.post("/v3/customers", json={"name": "Ana", "cpfCnpj": "123"}, headers=headers)

    assert (nameless.status_code, nameless.json()["errors"][0]["code"]) == (400, "invalid_name")
    assert bad_document.status_code == 400
    assert bad_document.json()["errors"] == [
        {"code": "invalid_object", "description": "O CPF/CNPJ informado é inválido."}  # as Asaas's sandbox answers
    ]
    assert sim.get("/v3/customers/cus_000000000404", headers=headers).status_code == 404


def test_customers_of_one_document_are_listed_newest_first(sim: TestClient) -> None:
    headers = {"access_token": "any-key"}
    first, second = (
        sim.post("/v3/customers", json={"name": name, "cpfCnpj": "249.715.637-92"}, headers=headers).json()
        for name in ("Ana", "Ana Maria")
    )

    listed = sim.get("/v3/customers", params={"cpfCnpj": "24971563792"}, headers=headers).json()

    assert [customer["id"] for customer in listed["data"]] == [second["id"], first["id"]]
    assert first["personType"] == "FISICA"
