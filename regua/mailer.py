"""Delivering notifications: each sent at most once, whatever the number of jobs holding its id.

A delivery takes a batch of ids (one, or the few that worker threads asked for at the same time)
through the same steps as one:

1. Claim them in one short transaction: each must be pending, and nobody may have started an
   attempt in the last LEASE. While a notification is pending, `sent_at` holds when its latest
   attempt began (the lease, and the sign that a retry is alive); once sent, when the attempt that
   delivered it began. No transaction is open while the mail server talks, so SQLite writers and
   settlement never wait for it.
2. Check that each is still true (a reminder for an invoice paid meanwhile is marked obsolete), and
   add the PIX code and boleto line that a charge got since it was recorded; a mail whose charge
   was opened but has no codes yet waits for them (CODES_HOLD), then goes without.
3. Render and send them, each with a Message-ID derived from its notification's id: if a crash after
   the server's acceptance ever sends one again, the copy carries the same Message-ID.
4. Right after the server answered, record each in one transaction: sent with its Message-ID; still
   pending after a temporary failure (no connection, a timeout, a 4xx answer), for a retry; failed,
   with the server's words, after a 5xx answer to the message: never tried again.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import date, datetime, timedelta
from email.utils import parseaddr
from typing import Any

import jinja2
from sqlalchemy import Connection, and_, bindparam, literal, or_, select, update

from billing.journal import Notification
from billing.models import NotificationStatus
from billing.notifications import Premise, codes_by_invoices, still_true
from billing.outbox import LEASE, Delivery, Outcome
from billing.schedule import PAYMENT_CODE_KEYS, PAYMENT_DUE_KINDS
from regua.mail import EmailContext, InvoiceLine, message_bytes, render_email
from regua.portal.tokens import PortalTokens
from regua.runtime import Runtime
from regua.settings import Settings
from regua.smtp import ATTEMPT_SECONDS, Accepted, Mailer, MailError, Outgoing, SmtpMailer, TemporaryMailError

log = logging.getLogger("regua.mail")

CODES_HOLD = timedelta(minutes=10)
"""A mail that asks for money waits this long for the PIX code and boleto line of a charge just opened."""
BLOCK_HOLD = timedelta(minutes=5)
"""An account_blocked mail waits this long, then is checked again: a payment made in time may be on its way."""
GIVE_UP_AFTER = timedelta(hours=48)
"""A notification not delivered within this long is recorded as failed: it would arrive too late to be true."""
assert timedelta(seconds=ATTEMPT_SECONDS) < LEASE


@dataclass(frozen=True)
class _Claimed:
    id: str
    kind: str
    account_id: str
    invoice_id: str | None
    recipients: tuple[str, ...]
    context: dict[str, Any]
    created_at: datetime


def deliver_notification(
    runtime: Runtime, mailer: Mailer, notification_id: str, *, now: datetime | None = None
) -> Delivery:
    """Send one notification if it is still pending and still true; safe to call twice or at once."""
    [delivery] = deliver_notifications(runtime, mailer, [notification_id], now=now)
    return delivery


def deliver_notifications(
    runtime: Runtime, mailer: Mailer, notification_ids: Sequence[str], *, now: datetime | None = None
) -> list[Delivery]:
    """Send these notifications (see the module's docstring); one Delivery per id, in order."""
    at = now or runtime.clock.now()
    domain = _message_id_domain(runtime.settings)
    with runtime.engine.connect() as connection:
        with connection.begin():
            claimed, deliveries = _claim(connection, runtime, list(dict.fromkeys(notification_ids)), at)
        accepted: list[str] = []
        records: dict[Any, list[dict[str, Any]]] = {_SENT: [], _DEFERRED: [], _END: []}
        for item, (delivery, statement, parameters) in zip(
            claimed, _send(runtime, mailer, claimed, at, domain), strict=True
        ):
            deliveries[item.id] = delivery
            if statement is _ACCEPTED:
                accepted.append(item.id)
            else:
                records[statement].append({"notification_id": item.id, **parameters})
        if accepted or any(records.values()):
            with connection.begin():
                if accepted:
                    ending = _message_id_end(domain)
                    connection.execute(_ACCEPTED, {"ids": accepted, "sent": at, "message_id_end": ending})
                for statement, rows in records.items():
                    if rows:
                        connection.execute(statement, rows)
    return [deliveries[notification_id] for notification_id in notification_ids]


# Statements built once: a delivery runs them for every email sent.

_FINAL = tuple(status.value for status in NotificationStatus if status != NotificationStatus.PENDING)
_PENDING = and_(*(Notification.status != final for final in _FINAL))
"""Still pending, written as none of the final statuses: PostgreSQL cannot look that up in the status
index, so it finds these rows by their ids. With `status = 'pending'`, statistics taken when few were
pending (autovacuum off, or day 1's rows not yet analyzed) made it read every pending notification
through that index for each batch: a claim of 16 among 9,000 pending took 6 ms instead of 0.5. (A status
written outside NotificationStatus would count as pending here: every writer uses the enum.)"""
_THIS = Notification.id == bindparam("notification_id")
_LOCKED = (
    select(Notification.id)
    .where(Notification.id.in_(bindparam("ids", expanding=True)))
    .order_by(Notification.id)
    .with_for_update(skip_locked=True)
)
"""On PostgreSQL, the rows locked in id order, skipping those another claim holds (they are busy):
two batches that share ids never deadlock. SQLite has one writer at a time anyway."""
_CLAIM = (
    update(Notification)
    .where(
        Notification.id.in_(_LOCKED),
        _PENDING,
        or_(Notification.sent_at.is_(None), Notification.sent_at <= bindparam("lease_cutoff")),
    )
    .values(sent_at=bindparam("now"), attempts=Notification.attempts + 1)
    .returning(
        Notification.id,
        Notification.kind,
        Notification.step,
        Notification.account_id,
        Notification.invoice_id,
        Notification.recipients,
        Notification.context,
        Notification.created_at,
        Notification.last_error,
    )
)
_STATUSES = select(Notification.id, Notification.status).where(Notification.id.in_(bindparam("ids", expanding=True)))
_END = update(Notification).where(_THIS, _PENDING).values(status=bindparam("status"), last_error=bindparam("error"))
_DEFERRED = update(Notification).where(_THIS, _PENDING).values(last_error=bindparam("error"))
_HELD = update(Notification).where(_THIS, _PENDING).values(last_error=bindparam("error"), sent_at=None)
"""Held back, not tried: the claim is given up at once, so that the retry finds no attempt under way
(on a shared clock standing still, a claim's minute would never pass)."""
_ACCEPTED = (
    update(Notification)
    .where(Notification.id.in_(bindparam("ids", expanding=True)), _PENDING)
    .values(
        status=NotificationStatus.SENT.value,
        sent_at=bindparam("sent"),
        message_id=literal("<") + Notification.id + bindparam("message_id_end"),
        last_error=None,
    )
)
"""Sent to every recipient: a batch's usual outcome, recorded in one statement for all of them (each
row's Message-ID is `_message_id`'s, written from its id)."""
_SENT = (
    update(Notification)
    .where(_THIS, _PENDING)
    .values(
        status=NotificationStatus.SENT.value,
        sent_at=bindparam("sent"),
        message_id=bindparam("message"),
        last_error=bindparam("error"),
    )
)


def _claim(
    connection: Connection, runtime: Runtime, ids: list[str], now: datetime
) -> tuple[list[_Claimed], dict[str, Delivery]]:
    """Take the leases in one statement; then the premises, the age limit, and today's payment codes."""
    rows = list(connection.execute(_CLAIM, {"ids": ids, "lease_cutoff": now - LEASE, "now": now}))
    deliveries: dict[str, Delivery] = {}
    taken = {row.id for row in rows}
    if len(taken) < len(ids):
        statuses = dict(connection.execute(_STATUSES, {"ids": [i for i in ids if i not in taken]}).all())
        for notification_id in ids:
            if notification_id not in taken:
                status = statuses.get(notification_id)
                deliveries[notification_id] = (
                    Delivery(Outcome.BUSY, "another attempt is under way")
                    if status == NotificationStatus.PENDING
                    else Delivery(Outcome.DONE, status or "unknown")
                )
    true = still_true(
        connection, [Premise(row.kind, row.step, row.context) for row in rows], now, runtime.calendar, runtime.policy
    )
    ends, claimed = [], []
    for row, holds in zip(rows, true, strict=True):
        if not holds:
            ends.append((row.id, NotificationStatus.OBSOLETE, "no longer true"))
        elif now - row.created_at > GIVE_UP_AFTER:
            ends.append(
                (
                    row.id,
                    NotificationStatus.FAILED,
                    f"not delivered within {GIVE_UP_AFTER}; last error: {row.last_error}",
                )
            )
        else:
            claimed.append(
                _Claimed(
                    row.id,
                    row.kind,
                    row.account_id,
                    row.invoice_id,
                    tuple(row.recipients),
                    dict(row.context),
                    row.created_at,
                )
            )
    if ends:
        connection.execute(
            _END, [{"notification_id": i, "status": status.value, "error": _short(why)} for i, status, why in ends]
        )
        deliveries.update((i, Delivery(Outcome(status.value), why)) for i, status, why in ends)
    for item in claimed:
        if item.kind == "account_blocked" and now - item.created_at < BLOCK_HOLD:
            deliveries[item.id] = Delivery(Outcome.DEFERRED, "held a few minutes: a payment made in time may be coming")
            connection.execute(_HELD, {"notification_id": item.id, "error": deliveries[item.id].detail})
    claimed = [item for item in claimed if item.id not in deliveries]
    wanting = [
        c for c in claimed if c.kind in PAYMENT_DUE_KINDS and not any(c.context.get(k) for k in PAYMENT_CODE_KEYS)
    ]
    if wanting:
        groups = [tuple(line["invoice_id"] for line in c.context.get("invoices", [])) for c in wanting]
        codes = codes_by_invoices(connection, groups)
        for item, group in zip(wanting, groups, strict=True):
            if codes.get(group) == {} and now - item.created_at < CODES_HOLD:
                deliveries[item.id] = Delivery(Outcome.DEFERRED, "waiting for the PIX code and boleto line")
                connection.execute(_HELD, {"notification_id": item.id, "error": deliveries[item.id].detail})
            item.context.update(codes.get(group, {}))
        claimed = [item for item in claimed if item.id not in deliveries]
    return claimed, deliveries


def _message_id_domain(settings: Settings) -> str:
    return _sender(settings).rpartition("@")[2] or "localhost"


def _sender(settings: Settings) -> str:
    return parseaddr(settings.mail_from)[1] or settings.mail_from


def _send(
    runtime: Runtime, mailer: Mailer, claimed: list[_Claimed], at: datetime, domain: str
) -> list[tuple[Delivery, Any, dict[str, Any]]]:
    """Render and send the claimed notifications: how each went, and the statement that records it."""
    settings = runtime.settings
    sender = _sender(settings)
    results: list[tuple[Delivery, Any, dict[str, Any]] | None] = []

    def rendered() -> Iterator[Outgoing]:
        """Each message as soon as it is rendered: the mailer sends it while the next one renders."""
        for item in claimed:
            try:
                portal = portal_link(settings, item.account_id, at)
                context = email_context(item.kind, item.account_id, item.context, portal)
                data = message_bytes(
                    render_email(context),
                    context,
                    mail_from=settings.mail_from,
                    message_id_domain=domain,
                    invoice_id=item.invoice_id,
                    sent_at=at,
                    message_id=_message_id(item.id, domain),
                )
            except (ValueError, TypeError, KeyError, jinja2.TemplateError) as error:
                detail = f"could not render: {type(error).__name__}: {error}"
                log.error("notification %s (%s): %s", item.id, item.kind, detail)
                failed = {"status": NotificationStatus.FAILED.value, "error": _short(detail)}
                results.append((Delivery(Outcome.FAILED, detail), _END, failed))
                continue
            results.append(None)
            yield Outgoing(data, sender, item.recipients)

    answers = iter(mailer.send_many(rendered()))
    for position, item in enumerate(claimed):
        if results[position] is None:
            results[position] = _answered(item, next(answers), at, domain)
    return [result for result in results if result is not None]


def _answered(
    item: _Claimed, answer: Accepted | MailError, at: datetime, domain: str
) -> tuple[Delivery, Any, dict[str, Any]]:
    if isinstance(answer, TemporaryMailError):
        return (
            Delivery(Outcome.DEFERRED, str(answer), unreachable=answer.unreachable),
            _DEFERRED,
            {"error": _short(str(answer))},
        )
    if isinstance(answer, MailError):
        log.warning("notification %s (%s) refused for good: %s", item.id, item.kind, answer)
        failed = {"status": NotificationStatus.FAILED.value, "error": _short(str(answer))}
        return Delivery(Outcome.FAILED, str(answer)), _END, failed
    if not answer.refused:
        return Delivery(Outcome.SENT, answer.reply), _ACCEPTED, {}
    refused = "; ".join(f"{recipient}: {reply}" for recipient, reply in answer.refused.items())
    sent = {
        "sent": at,
        "message": _message_id(item.id, domain),
        "error": _short(f"refused: {refused}"),
    }
    return Delivery(Outcome.SENT, answer.reply), _SENT, sent


def _message_id(notification_id: str, domain: str) -> str:
    """`<notification id@domain>`: a copy resent after a crash carries the same Message-ID."""
    return "<" + notification_id + _message_id_end(domain)


def _message_id_end(domain: str) -> str:
    """What follows the id in a notification's Message-ID (`_ACCEPTED` writes it after the id)."""
    return f"@{domain}>"


def _short(text: str) -> str:
    return text[:500]


_DATE_FIELDS = frozenset({"next_retry_on", "block_on", "blocked_since", "verifying_until", "trial_ended_on"})
_OPTIONAL_FIELDS = tuple(
    f.name
    for f in fields(EmailContext)
    if f.name not in ("kind", "account_id", "account_name", "recipients", "invoices", "portal_url")
)


def email_context(kind: str, account_id: str, context: Mapping[str, Any], portal_url: str) -> EmailContext:
    """The rendering input from a notification's recorded context."""
    optional: dict[str, Any] = {}
    for name in _OPTIONAL_FIELDS:
        value = context.get(name)
        if value is not None:
            optional[name] = date.fromisoformat(value) if name in _DATE_FIELDS else value
    return EmailContext(
        kind=kind,
        account_id=account_id,
        account_name=str(context["account_name"]),
        recipients=tuple((str(name), str(address)) for name, address in context["recipients"]),
        invoices=tuple(
            InvoiceLine(
                invoice_id=line["invoice_id"],
                product=line["product"],
                period_start=date.fromisoformat(line["period_start"]),
                period_end=date.fromisoformat(line["period_end"]),
                due_date=date.fromisoformat(line["due_date"]),
                subtotal_cents=int(line["subtotal_cents"]),
                discount_cents=int(line["discount_cents"]),
                total_cents=int(line["total_cents"]),
            )
            for line in context["invoices"]
        ),
        portal_url=portal_url,
        **optional,
    )


class SmtpPostman:
    """Delivers notifications over SMTP for the workers (`workers.context.Postman`): one mailer per process."""

    def __init__(self, runtime: Runtime, url: str | None = None) -> None:
        self._runtime = runtime
        self._mailer = SmtpMailer(url or runtime.settings.smtp_url)

    def deliver(self, notification_ids: Sequence[str], *, now: datetime | None = None) -> list[Delivery]:
        return deliver_notifications(self._runtime, self._mailer, notification_ids, now=now)

    def close(self) -> None:
        self._mailer.close()


def portal_link(settings: Settings, account_id: str, now: datetime) -> str:
    """Where an email sends the customer: the product's own portal if set, else regua's payment page
    with a token signed now (each email carries its own, valid for 60 days from its sending)."""
    if settings.portal_url:
        return settings.portal_url
    return f"{settings.public_url}/portal/{PortalTokens(settings.secret_key).issue(account_id, now)}"
