"""`regua check` names each corruption of lived-in books, and only the invariant that corruption breaks.

Books are built through the real services (the API, the webhooks and their jobs, the tick); one thing
is then changed with SQL, as a bug or a hand edit would leave it, and the check must name exactly the
invariant that rules it out. Expected figures (the discount, the pro rata price, the block instant) are
computed here from the SPEC's rule text.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from fractions import Fraction
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session
from starlette.testclient import TestClient

from billing.clock import FrozenClock, parse_instant
from billing.models import (
    Block,
    Charge,
    ChargeInvoice,
    Invoice,
    Notification,
    Payment,
    Refund,
    new_id,
)
from regua.cli import main, tick_once
from regua.runtime import Runtime
from regua.settings import Settings
from tests.integration.conftest import AUTH, Api
from tests.integration.test_check import ACCOUNT, books, names  # noqa: F401  (fixtures)
from tests.integration.test_webhook_settlement import (  # noqa: F401  (fixtures)
    blocked_invoice,
    charge_for,
    deliver_standard,
    settle_jobs,
)
from workers.actors import Jobs

SAO_PAULO = ZoneInfo("America/Sao_Paulo")
PRICE = 19990


def half_up(value: Fraction) -> int:
    """The SPEC's one rounding rule, to the centavo: halves go up."""
    return int(value + Fraction(1, 2))


def invoice_of(session: Session, product: str, account: str = ACCOUNT) -> Invoice:
    return session.scalars(
        select(Invoice).where(Invoice.account_id == account, Invoice.product == product).order_by(Invoice.period_start)
    ).first() or pytest.fail(f"no {product} invoice")


def payment(session: Session, gateway_payment_id: str) -> Payment:
    return session.scalars(select(Payment).where(Payment.gateway_payment_id == gateway_payment_id)).one()


def manual_charge(session: Session, invoice: Invoice) -> Charge:
    """The PIX or boleto charge the tick opened with the invoice (rule 3.3)."""
    return session.scalars(
        select(Charge)
        .join(ChargeInvoice, ChargeInvoice.charge_id == Charge.id)
        .where(ChargeInvoice.invoice_id == invoice.id, Charge.source == "manual")
    ).one()


def duplicate_refund(session: Session) -> Refund:
    return session.scalars(select(Refund).where(Refund.payment_id == payment(session, "gw_2").id)).one()


# -- corruptions of the lived-in books: December's platform paid twice (gw_1 pays it, gw_2 is a duplicate
#    owed back), the manual boleto charge superseded, the mentorship of December open and blocked.


def _invoice_names_another_charge(session: Session) -> None:
    december = invoice_of(session, "platform")
    december.charge_id = manual_charge(session, december).id


def _paid_invoice_loses_its_instant(session: Session) -> None:
    invoice_of(session, "platform").paid_at = None


def _four_percent_discount(session: Session) -> None:
    mentorship = invoice_of(session, "mentorship")
    four_percent = half_up(Fraction(mentorship.subtotal_cents * 4, 100))
    mentorship.payment_method, mentorship.discount_cents = "card_auto_debit", four_percent
    mentorship.total_cents = mentorship.subtotal_cents - four_percent


def _discount_rounded_down(session: Session) -> None:
    mentorship = invoice_of(session, "mentorship")
    # 5% of R$ 199,90 is R$ 9,995: half up, R$ 10,00; rounding down leaves it a centavo short.
    assert half_up(Fraction(mentorship.subtotal_cents * 5, 100)) == 1000
    mentorship.payment_method, mentorship.discount_cents, mentorship.total_cents = "card_auto_debit", 999, 18991


def _total_not_subtotal_less_discount(session: Session) -> None:
    invoice_of(session, "mentorship").total_cents -= 1


def _price_of_another_plan(session: Session) -> None:
    mentorship = invoice_of(session, "mentorship")
    mentorship.subtotal_cents = mentorship.total_cents = PRICE - 1000


def _duplicate_relabelled_confirmed(session: Session) -> None:
    payment(session, "gw_2").status = "confirmed"


def _payment_amount_changed(session: Session) -> None:
    payment(session, "gw_1").amount_cents += 1000


def _second_card_capture_kept_for_another_month(session: Session) -> None:
    """December's platform captured on two cards; the second capture kept, as the mentorship's payment."""
    platform, mentorship = invoice_of(session, "platform"), invoice_of(session, "mentorship")
    second, boleto = payment(session, "gw_2"), manual_charge(session, platform)
    manual_charge(session, mentorship).status = "canceled"
    session.delete(duplicate_refund(session))
    session.execute(update(Charge).where(Charge.id.in_([platform.charge_id, boleto.id])).values(method="card"))
    boleto.status, boleto.gateway_cancel_owed = "confirmed", False
    session.add(ChargeInvoice(charge_id=boleto.id, invoice_id=mentorship.id))
    second.charge_id, second.status, second.invoice_ids = boleto.id, "confirmed", [mentorship.id]
    mentorship.status, mentorship.paid_at = "paid", second.paid_at
    mentorship.charge_id, mentorship.payment_id = boleto.id, second.id
    session.execute(
        update(Block).where(Block.product == "mentorship").values(lifted_at=second.paid_at, lift_reason="paid")
    )


def _mail_sent_twice(session: Session) -> None:
    first = session.scalars(select(Notification).order_by(Notification.created_at, Notification.id)).first()
    assert first is not None
    first.status = "sent"
    session.add(
        Notification(
            id=new_id("ntf"),
            dedupe_key=first.dedupe_key + ":again",
            account_id=first.account_id,
            invoice_id=first.invoice_id,
            kind=first.kind,
            step=first.step,
            recipients=first.recipients,
            context=first.context,
            status="sent",
            created_at=first.created_at,
        )
    )


def _gateway_refund_left_owed(session: Session) -> None:
    duplicate_refund(session).reason = "gateway"


def _refund_done_by_nobody(session: Session) -> None:
    refund = duplicate_refund(session)
    refund.status, refund.refunded_at = "done", refund.created_at
    assert (refund.gateway_refund_id, refund.done_by) == (None, None)


def _superseded_charge_confirmed(session: Session) -> None:
    manual_charge(session, invoice_of(session, "platform")).status = "confirmed"


def _superseded_charge_left_open(session: Session) -> None:
    boleto = manual_charge(session, invoice_of(session, "platform"))
    boleto.status, boleto.gateway_cancel_owed = "pending", False


def _blocks_lifted_by_hand(session: Session) -> None:
    session.execute(update(Block).values(lifted_at=Block.started_at, lift_reason="paid"))


def _paid_block_put_back(session: Session) -> None:
    session.execute(update(Block).where(Block.product == "platform").values(lifted_at=None, lift_reason=None))


def _block_moved_to_day_8(session: Session) -> None:
    invoice_of(session, "mentorship").block_at += timedelta(days=1)


CORRUPTIONS: dict[str, tuple[Callable[[Session], None], set[str]]] = {
    "an invoice names a charge that did not pay it": (_invoice_names_another_charge, {"paid_invoice_without_payment"}),
    "a paid invoice without its paid_at": (_paid_invoice_loses_its_instant, {"paid_invoice_without_paid_at"}),
    "a 4% auto-debit discount": (_four_percent_discount, {"wrong_discount_or_total"}),
    "a discount rounded down": (_discount_rounded_down, {"wrong_discount_or_total"}),
    "a total that is not subtotal less discount": (_total_not_subtotal_less_discount, {"wrong_discount_or_total"}),
    "an invoice at another price": (_price_of_another_plan, {"invoice_not_at_its_subscription_price"}),
    "a duplicate relabelled confirmed": (_duplicate_relabelled_confirmed, {"payment_paying_nothing"}),
    "a payment's amount changed": (_payment_amount_changed, {"account_books_do_not_add_up"}),
    "a second card capture kept": (_second_card_capture_kept_for_another_month, {"card_captured_twice_for_an_invoice"}),
    "a mail sent twice": (_mail_sent_twice, {"email_sent_twice"}),
    "a gateway refund left owed": (_gateway_refund_left_owed, {"gateway_refund_not_made"}),
    "a refund done by nobody": (_refund_done_by_nobody, {"refund_done_by_nobody"}),
    "a superseded charge confirmed without payment": (
        _superseded_charge_confirmed,
        {"confirmed_charge_without_payment"},
    ),
    "a superseded charge left payable": (_superseded_charge_left_open, {"pending_charge_on_a_paid_invoice"}),
    "blocks lifted by hand": (_blocks_lifted_by_hand, {"block_against_the_rules"}),
    "a paid platform's block put back": (_paid_block_put_back, {"block_against_the_rules"}),
    "a block moved to day 8": (_block_moved_to_day_8, {"block_against_the_rules"}),
}


@pytest.mark.parametrize("corruption", sorted(CORRUPTIONS))
def test_each_corruption_is_named_by_exactly_its_invariant(runtime: Runtime, books: str, corruption: str) -> None:  # noqa: F811
    corrupt, expected = CORRUPTIONS[corruption]
    assert names(runtime) == set()
    runtime.transaction(corrupt)
    assert names(runtime) == expected


def test_a_charge_whose_gateway_cancel_is_owed_is_not_left_payable(runtime: Runtime, books: str) -> None:  # noqa: F811
    def being_canceled(session: Session) -> None:
        boleto = manual_charge(session, invoice_of(session, "platform"))
        boleto.status, boleto.gateway_cancel_owed = "pending", True

    runtime.transaction(being_canceled)
    assert names(runtime) == set()
    runtime.transaction(_superseded_charge_left_open)
    assert names(runtime) == {"pending_charge_on_a_paid_invoice"}


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


def test_the_command_names_a_new_invariant_and_exits_one(
    runtime: Runtime,
    settings: Settings,
    books: str,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("REGUA_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("REGUA_ENV", "test")
    monkeypatch.setenv("REGUA_NOW", runtime.clock.now().isoformat())
    runtime.transaction(_paid_invoice_loses_its_instant)
    december = runtime.read(lambda session: invoice_of(session, "platform").id)
    assert main(["check"]) == 1
    out = capsys.readouterr().out
    assert f"paid_invoice_without_paid_at: invoice={december}" in out
    assert "broken: paid_invoice_without_paid_at=1" in out


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
