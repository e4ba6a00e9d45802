"""The database reads behind the ops pages: each one bounded, indexed, and a page at a time."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from sqlalchemy import ColumnElement, and_, func, or_, select
from sqlalchemy.orm import Session, defer

from billing.access import ProductAccess, account_access
from billing.calendar import BillingCalendar
from billing.journal import Notification, TickRun, WebhookEvent
from billing.models import Account, Block, Charge, ChargeAttempt, Invoice, NotificationStatus, Payment, Refund
from billing.policy import Policy
from billing.records import OpsAction, Receipt, ReceiptReview
from billing.timeline import Timeline, account_timeline

PAGE = 50
DAY = timedelta(hours=24)


# -- charge facts -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ChargeFacts:
    """What ops see of a charge; the one place that knows where each fact is stored."""

    id: str
    account_id: str
    product: str
    method: str
    amount_cents: int
    status: str
    gateway: str
    gateway_payment_id: str | None
    failure_code: str | None
    source: str
    created_at: datetime
    confirmed_at: datetime | None
    attempts: list[ChargeAttempt] = field(default_factory=list)


def charge_facts(charge: Charge, attempts: list[ChargeAttempt] | None = None) -> ChargeFacts:
    return ChargeFacts(
        id=charge.id,
        account_id=charge.account_id,
        product=charge.product,
        method=charge.method,
        amount_cents=charge.amount_cents,
        status=charge.status,
        gateway=charge.gateway,
        gateway_payment_id=charge.gateway_payment_id,
        failure_code=charge.failure_code,
        source=charge.source,
        created_at=charge.created_at,
        confirmed_at=charge.confirmed_at,
        attempts=attempts or [],
    )


def with_attempts(session: Session, charges: list[Charge]) -> list[tuple[Charge, list[ChargeAttempt]]]:
    attempts = _attempts(session, [charge.id for charge in charges])
    return [(charge, attempts[charge.id]) for charge in charges]


def _attempts(session: Session, charge_ids: list[str]) -> dict[str, list[ChargeAttempt]]:
    """Every gateway call about these charges, in order, in one query."""
    found: dict[str, list[ChargeAttempt]] = {charge_id: [] for charge_id in charge_ids}
    if charge_ids:
        for attempt in session.scalars(
            select(ChargeAttempt)
            .where(ChargeAttempt.charge_id.in_(charge_ids))
            .order_by(ChargeAttempt.charge_id, ChargeAttempt.number)
        ):
            found[attempt.charge_id].append(attempt)
    return found


# -- overview -----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Overview:
    webhooks: dict[str, dict[str, int]]
    """provider -> status -> events received in the last 24 h."""
    emails: dict[str, int]
    charges: dict[str, dict[str, int]]
    """method -> status -> charges opened today (billing zone)."""
    blocked: dict[str, int]
    last_tick: TickRun | None
    tick_lag: timedelta | None


def start_of_today(now: datetime, calendar: BillingCalendar) -> datetime:
    return calendar.start_of_day(calendar.local_date(now))


def overview(session: Session, now: datetime, calendar: BillingCalendar) -> Overview:
    webhooks: dict[str, dict[str, int]] = {}
    for provider, status, count in session.execute(
        select(WebhookEvent.provider, WebhookEvent.status, func.count())
        .where(WebhookEvent.received_at >= now - DAY)
        .group_by(WebhookEvent.provider, WebhookEvent.status)
    ):
        webhooks.setdefault(provider, {})[status] = count
    emails: dict[str, int] = dict(
        session.execute(
            select(Notification.status, func.count())
            .where(or_(Notification.created_at >= now - DAY, Notification.status == NotificationStatus.PENDING.value))
            .group_by(Notification.status)
        ).all()
    )
    charges: dict[str, dict[str, int]] = {}
    for method, status, count in session.execute(
        select(Charge.method, Charge.status, func.count())
        .where(Charge.created_at >= start_of_today(now, calendar))
        .group_by(Charge.method, Charge.status)
    ):
        charges.setdefault(method, {})[status] = count
    blocked: dict[str, int] = dict(
        session.execute(
            select(Block.product, func.count()).where(Block.lifted_at.is_(None)).group_by(Block.product)
        ).all()
    )
    last_tick = session.scalar(select(TickRun).order_by(TickRun.id.desc()).limit(1))
    lag = now - last_tick.finished_at if last_tick is not None else None
    return Overview(webhooks, emails, charges, blocked, last_tick, lag)


# -- webhook events -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class EventFilter:
    event_id: str = ""
    provider: str = ""
    status: str = ""
    account_id: str = ""
    since: date | None = None
    until: date | None = None

    @classmethod
    def parse(cls, params: dict[str, str]) -> EventFilter:
        return cls(
            event_id=params.get("id", "").strip(),
            provider=params.get("provider", "").strip(),
            status=params.get("status", "").strip(),
            account_id=params.get("account", "").strip(),
            since=_date(params.get("since", "")),
            until=_date(params.get("until", "")),
        )

    def as_params(self) -> dict[str, str]:
        params = {
            "id": self.event_id,
            "provider": self.provider,
            "status": self.status,
            "account": self.account_id,
            "since": self.since.isoformat() if self.since else "",
            "until": self.until.isoformat() if self.until else "",
        }
        return {key: value for key, value in params.items() if value}

    def conditions(self, calendar: BillingCalendar) -> list[ColumnElement[bool]]:
        where: list[ColumnElement[bool]] = []
        if self.event_id:
            where.append(or_(WebhookEvent.id == self.event_id, WebhookEvent.dedupe_key == self.event_id))
        if self.provider:
            where.append(WebhookEvent.provider == self.provider)
        if self.status:
            where.append(WebhookEvent.status == self.status)
        if self.account_id:
            where.append(WebhookEvent.charge_id.in_(select(Charge.id).where(Charge.account_id == self.account_id)))
        if self.since:
            where.append(WebhookEvent.received_at >= calendar.start_of_day(self.since))
        if self.until:
            where.append(WebhookEvent.received_at < calendar.start_of_day(self.until + timedelta(days=1)))
        return where


def _date(text: str) -> date | None:
    try:
        return date.fromisoformat(text.strip()) if text.strip() else None
    except ValueError:
        return None


@dataclass(frozen=True)
class EventPage:
    events: list[WebhookEvent]
    next_cursor: str | None
    accounts: dict[str, str] = field(default_factory=dict)
    """charge id -> account id, for the events shown."""


def search_events(session: Session, where: list[ColumnElement[bool]], cursor: str = "") -> EventPage:
    """Newest first, keyset-paginated on (received_at, id): page 2,000 costs what page 1 does."""
    conditions = list(where)
    at_text, _, last_id = cursor.partition("|")
    if at_text and last_id:
        try:
            at = datetime.fromisoformat(at_text)
        except ValueError:
            at = None
        if at is not None:
            conditions.append(
                or_(WebhookEvent.received_at < at, and_(WebhookEvent.received_at == at, WebhookEvent.id < last_id))
            )
    rows = list(
        session.scalars(
            select(WebhookEvent)
            .where(*conditions)
            .order_by(WebhookEvent.received_at.desc(), WebhookEvent.id.desc())
            .limit(PAGE + 1)
        )
    )
    events = rows[:PAGE]
    next_cursor = f"{events[-1].received_at.isoformat()}|{events[-1].id}" if len(rows) > PAGE else None
    charge_ids = {event.charge_id for event in events if event.charge_id}
    accounts: dict[str, str] = dict(
        session.execute(select(Charge.id, Charge.account_id).where(Charge.id.in_(charge_ids))).all()
        if charge_ids
        else []
    )
    return EventPage(events, next_cursor, accounts)


REPLAYABLE = ("unmatched", "failed")
REPLAY_LIMIT = 10_000


def replayable_ids(session: Session, where: list[ColumnElement[bool]]) -> list[str]:
    """The failed or unmatched events of a filter, oldest first (what "replay all" acts on)."""
    return list(
        session.scalars(
            select(WebhookEvent.id)
            .where(*where, WebhookEvent.status.in_(REPLAYABLE))
            .order_by(WebhookEvent.received_at)
            .limit(REPLAY_LIMIT)
        )
    )


def pretty_body(body: str) -> str:
    try:
        return json.dumps(json.loads(body), indent=2, ensure_ascii=False, sort_keys=True)
    except ValueError:
        return body


# -- accounts -----------------------------------------------------------------------------------------------
def search_accounts(session: Session, text: str) -> list[Account]:
    query = select(Account).order_by(Account.created_at.desc()).limit(PAGE)
    text = text.strip()
    if text:
        digits = "".join(ch for ch in text if ch.isdigit())
        matches = [Account.id == text, Account.name.ilike(f"%{text}%"), Account.id.ilike(f"{text}%")]
        if len(digits) >= 11:
            matches.append(Account.document == digits)
        query = query.where(or_(*matches))
    return list(session.scalars(query))


@dataclass(frozen=True)
class AccountPage:
    account: Account
    access: dict[str, ProductAccess]
    invoices: list[Invoice]
    charges: list[ChargeFacts]
    payments: list[Payment]
    refunds: list[Refund]
    emails: list[Notification]
    timeline: Timeline
    events: list[WebhookEvent]
    receipts: list[Receipt] = field(default_factory=list)
    """Sent by the customer from the payment page, newest first (their files are not loaded here)."""
    reviews: list[ReceiptReview] = field(default_factory=list)
    """Receipts after an invoice's verification window: waiting, or who decided what and why."""


def account_page(
    session: Session, account: Account, now: datetime, calendar: BillingCalendar, policy: Policy
) -> AccountPage:
    account_id = account.id
    charges = list(
        session.scalars(
            select(Charge).where(Charge.account_id == account_id).order_by(Charge.created_at.desc()).limit(PAGE)
        )
    )
    return AccountPage(
        account=account,
        access=account_access(session, account_id, now, calendar, policy),
        invoices=list(
            session.scalars(
                select(Invoice)
                .where(Invoice.account_id == account_id)
                .order_by(Invoice.period_start.desc(), Invoice.product)
                .limit(PAGE)
            )
        ),
        charges=[charge_facts(charge, found) for charge, found in with_attempts(session, charges)],
        payments=list(
            session.scalars(
                select(Payment).where(Payment.account_id == account_id).order_by(Payment.paid_at.desc()).limit(PAGE)
            )
        ),
        refunds=list(
            session.scalars(
                select(Refund).where(Refund.account_id == account_id).order_by(Refund.created_at.desc()).limit(PAGE)
            )
        ),
        emails=list(
            session.scalars(
                select(Notification)
                .where(Notification.account_id == account_id)
                .order_by(Notification.created_at.desc())
                .limit(PAGE)
            )
        ),
        timeline=account_timeline(session, account_id, now, calendar, policy),
        events=list(
            session.scalars(
                select(WebhookEvent)
                .where(WebhookEvent.charge_id.in_([charge.id for charge in charges]))
                .order_by(WebhookEvent.received_at.desc())
                .limit(PAGE)
            )
        )
        if charges
        else [],
        receipts=list(
            session.scalars(
                select(Receipt)
                .options(defer(Receipt.content))
                .where(Receipt.account_id == account_id)
                .order_by(Receipt.received_at.desc())
                .limit(PAGE)
            )
        ),
        reviews=list(
            session.scalars(
                select(ReceiptReview)
                .where(ReceiptReview.account_id == account_id)
                .order_by(ReceiptReview.requested_at.desc())
                .limit(PAGE)
            )
        ),
    )


def receipt_file(session: Session, receipt_id: str) -> tuple[str, str, bytes] | None:
    """A receipt's download name, type and bytes."""
    receipt = session.get(Receipt, receipt_id)
    if receipt is None:
        return None
    extension = {"application/pdf": ".pdf", "image/png": ".png", "image/jpeg": ".jpg"}.get(receipt.content_type, "")
    return f"{receipt.id}{extension}", receipt.content_type, receipt.content


def recent_actions(session: Session, limit: int = 20) -> list[OpsAction]:
    return list(session.scalars(select(OpsAction).order_by(OpsAction.id.desc()).limit(limit)))


def record_action(session: Session, *, at: datetime, by: str, action: str, targets: list[str], result: str) -> None:
    session.add(OpsAction(at=at, by=by, action=action, targets=targets[:1000], result=result[:500]))
