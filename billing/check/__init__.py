"""The books' invariants, checked over the whole database in one snapshot: what `regua check` reports.

Read-only and set-based: each invariant is one query or one pass over rows read once (grouped in the
database where it can be), so a database of 100,000 accounts is checked in seconds. On PostgreSQL the
queries share one REPEATABLE READ snapshot, so a check running beside live traffic sees one
consistent moment. The rules the invariants hold the books to (the discount, the block instant, what
keeps a product blocked, a period's price) are written in `billing.check.rules` from the SPEC's text,
not taken from the code they check.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from billing.check import access, changes, invoices, mails, money
from billing.check.rules import SPEC_TIMEZONE
from billing.check.scope import Invariant, Scope

LIMIT = 50
"""Violations listed per invariant (the count is always exact)."""


@dataclass(frozen=True)
class Violation:
    name: str
    details: dict[str, Any]

    def line(self) -> str:
        return f"{self.name}: " + " ".join(f"{key}={value}" for key, value in self.details.items())


@dataclass
class Report:
    violations: list[Violation] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    """Per invariant, how many rows break it."""

    @property
    def clean(self) -> bool:
        return not self.violations

    def as_dict(self) -> dict[str, Any]:
        return {
            "clean": self.clean,
            "counts": self.counts,
            "violations": [{"name": v.name, **v.details} for v in self.violations],
        }


INVARIANTS: dict[str, Invariant] = {
    "invoice_twice_for_a_month": invoices.overlapping_invoices,
    "paid_invoice_without_payment": invoices.paid_without_payment,
    "paid_invoice_without_paid_at": invoices.paid_without_paid_at,
    "wrong_discount_or_total": invoices.wrong_discounts,
    "invoice_not_at_its_subscription_price": invoices.prices_against_subscriptions,
    "proration_against_the_rule": changes.prorations_against_the_rule,
    "invoice_after_the_end": changes.invoices_after_the_end,
    "payment_paying_nothing": money.payments_paying_nothing,
    "account_books_do_not_add_up": money.balances,
    "card_captured_twice_for_an_invoice": money.cards_captured_twice,
    "gateway_refund_not_made": money.owed_gateway_refunds,
    "refund_done_by_nobody": money.refunds_done_by_nobody,
    "confirmed_charge_without_payment": money.confirmed_charges_without_payment,
    "pending_charge_on_a_paid_invoice": money.pending_charges_on_paid_invoices,
    "block_against_the_rules": access.wrong_blocks,
    "verification_past_its_window": access.verifications_past_their_window,
    "email_sent_twice": mails.mails_sent_twice,
}


def check_books(session: Session, now: datetime, zone: ZoneInfo = SPEC_TIMEZONE) -> Report:
    """Every invariant over the whole database at `now`, in the session's snapshot (see `snapshot`).

    `zone` is the billing calendar's (REGUA_TIMEZONE), in which block instants are counted.
    """
    scope = Scope(session, now, zone)
    report = Report()
    for name, invariant in INVARIANTS.items():
        found = 0
        for details in invariant(scope):
            found += 1
            if found <= LIMIT:
                report.violations.append(Violation(name, details))
        report.counts[name] = found
    return report


def snapshot(session: Session) -> None:
    """One consistent, read-only view for all the queries (PostgreSQL: REPEATABLE READ, READ ONLY)."""
    if session.get_bind().dialect.name == "postgresql":
        session.connection(execution_options={"isolation_level": "REPEATABLE READ", "postgresql_readonly": True})
