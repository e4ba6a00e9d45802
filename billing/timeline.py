"""An account's timeline: what already happened, and what will happen and when if nothing changes."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from billing.accounts import get_account
from billing.blocking import blocking_invoices
from billing.calendar import BillingCalendar, Frequency, billing_period
from billing.dunning import invoice_steps
from billing.invoicing import draft_invoice, first_billable_day
from billing.models import UNPAID, Block, Invoice, InvoiceStatus, Payment, Refund, Subscription
from billing.policy import Policy


@dataclass(frozen=True)
class Event:
    at: datetime
    type: str
    product: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Timeline:
    past: list[Event]
    upcoming: list[Event]


def account_timeline(
    session: Session, account_id: str, now: datetime, calendar: BillingCalendar, policy: Policy
) -> Timeline:
    account = get_account(session, account_id)
    recipients = [contact.email for contact in account.contacts if contact.manage_payments]
    invoices = list(session.scalars(select(Invoice).where(Invoice.account_id == account.id)))
    subscriptions = list(session.scalars(select(Subscription).where(Subscription.account_id == account.id)))
    blocks = list(session.scalars(select(Block).where(Block.account_id == account.id)))
    past = _past(session, account.id, invoices, blocks)

    upcoming: list[Event] = []
    active = {block.product for block in blocks if block.lifted_at is None}
    for subscription in subscriptions:
        product = subscription.product
        unpaid = [i for i in invoices if i.product == product and i.status in UNPAID]
        upcoming.append(_next_invoice(subscription, invoices, account.trial_ends_at, calendar))
        for invoice in unpaid:
            upcoming += _invoice_future(invoice, recipients, calendar, policy)
        keeping = blocking_invoices(product, unpaid, product in active, now)
        if not keeping:
            future_blocks = [max(i.block_at, i.verifying_until or i.block_at) for i in unpaid]
            if future_blocks:
                upcoming.append(Event(min(future_blocks), "block", product, {"if_unpaid": True}))
    upcoming = [event for event in upcoming if event.at > now]
    return Timeline(
        past=sorted(past, key=lambda e: e.at),
        upcoming=sorted(upcoming, key=lambda e: (e.at, e.type)),
    )


def _next_invoice(
    subscription: Subscription,
    invoices: list[Invoice],
    trial_ends_at: datetime | None,
    calendar: BillingCalendar,
) -> Event:
    """The first invoice not yet issued: the one after the last period, or the first after a trial."""
    ends = [i.period_end for i in invoices if i.subscription_id == subscription.id]
    first_day = first_billable_day(subscription.starts_on, trial_ends_at, calendar)
    next_start = max(ends) + timedelta(days=1) if ends else first_day
    draft = draft_invoice(
        billing_period(next_start, Frequency(subscription.frequency)),
        subscription.monthly_price_cents,
        subscription.payment_method,
    )
    issue_at = calendar.start_of_day(next_start)
    return Event(
        max(issue_at, trial_ends_at) if trial_ends_at is not None else issue_at,
        "invoice",
        subscription.product,
        {
            "period_start": draft.period.start.isoformat(),
            "period_end": draft.period.end.isoformat(),
            "subtotal_cents": draft.subtotal_cents,
            "discount_cents": draft.discount_cents,
            "total_cents": draft.total_cents,
            "payment_method": subscription.payment_method,
        },
    )


def _invoice_future(invoice: Invoice, recipients: list[str], calendar: BillingCalendar, policy: Policy) -> list[Event]:
    if invoice.status == InvoiceStatus.VERIFYING:
        return []
    events = []
    for step in invoice_steps(invoice.payment_method, invoice.due_date, policy, calendar):
        details: dict[str, Any] = {"invoice_id": invoice.id, "kind": step.kind, "day": step.day}
        if step.action == "email":
            details["recipients"] = recipients
        else:
            details["amount_cents"] = invoice.total_cents
        events.append(Event(step.at, step.action, invoice.product, details))
    return events


def _past(session: Session, account_id: str, invoices: list[Invoice], blocks: list[Block]) -> list[Event]:
    events = [
        Event(i.issued_at, "invoice_issued", i.product, {"invoice_id": i.id, "total_cents": i.total_cents})
        for i in invoices
    ]
    for payment in session.scalars(select(Payment).where(Payment.account_id == account_id)):
        events.append(
            Event(
                payment.paid_at,
                "payment",
                None,
                {
                    "payment_id": payment.id,
                    "amount_cents": payment.amount_cents,
                    "status": payment.status,
                    "invoice_ids": payment.invoice_ids,
                },
            )
        )
    for refund in session.scalars(select(Refund).where(Refund.account_id == account_id)):
        events.append(
            Event(
                refund.refunded_at or refund.created_at,
                "refund",
                None,
                {"refund_id": refund.id, "amount_cents": refund.amount_cents, "status": refund.status},
            )
        )
    for block in blocks:
        events.append(Event(block.started_at, "block_applied", block.product, {"invoice_ids": block.invoice_ids}))
        if block.lifted_at is not None:
            events.append(Event(block.lifted_at, "block_lifted", block.product, {"reason": block.lift_reason}))
    return events
