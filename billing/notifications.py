"""Which emails the régua owes at `now`: recorded once each, from the schedule and from the books.

Level-triggered like the tick: a pass looks at what is true at `now` and records what is missing,
keyed by "<invoice or account id>:<kind>:<step>" so that repeated and concurrent passes record once.

- The schedule (SPEC 5): per open invoice, only the latest email step whose day has come, so after
  a gap the customer hears what is still true (the block warning, not three mails). From day 7 on
  the schedule is silent: the block itself is the news.
- The happenings, read back from the books over a bounded window: confirmed payments, failed
  charges, blocks applied and lifted, verifications, refunds. Nothing in settlement records them,
  so nothing is lost when a job dies between the books and the mail.

A notification records what rendering needs (amounts in centavos, dates in ISO) in `context`, and
its premise is checked again when its turn to be sent comes (`still_true`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, bindparam, select
from sqlalchemy.orm import Session

from billing.batches import chunks
from billing.calendar import BillingCalendar
from billing.db import insert_ignoring_conflicts
from billing.happenings import happenings
from billing.journal import Notification
from billing.models import (
    MANUAL_METHODS,
    Account,
    Charge,
    ChargeInvoice,
    ChargeStatus,
    Contact,
    NotificationStatus,
    new_id,
)
from billing.policy import Policy
from billing.premises import Premise as Premise
from billing.premises import still_true as still_true
from billing.schedule import (
    LOOKBACK,
    PAYMENT_CODE_KEYS,
    PAYMENT_DUE_KINDS,
    DueNotification,
    invoice_line,
    scheduled_notifications,
)
from billing.schedule import dedupe_key as dedupe_key
from billing.schedule import email_steps as email_steps
from billing.schedule import latest_email_step as latest_email_step
from billing.schedule import trial_invoices as trial_invoices


@dataclass
class Recorded:
    pending: list[str] = field(default_factory=list)
    """Ids of the notifications recorded to be sent."""
    no_contact: list[str] = field(default_factory=list)
    """Ids recorded for the dashboard only: the account has nobody who manages payments."""


def record_due_notifications(
    session: Session,
    now: datetime,
    calendar: BillingCalendar,
    policy: Policy,
    *,
    schedule: bool = True,
    lookback: timedelta = LOOKBACK,
) -> Recorded:
    """Record every notification due at `now` that is not recorded yet; safe to run twice or at once.

    `schedule=False` skips the invoice schedule (it only moves with time): what a webhook changed is
    found among the happenings.
    """
    due: list[DueNotification] = []
    if schedule:
        due += scheduled_notifications(session, now, calendar, policy)
    due += happenings(session, now, calendar, policy, since=now - lookback)
    due = _unrecorded(session, due)
    if not due:
        return Recorded()
    account_ids = sorted({item.account_id for item in due})
    names: dict[str, str] = {}
    contacts: dict[str, list[Contact]] = defaultdict(list)
    for ids in chunks(account_ids):  # day 1 owes a mail to every account: more ids than a statement takes
        names.update(dict(session.execute(select(Account.id, Account.name).where(Account.id.in_(ids))).all()))
        for contact in session.scalars(
            select(Contact).where(Contact.account_id.in_(ids), Contact.manage_payments.is_(True)).order_by(Contact.id)
        ):
            contacts[contact.account_id].append(contact)
    codes = codes_by_invoices(
        session, [[invoice.id for invoice in item.invoices] for item in due if item.kind in PAYMENT_DUE_KINDS]
    )
    rows: list[dict[str, Any]] = []
    for item in due:
        recipients = contacts.get(item.account_id, [])
        invoice_ids = tuple(invoice.id for invoice in item.invoices)
        context = {
            "account_name": names.get(item.account_id, item.account_id),
            "recipients": [[contact.name, contact.email] for contact in recipients],
            "invoices": [invoice_line(invoice) for invoice in item.invoices],
            **item.facts,
            **(codes.get(invoice_ids, {}) if item.kind in PAYMENT_DUE_KINDS else {}),
        }
        rows.append(
            {
                "id": new_id("ntf"),
                "dedupe_key": item.key,
                "account_id": item.account_id,
                "invoice_id": invoice_ids[0] if invoice_ids else None,  # a downgrade is about no invoice
                "kind": item.kind,
                "step": item.step,
                "recipients": [contact.email for contact in recipients],
                "context": context,
                "status": (NotificationStatus.PENDING if recipients else NotificationStatus.NO_CONTACT).value,
                "created_at": now,
                "attempts": 0,
            }
        )
    recorded = Recorded()
    inserted: set[str] = set()
    for chunk in chunks(rows):
        inserted.update(insert_ignoring_conflicts(session, Notification, chunk, index_elements=["dedupe_key"]))
    for row in rows:
        if row["id"] in inserted:
            bucket = recorded.pending if row["status"] == NotificationStatus.PENDING else recorded.no_contact
            bucket.append(row["id"])
    return recorded


def _unrecorded(session: Session, due: list[DueNotification]) -> list[DueNotification]:
    """The candidates whose key is not recorded yet (the insert still decides between racing passes)."""
    unique = list({item.key: item for item in due}.values())
    known: set[str] = set()
    for chunk in chunks([item.key for item in unique]):
        known.update(session.scalars(select(Notification.dedupe_key).where(Notification.dedupe_key.in_(chunk))))
    return [item for item in unique if item.key not in known]


_PENDING_MANUAL_CHARGES = (
    select(
        Charge.id, Charge.created_at, Charge.pix_code, Charge.boleto_line, Charge.boleto_url, ChargeInvoice.invoice_id
    )
    .join(ChargeInvoice, ChargeInvoice.charge_id == Charge.id)
    .where(
        Charge.id.in_(
            select(ChargeInvoice.charge_id).where(ChargeInvoice.invoice_id.in_(bindparam("ids", expanding=True)))
        ),
        Charge.status == ChargeStatus.PENDING.value,
        Charge.method.in_(MANUAL_METHODS),
    )
)
"""Every invoice of the pending boleto and PIX charges that collect any of `ids`."""


def codes_by_invoices(
    executor: Session | Connection, groups: Sequence[Sequence[str]]
) -> dict[tuple[str, ...], dict[str, str]]:
    """The PIX code and boleto line of the newest pending boleto/PIX charge covering each group of invoices.

    A group with such a charge whose codes have not come back from the gateway yet maps to `{}`; a
    group with none is left out.
    """
    wanted = sorted({invoice_id for group in groups for invoice_id in group})
    if not wanted:
        return {}
    charges: dict[str, tuple[datetime, dict[str, Any], set[str]]] = {}
    for chunk in chunks(wanted):
        for row in executor.execute(_PENDING_MANUAL_CHARGES, {"ids": chunk}):
            codes = {"pix_code": row.pix_code, "boleto_line": row.boleto_line, "boleto_url": row.boleto_url}
            charges.setdefault(row.id, (row.created_at, codes, set()))[2].add(row.invoice_id)
    newest_first = sorted(charges.items(), key=lambda item: (item[1][0], item[0]), reverse=True)
    found: dict[tuple[str, ...], dict[str, str]] = {}
    for group in groups:
        covering = [details for _, (_, details, covered) in newest_first if set(group) <= covered]
        for details in covering:
            codes = {key: str(details[key]) for key in PAYMENT_CODE_KEYS if details.get(key)}
            if codes:
                found[tuple(group)] = codes
                break
        else:
            if covering:
                found[tuple(group)] = {}  # a charge is open, its codes are on their way from the gateway
    return found
