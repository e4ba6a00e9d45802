"""Charging through a gateway: the day-1 and retry auto-debits, card attempts, rechecks, refunds and cancels.

The planner is level-triggered: at `now`, every unpaid `card_auto_debit` invoice whose attempt day
has come and that has no attempt for that step gets one pending charge, keyed
`auto:<invoice id>:day<N>`; every issued `boleto` or `pix` invoice that has no charge at all gets
its PIX or boleto charge, keyed `manual:<invoice id>` (rule 3.3). The unique keys make concurrent
passes create each once. Calls to the gateway happen outside any transaction, between a claim and
a record:

    claim      lock the charge; still pending, not leased? take a short lease, note `sent_at`
    gateway    charge_card / create_manual_charge / get_payment / refund / cancel (the port; Asaas
               looks a charge up by our id before creating it, so a retry never charges twice)
    record     lock again; settle, fail or wait, and drop the lease

State that only matters to charging lives in `Charge.details`: `source` (auto_debit, manual, checkout),
`day`, `card_ref` (a digest of the card token tried), `sent_at`, `attempts`, `lease_until`,
`hard_decline`, `decline_reason`, `decline_message`, `gateway_status`, `rechecked_at`, the PIX and
boleto codes, `refund_claims`, and `gateway_cancel_owed` (set by settlement) with its result.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any

from sqlalchemy import insert, or_, select, true
from sqlalchemy.orm import Session

from billing.calendar import BillingCalendar
from billing.db import insert_ignoring_conflicts
from billing.dunning import regua_day_start
from billing.models import (
    UNPAID,
    Account,
    Charge,
    ChargeInvoice,
    ChargeStatus,
    Invoice,
    InvoiceStatus,
    Payment,
    PaymentMethod,
    Refund,
    RefundStatus,
    Subscription,
    new_charge_id,
)
from billing.money import parse_decimal
from billing.policy import Policy
from billing.ports import (
    BoletoCode,
    Books,
    CardCharge,
    CardDeclined,
    Gateway,
    GatewayPayment,
    GatewayRejected,
    ManualCharge,
    PaymentNotFound,
    PixCode,
)
from billing.settlement import (
    ConfirmedPayment,
    lock_charge,
    record_failure,
    record_gateway_cancel,
    record_refund,
    settle_charge,
)

log = logging.getLogger("regua.charging")


AUTO_DEBIT = "auto_debit"
MANUAL = "manual"
CHECKOUT = "checkout"
MANUAL_METHODS = (PaymentMethod.BOLETO.value, PaymentMethod.PIX.value)
BATCH = 10_000
LEASE = timedelta(minutes=4)
"""Longer than one `charge_card` call with the client's own retries (3 x 20 s, plus lookups)."""
RECHECK_AFTER = timedelta(hours=1)
RECHECK_FOR = timedelta(days=35)
RECHECK_BATCH = 1000
REFUND_CLAIM = timedelta(minutes=5)
REFUND_WAIT = timedelta(hours=6)
"""How long a refund the gateway accepted but has not finished (or refused) waits before it is asked again."""
PRODUCT_NAMES = {"platform": "Mensalidade", "mentorship": "Mentoria"}


class ChargeInFlight(Exception):
    """Another worker holds this charge's lease (it is talking to the gateway): try again later."""


# -- the planner -----------------------------------------------------------------------------------------


def auto_debit_key(invoice_id: str, day: int) -> str:
    return f"auto:{invoice_id}:day{day}"


def card_ref(card_token: str | None) -> str | None:
    """A digest that tells cards apart without keeping the token next to the attempt."""
    if not card_token:
        return None
    return hashlib.sha256(card_token.encode()).hexdigest()[:16]


def attempt_days(policy: Policy) -> tuple[int, ...]:
    """Day 1, then the retry days (rule 3.3): the régua days on which an auto-debit card is charged."""
    return (1, *sorted({day for day in policy.retry_days if day > 1}))


@dataclass(frozen=True)
class Attempt:
    """A charge already made for an invoice, as the planner sees it."""

    step: int | None
    """The régua day of an auto-debit attempt; None for any other charge (a checkout)."""
    status: str
    hard_decline: bool = False
    card_ref: str | None = None


def due_attempt(
    due_date: date,
    period_end: date,
    now: datetime,
    calendar: BillingCalendar,
    policy: Policy,
    attempts: Sequence[Attempt],
    current_card: str | None,
) -> int | None:
    """The attempt day to charge now, or None.

    Only the latest attempt day reached counts, so a pass after a gap makes one attempt, not a burst.
    Nothing while another charge is pending, once this step was tried, or after a hard decline of the
    same card (a new card token starts again). Catching up ends with the billing period (or the last
    attempt day, for a short pro-rata period).
    """
    days = attempt_days(policy)
    reached = [day for day, start in zip(days, _attempt_starts(due_date, days, calendar), strict=True) if start <= now]
    if not reached:
        return None
    if calendar.local_date(now) > max(period_end, due_date + timedelta(days=days[-1] - 1)):
        return None
    if any(attempt.status == ChargeStatus.PENDING for attempt in attempts):
        return None
    if any(
        attempt.step is not None
        and attempt.hard_decline
        and (attempt.card_ref is None or attempt.card_ref == current_card)
        for attempt in attempts
    ):
        return None
    step = reached[-1]
    if any(attempt.step == step for attempt in attempts):
        return None
    return step


@lru_cache(maxsize=512)
def _attempt_starts(due_date: date, days: tuple[int, ...], calendar: BillingCalendar) -> tuple[datetime, ...]:
    """00:00 of each attempt day (a day-1 pass asks this for the same due date many thousands of times)."""
    return tuple(regua_day_start(due_date, day, calendar) for day in days)


def _step_of(idempotency_key: str) -> int | None:
    prefix, _, day = idempotency_key.rpartition(":day")
    if not prefix.startswith("auto:") or not day.isdigit():
        return None
    return int(day)


def plan_auto_debits(
    session: Session,
    now: datetime,
    calendar: BillingCalendar,
    policy: Policy,
    *,
    on_batch: Callable[[list[str]], None] | None = None,
) -> list[str]:
    """Open the auto-debit charges due at `now`; returns the ids this pass created (a racing pass's are not).

    Charges are written in batches; `on_batch`, if given, is called after each with its new ids (to
    commit them and queue their jobs while the next batch is written).
    """
    today = calendar.local_date(now)
    last_day = attempt_days(policy)[-1]
    due = (
        Invoice.payment_method == PaymentMethod.CARD_AUTO_DEBIT.value,
        Invoice.status == InvoiceStatus.OPEN.value,
        Invoice.due_date <= today,
        or_(Invoice.period_end >= today, Invoice.due_date >= today - timedelta(days=last_day - 1)),
    )
    candidates = session.execute(
        select(
            Invoice.id,
            Invoice.account_id,
            Invoice.product,
            Invoice.due_date,
            Invoice.period_end,
            Invoice.total_cents,
            Subscription.card_token,
        )
        .join(Subscription, Subscription.id == Invoice.subscription_id)
        .where(*due)
    ).all()
    if not candidates:
        return []
    attempts: dict[str, list[Attempt]] = defaultdict(list)
    for link in session.execute(
        select(ChargeInvoice.invoice_id, Charge.status, Charge.idempotency_key, Charge.details)
        .join(Charge, Charge.id == ChargeInvoice.charge_id)
        .join(Invoice, Invoice.id == ChargeInvoice.invoice_id)
        .where(*due)
    ):
        details = link.details or {}
        attempts[link.invoice_id].append(
            Attempt(
                step=_step_of(link.idempotency_key),
                status=link.status,
                hard_decline=details.get("hard_decline") is True,
                card_ref=details.get("card_ref"),
            )
        )
    drafts: list[dict[str, Any]] = []
    for row in candidates:
        step = due_attempt(
            row.due_date, row.period_end, now, calendar, policy, attempts.get(row.id, ()), card_ref(row.card_token)
        )
        if step is not None:
            drafts.append(
                {
                    "id": new_charge_id(),
                    "account_id": row.account_id,
                    "product": row.product,
                    "method": "card",
                    "amount_cents": row.total_cents,
                    "installments": 1,
                    "status": ChargeStatus.PENDING.value,
                    "idempotency_key": auto_debit_key(row.id, step),
                    "gateway": "asaas",
                    "details": {"source": AUTO_DEBIT, "invoice_id": row.id, "day": step},
                    "created_at": now,
                }
            )
    return _insert_charges(session, drafts, on_batch)


_UNNEST_CHARGES = """
    WITH draft AS (
        SELECT * FROM unnest(%b::varchar[], %b::varchar[], %b::varchar[], %b::varchar[], %b::integer[],
                             %b::integer[], %b::varchar[], %b::varchar[], %b::varchar[], %b::text[],
                             %b::timestamptz[], %b::varchar[])
            AS d(id, account_id, product, method, amount_cents, installments, status, idempotency_key,
                 gateway, details, created_at, invoice_id)
    ), charge AS (
        INSERT INTO charges (id, account_id, product, method, amount_cents, installments, status,
                             idempotency_key, gateway, details, created_at)
        SELECT id, account_id, product, method, amount_cents, installments, status, idempotency_key,
               gateway, CAST(details AS json), created_at
        FROM draft
        ON CONFLICT (idempotency_key) DO NOTHING
        RETURNING id
    ), link AS (
        INSERT INTO charge_invoices (charge_id, invoice_id)
        SELECT charge.id, draft.invoice_id FROM charge JOIN draft USING (id)
    )
    SELECT id FROM charge
"""
_COLUMNS = (
    "id",
    "account_id",
    "product",
    "method",
    "amount_cents",
    "installments",
    "status",
    "idempotency_key",
    "gateway",
    "details",
    "created_at",
)


def _insert_charges(
    session: Session, drafts: list[dict[str, Any]], on_batch: Callable[[list[str]], None] | None
) -> list[str]:
    """Insert new one-invoice charges and their invoice links; a key already taken inserts nothing.

    On PostgreSQL each batch is one statement, charges and links together from unnest(arrays), the
    arrays sent in binary on the session's own connection (same transaction): a statement with
    thousands of rows of placeholders costs more to build and parse than the rows cost to write.
    """
    created: list[str] = []
    invoice_of = {draft["id"]: draft["details"]["invoice_id"] for draft in drafts}
    postgres = session.get_bind().dialect.name == "postgresql"
    for offset in range(0, len(drafts), BATCH):
        batch = drafts[offset : offset + BATCH]
        driver = session.connection().connection.driver_connection  # again: on_batch may have committed
        if postgres and driver is not None:
            columns = [[draft[name] for draft in batch] for name in _COLUMNS]
            columns[_COLUMNS.index("details")] = [json.dumps(draft["details"]) for draft in batch]
            columns.append([draft["details"]["invoice_id"] for draft in batch])
            with driver.cursor() as cursor:
                cursor.execute(_UNNEST_CHARGES, columns)
                inserted = [row[0] for row in cursor.fetchall()]
        else:
            inserted = insert_ignoring_conflicts(session, Charge, batch, index_elements=["idempotency_key"])
            if inserted:
                session.execute(
                    insert(ChargeInvoice),
                    [{"charge_id": charge_id, "invoice_id": invoice_of[charge_id]} for charge_id in inserted],
                )
        created += inserted
        if on_batch is not None and inserted:
            on_batch(inserted)
    return created


def manual_charge_key(invoice_id: str) -> str:
    return f"manual:{invoice_id}"


def has_codes(details: Mapping[str, Any]) -> bool:
    """Whether a PIX or boleto charge holds what the customer needs to pay it."""
    return "pix_code" in details or "boleto_line" in details


def plan_manual_charges(
    session: Session, now: datetime, *, on_batch: Callable[[list[str]], None] | None = None
) -> list[str]:
    """Open the PIX or boleto charge of every issued manual invoice that has no charge yet (rule 3.3).

    Returns the ids this pass created. An invoice with any charge (its own, or a checkout's, pending
    or not) is left alone: the customer has codes, or chose another way. Paid, void and verifying
    invoices get none. The charge exists before its codes do: a job asks the gateway for them.
    """
    due = (
        Invoice.payment_method.in_(MANUAL_METHODS),
        Invoice.status == InvoiceStatus.OPEN.value,
        Invoice.issued_at <= now,
        Invoice.total_cents > 0,
    )
    candidates = session.execute(
        select(Invoice.id, Invoice.account_id, Invoice.product, Invoice.total_cents, Invoice.payment_method).where(*due)
    ).all()
    if not candidates:
        return []
    charged = set(
        session.scalars(
            select(ChargeInvoice.invoice_id).join(Invoice, Invoice.id == ChargeInvoice.invoice_id).where(*due)
        )
    )
    drafts = [
        {
            "id": new_charge_id(),
            "account_id": row.account_id,
            "product": row.product,
            "method": row.payment_method,
            "amount_cents": row.total_cents,
            "installments": 1,
            "status": ChargeStatus.PENDING.value,
            "idempotency_key": manual_charge_key(row.id),
            "gateway": "asaas",
            "details": {"source": MANUAL, "invoice_id": row.id},
            "created_at": now,
        }
        for row in candidates
        if row.id not in charged
    ]
    return _insert_charges(session, drafts, on_batch)


# -- leases ---------------------------------------------------------------------------------------------


def _instant(value: object) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) and value else None


def leased(charge: Charge, now: datetime) -> bool:
    until = _instant(charge.details.get("lease_until"))
    return until is not None and until > now


def was_sent(charge: Charge) -> bool:
    """Whether the gateway may hold a payment for this charge."""
    return charge.gateway_payment_id is not None or "sent_at" in charge.details


def take_lease(charge: Charge, now: datetime, **extra: Any) -> None:
    details = dict(charge.details)
    details.setdefault("sent_at", now.isoformat())
    details["attempts"] = int(details.get("attempts", 0)) + 1
    details["lease_until"] = (now + LEASE).isoformat()
    details.update(extra)
    charge.details = details


def release_lease(session: Session, charge_id: str) -> None:
    charge = lock_charge(session, charge_id)
    if "lease_until" in charge.details:
        charge.details = {key: value for key, value in charge.details.items() if key != "lease_until"}


# -- one card attempt -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Decline:
    hard: bool
    reason: str
    message: str


@dataclass(frozen=True)
class CardResult:
    """How one card attempt ended, for the job's log and the checkout's answer."""

    charge_id: str
    outcome: str
    """settled, already_recorded, duplicate, declined, rejected, awaiting_gateway, canceled_at_gateway,
    in_flight, not_pending, nothing_to_charge, failed."""
    status: str
    decline: Decline | None = None


def _description(invoices: Sequence[Invoice]) -> str:
    months = ", ".join(f"{invoice.period_start:%m/%Y}" for invoice in invoices)
    return f"{PRODUCT_NAMES.get(invoices[0].product, invoices[0].product)} {months}"


def _charge_invoices(session: Session, charge: Charge) -> list[Invoice]:
    return list(
        session.scalars(select(Invoice).where(Invoice.id.in_(charge.invoice_ids)).order_by(Invoice.period_start))
    )


def _fail(session: Session, charge: Charge, decline: Decline, now: datetime) -> CardResult:
    record_failure(session, charge.id, decline.reason, now)
    charge.details = {
        **{key: value for key, value in charge.details.items() if key != "lease_until"},
        "hard_decline": decline.hard,
        "decline_reason": decline.reason,
        "decline_message": decline.message[:300],
    }
    return CardResult(charge.id, "declined", charge.status, decline)


def claim_card_charge(
    session: Session, charge_id: str, now: datetime, calendar: BillingCalendar, card_token: str | None = None
) -> CardCharge | CardResult:
    """Lock a pending card charge and take its lease; or say why it must not be sent now."""
    charge = lock_charge(session, charge_id)
    if charge.method != "card":
        return CardResult(charge_id, "not_a_card_charge", charge.status)
    if charge.status != ChargeStatus.PENDING:
        return CardResult(charge_id, "not_pending", charge.status)
    if charge.gateway_payment_id is not None:
        return CardResult(charge_id, "awaiting_gateway", charge.status)
    if leased(charge, now):
        return CardResult(charge_id, "in_flight", charge.status)
    invoices = _charge_invoices(session, charge)
    if any(invoice.status != InvoiceStatus.OPEN for invoice in invoices):
        # Paid meanwhile, or in verification (a receipt or a payment on its way): not charged now.
        charge.status = ChargeStatus.CANCELED.value
        charge.details = {**charge.details, "canceled": "nothing_to_charge", "gateway_cancel_owed": was_sent(charge)}
        return CardResult(charge_id, "nothing_to_charge", charge.status)
    account = session.get(Account, charge.account_id)
    assert account is not None
    token = card_token or session.scalar(
        select(Subscription.card_token).where(
            Subscription.account_id == charge.account_id, Subscription.product == charge.product
        )
    )
    if not account.gateway_customer_id or not token:
        reason = "no_gateway_customer" if not account.gateway_customer_id else "no_card_token"
        return _fail(session, charge, Decline(False, reason, f"the account has no {reason[3:]}"), now)
    take_lease(charge, now, card_ref=card_ref(token))
    return CardCharge(
        charge_id=charge.id,
        customer_id=account.gateway_customer_id,
        amount_cents=charge.amount_cents,
        due_date=calendar.local_date(now),
        card_token=token,
        installments=charge.installments,
        description=_description(invoices),
    )


def _method(payment: GatewayPayment, charge: Charge) -> str:
    return payment.method if payment.method in ("card", "pix", "boleto") else charge.method


def record_gateway_answer(
    session: Session, charge_id: str, payment: GatewayPayment, now: datetime, *, release: bool = True
) -> CardResult:
    """What the gateway says of our charge, in the books: settled if paid, canceled if deleted, else waiting.

    Settling here and settling from the gateway's webhook are the same payment id, so whichever
    comes second is a no-op.
    """
    charge = lock_charge(session, charge_id)
    details = {**charge.details, "gateway_status": payment.status}
    if release:
        details.pop("lease_until", None)
    charge.details = details
    if charge.gateway_payment_id is None:
        charge.gateway_payment_id = payment.id
    if payment.is_paid:
        # An installment plan answers with its first installment; the card was authorized for all of it.
        plan = payment.installment_id is not None and charge.installments > 1
        amount = charge.amount_cents if plan else payment.amount_cents
        confirmed = ConfirmedPayment(charge.gateway, payment.id, amount, _method(payment, charge), now)
        settlement = settle_charge(session, charge_id, confirmed, now)
        if settlement.already_recorded:
            outcome = "already_recorded"
        else:
            outcome = "settled" if settlement.invoices_paid else "duplicate"
        return CardResult(charge_id, outcome, charge.status)
    if payment.state == "canceled":
        record_gateway_cancel(session, charge_id)
        return CardResult(charge_id, "canceled_at_gateway", charge.status)
    return CardResult(charge_id, "awaiting_gateway", charge.status)


def make_card_charge(books: Books, gateway: Gateway, charge_id: str, *, card_token: str | None = None) -> CardResult:
    """Charge a pending card charge once: claim, ask the gateway, record. Safe to run twice.

    A decline fails the charge (its `hard` kept for the planner); GatewayUnavailable is raised with
    the lease released, for the caller to retry (the client finds a charge it made by our id).
    """
    claim = books.transaction(
        lambda session: claim_card_charge(session, charge_id, books.clock.now(), books.calendar, card_token)
    )
    if isinstance(claim, CardResult):
        return claim
    try:
        payment = gateway.charge_card(claim)
    except CardDeclined as declined:
        decline = Decline(declined.hard, declined.reason, declined.description)
        return books.transaction(lambda session: _fail(session, lock_charge(session, charge_id), decline, _now(books)))
    except GatewayRejected as rejected:
        refusal = Decline(False, "gateway_rejected", str(rejected))
        failed = books.transaction(
            lambda session: _fail(session, lock_charge(session, charge_id), refusal, _now(books))
        )
        return CardResult(charge_id, "rejected", failed.status, refusal)
    except BaseException:
        books.transaction(lambda session: release_lease(session, charge_id))
        raise
    return books.transaction(lambda session: record_gateway_answer(session, charge_id, payment, _now(books)))


def _now(books: Books) -> datetime:
    return books.clock.now()


# -- one PIX or boleto charge ----------------------------------------------------------------------------


def claim_manual_charge(
    session: Session, charge_id: str, now: datetime, calendar: BillingCalendar
) -> ManualCharge | str:
    """Lock a pending PIX or boleto charge still without codes and take its lease; or say why not now.

    No gateway customer yet leaves it pending: the hourly pass tries again (the account may get one).
    """
    charge = lock_charge(session, charge_id)
    if charge.method not in MANUAL_METHODS:
        return "not_a_manual_charge"
    if charge.status != ChargeStatus.PENDING:
        return "not_pending"
    if has_codes(charge.details):
        return "already_issued"
    if leased(charge, now):
        return "in_flight"
    invoices = _charge_invoices(session, charge)
    if any(invoice.status not in UNPAID for invoice in invoices):
        charge.status = ChargeStatus.CANCELED.value
        charge.details = {**charge.details, "canceled": "nothing_to_charge", "gateway_cancel_owed": was_sent(charge)}
        return "nothing_to_charge"
    account = session.get(Account, charge.account_id)
    if account is None or not account.gateway_customer_id:
        return "no_gateway_customer"
    take_lease(charge, now)
    return ManualCharge(
        charge_id=charge.id,
        customer_id=account.gateway_customer_id,
        amount_cents=charge.amount_cents,
        due_date=max(calendar.local_date(now), min(invoice.due_date for invoice in invoices)),
        method="pix" if charge.method == PaymentMethod.PIX else "boleto",
        description=_description(invoices),
    )


def manual_codes(code: PixCode | BoletoCode, invoice_url: str | None) -> dict[str, Any]:
    """The codes a customer pays with, as `Charge.details` keeps them (emails, portal and checkout read them)."""
    if isinstance(code, PixCode):
        return {"pix_code": code.payload, "pix_qr": code.encoded_image, "pix_expires_at": code.expiration}
    return {
        "boleto_line": code.identification_field,
        "boleto_url": code.bank_slip_url or invoice_url,
        "boleto_bar_code": code.bar_code,
    }


def record_manual_answer(
    session: Session, charge_id: str, payment: GatewayPayment, code: PixCode | BoletoCode, now: datetime
) -> str:
    """Keep the codes and the gateway's payment on the charge (settling it if it was paid meanwhile).

    A charge canceled while it was being created (a checkout superseded it, its invoice was paid) is
    owed a cancel at the gateway, so its codes can no longer be paid.
    """
    charge = lock_charge(session, charge_id)
    charge.details = {**charge.details, **manual_codes(code, payment.invoice_url)}
    outcome = record_gateway_answer(session, charge_id, payment, now).outcome
    if charge.status == ChargeStatus.CANCELED and payment.state in ("pending", "overdue"):
        charge.details = {**charge.details, "gateway_cancel_owed": True}
        return "canceled_meanwhile"
    return "issued" if outcome == "awaiting_gateway" else outcome


def send_manual_charge(books: Books, gateway: Gateway, claim: ManualCharge) -> str:
    """Create (or find again, by our id) a claimed PIX or boleto payment at the gateway and record it.

    GatewayRejected fails the charge and is raised; anything else releases the lease and is raised.
    """
    charge_id = claim.charge_id
    try:
        payment, code = gateway.create_manual_charge(claim)
    except GatewayRejected as rejected:
        refusal = Decline(False, "gateway_rejected", str(rejected))
        books.transaction(lambda session: _fail(session, lock_charge(session, charge_id), refusal, _now(books)))
        raise
    except BaseException:
        books.transaction(lambda session: release_lease(session, charge_id))
        raise
    return books.transaction(lambda session: record_manual_answer(session, charge_id, payment, code, _now(books)))


def issue_manual_charge(books: Books, gateway: Gateway, charge_id: str) -> str:
    """Give a pending PIX or boleto charge its codes at the gateway, once. Safe to run twice.

    Outcomes: issued, already_issued, settled (paid meanwhile), canceled_meanwhile, rejected,
    in_flight, not_pending, nothing_to_charge, no_gateway_customer. GatewayUnavailable is raised for
    the caller to retry (the Asaas client finds a payment it made by our id, so it is made once).
    """
    claim = books.transaction(lambda session: claim_manual_charge(session, charge_id, _now(books), books.calendar))
    if isinstance(claim, str):
        return claim
    try:
        return send_manual_charge(books, gateway, claim)
    except GatewayRejected as rejected:
        log.warning("manual charge %s refused by the gateway: %s", charge_id, rejected)
        return "rejected"


# -- asking the gateway again -----------------------------------------------------------------------------


@dataclass
class RecheckPlan:
    requeue: list[str]
    """Auto-debit charges never sent: their job was lost (a broker outage). Queued again."""
    ask: list[str]
    """Charges the gateway holds, or may hold: asked what became of them."""
    issue: list[str] = field(default_factory=list)
    """PIX and boleto charges of issued invoices still without codes (job lost, gateway down): issued again."""


def charges_to_recheck(session: Session, now: datetime) -> RecheckPlan:
    """Charges still pending an hour after they were made, each at most once an hour (rule 3.8).

    A missed webhook never leaves a paying customer blocked: the gateway is asked, and a paid charge
    settles. Rows another transaction holds are skipped (the next pass sees them).
    """
    rows = session.execute(
        select(Charge.id, Charge.details, Charge.gateway_payment_id).where(
            Charge.status == ChargeStatus.PENDING.value,
            Charge.created_at <= now - RECHECK_AFTER,
            Charge.created_at >= now - RECHECK_FOR,
        )
    ).all()
    due: list[tuple[datetime, str]] = []
    for row in rows:
        details = row.details or {}
        last = _instant(details.get("rechecked_at")) or _instant(details.get("sent_at"))
        until = _instant(details.get("lease_until"))
        if (until is None or until <= now) and (last is None or last <= now - RECHECK_AFTER):
            due.append((last or datetime.min.replace(tzinfo=now.tzinfo), row.id))
    chosen = [charge_id for _, charge_id in sorted(due)[:RECHECK_BATCH]]
    plan = RecheckPlan([], [])
    if not chosen:
        return plan
    for charge in session.scalars(
        select(Charge)
        .where(Charge.id.in_(chosen), Charge.status == ChargeStatus.PENDING.value)
        .order_by(Charge.id)
        .with_for_update(skip_locked=True)
    ):
        source = charge.details.get("source")
        if source == MANUAL and not has_codes(charge.details):
            target = plan.issue
        elif was_sent(charge):
            target = plan.ask
        elif source == AUTO_DEBIT:
            target = plan.requeue
        else:
            continue  # a checkout charge is sent in its own request; one never sent has nothing to ask
        charge.details = {**charge.details, "rechecked_at": now.isoformat()}
        target.append(charge.id)
    return plan


def recheck_charge(books: Books, gateway: Gateway, charge_id: str) -> str:
    """Ask the gateway about one pending charge and put its answer in the books."""

    def read(session: Session) -> Charge | None:
        return session.get(Charge, charge_id)

    charge = books.read(read)
    if charge is None or charge.status != ChargeStatus.PENDING:
        return "not_pending"
    if leased(charge, books.clock.now()):
        return "in_flight"
    if charge.details.get("source") == MANUAL and not has_codes(charge.details):
        return issue_manual_charge(books, gateway, charge_id)
    if not was_sent(charge):
        return make_card_charge(books, gateway, charge_id).outcome if charge.method == "card" else "never_sent"
    try:
        payment = (
            gateway.get_payment(charge.gateway_payment_id)
            if charge.gateway_payment_id
            else gateway.find_by_reference(charge_id)
        )
    except PaymentNotFound:
        payment = None
    if payment is not None:
        answer = books.transaction(
            lambda session: record_gateway_answer(session, charge_id, payment, _now(books), release=False)
        )
        return answer.outcome
    if charge.method == "card" and charge.details.get("source") == AUTO_DEBIT:
        # The gateway never got it (every try failed before reaching it): try again.
        return make_card_charge(books, gateway, charge_id).outcome
    books.transaction(lambda session: record_failure(session, charge_id, "not_at_gateway", _now(books)))
    return "not_at_gateway"


# -- refunds owed -------------------------------------------------------------------------------------------


def _claims(details: dict[str, Any]) -> dict[str, Any]:
    claims = details.get("refund_claims")
    return dict(claims) if isinstance(claims, dict) else {}


def _claimed(details: dict[str, Any], refund_id: str, now: datetime) -> bool:
    claim = _claims(details).get(refund_id)
    until = _instant(claim.get("until")) if isinstance(claim, dict) else None
    return until is not None and until > now


def owed_refunds(session: Session, now: datetime) -> list[str]:
    """Refunds regua decided and has not sent, that the port can send (Asaas payments, one installment)."""
    rows = session.execute(
        select(Refund.id, Charge.details, Charge.installments)
        .join(Payment, Payment.id == Refund.payment_id)
        .join(Charge, Charge.id == Payment.charge_id)
        .where(Refund.status == RefundStatus.OWED.value, Payment.gateway == "asaas")
        .order_by(Refund.created_at)
    ).all()
    # An installment plan's later installments look like duplicates until the webhook path folds them
    # into the plan: they are left owed, for ops, never given back automatically.
    return [row.id for row in rows if row.installments == 1 and not _claimed(row.details or {}, row.id, now)]


@dataclass(frozen=True)
class _RefundClaim:
    charge_id: str
    gateway: str
    gateway_payment_id: str
    amount_cents: int
    whole: bool


def _set_claim(charge: Charge, refund_id: str, until: datetime, **fields: Any) -> None:
    claims = _claims(charge.details)
    claims[refund_id] = {"until": until.isoformat(), **fields}
    charge.details = {**charge.details, "refund_claims": claims}


def _claim_refund(session: Session, refund_id: str, now: datetime) -> _RefundClaim | None:
    charge_id = session.scalar(
        select(Payment.charge_id).join(Refund, Refund.payment_id == Payment.id).where(Refund.id == refund_id)
    )
    if charge_id is None:
        return None
    charge = lock_charge(session, charge_id)
    refund = session.get(Refund, refund_id)
    assert refund is not None
    payment = session.get(Payment, refund.payment_id)
    assert payment is not None
    if refund.status != RefundStatus.OWED or _claimed(charge.details, refund_id, now):
        return None
    _set_claim(charge, refund_id, now + REFUND_CLAIM)
    return _RefundClaim(
        charge.id,
        payment.gateway,
        payment.gateway_payment_id,
        refund.amount_cents,
        refund.amount_cents >= payment.amount_cents,
    )


def _refunded_cents(payment: GatewayPayment) -> int:
    """What the gateway lists as given back (the sum the Asaas webhook path reads too)."""
    refunds = payment.raw.get("refunds")
    if not isinstance(refunds, list):
        return 0
    return sum(_cents(item.get("value")) for item in refunds if isinstance(item, dict))


def _cents(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float | str | Decimal):
        return 0
    try:
        return parse_decimal(format(Decimal(str(value)), "f"))
    except (InvalidOperation, ValueError):
        return 0


def send_refund(books: Books, gateway: Gateway, refund_id: str) -> str:
    """Give an owed refund back through the gateway, once; recorded done as soon as the gateway says so.

    The payment is fetched first, so a refund whose answer was lost is recorded, not sent again. Its
    id at the gateway is the one the Asaas webhook path derives (`<payment>:full` or
    `<payment>:<cents refunded>`), so the PAYMENT_REFUNDED webhook that follows finds it recorded.
    """
    claim = books.transaction(lambda session: _claim_refund(session, refund_id, _now(books)))
    if claim is None:
        return "not_owed"
    try:
        current = gateway.get_payment(claim.gateway_payment_id)
        if current.state == "paid" and _refunded_cents(current) < claim.amount_cents:
            amount = None if claim.whole else claim.amount_cents
            answer = gateway.refund(claim.gateway_payment_id, amount, description="Pagamento em duplicidade")
            current = _after_refund(current, answer.status, answer.raw)
    except GatewayRejected as rejected:
        why = str(rejected)
        books.transaction(lambda session: _hold_claim(session, claim.charge_id, refund_id, _now(books), why))
        return "rejected"
    if current.state == "refunded" or _refunded_cents(current) >= claim.amount_cents:
        gateway_refund_id = (
            f"{current.id}:full" if current.state == "refunded" else f"{current.id}:{_refunded_cents(current)}"
        )
        books.transaction(
            lambda session: record_refund(
                session,
                claim.charge_id,
                claim.gateway,
                claim.gateway_payment_id,
                gateway_refund_id,
                claim.amount_cents,
                _now(books),
                _now(books),
            )
        )
        return "refunded"
    # Asked for, not done yet (REFUND_REQUESTED, or a payment not captured): the webhook or a later pass.
    books.transaction(lambda session: _hold_claim(session, claim.charge_id, refund_id, _now(books), current.status))
    return "requested"


def _after_refund(before: GatewayPayment, status: str, raw: Any) -> GatewayPayment:
    return replace(before, status=status, raw=dict(raw) if raw else before.raw)


def _hold_claim(session: Session, charge_id: str, refund_id: str, now: datetime, why: str) -> None:
    _set_claim(lock_charge(session, charge_id), refund_id, now + REFUND_WAIT, last=why[:200])


# -- cancels owed -------------------------------------------------------------------------------------------


def owed_gateway_cancels(session: Session) -> list[str]:
    """Charges canceled in the books (another charge paid their invoices) still to cancel at the gateway."""
    return list(
        session.scalars(
            select(Charge.id).where(
                Charge.status == ChargeStatus.CANCELED.value,
                Charge.details["gateway_cancel_owed"].as_boolean() == true(),
            )
        )
    )


def cancel_at_gateway(books: Books, gateway: Gateway, charge_id: str) -> str:
    """Cancel a superseded charge at its gateway so it can no longer be paid; then it is owed no more.

    Too late (the customer paid it meanwhile) is an answer too: that payment arrives as a duplicate
    and is refunded.
    """
    charge = books.read(lambda session: session.get(Charge, charge_id))
    if charge is None or charge.status != ChargeStatus.CANCELED or not charge.details.get("gateway_cancel_owed"):
        return "not_owed"
    if charge.gateway != "asaas":
        result = "not_supported"
    elif not was_sent(charge):
        result = "never_sent"
    else:
        result = "canceled"
        try:
            payment_id = charge.gateway_payment_id
            if payment_id is None:
                found = gateway.find_by_reference(charge_id)
                payment_id = found.id if found is not None else None
            if payment_id is None:
                result = "not_at_gateway"
            else:
                gateway.cancel(payment_id)
        except PaymentNotFound:
            result = "not_at_gateway"
        except GatewayRejected as rejected:
            result = f"refused: {rejected}"[:200]

    def settle_cancel(session: Session) -> None:
        locked = lock_charge(session, charge_id)
        locked.details = {
            **locked.details,
            "gateway_cancel_owed": False,
            "gateway_cancel": result,
            "gateway_canceled_at": _now(books).isoformat(),
        }

    books.transaction(settle_cancel)
    return result


def run_follow_ups(books: Books, gateway: Gateway) -> Counter[str]:
    """Send every owed refund and cancel every superseded charge at the gateway; each safe to repeat."""
    counts: Counter[str] = Counter()
    refunds = books.read(lambda session: owed_refunds(session, _now(books)))
    cancels = books.read(owed_gateway_cancels)
    for refund_id in refunds:
        try:
            counts[f"refund_{send_refund(books, gateway, refund_id)}"] += 1
        except Exception as error:
            log.warning("refund %s not sent: %s: %s", refund_id, type(error).__name__, error)
            counts["refund_error"] += 1
    for charge_id in cancels:
        try:
            counts[f"cancel_{cancel_at_gateway(books, gateway, charge_id)}"] += 1
        except Exception as error:
            log.warning("charge %s not canceled at the gateway: %s: %s", charge_id, type(error).__name__, error)
            counts["cancel_error"] += 1
    return counts
