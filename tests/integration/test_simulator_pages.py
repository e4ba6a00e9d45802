"""The payer's pages the simulated Asaas serves: the invoice (where a test card is typed) and the boleto PDF."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.testclient import TestClient

from billing.clock import FrozenClock
from regua.sandbox.simulator import create_simulator_app

HEADERS = {"access_token": "any-key"}


@pytest.fixture
def client() -> TestClient:
    clock = FrozenClock(datetime(2026, 12, 1, 9, 0, tzinfo=ZoneInfo("America/Sao_Paulo")))
    return TestClient(create_simulator_app("", "", clock=clock), base_url="http://sim.test")


def create(client: TestClient, billing_type: str) -> dict[str, Any]:
    body = {"customer": "cus_1", "billingType": billing_type, "value": 199.9, "dueDate": "2026-12-01"}
    response = client.post("/v3/payments", json=body, headers=HEADERS)
    assert response.status_code == 200, response.text
    return dict(response.json())


def events(client: TestClient) -> list[str]:
    return [hook["event"] for hook in client.get("/sim/state").json()["webhooks"]]


def test_a_card_invoice_page_takes_a_test_card_and_confirms_the_payment(client: TestClient) -> None:
    payment = create(client, "CREDIT_CARD")
    page = client.get(payment["invoiceUrl"])

    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert '<html lang="pt-BR">' in page.text
    assert "R$ 199,90" in page.text
    assert "01/12/2026" in page.text
    assert 'name="creditCardNumber"' in page.text

    paid = client.post(payment["invoiceUrl"], data={"creditCardNumber": "4444 4444 4444 4444", "holderName": "Ana"})

    assert paid.status_code == 200
    assert "Pagamento aprovado" in paid.text
    assert 'name="creditCardNumber"' not in paid.text
    fetched = client.get(f"/v3/payments/{payment['id']}", headers=HEADERS).json()
    assert (fetched["status"], fetched["creditCard"]["creditCardNumber"]) == ("CONFIRMED", "4444")
    assert events(client) == ["PAYMENT_CONFIRMED"]


def test_a_declined_test_card_on_the_invoice_page_is_told_and_the_payment_stays_unpaid(client: TestClient) -> None:
    payment = create(client, "CREDIT_CARD")

    refused = client.post(payment["invoiceUrl"], data={"creditCardNumber": "4916561358240741"})

    assert refused.status_code == 402
    assert "Transação não autorizada" in refused.text
    assert 'name="creditCardNumber"' in refused.text  # another card may be tried
    assert client.get(f"/v3/payments/{payment['id']}", headers=HEADERS).json()["status"] == "PENDING"
    assert events(client) == ["PAYMENT_CREDIT_CARD_CAPTURE_REFUSED"]


def test_a_boleto_is_served_as_a_pdf_with_its_line_and_its_invoice_page_shows_both_codes(client: TestClient) -> None:
    payment = create(client, "BOLETO")
    line = client.get(f"/v3/payments/{payment['id']}/identificationField", headers=HEADERS).json()

    pdf = client.get(payment["bankSlipUrl"])
    page = client.get(payment["invoiceUrl"])

    assert pdf.status_code == 200
    assert pdf.headers["content-type"] == "application/pdf"
    assert pdf.content.startswith(b"%PDF-1.4\n")
    assert pdf.content.endswith(b"%%EOF\n")
    assert line["identificationField"].encode() in pdf.content
    # the cross-reference table points at each object, as a PDF reader expects
    xref = int(re.findall(rb"startxref\n(\d+)", pdf.content)[0])
    assert pdf.content[xref:].startswith(b"xref\n0 6\n")
    offsets = [int(entry[:10]) for entry in pdf.content[xref:].split(b"\n")[3:8]]
    assert [pdf.content[offset:].split(b" ")[0] for offset in offsets] == [b"1", b"2", b"3", b"4", b"5"]
    assert line["identificationField"] in page.text
    assert 'name="creditCardNumber"' not in page.text


def test_a_page_of_no_payment_is_not_found(client: TestClient) -> None:
    assert client.get("/i/nothing").status_code == 404
    assert client.get("/b/pdf/nothing").status_code == 404
    assert client.get(create(client, "PIX")["invoiceUrl"].replace("/i/", "/b/pdf/")).status_code == 404


def test_mounted_under_a_prefix_as_in_regua_dev_the_pages_it_links_to_are_its_own() -> None:
    app = Starlette(routes=[Mount("/gateway-sim", app=create_simulator_app("", ""))])
    client = TestClient(app, base_url="http://127.0.0.1:8000")
    body = {"customer": "cus_1", "billingType": "BOLETO", "value": 10, "dueDate": "2026-12-01"}

    payment = client.post("/gateway-sim/v3/payments", json=body, headers=HEADERS).json()

    assert payment["invoiceUrl"].startswith("http://127.0.0.1:8000/gateway-sim/i/")
    assert client.get(payment["invoiceUrl"]).status_code == 200
    assert client.get(payment["bankSlipUrl"]).headers["content-type"] == "application/pdf"
