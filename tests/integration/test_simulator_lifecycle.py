"""The simulated Asaas's payment lifecycle: card money at D+32, lists, installments, refunds, chargebacks, controls.

In process, on a frozen clock, with webhooks recorded but not posted: each test reads what the
simulator answered and which events it emitted, in order. How they are delivered is
test_gateway_simulator.py's; how the answers compare with the real sandbox, test_simulator_parity.py's.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from starlette.testclient import TestClient

from billing.clock import FrozenClock
from regua.sandbox.simulator import create_simulator_app

SAO_PAULO = ZoneInfo("America/Sao_Paulo")
HEADERS = {"access_token": "any-key"}
REFUND_DELAY_S = 0.5  # long enough that a busy machine still reads the refund PENDING first


class Asaas:
    """The simulator in process, with its clock and the names of the events it emitted."""

    def __init__(self, refund_delay_s: float = REFUND_DELAY_S, require_remote_ip: bool = True) -> None:
        self.clock = FrozenClock(datetime(2026, 7, 14, 10, 0, tzinfo=SAO_PAULO))  # a Tuesday
        app = create_simulator_app(
            "", "", clock=self.clock, refund_delay_s=refund_delay_s, require_remote_ip=require_remote_ip
        )
        self.client = TestClient(app, base_url="http://sim.test")

    def day(self, month: int, day: int) -> None:
        self.clock.set(datetime(2026, month, day, 10, 0, tzinfo=SAO_PAULO))

    def post(self, path: str, body: dict[str, Any] | None = None, expect: int = 200) -> Any:
        response = self.client.post(path, json=body or {}, headers=HEADERS)
        assert response.status_code == expect, response.text
        return response.json()

    def get(self, path: str, **params: str) -> Any:
        response = self.client.get(path, params=params, headers=HEADERS)
        assert response.status_code == 200, response.text
        return response.json()

    def create(self, billing_type: str = "PIX", value: float = 100, **fields: Any) -> dict[str, Any]:
        body = {"customer": "cus_000000000001", "billingType": billing_type, "value": value, "dueDate": "2026-07-19"}
        return dict(self.post("/v3/payments", body | fields))

    def control(self, payment_id: str, action: str, expect: int = 200, **body: Any) -> dict[str, Any]:
        return dict(self.post(f"/sim/payments/{payment_id}/{action}", body, expect=expect))

    def events(self) -> list[str]:
        return [hook["event"] for hook in self.get("/sim/state")["webhooks"]]


@pytest.fixture
def asaas() -> Asaas:
    return Asaas()


def test_payments_are_listed_newest_first(asaas: Asaas) -> None:
    first, second, third = (asaas.create(externalReference="chg_1") for _ in range(3))

    listed = asaas.get("/v3/payments", externalReference="chg_1")

    assert [payment["id"] for payment in listed["data"]] == [third["id"], second["id"], first["id"]]
    assert [payment["id"] for payment in asaas.get("/v3/payments", limit="2")["data"]] == [third["id"], second["id"]]


def test_a_card_payment_is_confirmed_and_then_received_at_d_plus_32_by_the_simulator_s_clock(asaas: Asaas) -> None:
    payment = asaas.create("CREDIT_CARD", creditCardToken="tok_ok", remoteIp="203.0.113.10")

    assert (payment["status"], payment["confirmedDate"], payment["clientPaymentDate"]) == (
        "CONFIRMED",
        "2026-07-14",
        "2026-07-14",
    )
    assert payment["paymentDate"] is None  # the merchant is not credited yet
    # D+32 is Saturday 15 August: credited on the next business day, as the sandbox does
    assert payment["creditDate"] == payment["estimatedCreditDate"] == "2026-08-17"

    asaas.day(8, 16)
    assert asaas.get(f"/v3/payments/{payment['id']}")["status"] == "CONFIRMED"
    asaas.day(8, 17)
    asaas.post("/sim/clock-tick")

    received = asaas.get(f"/v3/payments/{payment['id']}")
    assert (received["status"], received["paymentDate"], received["clientPaymentDate"]) == (
        "RECEIVED",
        "2026-08-17",
        "2026-07-14",
    )
    assert asaas.events() == ["PAYMENT_CONFIRMED", "PAYMENT_RECEIVED"]


def test_an_installment_purchase_answers_its_first_installment_and_puts_the_remainder_on_the_last(
    asaas: Asaas,
) -> None:
    first = asaas.create("BOLETO", value=None, installmentCount=12, totalValue=350)

    listed = asaas.get("/v3/payments", installment=first["installment"], limit="100")["data"]

    assert (first["installmentNumber"], first["value"], first["description"]) == (1, 29.16, "Parcela 1 de 12.")
    assert [payment["installmentNumber"] for payment in listed] == list(range(12, 0, -1))
    assert [payment["value"] for payment in listed] == [29.24] + [29.16] * 11
    assert listed[0]["dueDate"] == "2027-06-19"


def test_card_installments_are_credited_at_d_plus_32_for_each_place(asaas: Asaas) -> None:
    first = asaas.create(
        "CREDIT_CARD", value=None, installmentCount=3, totalValue=300, creditCardToken="tok_ok", remoteIp="::1"
    )

    listed = asaas.get("/v3/payments", installment=first["installment"])["data"]

    assert [payment["creditDate"] for payment in reversed(listed)] == ["2026-08-17", "2026-09-16", "2026-10-19"]
    assert {payment["status"] for payment in listed} == {"CONFIRMED"}
    assert [payment["netValue"] for payment in listed] == [96.35] * 3  # R$ 0,49 + 3.49% of 300, split, truncated


def test_a_refund_is_pending_then_done_and_only_then_announced(asaas: Asaas) -> None:
    payment = asaas.create()
    asaas.control(payment["id"], "pay")

    asked = asaas.post(f"/v3/payments/{payment['id']}/refund", {"description": "duplicidade"})

    assert asked["status"] == "REFUND_REQUESTED"
    assert [(refund["status"], refund["value"]) for refund in asked["refunds"]] == [("PENDING", 100)]
    assert asaas.events() == ["PAYMENT_RECEIVED"]
    time.sleep(REFUND_DELAY_S + 0.05)
    done = asaas.get(f"/v3/payments/{payment['id']}")
    assert done["status"] == "REFUNDED"
    assert done["refunds"][0]["status"] == "DONE"
    assert asaas.events() == ["PAYMENT_RECEIVED", "PAYMENT_REFUNDED"]


def test_a_refund_of_card_money_not_yet_credited_is_announced_in_progress() -> None:
    slow = Asaas(refund_delay_s=60)
    payment = slow.create("CREDIT_CARD", creditCardToken="tok_ok", remoteIp="203.0.113.10")

    asked = slow.post(f"/v3/payments/{payment['id']}/refund")

    assert asked["status"] == "REFUND_IN_PROGRESS"
    assert slow.events() == ["PAYMENT_CONFIRMED", "PAYMENT_REFUND_IN_PROGRESS"]


def test_a_partial_refund_leaves_the_payment_received_and_is_announced_as_partial(asaas: Asaas) -> None:
    payment = asaas.create()
    asaas.control(payment["id"], "pay")

    asked = asaas.post(f"/v3/payments/{payment['id']}/refund", {"value": 30})
    time.sleep(REFUND_DELAY_S + 0.05)

    assert asked["status"] == "RECEIVED"
    done = asaas.get(f"/v3/payments/{payment['id']}")
    assert (done["status"], done["refunds"][0]["status"], done["refunds"][0]["value"]) == ("RECEIVED", "DONE", 30)
    assert asaas.events() == ["PAYMENT_RECEIVED", "PAYMENT_PARTIALLY_REFUNDED"]


def test_a_denied_refund_is_cancelled_and_the_payment_is_back_as_it_was() -> None:
    slow = Asaas(refund_delay_s=60)
    payment = slow.create()
    slow.control(payment["id"], "pay")
    slow.post(f"/v3/payments/{payment['id']}/refund")

    denied = slow.control(payment["id"], "refund-denied")

    assert denied["status"] == "RECEIVED"
    assert denied["refunds"][0]["status"] == "CANCELLED"
    assert slow.events() == ["PAYMENT_RECEIVED", "PAYMENT_REFUND_DENIED"]
    assert slow.control(payment["id"], "refund-denied", expect=409)["errors"][0]["code"] == "invalid_action"


def test_an_instant_refund_is_done_in_the_answer_when_the_delay_is_zero() -> None:
    instant = Asaas(refund_delay_s=0)
    payment = instant.create()
    instant.control(payment["id"], "pay")

    refunded = instant.post(f"/v3/payments/{payment['id']}/refund")

    assert (refunded["status"], refunded["refunds"][0]["status"]) == ("REFUNDED", "DONE")
    assert instant.events() == ["PAYMENT_RECEIVED", "PAYMENT_REFUNDED"]


def test_a_chargeback_disputed_and_won_brings_the_payment_back_received(asaas: Asaas) -> None:
    payment = asaas.create("CREDIT_CARD", creditCardToken="tok_ok", remoteIp="203.0.113.10")

    requested = asaas.control(payment["id"], "chargeback")
    disputed = asaas.control(payment["id"], "chargeback-dispute")
    won = asaas.control(payment["id"], "chargeback-won")

    assert (requested["status"], requested["chargeback"]) == (
        "CHARGEBACK_REQUESTED",
        {"status": "REQUESTED", "reason": "ABSENT_CARD_FRAUD"},
    )
    assert (disputed["status"], disputed["chargeback"]["status"]) == ("CHARGEBACK_DISPUTE", "IN_DISPUTE")
    assert (won["status"], won["chargeback"]["status"]) == ("RECEIVED", "REVERSED")
    assert asaas.events() == [
        "PAYMENT_CONFIRMED",
        "PAYMENT_CHARGEBACK_REQUESTED",
        "PAYMENT_CHARGEBACK_DISPUTE",
        "PAYMENT_AWAITING_CHARGEBACK_REVERSAL",
        "PAYMENT_RECEIVED",
    ]
    assert "chargeback" not in asaas.create()  # only a payment that has one shows it


def test_a_chargeback_dispute_lost_leaves_the_payment_charged_back(asaas: Asaas) -> None:
    payment = asaas.create("CREDIT_CARD", creditCardToken="tok_ok", remoteIp="203.0.113.10")
    asaas.control(payment["id"], "chargeback", reason="FRAUD")
    asaas.control(payment["id"], "chargeback-dispute")

    lost = asaas.control(payment["id"], "chargeback-lost")

    assert (lost["status"], lost["chargeback"]) == ("CHARGEBACK_REQUESTED", {"status": "DONE", "reason": "FRAUD"})
    assert asaas.events()[-1] == "PAYMENT_CHARGEBACK_DISPUTE"
    assert asaas.control(payment["id"], "chargeback-won", expect=409)["errors"][0]["code"] == "invalid_action"


def test_money_received_in_cash_and_undone_goes_back_to_pending_or_overdue_by_its_due_date(asaas: Asaas) -> None:
    payment = asaas.create("BOLETO")

    in_cash = asaas.post(f"/v3/payments/{payment['id']}/receiveInCash", {"paymentDate": "2026-07-15"})
    undone = asaas.post(f"/v3/payments/{payment['id']}/undoReceivedInCash")
    asaas.control(payment["id"], "cash")
    asaas.day(7, 20)  # past its due date, 19 July
    late = asaas.control(payment["id"], "cash-undone")

    assert (in_cash["status"], in_cash["paymentDate"]) == ("RECEIVED_IN_CASH", "2026-07-15")
    assert (undone["status"], undone["paymentDate"]) == ("PENDING", None)
    assert late["status"] == "OVERDUE"
    assert asaas.events() == ["PAYMENT_RECEIVED", "PAYMENT_RECEIVED_IN_CASH_UNDONE"] * 2


def test_a_deleted_payment_is_restored_pending_with_a_fresh_nosso_numero(asaas: Asaas) -> None:
    payment = asaas.create("BOLETO")

    asaas.control(payment["id"], "deleted")
    assert asaas.get("/v3/payments")["data"] == []
    restored = asaas.post(f"/v3/payments/{payment['id']}/restore")

    assert (restored["status"], restored["deleted"]) == ("PENDING", False)
    assert restored["nossoNumero"] != payment["nossoNumero"]
    assert asaas.events() == ["PAYMENT_DELETED", "PAYMENT_RESTORED"]


def test_a_card_payment_held_for_risk_analysis_is_approved_or_refused(asaas: Asaas) -> None:
    approved = asaas.create("CREDIT_CARD", creditCardToken="tok_ok", remoteIp="203.0.113.10")
    refused = asaas.create("CREDIT_CARD", creditCardToken="tok_other", remoteIp="203.0.113.10")

    held = asaas.control(approved["id"], "risk-review")
    asaas.control(refused["id"], "risk-review")
    confirmed = asaas.control(approved["id"], "risk-approved")
    reproved = asaas.control(refused["id"], "risk-refused")

    assert (held["status"], held["confirmedDate"]) == ("AWAITING_RISK_ANALYSIS", None)
    assert (confirmed["status"], confirmed["confirmedDate"]) == ("CONFIRMED", "2026-07-14")
    assert reproved["status"] == "PENDING"
    assert asaas.events()[2:] == [
        "PAYMENT_AWAITING_RISK_ANALYSIS",
        "PAYMENT_AWAITING_RISK_ANALYSIS",
        "PAYMENT_APPROVED_BY_RISK_ANALYSIS",
        "PAYMENT_CONFIRMED",
        "PAYMENT_REPROVED_BY_RISK_ANALYSIS",
    ]


def test_a_control_that_does_not_apply_to_the_payment_is_refused_and_changes_nothing(asaas: Asaas) -> None:
    payment = asaas.create()

    assert asaas.control(payment["id"], "chargeback-dispute", expect=409)["errors"][0]["code"] == "invalid_action"
    assert asaas.control(payment["id"], "cash-undone", expect=409)["errors"][0]["code"] == "invalid_action"
    assert asaas.control(payment["id"], "risk-approved", expect=409)["errors"][0]["code"] == "invalid_action"
    assert asaas.control(payment["id"], "no-such-thing", expect=404)["errors"][0]["code"] == "not_found"
    assert asaas.get(f"/v3/payments/{payment['id']}")["status"] == "PENDING"
    assert asaas.events() == []


def test_a_declined_test_card_is_answered_as_asaas_does_and_nothing_is_stored(asaas: Asaas) -> None:
    card = {"holderName": "Ana", "number": "5184019740373151", "expiryMonth": "12", "expiryYear": "2030", "ccv": "1"}

    declined = asaas.client.post(
        "/v3/payments",
        json={"customer": "cus_1", "billingType": "CREDIT_CARD", "value": 100, "dueDate": "2026-07-19"}
        | {"creditCard": card, "remoteIp": "203.0.113.10"},
        headers=HEADERS,
    )

    assert declined.status_code == 400
    assert declined.json() == {
        "errors": [
            {
                "code": "invalid_action",
                "description": "Transação não autorizada. Verifique os dados do cartão de crédito e tente novamente.",
            }
        ]
    }
    assert asaas.get("/sim/state")["payments"] == []


def test_a_card_payment_without_remote_ip_is_refused_as_asaas_does_unless_the_switch_is_off() -> None:
    strict, lenient = Asaas(), Asaas(require_remote_ip=False)
    body = {"customer": "cus_1", "billingType": "CREDIT_CARD", "value": 100, "dueDate": "2026-07-19"}

    refused = strict.client.post("/v3/payments", json=body | {"creditCardToken": "tok_ok"}, headers=HEADERS)
    accepted = strict.create("CREDIT_CARD", creditCardToken="tok_ok", remoteIp="203.0.113.10")
    unpaid_card = strict.create("CREDIT_CARD")  # no card yet: paid later on its page, no IP to give
    tolerated = lenient.create("CREDIT_CARD", creditCardToken="tok_ok")

    assert refused.status_code == 400
    assert refused.json()["errors"][0]["code"] == "invalid_remoteIp"
    assert (accepted["status"], unpaid_card["status"], tolerated["status"]) == ("CONFIRMED", "PENDING", "CONFIRMED")
    assert len(strict.get("/sim/state")["payments"]) == 2
