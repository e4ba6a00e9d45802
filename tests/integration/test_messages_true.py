"""Every message true: each email regua records is rendered as it would be sent and held to `/access` at that
instant. A blocked product is never promised access ("manter o acesso", "continua liberado"), an `account_blocked`
mail lists only months still open, and every "pague até" date is the day before one of its months blocks.

The cases the issue found (a February block warned about March alone; a receipt for March told as "access stays
open" while February keeps the block) have their own tests; a seeded walk of months plays the rest.
"""

from __future__ import annotations

import random
import re
from datetime import date, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.testclient import TestClient

from billing.clock import FrozenClock, parse_instant
from billing.journal import Notification
from billing.models import Invoice
from billing.settlement import ConfirmedPayment, open_charge, settle_charge
from regua.cli import tick_once
from regua.mail import render_email
from regua.mailer import email_context
from regua.runtime import Runtime
from tests.integration.conftest import AUTH, Api

PROMISES = ("manter o acesso", "continua liberado", "continua liberada")
ASKS_FOR_MONEY = (
    "invoice_issued",
    "payment_reminder",
    "block_warning",
    "account_blocked",
    "trial_ended",
    "payment_failed",
)
ASKS_TO_PAY_NOW = ("payment_reminder", "block_warning", "account_blocked")
PAY_BY = re.compile(r"pague até (\d{2})/(\d{2})/(\d{4})", re.IGNORECASE)


def at(clock: FrozenClock, runtime: Runtime, instant: str | datetime) -> None:
    clock.set(parse_instant(instant) if isinstance(instant, str) else instant)
    tick_once(runtime)


def pay(runtime: Runtime, invoice_ids: list[str], gateway_id: str) -> None:
    now = runtime.clock.now()

    def work(session: Session) -> None:
        charge = open_charge(session, invoice_ids, "pix", now, gateway="standard")
        payment = ConfirmedPayment("standard", gateway_id, charge.amount_cents, "pix", now)
        settle_charge(session, charge.id, payment, now)

    runtime.transaction(work)


def told(runtime: Runtime, since: datetime) -> list[Notification]:
    return runtime.read(
        lambda session: list(
            session.scalars(
                select(Notification).where(Notification.created_at >= since).order_by(Notification.created_at)
            )
        )
    )


def text_of(notification: Notification) -> str:
    rendered = render_email(
        email_context(notification.kind, notification.account_id, notification.context, "https://portal.test/x")
    )
    return f"{rendered.subject}\n{rendered.text}"


def check_message(api: Api, runtime: Runtime, notification: Notification) -> None:
    """What the mail claims against `/access` and the books at the instant it was recorded (now)."""
    text = text_of(notification)
    lines = notification.context.get("invoices", [])
    products = {line["product"] for line in lines}
    access = api.get(f"/api/accounts/{notification.account_id}/access")["products"]
    for product in products:
        if access[product]["state"] == "blocked":
            assert not any(promise in text for promise in PROMISES), (notification.kind, product, text)
    if notification.kind in ASKS_TO_PAY_NOW:  # the months it asks for are what the page and /access ask for now
        asked = [line["invoice_id"] for line in lines]
        owed = [invoice for product in products for invoice in access[product]["owed_now"]]
        assert set(asked) <= set(owed), (notification.kind, asked, owed)
        if notification.kind == "account_blocked":
            assert asked == owed, (asked, owed)  # the whole of it: what to pay to be unblocked
    if notification.kind in ASKS_FOR_MONEY:  # every month it asks for is one the page still lists as to pay
        statuses = runtime.read(
            lambda session: {
                invoice.id: invoice.status
                for invoice in session.scalars(
                    select(Invoice).where(Invoice.id.in_([line["invoice_id"] for line in lines]))
                )
            }
        )
        assert set(statuses.values()) <= {"open", "verifying"}, (notification.kind, statuses)
    block_days = {date.fromisoformat(line["due_date"]) + timedelta(days=6) for line in lines}
    for day, month, year in PAY_BY.findall(text):
        last_day = date(int(year), int(month), int(day))
        assert last_day + timedelta(days=1) in block_days, (notification.kind, last_day, text)


def test_a_month_blocked_is_told_its_real_state_not_the_next_months_warning(
    api: Api, runtime: Runtime, clock: FrozenClock
) -> None:
    api.put_account("padaria-central")
    api.subscribe("padaria-central", "platform", payment_method="boleto", starts_on="2027-02-01")
    at(clock, runtime, "2027-02-01T00:05:00-03:00")
    at(clock, runtime, "2027-02-07T00:05:00-03:00")
    at(clock, runtime, "2027-03-01T00:05:00-03:00")
    march_5 = parse_instant("2027-03-05T00:05:00-03:00")
    at(clock, runtime, march_5)
    notes = told(runtime, march_5)
    assert [note.kind for note in notes] == ["account_blocked"]
    [february] = [i for i in api.invoices("padaria-central") if i["period_start"] == "2027-02-01"]
    assert [line["invoice_id"] for line in notes[0].context["invoices"]] == [february["id"]]
    text = text_of(notes[0])
    assert "bloqueado em 07/02/2027" in text
    assert not any(promise in text for promise in PROMISES)
    check_message(api, runtime, notes[0])


def test_a_receipt_for_a_newer_month_while_an_older_one_blocks_never_says_access_is_open(
    api: Api, client: TestClient, runtime: Runtime, clock: FrozenClock
) -> None:
    api.put_account("padaria-central")
    api.subscribe("padaria-central", "platform", payment_method="boleto", starts_on="2027-02-01")
    at(clock, runtime, "2027-02-01T00:05:00-03:00")
    at(clock, runtime, "2027-02-07T00:05:00-03:00")
    at(clock, runtime, "2027-03-01T00:05:00-03:00")
    clock.set(parse_instant("2027-03-05T10:00:00-03:00"))
    [march] = [i for i in api.invoices("padaria-central") if i["period_start"] == "2027-03-01"]
    assert client.post(f"/api/invoices/{march['id']}/receipts", headers=AUTH).status_code == 200
    # Told at once, not at the next pass (no tick in between).
    [pending] = [note for note in told(runtime, clock.now()) if note.kind == "verification_pending"]
    text = text_of(pending)
    assert "continua bloqueado desde 07/02/2027" in text
    assert "continua liberado" not in text
    assert api.access("padaria-central", "platform")["state"] == "blocked"


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_months_of_random_payments_never_send_a_message_the_access_contradicts(
    api: Api, client: TestClient, runtime: Runtime, clock: FrozenClock
) -> None:
    chance = random.Random(20270201)
    accounts = {
        "boleto-late": ("platform", "boleto"),
        "pix-mentoria": ("mentorship", "pix"),
        "pix-platform": ("platform", "pix"),
        "boleto-mentoria": ("mentorship", "boleto"),
    }
    for account, (product, method) in accounts.items():
        api.put_account(account)
        api.subscribe(account, product, payment_method=method, starts_on="2027-01-01")
    day = parse_instant("2027-01-01T00:05:00-03:00")
    checked = paid = 0
    while day < parse_instant("2027-04-01T00:05:00-03:00"):
        at(clock, runtime, day)  # the pass tells what happened since the last one, at this instant
        for note in told(runtime, day):
            check_message(api, runtime, note)
            checked += 1
        clock.set(day + timedelta(hours=10))
        for account in accounts:
            open_ids = [i["id"] for i in api.invoices(account) if i["status"] in ("open", "verifying")]
            roll = chance.random()
            if open_ids and roll < 0.06:
                paid += 1
                pay(runtime, open_ids[-1:] if roll < 0.02 else open_ids, f"gw_{account}_{paid}")
            elif open_ids and (roll < 0.08 or (account == "pix-mentoria" and clock.now().day == 4)):
                client.post(f"/api/invoices/{open_ids[0]}/receipts", headers=AUTH)
        day += timedelta(days=1)
    assert checked > 30, checked  # the walk reached blocks, warnings, verifications and payments
    kinds = {note.kind for note in told(runtime, parse_instant("2027-01-01T00:00:00-03:00"))}
    assert {"account_blocked", "block_warning", "payment_reminder", "verification_pending"} <= kinds, kinds
