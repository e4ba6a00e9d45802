"""Payment history (rule 3.11): every payment, and every refund from 14/06/2023 on."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from sqlalchemy import select
from sqlalchemy.orm import Session

from billing.accounts import get_account
from billing.calendar import BillingCalendar
from billing.models import Payment, Refund

REFUNDS_SHOWN_FROM = date(2023, 6, 14)


@dataclass(frozen=True)
class PaymentHistory:
    payments: list[Payment]
    refunds: list[Refund]


def payment_history(session: Session, account_id: str, calendar: BillingCalendar) -> PaymentHistory:
    """Newest first. Plan changes are not payments, so downgrades never show here."""
    account = get_account(session, account_id)
    payments = list(
        session.scalars(
            select(Payment).where(Payment.account_id == account.id).order_by(Payment.paid_at.desc(), Payment.id)
        )
    )
    refunds = [
        refund
        for refund in session.scalars(
            select(Refund).where(Refund.account_id == account.id).order_by(Refund.created_at.desc(), Refund.id)
        )
        if calendar.local_date(refund.refunded_at or refund.created_at) >= REFUNDS_SHOWN_FROM
    ]
    return PaymentHistory(payments, refunds)
