"""`regua check`: clean books say so and exit 0; each kind of corruption is named, with its ids, and exits 1."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta

import pytest
from sqlalchemy import update
from sqlalchemy.orm import Session
from starlette.testclient import TestClient

from billing.check import check_books
from billing.clock import FrozenClock
from billing.models import Block, Charge, ChargeInvoice, Invoice, Notification, Payment, Refund, new_charge_id
from regua.cli import main, tick_once
from regua.runtime import Runtime
from regua.settings import Settings
from tests.integration.conftest import Api
from tests.integration.test_webhook_settlement import (  # noqa: F401  (fixtures)
    blocked_invoice,
    charge_for,
    deliver_standard,
    rows,
    settle_jobs,
)
from workers.actors import Jobs

ACCOUNT = "padaria-central"


@pytest.fixture
def books(
    client: TestClient,
    api: Api,
    runtime: Runtime,
    clock: FrozenClock,
    jobs: Jobs,
    blocked_invoice: str,  # noqa: F811
) -> str:
    """Books a little lived in: a month paid twice (one owed back), a mentorship blocked, mails recorded."""
    api.subscribe(ACCOUNT, "mentorship", payment_method="pix", starts_on="2026-12-01")
    charge_id = charge_for(runtime, [blocked_invoice])
    deliver_standard(client, clock, "payment.confirmed", charge_id, "msg_1", payment_id="gw_1")
    deliver_standard(client, clock, "payment.confirmed", charge_id, "msg_2", payment_id="gw_2")
    settle_jobs(jobs, runtime)
    clock.set(clock.now() + timedelta(minutes=5))
    tick_once(runtime)
    return blocked_invoice


def names(runtime: Runtime) -> set[str]:
    report = runtime.read(lambda session: check_books(session, runtime.clock.now()))
    return {violation.name for violation in report.violations}


def test_lived_in_books_are_clean(runtime: Runtime, books: str) -> None:
    assert names(runtime) == set()


def _paid_twice_in_the_books(session: Session) -> None:
    invoice = session.query(Invoice).filter(Invoice.status == "paid").one()
    session.execute(update(Payment).where(Payment.status == "duplicate").values(status="confirmed"))
    session.execute(update(Refund).values(status="canceled"))
    del invoice


def _refund_forgotten(session: Session) -> None:
    session.query(Refund).delete()


def _block_lifted_by_hand(session: Session) -> None:
    session.execute(update(Block).values(lifted_at=Block.started_at, lift_reason="paid"))


def _discount_changed(session: Session) -> None:
    invoice = session.query(Invoice).filter(Invoice.product == "platform").one()
    # 5% of R$ 199,90 is R$ 9,995: half up, R$ 10,00; rounding down is a centavo short.
    invoice.payment_method, invoice.discount_cents = "card_auto_debit", 999
    invoice.total_cents = invoice.subtotal_cents - 999


def _card_captured_twice(session: Session) -> None:
    session.query(Refund).delete()  # the second capture is kept, not owed back
    invoice = session.query(Invoice).filter(Invoice.status == "paid").one()
    for payment in session.query(Payment).all():
        charge = Charge(
            id=new_charge_id(),
            account_id=ACCOUNT,
            product="platform",
            method="card",
            amount_cents=payment.amount_cents,
            idempotency_key=f"forged:{payment.id}",
            created_at=payment.paid_at,
            status="confirmed",
        )
        session.add(charge)
        session.flush()
        session.add(ChargeInvoice(charge_id=charge.id, invoice_id=invoice.id))
        payment.charge_id = charge.id


def _mail_sent_twice(session: Session) -> None:
    first = session.query(Notification).order_by(Notification.created_at).first()
    assert first is not None
    session.add(
        Notification(
            id="ntf_copy",
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
    session.execute(update(Notification).where(Notification.id == first.id).values(status="sent"))


CORRUPTIONS: dict[str, tuple[Callable[[Session], None], set[str]]] = {
    "paid twice": (_paid_twice_in_the_books, {"payment_paying_nothing", "account_books_do_not_add_up"}),
    "refund forgotten": (_refund_forgotten, {"payment_paying_nothing", "account_books_do_not_add_up"}),
    "block lifted by hand": (_block_lifted_by_hand, {"block_against_the_rules"}),
    "discount changed": (_discount_changed, {"wrong_discount_or_total"}),
    "card captured twice": (_card_captured_twice, {"card_captured_twice_for_an_invoice"}),
    "mail sent twice": (_mail_sent_twice, {"email_sent_twice"}),
}


@pytest.mark.parametrize("corruption", sorted(CORRUPTIONS))
def test_each_corruption_is_named(runtime: Runtime, books: str, corruption: str) -> None:
    corrupt, expected = CORRUPTIONS[corruption]
    runtime.transaction(corrupt)
    assert expected <= names(runtime)


def test_the_command_exits_one_listing_the_violations_and_zero_when_clean(
    runtime: Runtime,
    settings: Settings,
    books: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("REGUA_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("REGUA_ENV", "test")
    monkeypatch.setenv("REGUA_NOW", runtime.clock.now().isoformat())
    assert main(["check"]) == 0
    assert "books clean" in capsys.readouterr().out
    runtime.transaction(_block_lifted_by_hand)
    assert main(["check"]) == 1
    assert "block_against_the_rules: account=padaria-central" in capsys.readouterr().out
    assert main(["check", "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["clean"] is False
    assert report["counts"]["block_against_the_rules"] >= 1
    assert rows(runtime, Block)  # read-only: nothing was mended
