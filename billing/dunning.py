"""The régua itself: which email and which charge attempt belong to which day of an invoice's life."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from enum import StrEnum

from billing.calendar import TOLERANCE_DAYS, BillingCalendar
from billing.models import PaymentMethod
from billing.policy import Policy


class NotificationKind(StrEnum):
    INVOICE_ISSUED = "invoice_issued"
    PAYMENT_CONFIRMED = "payment_confirmed"
    PAYMENT_FAILED = "payment_failed"
    PAYMENT_REMINDER = "payment_reminder"
    BLOCK_WARNING = "block_warning"
    ACCOUNT_BLOCKED = "account_blocked"
    ACCOUNT_UNBLOCKED = "account_unblocked"
    VERIFICATION_PENDING = "verification_pending"
    TRIAL_ENDED = "trial_ended"
    REFUND_ISSUED = "refund_issued"
    SUBSCRIPTION_CHANGED = "subscription_changed"
    SUBSCRIPTION_CANCELED = "subscription_canceled"


@dataclass(frozen=True)
class Step:
    """Something the régua does on a day of an invoice's life (day 1 = the due date)."""

    action: str
    """"email" or "charge"."""
    kind: str
    """The email's kind, or "auto_debit" / "auto_debit_retry" for a charge attempt."""
    day: int
    at: datetime

    @property
    def key(self) -> str:
        return f"day{self.day}"


def attempt_days(policy: Policy) -> tuple[int, ...]:
    """Day 1, then the retry days (rule 3.3): the régua days on which an auto-debit card is charged."""
    return (1, *sorted({day for day in policy.retry_days if day > 1}))


def next_retry_on(due_date: date, failed_on: date, policy: Policy, *, hard: bool) -> date | None:
    """The day the card is charged again after failing on `failed_on`, or None when no retry remains."""
    if hard:
        return None
    day = (failed_on - due_date).days + 1
    later = [retry for retry in attempt_days(policy) if retry > day]
    return due_date + timedelta(days=min(later) - 1) if later else None


def regua_day_start(due_date: date, day: int, calendar: BillingCalendar) -> datetime:
    return calendar.start_of_day(due_date + timedelta(days=day - 1))


def invoice_steps(payment_method: str, due_date: date, policy: Policy, calendar: BillingCalendar) -> list[Step]:
    """The default schedule of SPEC section 5 for one unpaid invoice, in order.

    Auto-debit invoices are charged on day 1 and on the retry days; their customers hear the charge
    result instead of `invoice_issued`, and no `payment_reminder` (the retry is that reminder).
    """

    def step(action: str, kind: str, day: int) -> Step:
        return Step(action, kind, day, regua_day_start(due_date, day, calendar))

    steps: list[Step] = []
    if payment_method == PaymentMethod.CARD_AUTO_DEBIT:
        first, *retries = attempt_days(policy)
        steps.append(step("charge", "auto_debit", first))
        steps += [step("charge", "auto_debit_retry", day) for day in retries]
    else:
        steps.append(step("email", NotificationKind.INVOICE_ISSUED, 1))
        steps.append(step("email", NotificationKind.PAYMENT_REMINDER, policy.reminder_day))
    steps.append(step("email", NotificationKind.BLOCK_WARNING, policy.block_warning_day))
    steps.append(step("email", NotificationKind.ACCOUNT_BLOCKED, TOLERANCE_DAYS + 1))
    return sorted(steps, key=lambda s: (s.day, s.action))
