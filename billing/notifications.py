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
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import Connection, bindparam, func, or_, select
from sqlalchemy.orm import Session, aliased, selectinload

from billing.blocking import is_open_at
from billing.calendar import BillingCalendar
from billing.db import insert_ignoring_conflicts
from billing.dunning import NotificationKind, Step, invoice_steps, next_retry_on, regua_day_start
from billing.models import (
    MANUAL_METHODS,
    UNPAID,
    Account,
    Block,
    Charge,
    ChargeInvoice,
    ChargeStatus,
    Contact,
    DeclineClass,
    Invoice,
    InvoiceStatus,
    Notification,
    NotificationStatus,
    Payment,
    PaymentMethod,
    PaymentStatus,
    Refund,
    RefundStatus,
    new_id,
)
from billing.policy import Policy

K = NotificationKind
LOOKBACK = timedelta(days=3)
"""How far back a pass looks for happenings to tell: keys make repeats harmless, the window keeps it cheap."""
FAILED_CHARGE_HORIZON = timedelta(days=35)
"""Failed charges are found by creation first (indexed columns only), then by when they failed."""

SCHEDULED_KINDS = frozenset({K.INVOICE_ISSUED, K.PAYMENT_REMINDER, K.BLOCK_WARNING, K.TRIAL_ENDED})
PAYMENT_DUE_KINDS = SCHEDULED_KINDS | {K.PAYMENT_FAILED}
"""Kinds that ask for money, and so carry the PIX code and the boleto line when there are any."""
PAYMENT_CODE_KEYS = ("pix_code", "boleto_line", "boleto_url")
NOT_THE_CUSTOMERS = frozenset({"gateway_rejected"})
"""Charge failures that are regua's business with its gateway, not a payment the customer tried."""
CHUNK = 900

T = TypeVar("T")


# The schedule, as pure functions of an invoice and an instant.


def email_steps(
    payment_method: str, due_date: date, policy: Policy, calendar: BillingCalendar, *, after_trial: bool = False
) -> list[Step]:
    """The emails of an invoice's régua in day order; the first invoice after a trial opens with trial_ended.

    Auto-debit customers have no `invoice_issued` (they hear the charge result), but a trial's end
    is news to everyone.
    """
    steps = [step for step in invoice_steps(payment_method, due_date, policy, calendar) if step.action == "email"]
    if after_trial:
        steps = [step for step in steps if step.kind != K.INVOICE_ISSUED]
        steps.append(Step("email", K.TRIAL_ENDED, 1, regua_day_start(due_date, 1, calendar)))
    return sorted(steps, key=lambda step: step.day)


def latest_email_step(steps: Sequence[Step], now: datetime) -> Step | None:
    """The one step still true at `now`: the latest whose day has come (None before the first)."""
    come = [step for step in steps if step.at <= now]
    return max(come, key=lambda step: step.day) if come else None


def dedupe_key(subject_id: str, kind: str, step: str) -> str:
    return f"{subject_id}:{kind}:{step}"


def invoice_line(invoice: Invoice) -> dict[str, Any]:
    """An invoice as the email shows it, JSON-ready."""
    return {
        "invoice_id": invoice.id,
        "product": invoice.product,
        "period_start": invoice.period_start.isoformat(),
        "period_end": invoice.period_end.isoformat(),
        "due_date": invoice.due_date.isoformat(),
        "subtotal_cents": invoice.subtotal_cents,
        "discount_cents": invoice.discount_cents,
        "total_cents": invoice.total_cents,
    }


# Recording.


@dataclass(frozen=True)
class DueNotification:
    """An email that is due at `now`, before it is recorded."""

    key: str
    account_id: str
    kind: str
    step: str
    invoices: tuple[Invoice, ...]
    facts: dict[str, Any]
    """The kind's own context entries (amounts, dates, method), on top of the invoices and recipients."""


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
    names = dict(session.execute(select(Account.id, Account.name).where(Account.id.in_(account_ids))).all())
    contacts: dict[str, list[Contact]] = defaultdict(list)
    for contact in session.scalars(
        select(Contact)
        .where(Contact.account_id.in_(account_ids), Contact.manage_payments.is_(True))
        .order_by(Contact.id)
    ):
        contacts[contact.account_id].append(contact)
    codes = codes_by_invoices(
        session, [[invoice.id for invoice in item.invoices] for item in due if item.kind in PAYMENT_DUE_KINDS]
    )
    rows = []
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
                "invoice_id": invoice_ids[0],
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
    for chunk in _chunks(rows):
        inserted.update(insert_ignoring_conflicts(session, Notification, chunk, index_elements=["dedupe_key"]))
    for row in rows:
        if row["id"] in inserted:
            bucket = recorded.pending if row["status"] == NotificationStatus.PENDING else recorded.no_contact
            bucket.append(row["id"])
    return recorded


def scheduled_notifications(
    session: Session, now: datetime, calendar: BillingCalendar, policy: Policy
) -> list[DueNotification]:
    """Per open invoice not yet blocking, the latest email step whose day has come."""
    invoices = [
        invoice
        for invoice in session.scalars(
            select(Invoice).where(Invoice.status.in_(UNPAID), Invoice.block_at > now).order_by(Invoice.id)
        )
        if is_open_at(invoice, now)
    ]
    trials = trial_invoices(session, invoices, calendar)
    due = []
    for invoice in invoices:
        trial_ended_on = trials.get(invoice.id)
        steps = email_steps(
            invoice.payment_method, invoice.due_date, policy, calendar, after_trial=trial_ended_on is not None
        )
        step = latest_email_step(steps, now)
        if step is None or step.kind not in SCHEDULED_KINDS:
            continue
        facts: dict[str, Any] = {
            "payment_method": invoice.payment_method,
            "block_on": calendar.local_date(invoice.block_at).isoformat(),
        }
        if step.kind == K.TRIAL_ENDED and trial_ended_on is not None:
            facts["trial_ended_on"] = trial_ended_on.isoformat()
        due.append(
            DueNotification(
                dedupe_key(invoice.id, step.kind, step.key), invoice.account_id, step.kind, step.key, (invoice,), facts
            )
        )
    return due


def trial_invoices(session: Session, invoices: Sequence[Invoice], calendar: BillingCalendar) -> dict[str, date]:
    """The first invoice after a trial, by id, with the day the trial ended: it begins that day."""
    account_ids = sorted({invoice.account_id for invoice in invoices})
    if not account_ids:
        return {}
    trial_ends = {
        account_id: calendar.local_date(ends_at)
        for account_id, ends_at in session.execute(
            select(Account.id, Account.trial_ends_at).where(
                Account.id.in_(account_ids), Account.trial_ends_at.is_not(None)
            )
        )
        if ends_at is not None
    }
    candidates = [invoice for invoice in invoices if trial_ends.get(invoice.account_id) == invoice.period_start]
    if not candidates:
        return {}
    firsts = dict(
        session.execute(
            select(Invoice.subscription_id, func.min(Invoice.period_start))
            .where(Invoice.subscription_id.in_({invoice.subscription_id for invoice in candidates}))
            .group_by(Invoice.subscription_id)
        ).all()
    )
    return {
        invoice.id: invoice.period_start
        for invoice in candidates
        if firsts.get(invoice.subscription_id) == invoice.period_start
    }


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
    payments = list(
        session.execute(
            select(Payment, Charge)
            .join(Charge, Charge.id == Payment.charge_id)
            .where(Payment.status == PaymentStatus.CONFIRMED, Charge.confirmed_at >= since)
            .order_by(Payment.id)
        )
    )
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
    still_blocked = _active_blocks(session, {block.account_id for block in lifted})

    confirmed, lifting = _payments_confirmed(payments, lifted, lines)
    return [
        *confirmed,
        *_charges_failed(failed, lines, now, calendar, policy),
        *_blocks_applied(applied, lines, calendar),
        *_blocks_lifted(lifted, lifting, still_blocked, lines, calendar),
        *_verifications(verifying, lifted, lines, calendar, policy),
        *_refunds_done(refunds, lines),
    ]


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
    verifying: Sequence[Invoice], lifted: Sequence[Block], lines: _Lines, calendar: BillingCalendar, policy: Policy
) -> list[DueNotification]:
    """verification_pending per verification (its invoices share the window), unless it lifted a block."""
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


def _unrecorded(session: Session, due: list[DueNotification]) -> list[DueNotification]:
    """The candidates whose key is not recorded yet (the insert still decides between racing passes)."""
    unique = list({item.key: item for item in due}.values())
    known: set[str] = set()
    for chunk in _chunks([item.key for item in unique]):
        known.update(session.scalars(select(Notification.dedupe_key).where(Notification.dedupe_key.in_(chunk))))
    return [item for item in unique if item.key not in known]


def _active_blocks(executor: Session | Connection, account_ids: set[str]) -> set[tuple[str, str]]:
    if not account_ids:
        return set()
    return {
        (account_id, product)
        for account_id, product in executor.execute(
            select(Block.account_id, Block.product).where(
                Block.account_id.in_(sorted(account_ids)), Block.lifted_at.is_(None)
            )
        )
    }


def invoices_by_id(session: Session, ids: Iterable[str]) -> dict[str, Invoice]:
    found: dict[str, Invoice] = {}
    for chunk in _chunks(sorted(set(ids))):
        found.update({invoice.id: invoice for invoice in session.scalars(select(Invoice).where(Invoice.id.in_(chunk)))})
    return found


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
    for chunk in _chunks(wanted):
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


# The premise, checked again when a notification's turn to be sent comes (one read per kind, no ORM:
# it runs once per email sent).

_INVOICE_FACTS = select(
    Invoice.id,
    Invoice.status,
    Invoice.block_at,
    Invoice.verifying_until,
    Invoice.payment_method,
    Invoice.due_date,
).where(Invoice.id.in_(bindparam("ids", expanding=True)))
_ACTIVE = aliased(Block)
_BLOCK_FACTS = select(
    Block.id,
    Block.lifted_at,
    select(func.count())
    .where(_ACTIVE.account_id == Block.account_id, _ACTIVE.product == Block.product, _ACTIVE.lifted_at.is_(None))
    .scalar_subquery()
    .label("active_blocks"),
).where(Block.id.in_(bindparam("ids", expanding=True)))
"""A block's end, and how many blocks of its account and product are in force now."""
_BLOCK_KINDS = (K.ACCOUNT_BLOCKED, K.ACCOUNT_UNBLOCKED)
_ALWAYS_TRUE = (K.PAYMENT_CONFIRMED, K.REFUND_ISSUED)


@dataclass(frozen=True)
class Premise:
    """What a recorded notification claims: its kind, its step and the invoices of its context."""

    kind: str
    step: str
    context: dict[str, Any]

    @property
    def invoice_ids(self) -> list[str]:
        return [line["invoice_id"] for line in self.context.get("invoices", [])]


def still_true(
    executor: Session | Connection,
    premises: Sequence[Premise],
    now: datetime,
    calendar: BillingCalendar,
    policy: Policy,
) -> list[bool]:
    """Whether what each notification says is still so at `now` (a reminder for a paid invoice is not).

    Two reads for the lot, whatever their number: the invoices and the blocks they speak of.
    """
    invoice_ids = sorted({i for p in premises if p.kind not in _BLOCK_KINDS + _ALWAYS_TRUE for i in p.invoice_ids})
    block_ids = sorted({p.step for p in premises if p.kind in _BLOCK_KINDS})
    invoices: dict[str, Any] = {}
    blocks: dict[str, Any] = {}
    for chunk in _chunks(invoice_ids):
        invoices.update((row.id, row) for row in executor.execute(_INVOICE_FACTS, {"ids": list(chunk)}))
    for chunk in _chunks(block_ids):
        blocks.update((row.id, row) for row in executor.execute(_BLOCK_FACTS, {"ids": list(chunk)}))
    return [_holds(premise, invoices, blocks, now, calendar, policy) for premise in premises]


def _holds(
    premise: Premise,
    invoices: dict[str, Any],
    blocks: dict[str, Any],
    now: datetime,
    calendar: BillingCalendar,
    policy: Policy,
) -> bool:
    kind = premise.kind
    if kind in _ALWAYS_TRUE:
        return True
    if kind in _BLOCK_KINDS:
        block = blocks.get(premise.step)
        if block is None:
            return False
        if kind == K.ACCOUNT_BLOCKED:
            return block.lifted_at is None
        return block.lifted_at is not None and block.active_blocks == 0
    ids = premise.invoice_ids
    if not ids or any(invoice_id not in invoices for invoice_id in ids):
        return False
    about = [invoices[invoice_id] for invoice_id in ids]
    if kind == K.VERIFICATION_PENDING:
        return all(
            invoice.status == InvoiceStatus.VERIFYING
            and invoice.verifying_until is not None
            and invoice.verifying_until > now
            for invoice in about
        )
    if not all(is_open_at(invoice, now) for invoice in about):
        return False
    if kind == K.PAYMENT_FAILED:
        return True
    invoice = about[0]
    if now >= invoice.block_at:
        return False
    steps = email_steps(invoice.payment_method, invoice.due_date, policy, calendar, after_trial=kind == K.TRIAL_ENDED)
    latest = latest_email_step(steps, now)
    return latest is not None and (latest.kind, latest.key) == (kind, premise.step)


def _chunks(items: Sequence[T]) -> Iterator[Sequence[T]]:
    for offset in range(0, len(items), CHUNK):
        yield items[offset : offset + CHUNK]
