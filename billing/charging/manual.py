"""One PIX or boleto charge: created at the gateway once, its codes kept on the charge for emails and pages."""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from billing.calendar import BillingCalendar
from billing.charging.cards import cancel_unchargeable, charge_invoices, describe, fail, record_gateway_answer
from billing.charging.customers import ensure_gateway_customer
from billing.charging.leases import Decline, leased, release_lease, take_lease, was_sent
from billing.charging.outcomes import ChargeOutcome
from billing.models import MANUAL_METHODS, UNPAID, Account, Charge, ChargeStatus, PaymentMethod
from billing.ports import (
    BoletoCode,
    Books,
    Gateway,
    GatewayPayment,
    GatewayRejected,
    ManualCharge,
    PixCode,
)
from billing.settlement import lock_charge

log = logging.getLogger("regua.charging")


def claim_manual_charge(
    session: Session,
    charge_id: str,
    now: datetime,
    calendar: BillingCalendar,
    *,
    card_page: bool = False,
    remote_ip: str | None = None,
) -> ManualCharge | ChargeOutcome:
    """Lock a pending PIX or boleto charge still without codes and take its lease; or say why not now.

    `card_page`: a card charge the customer pays on the gateway's own page (regua never sees the card),
    created with `remote_ip`, the IP of the customer who asked for it, when known.
    No gateway customer yet leaves it pending: the hourly pass tries again (the account may get one).
    """
    charge = lock_charge(session, charge_id)
    if charge.method not in MANUAL_METHODS and not (card_page and charge.method == PaymentMethod.CARD):
        return ChargeOutcome.NOT_A_MANUAL_CHARGE
    if charge.status != ChargeStatus.PENDING:
        return ChargeOutcome.NOT_PENDING
    if charge.has_codes or (card_page and charge.invoice_url is not None):
        return ChargeOutcome.ALREADY_ISSUED
    if leased(charge, now):
        return ChargeOutcome.IN_FLIGHT
    invoices = charge_invoices(session, charge)
    if any(invoice.status not in UNPAID for invoice in invoices):
        cancel_unchargeable(charge)
        return ChargeOutcome.NOTHING_TO_CHARGE
    account = session.get(Account, charge.account_id)
    if account is None or not account.gateway_customer_id:
        return ChargeOutcome.NO_GATEWAY_CUSTOMER
    first_contact = not was_sent(charge)
    take_lease(session, charge, now)
    return ManualCharge(
        charge_id=charge.id,
        customer_id=account.gateway_customer_id,
        amount_cents=charge.amount_cents,
        due_date=max(calendar.local_date(now), min(invoice.due_date for invoice in invoices)),
        method="pix" if charge.method == PaymentMethod.PIX else "card" if card_page else "boleto",
        description=describe(invoices),
        first_contact=first_contact,
        remote_ip=remote_ip if card_page else None,
    )


def keep_codes(charge: Charge, code: PixCode | BoletoCode | None, invoice_url: str | None) -> None:
    """The codes a customer pays with, on the charge (emails, the payment page and checkout read them)."""
    if invoice_url:
        charge.invoice_url = invoice_url[:500]
    if code is None:
        return
    if isinstance(code, PixCode):
        charge.pix_code, charge.pix_qr, charge.pix_expires_at = code.payload, code.encoded_image, code.expiration
    else:
        charge.boleto_line = code.identification_field
        charge.boleto_url = code.bank_slip_url or invoice_url
        charge.boleto_bar_code = code.bar_code


def record_manual_answer(
    session: Session, charge_id: str, payment: GatewayPayment, code: PixCode | BoletoCode | None, now: datetime
) -> ChargeOutcome:
    """Keep the codes and the gateway's payment on the charge (settling it if it was paid meanwhile).

    A charge canceled while it was being created (a checkout superseded it, its invoice was paid) is
    owed a cancel at the gateway, so its codes can no longer be paid.
    """
    charge = lock_charge(session, charge_id)
    keep_codes(charge, code, payment.invoice_url)
    outcome = record_gateway_answer(session, charge_id, payment, now).outcome
    if charge.status == ChargeStatus.CANCELED and payment.state in ("pending", "overdue"):
        charge.gateway_cancel_owed = True
        return ChargeOutcome.CANCELED_MEANWHILE
    return ChargeOutcome.ISSUED if outcome == ChargeOutcome.AWAITING_GATEWAY else outcome


def send_manual_charge(books: Books, gateway: Gateway, claim: ManualCharge) -> ChargeOutcome:
    """Create (or find again, by our id) a claimed PIX or boleto payment at the gateway and record it.

    GatewayRejected fails the charge and is raised; anything else releases the lease and is raised.
    """
    charge_id = claim.charge_id
    try:
        payment, code = gateway.create_manual_charge(claim)
    except GatewayRejected as rejected:
        refusal = Decline(False, "gateway_rejected", str(rejected))
        books.transaction(lambda session: fail(session, lock_charge(session, charge_id), refusal, books.clock.now()))
        raise
    except BaseException:
        books.transaction(lambda session: release_lease(session, charge_id, books.clock.now()))
        raise
    return books.transaction(lambda session: record_manual_answer(session, charge_id, payment, code, books.clock.now()))


def issue_manual_charge(books: Books, gateway: Gateway, charge_id: str) -> ChargeOutcome:
    """Give a pending PIX or boleto charge its codes at the gateway, once. Safe to run twice.

    GatewayUnavailable is raised for the caller to retry (the Asaas client finds a payment it made by
    our id, so it is made once). An account without a gateway customer gets one first.
    """
    account_id = books.read(lambda session: session.scalar(select(Charge.account_id).where(Charge.id == charge_id)))
    if account_id is not None:
        ensure_gateway_customer(books, gateway, account_id)
    claim = books.transaction(
        lambda session: claim_manual_charge(session, charge_id, books.clock.now(), books.calendar)
    )
    if isinstance(claim, ChargeOutcome):
        return claim
    try:
        return send_manual_charge(books, gateway, claim)
    except GatewayRejected as rejected:
        log.warning("manual charge %s refused by the gateway: %s", charge_id, rejected)
        return ChargeOutcome.REJECTED
