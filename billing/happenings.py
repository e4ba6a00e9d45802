"""What the books say happened (payments, failures, blocks, verifications, refunds) that the customer is told."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session, selectinload

from billing.access import ProductAccess, access_by_product
from billing.batches import chunks
from billing.blocking import is_open_at
from billing.calendar import BillingCalendar
from billing.dunning import next_retry_on
from billing.journal import Notification
from billing.models import (
    Block,
    Charge,
    ChargeStatus,
    DeclineClass,
    Invoice,
    InvoiceStatus,
    Payment,
    PaymentMethod,
    PaymentStatus,
    Refund,
    RefundStatus,
)
from billing.policy import Policy
from billing.schedule import (
    FAILED_CHARGE_HORIZON,
    NOT_THE_CUSTOMERS,
    DueNotification,
    K,
    active_blocks,
    dedupe_key,
    invoices_by_id,
)
from billing.subscription_changes import changes_to_tell


def happenings(
    session: Session, now: datetime, calendar: BillingCalendar, policy: Policy, *, since: datetime
) -> list[DueNotification]:
    """What the books say happened since `since` and that the customer is told about.

    One mail per happening: a payment or a verification that lifted a block is told by the
    `account_unblocked` mail (which names the amount), not twice.
    """
    lifted = list(session.scalars(select(Block).where(Block.lifted_at >= since).order_by(Block.id)))
    applied = list(
        session.scalars(select(Block).where(Block.started_at >= since, Block.lifted_at.is_(None)).order_by(Block.id))
    )
    payments = _confirmed_since(session, since, lifted)
    failed = [
        charge
        for charge in session.scalars(
            select(Charge)
            .where(Charge.status == ChargeStatus.FAILED, Charge.created_at >= now - FAILED_CHARGE_HORIZON)
            .options(selectinload(Charge.invoice_links), selectinload(Charge.attempts))
            .order_by(Charge.id)
        )
        if _failed_at(charge) >= since
    ]
    verifying = list(
        session.scalars(
            select(Invoice)
            .where(
                Invoice.status == InvoiceStatus.VERIFYING,
                Invoice.verifying_until > now,
                Invoice.verifying_until >= since + policy.verification_window,
            )
            .order_by(Invoice.id)
        )
    )
    refunds = list(
        session.execute(
            select(Refund, Payment)
            .join(Payment, Payment.id == Refund.payment_id)
            .where(Refund.status == RefundStatus.DONE, or_(Refund.refunded_at >= since, Refund.created_at >= since))
            .order_by(Refund.id)
        )
    )
    ids = [i for block in lifted + applied for i in block.invoice_ids]
    ids += [i for payment, _ in payments for i in payment.invoice_ids]
    ids += [i for charge in failed for i in charge.invoice_ids]
    ids += [i for _, payment in refunds for i in payment.invoice_ids]
    lines = _Lines({**invoices_by_id(session, ids), **{invoice.id: invoice for invoice in verifying}})
    still_blocked = active_blocks(session, {block.account_id for block in lifted})

    access = access_by_product(session, {invoice.account_id for invoice in verifying}, now, calendar, policy)
    confirmed, lifting = _payments_confirmed(payments, lifted, lines)
    return [
        *confirmed,
        *_charges_failed(failed, lines, now, calendar, policy),
        *_blocks_applied(applied, lines, calendar),
        *_blocks_lifted(lifted, lifting, still_blocked, lines, calendar),
        *_verifications(verifying, lifted, access, lines, calendar, policy),
        *_refunds_done(refunds, lines),
        *changes_to_tell(session, calendar, since=since),
    ]


def _confirmed_since(session: Session, since: datetime, lifted: Sequence[Block]) -> list[tuple[Payment, Charge]]:
    """The payments confirmed since `since` that may still be news, with their charges.

    A pass after a settlement looks back a little before the previous pass, and the tick three days:
    on day 1 that window holds thousands of payments already told. Those are recognised from a
    narrow read and the notifications' (kind, step) index, and not loaded; a payment that lifted a
    block in the window is always loaded (it decides whether the block's lifting is news).
    """
    lifts = {(block.account_id, block.product, block.lifted_at) for block in lifted if block.lift_reason == "paid"}
    recent = session.execute(
        select(Payment.id, Charge.account_id, Charge.product, Charge.confirmed_at)
        .join(Charge, Charge.id == Payment.charge_id)
        .where(Payment.status == PaymentStatus.CONFIRMED, Charge.confirmed_at >= since)
    ).all()
    told: set[str] = set()
    for ids in chunks([row[0] for row in recent]):
        told.update(
            session.scalars(
                select(Notification.step).where(Notification.kind == K.PAYMENT_CONFIRMED, Notification.step.in_(ids))
            )
        )
    wanted = sorted(
        payment_id
        for payment_id, account_id, product, confirmed_at in recent
        if payment_id not in told or (account_id, product, confirmed_at) in lifts
    )
    found: list[tuple[Payment, Charge]] = []
    for ids in chunks(wanted):
        rows = session.execute(
            select(Payment, Charge).join(Charge, Charge.id == Payment.charge_id).where(Payment.id.in_(ids))
        )
        found += [(payment, charge) for payment, charge in rows]
    return sorted(found, key=lambda row: row[0].id)


@dataclass(frozen=True)
class _Lines:
    """Invoices by id, handed out in the order an email lists them."""

    invoices: dict[str, Invoice]

    def __call__(self, ids: Iterable[str]) -> tuple[Invoice, ...]:
        found = (self.invoices[i] for i in set(ids) if i in self.invoices)
        return tuple(sorted(found, key=lambda invoice: (invoice.period_start, invoice.id)))


def _payments_confirmed(
    payments: Sequence[tuple[Payment, Charge]], lifted: Sequence[Block], lines: _Lines
) -> tuple[list[DueNotification], dict[str, Payment | None]]:
    """payment_confirmed per confirmed payment, except those that lifted a block (by block id, aside).

    A payment the gateway saw before the block began (paid at 23:59 of day 6, told at 00:00 of day 7)
    was paid in time: it is confirmed as any payment, and its block (None aside) is not news.
    """
    lifts = {(b.account_id, b.product, b.lifted_at): b for b in lifted if b.lift_reason == "paid"}
    due: list[DueNotification] = []
    lifting: dict[str, Payment | None] = {}
    for payment, charge in payments:
        paid = lines(payment.invoice_ids)
        block = lifts.get((charge.account_id, charge.product, charge.confirmed_at))
        in_time = block is not None and payment.paid_at < block.started_at
        if block is not None:
            lifting[block.id] = None if in_time else payment  # lifted in the same transaction, at the same now
        if (block is None or in_time) and paid:
            facts = {"amount_cents": payment.amount_cents, "payment_method": _paid_with(payment.method, paid[0])}
            due.append(_about(paid, K.PAYMENT_CONFIRMED, payment.id, facts))
    return due, lifting


def _charges_failed(
    failed: Sequence[Charge], lines: _Lines, now: datetime, calendar: BillingCalendar, policy: Policy
) -> list[DueNotification]:
    due = []
    for charge in failed:
        owed = lines(charge.invoice_ids)
        if charge.failure_code in NOT_THE_CUSTOMERS or not owed or not all(is_open_at(i, now) for i in owed):
            continue
        facts = {
            "amount_cents": charge.amount_cents,
            "payment_method": _paid_with(charge.method, owed[0]),
            "failure_reason": charge.failure_code,
            "block_on": calendar.local_date(min(invoice.block_at for invoice in owed)).isoformat(),
        }
        if owed[0].payment_method == PaymentMethod.CARD_AUTO_DEBIT and charge.method == "card":
            hard = any(attempt.decline_class == DeclineClass.HARD for attempt in charge.attempts)
            retry = next_retry_on(owed[0].due_date, calendar.local_date(_failed_at(charge)), policy, hard=hard)
            if retry is not None:
                facts["next_retry_on"] = retry.isoformat()
        due.append(_about(owed, K.PAYMENT_FAILED, charge.id, facts))
    return due


def _blocks_applied(applied: Sequence[Block], lines: _Lines, calendar: BillingCalendar) -> list[DueNotification]:
    due = []
    for block in applied:
        blocked = lines(block.invoice_ids)
        if blocked:
            facts = {
                "payment_method": blocked[0].payment_method,
                "blocked_since": calendar.local_date(block.started_at).isoformat(),
            }
            due.append(_about(blocked, K.ACCOUNT_BLOCKED, block.id, facts, account_id=block.account_id))
    return due


def _blocks_lifted(
    lifted: Sequence[Block],
    lifting: dict[str, Payment | None],
    still_blocked: set[tuple[str, str]],
    lines: _Lines,
    calendar: BillingCalendar,
) -> list[DueNotification]:
    """account_unblocked, with the amount of the payment that lifted it or the end of the verification."""
    due = []
    for block in lifted:
        cleared = lines(block.invoice_ids)
        if not cleared or (block.account_id, block.product) in still_blocked:
            continue
        if block.id in lifting and lifting[block.id] is None:
            continue  # paid before the block began: told as a confirmed payment, the block was never news
        facts: dict[str, Any] = {"payment_method": cleared[0].payment_method}
        payment = lifting.get(block.id)
        if payment is not None:
            facts.update(amount_cents=payment.amount_cents, payment_method=_paid_with(payment.method, cleared[0]))
        windows = [i.verifying_until for i in cleared if i.status == InvoiceStatus.VERIFYING and i.verifying_until]
        if block.lift_reason == "verifying" and windows:
            facts["verifying_until"] = calendar.local_date(min(windows)).isoformat()
        due.append(_about(cleared, K.ACCOUNT_UNBLOCKED, block.id, facts, account_id=block.account_id))
    return due


def _verifications(
    verifying: Sequence[Invoice],
    lifted: Sequence[Block],
    access: dict[tuple[str, str], ProductAccess],
    lines: _Lines,
    calendar: BillingCalendar,
    policy: Policy,
) -> list[DueNotification]:
    """verification_pending per verification (its invoices share the window), unless it lifted a block. When the
    product stays blocked for another invoice, the mail says so (`blocked_since`, from the account view that `/access`
    answers), never that access is open."""
    lifts = {(b.account_id, b.product, b.lifted_at) for b in lifted if b.lift_reason == "verifying"}
    groups: dict[tuple[str, str, datetime], list[str]] = defaultdict(list)
    for invoice in verifying:
        assert invoice.verifying_until is not None
        groups[(invoice.account_id, invoice.product, invoice.verifying_until)].append(invoice.id)
    due = []
    for (account_id, product, until), ids in sorted(groups.items()):
        if (account_id, product, until - policy.verification_window) not in lifts:
            held = lines(ids)
            facts = {
                "payment_method": held[0].payment_method,
                "verifying_until": calendar.local_date(until).isoformat(),
            }
            view = access.get((account_id, product))
            if view is not None and view.state == "blocked" and view.blocked_since is not None:
                facts["blocked_since"] = calendar.local_date(view.blocked_since).isoformat()
            due.append(_about(held, K.VERIFICATION_PENDING, until.strftime("%Y%m%dT%H%M%SZ"), facts))
    return due


def _refunds_done(refunds: Sequence[tuple[Refund, Payment]], lines: _Lines) -> list[DueNotification]:
    due = []
    for refund, payment in refunds:
        refunded = lines(payment.invoice_ids)
        if refunded:
            facts = {
                "amount_cents": refund.amount_cents,
                "refund_amount_cents": refund.amount_cents,
                "refund_reason": refund.reason,
                "payment_method": payment.method,
            }
            due.append(_about(refunded, K.REFUND_ISSUED, refund.id, facts))
    return due


def _about(
    invoices: tuple[Invoice, ...], kind: str, step: str, facts: dict[str, Any], *, account_id: str | None = None
) -> DueNotification:
    """A happening told about `invoices`, keyed by the account (blocks) or by its first invoice."""
    owner = account_id or invoices[0].account_id
    subject = account_id or invoices[0].id
    return DueNotification(dedupe_key(subject, kind, step), owner, kind, step, invoices, facts)


def _paid_with(method: str, invoice: Invoice) -> str:
    """The method as the email names it: a card that pays an auto-debit invoice is the auto-debit."""
    if method == "card" and invoice.payment_method == PaymentMethod.CARD_AUTO_DEBIT:
        return PaymentMethod.CARD_AUTO_DEBIT.value
    return method


def _failed_at(charge: Charge) -> datetime:
    return charge.failed_at or charge.created_at
