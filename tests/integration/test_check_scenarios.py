"""`regua check` held to the SPEC's rules on books that moved on: a mentorship into January, a verification's
window, a prepaid quarter, a trial, an upgrade, a cancellation. Each starts clean, is then broken with SQL,
and must be named by exactly the invariant that rules it out; expected amounts come from the rule's text.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from fractions import Fraction

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session
from starlette.testclient import TestClient

from billing.clock import FrozenClock, parse_instant
from billing.models import Block, Invoice, new_id
from regua.cli import tick_once
from regua.runtime import Runtime
from tests.integration.conftest import AUTH, Api
from tests.integration.test_check import ACCOUNT, books, names  # noqa: F401  (fixtures)
from tests.integration.test_check_corruptions import PRICE, SAO_PAULO, half_up, invoice_of
from tests.integration.test_webhook_settlement import (  # noqa: F401  (fixtures)
    blocked_invoice,
    charge_for,
    deliver_standard,
    settle_jobs,
)
from workers.actors import Jobs


def test_a_mentorship_freed_while_january_is_unpaid_is_named(
    client: TestClient,
    runtime: Runtime,
    clock: FrozenClock,
    jobs: Jobs,
    books: str,  # noqa: F811
) -> None:
    """Rule 3.6: December paid in January, January open: the mentorship stays blocked until January is paid too."""
    clock.set(parse_instant("2027-01-01T00:05:00-03:00"))
    tick_once(runtime)
    december = runtime.read(lambda session: invoice_of(session, "mentorship").id)
    charge_id = charge_for(runtime, [december])
    deliver_standard(client, clock, "payment.confirmed", charge_id, "msg_mentorship", payment_id="gw_m")
    settle_jobs(jobs, runtime)
    assert (
        runtime.read(lambda session: session.scalars(select(Invoice.status).where(Invoice.id == december)).one())
        == "paid"
    )
    blocked = runtime.read(
        lambda session: session.scalars(
            select(Block.id).where(Block.product == "mentorship", Block.lifted_at.is_(None))
        ).all()
    )
    assert len(blocked) == 1
    assert names(runtime) == set()

    runtime.transaction(
        lambda session: session.execute(
            update(Block).where(Block.id == blocked[0]).values(lifted_at=clock.now(), lift_reason="paid")
        )
    )
    assert names(runtime) == {"block_against_the_rules"}


def receipt(client: TestClient, invoice_id: str) -> None:
    response = client.post(f"/api/invoices/{invoice_id}/receipts", headers=AUTH)
    assert response.status_code == 200, response.text


def test_an_invoice_still_verifying_after_its_window_is_named(
    client: TestClient,
    runtime: Runtime,
    clock: FrozenClock,
    books: str,  # noqa: F811
) -> None:
    mentorship = runtime.read(lambda session: invoice_of(session, "mentorship").id)
    receipt(client, mentorship)
    clock.set(clock.now() + timedelta(minutes=5))
    tick_once(runtime)
    assert names(runtime) == set()

    last_tick = clock.now()
    runtime.transaction(
        lambda session: session.execute(
            update(Invoice).where(Invoice.id == mentorship).values(verifying_until=last_tick - timedelta(minutes=1))
        )
    )
    assert names(runtime) == {"verification_past_its_window"}


def test_a_block_lifted_by_a_verification_that_ended_and_not_put_back_is_named(
    client: TestClient,
    runtime: Runtime,
    clock: FrozenClock,
    books: str,  # noqa: F811
) -> None:
    mentorship = runtime.read(lambda session: invoice_of(session, "mentorship").id)
    receipt(client, mentorship)
    clock.set(clock.now() + timedelta(hours=73))  # the 72-hour window (rule 3.7) has ended
    tick_once(runtime)
    active = runtime.read(
        lambda session: (
            session.scalars(select(Block).where(Block.product == "mentorship", Block.lifted_at.is_(None)))
            .one()
            .invoice_ids
        )
    )
    assert active == [mentorship]
    assert names(runtime) == set()

    runtime.transaction(
        lambda session: session.execute(delete(Block).where(Block.product == "mentorship", Block.lifted_at.is_(None)))
    )
    assert names(runtime) == {"verification_past_its_window"}


def test_a_quarter_issued_a_month_early_is_named(
    api: Api,
    runtime: Runtime,
    clock: FrozenClock,
) -> None:
    """A quarterly subscription's next invoice comes on day 1 after its period ends (rule 3.2): a January-March
    issued while December-February runs invoices January and February twice."""
    api.put_account("quitanda")
    api.subscribe("quitanda", "platform", frequency="quarterly")
    tick_once(runtime)
    [quarter] = runtime.read(lambda session: list(session.scalars(select(Invoice))))
    assert (quarter.period_start, quarter.period_end, quarter.subtotal_cents) == (
        date(2026, 12, 1),
        date(2027, 2, 28),
        3 * PRICE,
    )
    assert names(runtime) == set()

    def next_quarter_a_month_early(session: Session) -> None:
        due = date(2027, 1, 1)
        session.add(
            Invoice(
                id=new_id("inv"),
                subscription_id=quarter.subscription_id,
                account_id="quitanda",
                product="platform",
                period_start=due,
                period_end=date(2027, 3, 31),
                monthly_price_cents=PRICE,
                due_date=due,
                block_at=datetime(2027, 1, 7, tzinfo=SAO_PAULO).astimezone(UTC),
                payment_method="boleto",
                subtotal_cents=3 * PRICE,
                discount_cents=0,
                total_cents=3 * PRICE,
                status="open",
                issued_at=clock.now(),
            )
        )

    runtime.transaction(next_quarter_a_month_early)
    assert names(runtime) == {"invoice_twice_for_a_month"}


def test_a_trials_first_invoice_is_held_to_its_pro_rata_price(
    api: Api,
    runtime: Runtime,
    clock: FrozenClock,
) -> None:
    """Rule 3.9: a trial ending on 10/12 is billed 22 of December's 31 days, rounded half up."""
    api.put_account("sorveteria", trial_ends_at="2026-12-10T12:00:00-03:00")
    api.subscribe("sorveteria", "platform")
    clock.set(parse_instant("2026-12-10T12:05:00-03:00"))
    tick_once(runtime)
    invoice = runtime.read(lambda session: invoice_of(session, "platform", "sorveteria"))
    assert (invoice.period_start, invoice.period_end) == (date(2026, 12, 10), date(2026, 12, 31))
    assert invoice.subtotal_cents == half_up(Fraction(PRICE * 22, 31)) == 14186
    assert names(runtime) == set()

    runtime.transaction(
        lambda session: session.execute(
            update(Invoice).where(Invoice.id == invoice.id).values(subtotal_cents=PRICE, total_cents=PRICE)
        )
    )
    assert names(runtime) == {"invoice_not_at_its_subscription_price"}


def test_a_price_changed_after_an_invoice_was_issued_leaves_that_invoice_as_issued(
    api: Api,
    runtime: Runtime,
    clock: FrozenClock,
    books: str,  # noqa: F811
) -> None:
    clock.set(clock.now() + timedelta(minutes=1))
    api.subscribe(ACCOUNT, "mentorship", payment_method="pix", starts_on="2026-12-01", monthly_price_cents=29990)
    assert runtime.read(lambda session: invoice_of(session, "mentorship").subtotal_cents) == PRICE
    assert names(runtime) == set()


def test_an_upgrades_difference_is_held_to_its_pro_rata_price(
    api: Api,
    runtime: Runtime,
    books: str,  # noqa: F811
) -> None:
    """Rule 3.10: on 9/12 the mentorship goes from R$ 199,90 to R$ 299,90 a month: the R$ 100,00 difference is
    invoiced for the 23 days left of December's 31, rounded half up."""
    api.subscribe(ACCOUNT, "mentorship", payment_method="pix", starts_on="2026-12-01", monthly_price_cents=29990)
    [upgrade] = runtime.read(lambda session: list(session.scalars(select(Invoice).where(Invoice.kind == "proration"))))
    assert (upgrade.period_start, upgrade.period_end) == (date(2026, 12, 9), date(2026, 12, 31))
    assert upgrade.subtotal_cents == half_up(Fraction(10000 * 23, 31)) == 7419
    assert names(runtime) == set()

    runtime.transaction(
        lambda session: session.execute(
            update(Invoice).where(Invoice.id == upgrade.id).values(subtotal_cents=10000, total_cents=10000)
        )
    )
    assert names(runtime) == {"proration_against_the_rule"}


def test_an_invoice_after_a_canceled_subscriptions_end_is_named(
    client: TestClient,
    runtime: Runtime,
    clock: FrozenClock,
    books: str,  # noqa: F811
) -> None:
    """Rule 3.10: canceled on 9/12, the mentorship ends with December, the period already issued."""
    response = client.delete(f"/api/accounts/{ACCOUNT}/subscriptions/mentorship", headers=AUTH)
    assert response.status_code == 200, response.text
    assert names(runtime) == set()

    def january_issued_anyway(session: Session) -> None:
        december = invoice_of(session, "mentorship")
        due = date(2027, 1, 1)
        session.add(
            Invoice(
                id=new_id("inv"),
                subscription_id=december.subscription_id,
                account_id=ACCOUNT,
                product="mentorship",
                period_start=due,
                period_end=date(2027, 1, 31),
                monthly_price_cents=PRICE,
                due_date=due,
                block_at=datetime(2027, 1, 7, tzinfo=SAO_PAULO).astimezone(UTC),
                payment_method="pix",
                subtotal_cents=PRICE,
                discount_cents=0,
                total_cents=PRICE,
                status="open",
                issued_at=clock.now(),
            )
        )

    runtime.transaction(january_issued_anyway)
    assert names(runtime) == {"invoice_after_the_end"}
