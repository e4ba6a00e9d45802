"""The ports billing calls through: the books (transactions, clock, calendar, policy), a payment gateway and
the source of a gateway's payment; plain data and Protocols, no I/O. The application hands the implementations in."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Literal, Protocol, TypeVar

from sqlalchemy.orm import Session, sessionmaker

from billing.calendar import BillingCalendar
from billing.clock import Clock
from billing.policy import Policy

T = TypeVar("T")

ManualMethod = Literal["boleto", "pix", "card"]
"""How a customer pays by themselves: a boleto, a PIX code, or a card typed on the gateway's own page."""
PaymentMethod = Literal["card", "boleto", "pix", "other"]
PaymentState = Literal["pending", "paid", "overdue", "refunding", "refunded", "chargeback", "canceled"]

# The gateway's own status words (Asaas's), mapped to the few states regua acts on. A status missing
# here is read as "pending": never paid by accident, and `tick` asks again later.
_STATES: dict[str, PaymentState] = {
    "PENDING": "pending",
    "AWAITING_RISK_ANALYSIS": "pending",
    "AUTHORIZED": "pending",
    "CONFIRMED": "paid",
    "RECEIVED": "paid",
    "RECEIVED_IN_CASH": "paid",
    "DUNNING_RECEIVED": "paid",
    "OVERDUE": "overdue",
    "DUNNING_REQUESTED": "overdue",
    "REFUND_REQUESTED": "refunding",
    "REFUND_IN_PROGRESS": "refunding",
    "REFUNDED": "refunded",
    "CHARGEBACK_REQUESTED": "chargeback",
    "CHARGEBACK_DISPUTE": "chargeback",
    "AWAITING_CHARGEBACK_REVERSAL": "chargeback",
}

_METHODS: dict[str, PaymentMethod] = {"CREDIT_CARD": "card", "BOLETO": "boleto", "PIX": "pix"}


def state_of(gateway_status: str, *, deleted: bool = False) -> PaymentState:
    """The state regua acts on, from the gateway's status word."""
    if deleted:
        return "canceled"
    return _STATES.get(gateway_status.upper(), "pending")


def _check_charge(charge_id: str, customer_id: str, amount_cents: int) -> None:
    if not charge_id:
        raise ValueError("a charge needs our charge_id: it is the gateway's externalReference")
    if not customer_id:
        raise ValueError("a charge needs the gateway's customer id")
    if isinstance(amount_cents, bool) or not isinstance(amount_cents, int) or amount_cents <= 0:
        raise ValueError(f"amount_cents must be a positive integer, not {amount_cents!r}")


@dataclass(frozen=True, slots=True)
class CustomerRequest:
    """An account as the gateway keeps it: `reference` is our account id (Asaas's externalReference)."""

    reference: str
    name: str
    document: str
    email: str | None = None

    def __post_init__(self) -> None:
        if not self.reference or not self.name or not self.document:
            raise ValueError("a gateway customer needs our reference, a name and a CPF or CNPJ")


@dataclass(frozen=True, slots=True)
class CardCharge:
    """Charge a saved card now. `charge_id` is ours and goes to the gateway as externalReference."""

    charge_id: str
    customer_id: str
    amount_cents: int
    due_date: date
    card_token: str
    remote_ip: str
    """The customer's IP when they gave this card (Asaas's remoteIp): never the server's, never left out."""
    installments: int = 1
    description: str = ""
    first_contact: bool = False
    """Never sent before (no attempt of this charge can have reached the gateway): the client may create
    it without first looking it up by our id. False, the safe side, whenever in doubt."""

    def __post_init__(self) -> None:
        _check_charge(self.charge_id, self.customer_id, self.amount_cents)
        if not self.card_token:
            raise ValueError("a card charge needs the saved card's token")
        ipaddress.ip_address(self.remote_ip)  # a ValueError names what is not an IP
        if not 1 <= self.installments <= 12:
            raise ValueError(f"installments must be 1 to 12, not {self.installments}")


@dataclass(frozen=True, slots=True)
class ManualCharge:
    """Issue a boleto or a PIX charge that the customer pays by themselves."""

    charge_id: str
    customer_id: str
    amount_cents: int
    due_date: date
    method: ManualMethod
    description: str = ""
    first_contact: bool = False
    """Never sent before (no attempt of this charge can have reached the gateway): the client may create
    it without first looking it up by our id. False, the safe side, whenever in doubt."""
    remote_ip: str | None = None
    """A card paid on the gateway's page: the IP of the customer who asked for it, when regua knows it."""

    def __post_init__(self) -> None:
        _check_charge(self.charge_id, self.customer_id, self.amount_cents)
        if self.remote_ip is not None:
            ipaddress.ip_address(self.remote_ip)
        if self.method not in ("boleto", "pix", "card"):
            raise ValueError(
                f"a manual charge is paid by boleto, pix or card (on the gateway's page), not {self.method!r}"
            )


@dataclass(frozen=True, slots=True)
class GatewayPayment:
    """A payment as the gateway sees it. `status` and `billing_type` are the gateway's own words
    ("CONFIRMED", "CREDIT_CARD"); `state` and `method` are regua's reading of them."""

    id: str
    status: str
    amount_cents: int
    billing_type: str
    external_reference: str | None
    due_date: date | None = None
    confirmed_on: date | None = None
    paid_on: date | None = None
    invoice_url: str | None = None
    deleted: bool = False
    installment_id: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def state(self) -> PaymentState:
        return state_of(self.status, deleted=self.deleted)

    @property
    def method(self) -> PaymentMethod:
        return _METHODS.get(self.billing_type.upper(), "other")

    @property
    def is_paid(self) -> bool:
        """Money was captured (card confirmed, boleto or PIX received) and not given back."""
        return self.state == "paid"


@dataclass(frozen=True, slots=True)
class PixCode:
    """What the customer needs to pay by PIX: the copy-and-paste code and its QR image (base64 PNG)."""

    payload: str
    encoded_image: str
    expiration: str | None = None


@dataclass(frozen=True, slots=True)
class BoletoCode:
    """What the customer needs to pay a boleto: the typeable line and the PDF."""

    identification_field: str
    bank_slip_url: str | None = None
    nosso_numero: str | None = None
    bar_code: str | None = None


@dataclass(frozen=True, slots=True)
class GatewayRefund:
    """The answer to a refund: the payment it touched, its status after it, and how much went back."""

    payment_id: str
    status: str
    amount_cents: int
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def state(self) -> PaymentState:
        return state_of(self.status)


class GatewayError(Exception):
    """Anything the gateway port raises.

    GatewayError
    ├── GatewayUnavailable   no trustworthy answer: timeout, connection error, 429 or 5xx after the
    │                        retries. The outcome may be unknown (`outcome_unknown`): retry later;
    │                        creating calls look the charge up by our charge_id first, so it is safe.
    ├── CardDeclined         the card was refused. `hard` (expired, stolen or lost, invalid number
    │                        or token) means never retry this card; soft declines may be retried.
    └── GatewayRejected      any other 4xx: our request is wrong or not allowed; retrying the same
        │                    request will not help (`status_code`, `errors`).
        └── PaymentNotFound  the gateway has no such payment (404).
    """


class GatewayUnavailable(GatewayError):
    def __init__(self, message: str, *, outcome_unknown: bool = False) -> None:
        super().__init__(message)
        self.outcome_unknown = outcome_unknown


class CardDeclined(GatewayError):
    def __init__(self, description: str, *, code: str, hard: bool, reason: str) -> None:
        super().__init__(f"card declined ({'hard' if hard else 'soft'}, {reason}): {description}")
        self.description = description
        self.code = code
        self.hard = hard
        self.reason = reason


class GatewayRejected(GatewayError):
    def __init__(self, message: str, *, status_code: int, errors: tuple[tuple[str, str], ...] = ()) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.errors = errors


class PaymentNotFound(GatewayRejected):
    pass


class Gateway(Protocol):
    """A payment gateway as regua uses it. Every call may raise GatewayError (see its tree)."""

    def ensure_customer(self, customer: CustomerRequest) -> str:
        """The gateway's id for this customer, created unless one with our reference exists; safe to call again."""
        ...

    def charge_card(self, charge: CardCharge) -> GatewayPayment:
        """Charge a saved card; safe to call again with the same charge_id (charges once)."""
        ...

    def create_manual_charge(self, charge: ManualCharge) -> tuple[GatewayPayment, PixCode | BoletoCode | None]:
        """Issue a boleto or PIX charge and return it with its code (a card one: no code, the payment's
        `invoice_url` is the page where the card is typed); safe to call again."""
        ...

    def get_payment(self, payment_id: str) -> GatewayPayment:
        """The payment as the gateway sees it now (raises PaymentNotFound)."""
        ...

    def find_by_reference(self, charge_id: str) -> GatewayPayment | None:
        """The gateway's live payment for our charge_id, if it has one."""
        ...

    def cancel(self, payment_id: str) -> None:
        """Cancel a payment not yet paid, so it can no longer be paid."""
        ...

    def refund(self, payment_id: str, amount_cents: int | None = None, *, description: str = "") -> GatewayRefund:
        """Give back a paid payment, all of it (None) or part of it."""
        ...


class Books(Protocol):
    """What services need of the composition root: short transactions, the clock, the calendar and the policy."""

    @property
    def clock(self) -> Clock: ...
    @property
    def calendar(self) -> BillingCalendar: ...
    @property
    def policy(self) -> Policy: ...
    @property
    def sessions(self) -> sessionmaker[Session]: ...
    def transaction(self, work: Callable[[Session], T]) -> T: ...
    def read(self, work: Callable[[Session], T]) -> T: ...


class PaymentSource(Protocol):
    """Where the trusted state of a gateway's payment comes from (Asaas: GET /v3/payments/{id})."""

    def fetch_payment(self, payment_id: str) -> dict[str, Any]: ...
