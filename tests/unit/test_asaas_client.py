"""The Asaas client against Asaas's documented answers, served by respx at the HTTP seam."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx

from billing.ports import (
    BoletoCode,
    CardCharge,
    CardDeclined,
    Gateway,
    GatewayRejected,
    GatewayUnavailable,
    ManualCharge,
    PaymentNotFound,
    PixCode,
)
from regua.gateway.asaas import AsaasGateway, cents_from_json, classify_decline, encode_json, money

FIXTURES = Path(__file__).parent.parent / "fixtures" / "asaas_api"
BASE = "https://asaas.test"
CARD_ID = "pay_4k7wq2m9x1c8v5tb"


def answer(name: str, status_code: int = 200) -> httpx.Response:
    return httpx.Response(status_code, json=fixture(name))


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def refused(description: str) -> httpx.Response:
    return httpx.Response(400, json={"errors": [{"code": "invalid_creditCard", "description": description}]})


def card(**changes: Any) -> CardCharge:
    fields: dict[str, Any] = {
        "charge_id": "chg_7f3a9c1e",
        "customer_id": "cus_000005113026",
        "amount_cents": 18990,
        "due_date": date(2026, 12, 1),
        "card_token": "76496073-536f-4835-80db-c45d00f33695",
        "remote_ip": "203.0.113.10",
        "description": "Plataforma Pro, dezembro de 2026",
    }
    fields.update(changes)
    return CardCharge(**fields)


@pytest.fixture
def asaas() -> Iterator[respx.MockRouter]:
    with respx.mock(base_url=f"{BASE}/v3", assert_all_called=False) as router:
        yield router


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    """One client for the module: building its TLS context is the slow part, and respx mocks below it."""
    with httpx.Client() as client:
        yield client


@pytest.fixture
def gateway(http: httpx.Client, sleeps: list[float]) -> Iterator[AsaasGateway]:
    with AsaasGateway(BASE, "test-api-key", client=http, sleep=sleeps.append) as client:
        yield client


@pytest.fixture
def lookup(asaas: respx.MockRouter) -> respx.Route:
    """GET /v3/payments?externalReference=...: nothing there, unless a test says otherwise."""
    return asaas.get("/payments", params={"externalReference": "chg_7f3a9c1e"}).mock(
        return_value=answer("payment_list_empty.json")
    )


# -- charging a card ---------------------------------------------------------------------------------------


def test_an_approved_card_charge_sends_exact_money_and_returns_the_confirmed_payment(
    asaas: respx.MockRouter, gateway: AsaasGateway, lookup: respx.Route
) -> None:
    create = asaas.post("/payments").mock(return_value=answer("payment_card_confirmed.json"))

    payment = gateway.charge_card(card())

    request = create.calls.last.request
    assert request.headers["access_token"] == "test-api-key"
    assert request.headers["content-type"] == "application/json"
    assert b'"value":189.90' in request.content
    assert json.loads(request.content) == {
        "customer": "cus_000005113026",
        "billingType": "CREDIT_CARD",
        "dueDate": "2026-12-01",
        "externalReference": "chg_7f3a9c1e",
        "creditCardToken": "76496073-536f-4835-80db-c45d00f33695",
        "remoteIp": "203.0.113.10",
        "value": 189.9,
        "description": "Plataforma Pro, dezembro de 2026",
    }
    assert payment.id == CARD_ID
    assert payment.amount_cents == 18990
    assert payment.status == "CONFIRMED"
    assert payment.is_paid
    assert payment.method == "card"
    assert payment.external_reference == "chg_7f3a9c1e"
    assert payment.confirmed_on == date(2026, 12, 1)
    assert lookup.call_count == 1


def test_a_charge_already_made_for_the_same_charge_id_is_returned_and_not_made_again(
    asaas: respx.MockRouter, gateway: AsaasGateway, lookup: respx.Route
) -> None:
    lookup.mock(return_value=answer("payment_list_by_reference.json"))
    create = asaas.post("/payments").mock(return_value=answer("payment_card_confirmed.json"))

    payment = gateway.charge_card(card())

    assert payment.id == CARD_ID
    assert payment.is_paid
    assert create.call_count == 0


def test_installments_send_the_count_and_the_total_for_asaas_to_split(
    asaas: respx.MockRouter, gateway: AsaasGateway, lookup: respx.Route
) -> None:
    create = asaas.post("/payments").mock(return_value=answer("payment_card_confirmed.json"))

    gateway.charge_card(card(amount_cents=239880, installments=12))

    body = create.calls.last.request.content
    assert b'"installmentCount":12' in body
    assert b'"totalValue":2398.80' in body
    assert b'"value"' not in body


def test_a_soft_decline_raises_card_declined_that_may_be_retried(
    asaas: respx.MockRouter, gateway: AsaasGateway, lookup: respx.Route
) -> None:
    asaas.post("/payments").mock(return_value=answer("error_card_refused.json", 400))

    with pytest.raises(CardDeclined) as declined:
        gateway.charge_card(card())

    assert declined.value.hard is False
    assert declined.value.code == "invalid_creditCard"
    assert declined.value.reason == "generic"
    assert "Transação não autorizada" in declined.value.description


def test_insufficient_funds_is_a_soft_decline(
    asaas: respx.MockRouter, gateway: AsaasGateway, lookup: respx.Route
) -> None:
    asaas.post("/payments").mock(return_value=refused("Transação não autorizada: saldo insuficiente."))

    with pytest.raises(CardDeclined) as declined:
        gateway.charge_card(card())

    assert (declined.value.hard, declined.value.reason) == (False, "insufficient_funds")


def test_a_stolen_card_is_a_hard_decline_and_is_not_retried(
    asaas: respx.MockRouter, gateway: AsaasGateway, lookup: respx.Route, sleeps: list[float]
) -> None:
    create = asaas.post("/payments").mock(return_value=refused("Transação não autorizada: cartão roubado."))

    with pytest.raises(CardDeclined) as declined:
        gateway.charge_card(card())

    assert (declined.value.hard, declined.value.reason) == (True, "stolen_or_lost")
    assert create.call_count == 1
    assert sleeps == []


@pytest.mark.parametrize(
    ("code", "description", "hard", "reason"),
    [
        ("invalid_creditCard", "Transação não autorizada. Cartão vencido.", True, "expired"),
        ("invalid_creditCard", "Card expired", True, "expired"),
        ("invalid_creditCard", "Transação negada: cartão com registro de perda.", True, "stolen_or_lost"),
        ("invalid_creditCard", "Cartão furtado", True, "stolen_or_lost"),
        ("invalid_creditCard", "O creditCardToken informado é inválido.", True, "invalid_token"),
        ("invalid_creditCard", "Número do cartão inválido.", True, "invalid_card"),
        ("invalid_creditCard", "Cartão bloqueado pelo emissor.", True, "card_canceled"),
        ("invalid_creditCard", "Limite insuficiente.", False, "insufficient_funds"),
        ("invalid_creditCard", "Insufficient funds", False, "insufficient_funds"),
        ("invalid_creditCard", "Transação não autorizada. Tente novamente.", False, "generic"),
        ("invalid_creditCard", "", False, "generic"),
    ],
)
def test_declines_are_classified_by_what_asaas_says(code: str, description: str, hard: bool, reason: str) -> None:
    assert classify_decline(code, description) == (hard, reason)


def test_a_validation_error_on_a_card_charge_is_a_rejection_not_a_decline(
    asaas: respx.MockRouter, gateway: AsaasGateway, lookup: respx.Route
) -> None:
    asaas.post("/payments").mock(return_value=answer("error_validation.json", 400))

    with pytest.raises(GatewayRejected) as rejected:
        gateway.charge_card(card())

    assert not isinstance(rejected.value, CardDeclined)
    assert rejected.value.status_code == 400
    assert rejected.value.errors[0][0] == "invalid_value"


def test_a_wrong_api_key_is_a_rejection(asaas: respx.MockRouter, gateway: AsaasGateway) -> None:
    asaas.get("/payments").mock(return_value=httpx.Response(401, json={"errors": []}))

    with pytest.raises(GatewayRejected) as rejected:
        gateway.charge_card(card())

    assert rejected.value.status_code == 401


# -- unclear outcomes: retried, and never charged twice -------------------------------------------------------


def test_a_5xx_is_retried_after_looking_the_charge_up_and_then_succeeds(
    asaas: respx.MockRouter, gateway: AsaasGateway, lookup: respx.Route, sleeps: list[float]
) -> None:
    create = asaas.post("/payments").mock(side_effect=[httpx.Response(502), answer("payment_card_confirmed.json")])

    payment = gateway.charge_card(card())

    assert payment.id == CARD_ID
    assert create.call_count == 2
    assert lookup.call_count == 2
    assert sleeps == [0.5]


def test_a_timeout_after_the_gateway_charged_finds_the_charge_and_never_posts_again(
    asaas: respx.MockRouter, gateway: AsaasGateway, lookup: respx.Route
) -> None:
    lookup.mock(side_effect=[answer("payment_list_empty.json"), answer("payment_list_by_reference.json")])
    create = asaas.post("/payments").mock(side_effect=httpx.ReadTimeout("the answer never came"))

    payment = gateway.charge_card(card())

    assert payment.id == CARD_ID
    assert payment.is_paid
    assert create.call_count == 1


def test_a_timeout_with_nothing_at_the_gateway_creates_the_charge_again(
    asaas: respx.MockRouter, gateway: AsaasGateway, lookup: respx.Route
) -> None:
    create = asaas.post("/payments").mock(
        side_effect=[httpx.ReadTimeout("the answer never came"), answer("payment_card_confirmed.json")]
    )

    payment = gateway.charge_card(card())

    assert payment.id == CARD_ID
    assert create.call_count == 2
    assert lookup.call_count == 2


def test_a_charge_never_sent_before_is_posted_without_a_lookup(
    asaas: respx.MockRouter, gateway: AsaasGateway, lookup: respx.Route
) -> None:
    create = asaas.post("/payments").mock(return_value=answer("payment_card_confirmed.json"))

    payment = gateway.charge_card(card(first_contact=True))

    assert payment.id == CARD_ID
    assert (create.call_count, lookup.call_count) == (1, 0)


def test_a_first_contact_that_times_out_still_looks_before_posting_again(
    asaas: respx.MockRouter, gateway: AsaasGateway, lookup: respx.Route
) -> None:
    lookup.mock(return_value=answer("payment_list_by_reference.json"))
    create = asaas.post("/payments").mock(side_effect=httpx.ReadTimeout("the answer never came"))

    payment = gateway.charge_card(card(first_contact=True))

    assert payment.id == CARD_ID
    assert (create.call_count, lookup.call_count) == (1, 1)  # the timed-out post did charge: found, not posted


def test_connection_errors_exhausted_raise_gateway_unavailable_with_nothing_charged(
    asaas: respx.MockRouter, gateway: AsaasGateway, lookup: respx.Route, sleeps: list[float]
) -> None:
    create = asaas.post("/payments").mock(side_effect=httpx.ConnectError("connection refused"))

    with pytest.raises(GatewayUnavailable) as unavailable:
        gateway.charge_card(card())

    assert unavailable.value.outcome_unknown is False
    assert create.call_count == 3
    assert lookup.call_count == 1
    assert sleeps == [0.5, 1.0]


def test_unclear_answers_exhausted_raise_gateway_unavailable_with_the_outcome_unknown(
    asaas: respx.MockRouter, gateway: AsaasGateway, lookup: respx.Route
) -> None:
    create = asaas.post("/payments").mock(side_effect=httpx.ReadTimeout("the answer never came"))

    with pytest.raises(GatewayUnavailable) as unavailable:
        gateway.charge_card(card())

    assert unavailable.value.outcome_unknown is True
    assert create.call_count == 3
    assert lookup.call_count == 4  # before the first post, before each retry, and once after the last


def test_when_the_lookup_fails_after_a_timeout_nothing_is_posted_blind(
    asaas: respx.MockRouter, gateway: AsaasGateway, lookup: respx.Route
) -> None:
    lookup.mock(side_effect=[answer("payment_list_empty.json"), *[httpx.ConnectError("down")] * 3])
    create = asaas.post("/payments").mock(side_effect=httpx.ReadTimeout("the answer never came"))

    with pytest.raises(GatewayUnavailable) as unavailable:
        gateway.charge_card(card())

    assert unavailable.value.outcome_unknown is True
    assert create.call_count == 1


def test_a_rate_limited_request_is_sent_again(
    asaas: respx.MockRouter, gateway: AsaasGateway, lookup: respx.Route
) -> None:
    create = asaas.post("/payments").mock(side_effect=[httpx.Response(429), answer("payment_card_confirmed.json")])

    assert gateway.charge_card(card()).id == CARD_ID
    assert create.call_count == 2
    assert lookup.call_count == 1  # a 429 was never processed: no need to look


# -- boleto and PIX ------------------------------------------------------------------------------------------


def test_a_boleto_is_created_with_its_typeable_line(asaas: respx.MockRouter, gateway: AsaasGateway) -> None:
    asaas.get("/payments", params={"externalReference": "chg_b0d4e2a7"}).mock(
        return_value=answer("payment_list_empty.json")
    )
    create = asaas.post("/payments").mock(return_value=answer("payment_boleto_pending.json"))
    asaas.get("/payments/pay_9n2hd6r0ya3lq7ue/identificationField").mock(
        return_value=answer("identification_field.json")
    )

    payment, code = gateway.create_manual_charge(
        ManualCharge("chg_b0d4e2a7", "cus_000005113026", 19990, date(2026, 12, 1), "boleto")
    )

    body = json.loads(create.calls.last.request.content)
    assert body["billingType"] == "BOLETO"
    assert b'"value":199.90' in create.calls.last.request.content
    assert payment.amount_cents == 19990
    assert payment.state == "pending"
    assert payment.method == "boleto"
    assert code == BoletoCode(
        identification_field="46191147003520000000000000000000118870000019990",
        bank_slip_url="https://sandbox.asaas.com/b/pdf/9n2hd6r0ya3lq7ue",
        nosso_numero="11470352",
        bar_code="46191118700000199901147035200000000000000000",
    )


def test_a_pix_charge_is_created_with_its_qr_code_and_five_centavos_stay_five(
    asaas: respx.MockRouter, gateway: AsaasGateway
) -> None:
    asaas.get("/payments", params={"externalReference": "chg_e91c0f55"}).mock(
        return_value=answer("payment_list_empty.json")
    )
    create = asaas.post("/payments").mock(return_value=answer("payment_pix_pending.json"))
    asaas.get("/payments/pay_2c5zj8p4wm6t0rsk/pixQrCode").mock(return_value=answer("pix_qr_code.json"))

    payment, code = gateway.create_manual_charge(
        ManualCharge("chg_e91c0f55", "cus_000005113026", 5, date(2026, 12, 1), "pix")
    )

    assert b'"value":0.05' in create.calls.last.request.content
    assert json.loads(create.calls.last.request.content)["billingType"] == "PIX"
    assert payment.amount_cents == 5
    assert payment.method == "pix"
    assert isinstance(code, PixCode)
    assert code.payload.startswith("000201")
    assert code.encoded_image.startswith("iVBORw0KGgo")
    assert code.expiration == "2027-12-01 23:59:59"


# -- reading, canceling, refunding ---------------------------------------------------------------------------


def test_a_payment_is_read_again_after_a_5xx(
    asaas: respx.MockRouter, gateway: AsaasGateway, sleeps: list[float]
) -> None:
    read = asaas.get(f"/payments/{CARD_ID}").mock(
        side_effect=[httpx.Response(503), answer("payment_card_confirmed.json")]
    )

    payment = gateway.get_payment(CARD_ID)

    assert payment.amount_cents == 18990
    assert read.call_count == 2
    assert sleeps == [0.5]


def test_an_unknown_payment_is_not_found(asaas: respx.MockRouter, gateway: AsaasGateway) -> None:
    asaas.get("/payments/pay_nope").mock(return_value=httpx.Response(404))

    with pytest.raises(PaymentNotFound):
        gateway.get_payment("pay_nope")


def test_find_by_reference_ignores_deleted_payments_and_other_references(
    gateway: AsaasGateway, lookup: respx.Route
) -> None:
    listed = fixture("payment_list_by_reference.json")
    deleted = {**listed["data"][0], "id": "pay_deleted", "deleted": True}
    other = {**listed["data"][0], "id": "pay_other", "externalReference": "chg_someone_else"}
    lookup.mock(return_value=httpx.Response(200, json={**listed, "totalCount": 2, "data": [deleted, other]}))

    assert gateway.find_by_reference("chg_7f3a9c1e") is None


def test_find_by_reference_answers_none_when_asaas_has_nothing(gateway: AsaasGateway, lookup: respx.Route) -> None:
    assert gateway.find_by_reference("chg_7f3a9c1e") is None


def test_cancel_deletes_the_payment(asaas: respx.MockRouter, gateway: AsaasGateway) -> None:
    delete = asaas.delete("/payments/pay_9n2hd6r0ya3lq7ue").mock(return_value=answer("payment_deleted.json"))

    gateway.cancel("pay_9n2hd6r0ya3lq7ue")

    assert delete.call_count == 1


def test_cancel_after_an_unanswered_delete_accepts_that_it_is_gone(
    asaas: respx.MockRouter, gateway: AsaasGateway
) -> None:
    delete = asaas.delete("/payments/pay_9n2hd6r0ya3lq7ue").mock(
        side_effect=[httpx.ReadTimeout("slow"), httpx.Response(404)]
    )

    gateway.cancel("pay_9n2hd6r0ya3lq7ue")

    assert delete.call_count == 2


def test_cancel_of_a_paid_payment_is_rejected(asaas: respx.MockRouter, gateway: AsaasGateway) -> None:
    asaas.delete(f"/payments/{CARD_ID}").mock(
        return_value=httpx.Response(
            400, json={"errors": [{"code": "invalid_action", "description": "Cobrança já recebida."}]}
        )
    )

    with pytest.raises(GatewayRejected, match="invalid_action"):
        gateway.cancel(CARD_ID)


def test_a_full_refund_sends_no_value_and_reports_the_whole_amount(
    asaas: respx.MockRouter, gateway: AsaasGateway
) -> None:
    refund = asaas.post(f"/payments/{CARD_ID}/refund").mock(return_value=answer("payment_refunded.json"))

    result = gateway.refund(CARD_ID, description="Pagamento em duplicidade")

    assert json.loads(refund.calls.last.request.content) == {"description": "Pagamento em duplicidade"}
    assert result.payment_id == CARD_ID
    assert result.status == "REFUNDED"
    assert result.state == "refunded"
    assert result.amount_cents == 18990


def test_a_partial_refund_sends_the_exact_value(asaas: respx.MockRouter, gateway: AsaasGateway) -> None:
    refund = asaas.post(f"/payments/{CARD_ID}/refund").mock(return_value=answer("payment_card_confirmed.json"))

    result = gateway.refund(CARD_ID, 1005)

    assert refund.calls.last.request.content == b'{"value":10.05}'
    assert result.amount_cents == 1005


def test_a_refund_without_an_answer_is_not_sent_again(asaas: respx.MockRouter, gateway: AsaasGateway) -> None:
    refund = asaas.post(f"/payments/{CARD_ID}/refund").mock(side_effect=httpx.ReadTimeout("slow"))

    with pytest.raises(GatewayUnavailable) as unavailable:
        gateway.refund(CARD_ID, 1005)

    assert unavailable.value.outcome_unknown is True
    assert refund.call_count == 1


def test_the_base_url_may_be_given_with_or_without_v3(asaas: respx.MockRouter, http: httpx.Client) -> None:
    asaas.get(f"/payments/{CARD_ID}").mock(return_value=answer("payment_card_confirmed.json"))

    with AsaasGateway(f"{BASE}/v3/", "k", client=http) as gateway:
        assert gateway.get_payment(CARD_ID).id == CARD_ID


def test_the_asaas_client_is_a_gateway(http: httpx.Client) -> None:
    port: Gateway = AsaasGateway(BASE, "k", client=http)  # mypy checks the Protocol here
    assert isinstance(port, AsaasGateway)


# -- money -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "cents"),
    [
        (189.9, 18990),
        (Decimal("189.90"), 18990),
        (0.05, 5),
        (0.1, 10),
        (5, 500),
        ("189.90", 18990),
        (1234567.89, 123456789),
    ],
)
def test_asaas_values_become_exact_centavos(value: object, cents: int) -> None:
    assert cents_from_json(value) == cents


@pytest.mark.parametrize("value", [0.001, -1, True, None, float("nan"), "1e3", "abc", 1e16])
def test_values_that_are_not_money_are_refused(value: object) -> None:
    with pytest.raises(ValueError, match=r"money|decimal"):
        cents_from_json(value)


def test_centavos_are_written_digit_for_digit() -> None:
    assert encode_json({"value": money(18990)}) == b'{"value":189.90}'
    assert encode_json({"value": money(5)}) == b'{"value":0.05}'
    assert encode_json([money(100), "ação", None, True, 3]) == '[1.00,"ação",null,true,3]'.encode()


def test_floats_are_never_written_as_money() -> None:
    with pytest.raises(TypeError, match="float"):
        encode_json({"value": 189.9})
