"""The tick issues and plans in pages, a transaction each, so day 1 at a million subscriptions never sits in memory
at once: every subscription of every page is invoiced once and charged once, and a second pass the same day reads no
subscription at all."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select, text

from billing import invoicing
from billing.charging import manual_plan, planning
from billing.charging.manual_plan import plan_manual_charges
from billing.charging.planning import plan_auto_debits
from billing.clock import FrozenClock
from billing.invoicing import issue_in_pages, issue_page
from billing.models import Charge, Invoice
from regua.runtime import Runtime
from tests.integration.conftest import AUTH, Api

ACCOUNTS = [f"conta-{n}" for n in range(7)]


@pytest.fixture
def small_pages(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(invoicing, "PAGE", 2)
    monkeypatch.setattr(planning, "PAGE", 3)
    monkeypatch.setattr(manual_plan, "PAGE", 2)


def test_pages_issue_and_charge_every_subscription_once_and_a_second_pass_reads_none(
    small_pages: None, api: Api, runtime: Runtime, clock: FrozenClock
) -> None:
    for account in ACCOUNTS:
        api.put_account(account)
        api.subscribe(account, "platform", payment_method="card_auto_debit", card_token="tok_ok")
    api.subscribe(ACCOUNTS[0], "mentorship", payment_method="card_auto_debit", card_token="tok_ok")
    now = clock.now()

    assert issue_in_pages(runtime.sessions, now, runtime.calendar) == (8, 0)
    assert issue_in_pages(runtime.sessions, now, runtime.calendar) == (0, 0)
    nothing = runtime.read(lambda session: issue_page(session, now, runtime.calendar, ""))
    assert (nothing.invoice_ids, nothing.last_subscription_id) == ([], None), "invoiced through today: none read"
    invoices = runtime.read(lambda session: list(session.scalars(select(Invoice.account_id))))
    assert sorted(invoices) == sorted([*ACCOUNTS, ACCOUNTS[0]])

    batches: list[list[str]] = []
    started = runtime.transaction(
        lambda session: plan_auto_debits(session, now, runtime.calendar, runtime.policy, on_batch=batches.append)
    )
    assert len(set(started)) == len(started) == 8
    assert sorted(charge_id for batch in batches for charge_id in batch) == sorted(started)
    again = runtime.transaction(lambda session: plan_auto_debits(session, now, runtime.calendar, runtime.policy))
    assert again == []
    charged = runtime.read(lambda session: sorted(session.scalars(select(Charge.account_id))))
    assert charged == sorted([*ACCOUNTS, ACCOUNTS[0]])


def test_pages_open_one_pix_or_boleto_charge_per_invoice_and_a_second_pass_none(
    small_pages: None, api: Api, runtime: Runtime, clock: FrozenClock
) -> None:
    for number, account in enumerate(ACCOUNTS):
        api.put_account(account)
        api.subscribe(account, "platform", payment_method="pix" if number % 2 else "boleto")
    now = clock.now()
    assert issue_in_pages(runtime.sessions, now, runtime.calendar) == (7, 0)
    batches: list[list[str]] = []
    started = runtime.transaction(lambda session: plan_manual_charges(session, now, on_batch=batches.append))
    assert len(set(started)) == len(started) == 7
    assert sorted(charge_id for batch in batches for charge_id in batch) == sorted(started)
    assert runtime.transaction(lambda session: plan_manual_charges(session, now)) == []
    methods = runtime.read(lambda session: sorted(session.execute(select(Charge.account_id, Charge.method)).all()))
    assert methods == [(account, "pix" if number % 2 else "boleto") for number, account in enumerate(ACCOUNTS)]


def test_a_month_later_the_pages_issue_the_next_month_and_a_canceled_subscription_none(
    small_pages: None, api: Api, runtime: Runtime, clock: FrozenClock
) -> None:
    for account in ACCOUNTS[:5]:
        api.put_account(account)
        api.subscribe(account, "platform", payment_method="pix")
    assert issue_in_pages(runtime.sessions, clock.now(), runtime.calendar) == (5, 0)
    canceled = api.client.delete(f"/api/accounts/{ACCOUNTS[2]}/subscriptions/platform", headers=AUTH)
    assert canceled.status_code in (200, 202), canceled.text
    january = clock.now() + timedelta(days=31)
    assert issue_in_pages(runtime.sessions, january, runtime.calendar) == (4, 0)
    assert issue_in_pages(runtime.sessions, january, runtime.calendar) == (0, 0)
    # the canceled one ended with December: it is invoiced through its end, and read no more
    nothing = runtime.read(lambda session: issue_page(session, january, runtime.calendar, ""))
    assert nothing.last_subscription_id is None


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_bulk_write_refreshes_the_statistics_the_next_page_is_planned_on(
    monkeypatch: pytest.MonkeyPatch, api: Api, runtime: Runtime, clock: FrozenClock
) -> None:
    """After issuing more than BULK invoices, PostgreSQL's planner knows they are there (reltuples): the planner's
    pages that follow do not nest loops over a table it believes empty (autovacuum would analyze it minutes later)."""
    monkeypatch.setattr(invoicing, "BULK", 3)
    for account in ACCOUNTS[:4]:
        api.put_account(account)
        api.subscribe(account, "platform", payment_method="pix")
    known = "SELECT reltuples FROM pg_class WHERE relname = 'invoices'"
    assert runtime.read(lambda session: session.execute(text(known)).scalar_one()) <= 0  # never analyzed
    assert issue_in_pages(runtime.sessions, clock.now(), runtime.calendar) == (4, 0)
    assert runtime.read(lambda session: session.execute(text(known)).scalar_one()) == 4
