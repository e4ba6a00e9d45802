"""`regua check` names each corruption of lived-in books, and only the invariant that corruption breaks.

Books are built through the real services (the API, the webhooks and their jobs, the tick); one thing
is then changed with SQL, as a bug or a hand edit would leave it, and the check must name exactly the
invariant that rules it out. Expected figures are computed here from the SPEC's rule text. Books that
must first move on (into January, past a verification window, through a plan change) are in
test_check_scenarios.py.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from fractions import Fraction
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from billing.journal import Notification
from billing.models import Block, Charge, ChargeInvoice, Invoice, Payment, Refund, new_id
from regua.cli import main
from regua.runtime import Runtime
from regua.settings import Settings
from tests.integration.test_check import ACCOUNT, books, names  # noqa: F401  (fixtures)
from tests.integration.test_webhook_settlement import blocked_invoice  # noqa: F401  (fixtures)

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
