"""The checkout: one charge for what must be paid now (rules 3.5, 3.6), by PIX, boleto or card.

Platform: the overdue invoices are enough to lift a block (3.5); with none overdue, the open ones.
Mentorship: every open invoice, in one combined charge (3.6). A checkout never doubles a charge: one
still pending for the same invoices and method is answered again (its PIX or boleto codes); any
other pending charge on these invoices is canceled, at the gateway first, before the new one exists.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from billing import validation as v
from billing.accounts import get_account
from billing.blocking import lock_accounts, owed_now
from billing.charging import (
    CardResult,
    ChargeOutcome,
    claim_manual_charge,
    leased,
    make_card_charge,
    record_gateway_answer,
    send_manual_charge,
    was_sent,
)
from billing.charging.customers import ensure_gateway_customer
from billing.errors import Conflict, InvalidInput
from billing.models import (
    UNPAID,
    Charge,
    ChargeInvoice,
    ChargeSource,
    ChargeStatus,
    Invoice,
    Product,
)
from billing.ports import Books, Gateway, ManualCharge, PaymentNotFound
from billing.remote_ip import FIELD as REMOTE_IP
from billing.remote_ip import read_remote_ip
from billing.settlement import lock_charge, open_charge

METHODS = ("pix", "boleto", "card")
PRODUCTS = tuple(product.value for product in Product)


@dataclass(frozen=True)
class CheckoutRequest:
    product: str
    method: str
    card_token: str | None
    installments: int
    remote_ip: str | None = None
    """The customer's IP: required with a card token (Asaas's remoteIp), sent with any card payment when known."""

    @property
    def card_page(self) -> bool:
        """A card with no saved token: the customer types it on the gateway's own page for this charge."""
        return self.method == "card" and self.card_token is None

    @classmethod
    def parse(cls, payload: Mapping[str, Any]) -> CheckoutRequest:
        product = v.choice(payload, "product", PRODUCTS)
        method = v.choice(payload, "method", METHODS)
        card_token = v.text(payload, "card_token", required=False)
        installments = v.integer(payload, "installments", required=False, minimum=1, maximum=12, default=1)
        remote_ip = read_remote_ip(payload)
        assert installments is not None
        if method != "card" and card_token is not None:
            raise InvalidInput("card_token", "only a card checkout takes a card token")
        if method != "card" and installments > 1:
            raise InvalidInput("installments", "only a card payment is split in installments")
        if method != "card" and remote_ip is not None:
            raise InvalidInput(REMOTE_IP, "only a card checkout takes the customer's IP")
        if card_token is not None and remote_ip is None:
            raise InvalidInput(REMOTE_IP, "is required with a card_token: the customer's IP, never the server's")
        return cls(product, method, card_token, installments, remote_ip)


@dataclass(frozen=True)
class CheckoutResult:
    charge: Charge
    invoices: list[Invoice]
    created: bool
    card: CardResult | None = None


@dataclass(frozen=True)
class _Pending:
    charge_id: str
    method: str
    installments: int
    invoice_ids: frozenset[str]
    sent: bool
    leased: bool
    has_codes: bool


@dataclass(frozen=True)
class _Selection:
    invoice_ids: list[str]
    pending: list[_Pending]


def _select(session: Session, account_id: str, request: CheckoutRequest, books: Books) -> _Selection:
    now = books.clock.now()
    account = get_account(session, account_id)
    lock_accounts(session, [account_id])
    unpaid = list(
        session.scalars(
            select(Invoice)
            .where(
                Invoice.account_id == account_id,
                Invoice.product == request.product,
                Invoice.status.in_(UNPAID),
            )
            .order_by(Invoice.period_start)
        )
    )
    chosen = owed_now(unpaid, request.product, now)
    if not chosen:
        raise Conflict(f"nothing is owed for {request.product} now")
    if not account.gateway_customer_id:
        raise Conflict("the account has no gateway_customer_id: set it with PUT /api/accounts/{id} first")
    if request.installments > 1 and any((i.period_end - i.period_start).days < 60 for i in chosen):
        raise InvalidInput("installments", "more than 1 only for prepaid periods (quarterly or longer)")
    ids = [invoice.id for invoice in chosen]
    charges = session.scalars(
        select(Charge)
        .join(ChargeInvoice, ChargeInvoice.charge_id == Charge.id)
        .where(ChargeInvoice.invoice_id.in_(ids), Charge.status == ChargeStatus.PENDING.value)
    ).unique()
    pending = [
        _Pending(
            charge.id,
            charge.method,
            charge.installments,
            frozenset(charge.invoice_ids),
            was_sent(charge),
            leased(charge, now),
            charge.has_codes or (charge.method == "card" and charge.invoice_url is not None),
        )
        for charge in charges
    ]
    return _Selection(ids, pending)


def checkout(books: Books, gateway: Gateway, account_id: str, request: CheckoutRequest) -> CheckoutResult:
    """One charge for what the account owes now for a product; see the module docstring for reuse.

    Raises NotFound, Conflict (nothing owed, a card payment in flight), and the gateway's
    GatewayUnavailable (try again: the same checkout then reuses the charge) or GatewayRejected.
    """
    ensure_gateway_customer(books, gateway, account_id)
    selection = books.transaction(lambda session: _select(session, account_id, request, books))
    wanted = frozenset(selection.invoice_ids)
    reuse = next(
        (
            p
            for p in selection.pending
            if p.invoice_ids == wanted and p.method == request.method and p.installments == request.installments
        ),
        None,
    )
    others = [p for p in selection.pending if p is not reuse]
    if any(p.leased for p in others):
        raise Conflict("a payment for these invoices is in progress at the gateway: try again in a minute")
    for other in others:
        _supersede(books, gateway, other)

    if reuse is not None and (request.method != "card" or request.card_page):
        # Often the charge the tick opened when the invoice was issued (rule 3.3).
        if not reuse.has_codes:
            reclaim = books.transaction(
                lambda session: claim_manual_charge(
                    session,
                    reuse.charge_id,
                    books.clock.now(),
                    books.calendar,
                    card_page=request.card_page,
                    remote_ip=request.remote_ip,
                )
            )
            if reclaim == ChargeOutcome.IN_FLIGHT:
                raise Conflict("this charge is being created at the gateway: try again in a minute")
            if reclaim in (ChargeOutcome.NOT_PENDING, ChargeOutcome.NOTHING_TO_CHARGE):
                raise Conflict("these invoices changed meanwhile: try again")
            if isinstance(reclaim, ManualCharge):
                send_manual_charge(books, gateway, reclaim)
        return _result(books, reuse.charge_id, created=False)
    if reuse is not None:
        if reuse.sent:
            # Already at the gateway (in flight or awaiting it): answered as it stands, never sent twice.
            in_flight = CardResult(reuse.charge_id, ChargeOutcome.IN_FLIGHT, ChargeStatus.PENDING.value)
            return _result(books, reuse.charge_id, created=False, card=in_flight)
        card = make_card_charge(
            books, gateway, reuse.charge_id, card_token=request.card_token, remote_ip=request.remote_ip
        )
        return _result(books, reuse.charge_id, created=False, card=card)

    def open_new(session: Session) -> tuple[str, ManualCharge | str | None]:
        now = books.clock.now()
        charge = open_charge(session, selection.invoice_ids, request.method, now, installments=request.installments)
        charge.source = ChargeSource.CHECKOUT.value
        if request.method == "card" and not request.card_page:
            return charge.id, None
        # Claimed (leased) in the transaction that creates it: no other checkout can supersede it unseen.
        return charge.id, claim_manual_charge(
            session, charge.id, now, books.calendar, card_page=request.card_page, remote_ip=request.remote_ip
        )

    charge_id, claim = books.transaction(open_new)
    if request.method == "card" and not request.card_page:
        card = make_card_charge(books, gateway, charge_id, card_token=request.card_token, remote_ip=request.remote_ip)
        return _result(books, charge_id, created=True, card=card)
    if not isinstance(claim, ManualCharge):
        raise Conflict(f"the charge could not be created: {claim}")
    send_manual_charge(books, gateway, claim)
    return _result(books, charge_id, created=True)


def _supersede(books: Books, gateway: Gateway, pending: _Pending) -> None:
    """Cancel a pending charge that the new checkout replaces: at the gateway first, then in the books."""
    result = "never_sent"
    if pending.sent:
        charge = books.read(lambda session: session.get(Charge, pending.charge_id))
        assert charge is not None
        payment_id = charge.gateway_payment_id
        if payment_id is None:
            found = gateway.find_by_reference(pending.charge_id)
            payment_id = found.id if found is not None else None
        result = "not_at_gateway"
        if payment_id is not None:
            current = gateway.get_payment(payment_id)
            if current.is_paid:
                books.transaction(
                    lambda session: record_gateway_answer(session, pending.charge_id, current, books.clock.now())
                )
                raise Conflict("these invoices were just paid")
            try:
                gateway.cancel(payment_id)
                result = "canceled"
            except PaymentNotFound:
                result = "not_at_gateway"

    def cancel(session: Session) -> None:
        charge = lock_charge(session, pending.charge_id)
        if charge.status == ChargeStatus.PENDING:
            charge.status = ChargeStatus.CANCELED.value
            charge.canceled_reason = "superseded_by_checkout"
            charge.gateway_cancel_result = result
            charge.gateway_canceled_at = books.clock.now()
            # Sent by a job after it was read here (the tick's PIX or boleto): the follow-ups cancel it.
            charge.gateway_cancel_owed = not pending.sent and was_sent(charge)

    books.transaction(cancel)


def _result(books: Books, charge_id: str, *, created: bool, card: CardResult | None = None) -> CheckoutResult:
    def load(session: Session) -> CheckoutResult:
        charge = session.get(Charge, charge_id)
        assert charge is not None
        invoices = list(
            session.scalars(select(Invoice).where(Invoice.id.in_(charge.invoice_ids)).order_by(Invoice.period_start))
        )
        return CheckoutResult(charge, invoices, created, card)

    return books.read(load)
