"""A payment at the simulated Asaas, its refunds and chargeback, and its JSON as the real API writes it.

The shape follows responses captured from Asaas's sandbox (tests/fixtures/asaas_golden): relations
that do not apply are left out rather than written as null (`installment` only on an installment,
`canBePaidAfterDueDate` only on a boleto, `confirmedDate` and `creditCard` only on a card payment,
`chargeback` only once there is one); `paymentDate` is when the merchant is credited (null while a
card is CONFIRMED), `clientPaymentDate` when the customer paid, `creditDate`/`estimatedCreditDate`
when the money is or will be available (a card's at D+32 per installment, the next business day).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any, Protocol

from regua.gateway.asaas import money
from regua.sandbox.simulator.cards import Card
from regua.sandbox.simulator.common import (
    SimulatorError,
    business_day_from,
    iso,
    optional_date,
    positive_cents,
)

BILLING_TYPES = ("BOLETO", "PIX", "CREDIT_CARD", "UNDEFINED")
UNPAID = ("PENDING", "OVERDUE")
PAID = ("CONFIRMED", "RECEIVED", "RECEIVED_IN_CASH")
CARD_CREDIT_DAYS = 32
# Asaas's fees as its sandbox charged them: PIX and boleto R$ 1,99 a payment; a card R$ 0,49 plus a
# share of the purchase (2.99% at once, 3.49% in 2-6 installments, 3.99% in 7-12), split evenly over
# the installments and truncated (the centavos left over stay with the merchant).
FIXED_FEE_CENTS = 199
CARD_FIXED_FEE_CENTS = 49
CARD_FEE_BASIS_POINTS = ((1, 299), (6, 349), (21, 399))
NO_TERMS: dict[str, dict[str, object]] = {
    "discount": {"value": 0, "limitDate": None, "dueDateLimitDays": 0, "type": "FIXED"},
    "fine": {"value": 0, "type": "FIXED"},
    "interest": {"value": 0, "type": "PERCENTAGE"},
}


@dataclass
class Refund:
    value_cents: int
    created: str
    description: str | None
    status: str = "PENDING"  # PENDING, then DONE or CANCELLED
    settles_at: float = 0.0  # time.monotonic() after which a PENDING refund is DONE

    def to_json(self) -> dict[str, object]:
        return {
            "dateCreated": self.created,
            "status": self.status,
            "value": money(self.value_cents),
            "description": self.description,
            "transactionReceiptUrl": None,
        }


@dataclass
class Chargeback:
    status: str  # REQUESTED, IN_DISPUTE, DISPUTE_LOST, REVERSED, DONE
    reason: str

    def to_json(self) -> dict[str, object]:
        return {"status": self.status, "reason": self.reason}


@dataclass
class Payment:
    id: str
    sequence: int
    customer: str
    billing_type: str
    value_cents: int
    fee_cents: int
    due_date: date
    created: date
    external_reference: str | None
    description: str | None
    invoice_url: str
    nosso_numero: str
    status: str = "PENDING"
    confirmed_date: date | None = None
    payment_date: date | None = None
    client_payment_date: date | None = None
    credit_date: date | None = None
    deleted: bool = False
    installment: str | None = None
    installment_number: int | None = None
    card: Card | None = None
    refunds: list[Refund] = field(default_factory=list)
    chargeback: Chargeback | None = None
    status_before: str | None = None  # what a refund request or a chargeback interrupted
    terms: dict[str, dict[str, object]] = field(default_factory=dict)  # discount, fine, interest as asked for

    @property
    def refunded_cents(self) -> int:
        """What went back or is on its way back (a CANCELLED refund gave nothing back)."""
        return sum(refund.value_cents for refund in self.refunds if refund.status != "CANCELLED")

    @property
    def is_boleto(self) -> bool:
        return self.billing_type in ("BOLETO", "UNDEFINED")

    def confirm_card(self, card: Card, today: date) -> None:
        """Charged on a card: CONFIRMED now, credited at D+32 for each installment's place."""
        self.card = card
        self.status = "CONFIRMED"
        self.confirmed_date = self.client_payment_date = today
        place = self.installment_number or 1
        self.credit_date = business_day_from(today + timedelta(days=CARD_CREDIT_DAYS * place))

    def receive(self, paid_on: date) -> None:
        """Received (boleto, PIX, cash): the customer paid and the merchant is credited the same day."""
        self.status = "RECEIVED"
        self.client_payment_date = self.client_payment_date or paid_on
        self.payment_date = self.credit_date = paid_on

    def to_json(self) -> dict[str, object]:
        card = self.billing_type == "CREDIT_CARD"
        receipt = self.invoice_url.replace("/i/", "/comprovantes/") if self.client_payment_date else None
        body: dict[str, object] = {"object": "payment", "id": self.id, "dateCreated": self.created.isoformat()}
        body["customer"] = self.customer
        if self.installment is not None:
            body["installment"] = self.installment
        body |= {
            "checkoutSession": None,
            "paymentLink": None,
            "value": money(self.value_cents),
            "netValue": money(self.value_cents - self.fee_cents),
            "originalValue": None,
            "interestValue": None,
            "description": self.description,
            "billingType": self.billing_type,
        }
        if self.is_boleto:
            body["canBePaidAfterDueDate"] = True
        if card:
            body["confirmedDate"] = iso(self.confirmed_date)
            body["creditCard"] = self.card.to_json() if self.card else None
        body |= {
            "pixTransaction": None,
            "status": self.status,
            "dueDate": self.due_date.isoformat(),
            "originalDueDate": self.due_date.isoformat(),
            "paymentDate": iso(self.payment_date),
            "clientPaymentDate": iso(self.client_payment_date),
            "installmentNumber": self.installment_number,
            "invoiceUrl": self.invoice_url,
            "invoiceNumber": str(self.sequence).zfill(8),
            "externalReference": self.external_reference,
            "deleted": self.deleted,
            "anticipated": False,
            "anticipable": False,
            "creditDate": iso(self.credit_date),
            "estimatedCreditDate": iso(self.credit_date),
            "transactionReceiptUrl": receipt,
            "nossoNumero": self.nosso_numero if self.is_boleto else None,
            "bankSlipUrl": self.invoice_url.replace("/i/", "/b/pdf/") if self.is_boleto else None,
            "lastInvoiceViewedDate": None,
            "lastBankSlipViewedDate": None,
            **(NO_TERMS | self.terms),
            "postalService": False,
            "escrow": None,
            "refunds": [refund.to_json() for refund in self.refunds] or None,
        }
        if self.chargeback is not None:
            body["chargeback"] = self.chargeback.to_json()
        return body


@dataclass(frozen=True)
class CreateRequest:
    """A `POST /v3/payments` body, checked as Asaas checks it (the customer first, one error at a time)."""

    customer: str
    billing_type: str
    total_cents: int
    due_date: date
    external_reference: str | None
    description: str | None
    installments: int
    installment_id: str | None
    terms: dict[str, dict[str, object]]

    @classmethod
    def parse(cls, body: Mapping[str, Any]) -> CreateRequest:
        customer = body.get("customer")
        if not isinstance(customer, str) or not customer:
            raise SimulatorError(400, "invalid_customer", "Customer inválido ou não informado.")
        billing_type = body.get("billingType")
        if billing_type not in BILLING_TYPES:
            raise SimulatorError(400, "invalid_billingType", "Informe uma forma de pagamento válida.")
        due_date = optional_date(body.get("dueDate"), "dueDate")
        if due_date is None:
            raise SimulatorError(400, "invalid_dueDate", "O campo dueDate deve ser informado.")
        installments = body.get("installmentCount") or 1
        if not isinstance(installments, int) or not 1 <= installments <= 21:
            raise SimulatorError(400, "invalid_installmentCount", "Número de parcelas inválido.")
        if installments > 1 and body.get("totalValue") is not None:
            total = positive_cents(body["totalValue"], "totalValue")
        elif installments > 1 and body.get("installmentValue") is not None:
            total = positive_cents(body["installmentValue"], "installmentValue") * installments
        else:
            total = positive_cents(body.get("value"), "value")
        reference = body.get("externalReference")
        description = body.get("description")
        return cls(
            customer=customer,
            billing_type=billing_type,
            total_cents=total,
            due_date=due_date,
            external_reference=reference if isinstance(reference, str) and reference else None,
            description=description if isinstance(description, str) and description else None,
            installments=installments,
            installment_id=str(uuid.uuid4()) if installments > 1 else None,
            terms=_terms(body),
        )

    def split(self) -> list[int]:
        """The installments' values: equal parts in whole centavos, the remainder on the last one
        (Asaas's R$ 350 in 12: eleven of R$ 29,16 and one of R$ 29,24)."""
        base = self.total_cents // self.installments
        return [base] * (self.installments - 1) + [self.total_cents - base * (self.installments - 1)]

    def fees(self) -> list[int]:
        """Asaas's fee on each installment (see FIXED_FEE_CENTS and CARD_FEE_BASIS_POINTS), never more than the
        installment itself: a payment of a few centavos (what a plan change can leave) nets nothing, not less."""
        if self.billing_type != "CREDIT_CARD":
            fees = [FIXED_FEE_CENTS] * self.installments
        else:
            basis_points = next(points for most, points in CARD_FEE_BASIS_POINTS if self.installments <= most)
            total_fee = CARD_FIXED_FEE_CENTS + (self.total_cents * basis_points + 5_000) // 10_000
            fees = [total_fee // self.installments] * self.installments
        return [min(fee, value) for fee, value in zip(fees, self.split(), strict=True)]

    def describe(self, number: int) -> str | None:
        if self.installments == 1:
            return self.description
        return f"Parcela {number} de {self.installments}." + (f" {self.description}" if self.description else "")


def _terms(body: Mapping[str, Any]) -> dict[str, dict[str, object]]:
    """The discount, fine and interest asked for, written back as Asaas does (interest is always a
    monthly percentage; a discount's limit is counted in days before the due date)."""
    terms: dict[str, dict[str, object]] = {}
    for name, default in NO_TERMS.items():
        given = body.get(name)
        if isinstance(given, Mapping):
            terms[name] = {key: given.get(key, value) or value for key, value in default.items()}
            if name == "interest":
                terms[name]["type"] = "PERCENTAGE"
    return terms


class Ledger(Protocol):
    """What the refunds, the controls and the pages need of the simulator's state (AsaasSimulator)."""

    payments: dict[str, Payment]
    refunds_pending: set[str]
    refund_delay_s: float

    @property
    def lock(self) -> AbstractContextManager[Any]: ...
    def emit(self, name: str, payment: Payment) -> None: ...
    def today(self) -> date: ...
    def stamp(self) -> str: ...
    def find(self, payment_id: str, *, include_deleted: bool = True) -> Payment: ...
    def advance(self) -> None: ...
    def new_payment(self, base_url: str, **fields: Any) -> Payment: ...
    def confirm_card(self, payment: Payment, card: Card) -> None: ...
    def await_credit(self, payment: Payment) -> None: ...
    def fresh_codes(self, payment: Payment) -> None: ...
