"""Rules that only a rarer path shows (a second month open, a corruption of one kind), each through the real
entry points: the API, the webhook intake and its job, the tick, `regua check`.

Each expected value is read from the rule, not from billing: these are the tests that kill the mutants
of tests/mutation that the rest of the fast suite let live.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import date, timedelta
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session
from starlette.testclient import TestClient

from billing.clock import FrozenClock, parse_instant
from billing.models import Invoice, Refund, new_id
from regua.cli import main, tick_once
from regua.runtime import Runtime
from regua.settings import Settings
from tests.integration.conftest import Api, subscription
from tests.integration.test_webhook_settlement import (  # noqa: F401  (fixtures)
    blocked_invoice,
    charge_for,
    deliver_standard,
    settle_jobs,
)
from workers.actors import Jobs

ACCOUNT = "padaria-central"
PRICE = subscription()["monthly_price_cents"]
JANUARY_1 = parse_instant("2027-01-01T00:05:00-03:00")


def statuses(api: Api) -> dict[str, str]:
    """Each invoice's status by the first day of its period."""
    return {invoice["period_start"]: invoice["status"] for invoice in api.invoices(ACCOUNT)}


def test_a_second_payment_for_a_paid_month_is_owed_back_even_when_the_next_month_is_open(
    client: TestClient,
    api: Api,
    runtime: Runtime,
    clock: FrozenClock,
    jobs: Jobs,
    blocked_invoice: str,  # noqa: F811
) -> None:
    """Rule 3.5: a second confirmed payment for a paid invoice is a duplicate, refunded; it pays no other month."""
    boleto = charge_for(runtime, [blocked_invoice], "boleto")
    pix = charge_for(runtime, [blocked_invoice], "pix")
    clock.set(JANUARY_1)
    tick_once(runtime)
    assert statuses(api) == {"2026-12-01": "open", "2027-01-01": "open"}

    deliver_standard(client, clock, "payment.confirmed", pix, "msg_pix", payment_id="gw_pix")
    settle_jobs(jobs, runtime)
    clock.set(clock.now() + timedelta(minutes=1))
    deliver_standard(client, clock, "payment.confirmed", boleto, "msg_boleto", payment_id="gw_boleto", method="boleto")
    settle_jobs(jobs, runtime)

    assert statuses(api) == {"2026-12-01": "paid", "2027-01-01": "open"}
    history = api.get(f"/api/accounts/{ACCOUNT}/payments")
    assert sorted((p["amount_cents"], p["status"]) for p in history["payments"]) == [
        (PRICE, "confirmed"),
        (PRICE, "duplicate"),
    ]
    assert [(r["amount_cents"], r["reason"]) for r in history["refunds"]] == [(PRICE, "duplicate")]


# -- `regua check`: each invariant names the corruption it exists for


def check_counts(
    runtime: Runtime, settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Any:
    """`regua check --json` on the test's database at the test's instant: the count of each invariant."""
    monkeypatch.setenv("REGUA_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("REGUA_ENV", "test")
    monkeypatch.setenv("REGUA_NOW", runtime.clock.now().isoformat())
    capsys.readouterr()
    code = main(["check", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == (0 if report["clean"] else 1)
    return report["counts"]


def _a_second_invoice_over_the_end_of_a_month(session: Session) -> None:
    january = session.scalars(select(Invoice).where(Invoice.period_start == date(2027, 1, 1))).one()
    copy = Invoice(**{column.key: getattr(january, column.key) for column in Invoice.__table__.columns})
    copy.id, copy.period_start, copy.due_date = new_id("inv"), date(2027, 1, 15), date(2027, 1, 15)
    session.add(copy)


def _a_month_marked_paid_by_hand(session: Session) -> None:
    session.execute(
        update(Invoice).where(Invoice.period_start == date(2027, 1, 1)).values(status="paid", paid_at=JANUARY_1)
    )


def _a_gateway_refund_left_owed(session: Session) -> None:
    session.execute(update(Refund).where(Refund.reason == "gateway").values(status="owed"))


CORRUPTIONS: dict[str, tuple[Callable[[Session], None], str]] = {
    "a second invoice over the end of a month": (
        _a_second_invoice_over_the_end_of_a_month,
        "invoice_twice_for_a_month",
    ),
    "a month marked paid by hand": (_a_month_marked_paid_by_hand, "paid_invoice_without_payment"),
    "a refund the gateway made left owed": (_a_gateway_refund_left_owed, "gateway_refund_not_made"),
}


@pytest.mark.parametrize("corruption", sorted(CORRUPTIONS))
def test_regua_check_names_the_invariant_each_corruption_breaks(
    client: TestClient,
    runtime: Runtime,
    settings: Settings,
    clock: FrozenClock,
    jobs: Jobs,
    blocked_invoice: str,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    corruption: str,
) -> None:
    """Books lived in (December paid late, part of it given back by the gateway, January issued), then one
    thing changed with SQL: the check, clean before, names the invariant that rules the change out."""
    charge_id = charge_for(runtime, [blocked_invoice])
    deliver_standard(client, clock, "payment.confirmed", charge_id, "msg_paid", payment_id="gw_paid")
    deliver_standard(
        client,
        clock,
        "payment.refunded",
        charge_id,
        "msg_part",
        payment_id="gw_paid",
        refund_id="rf_1",
        amount_cents=5000,
    )
    settle_jobs(jobs, runtime)
    clock.set(JANUARY_1)
    tick_once(runtime)
    corrupt, invariant = CORRUPTIONS[corruption]
    assert check_counts(runtime, settings, monkeypatch, capsys)[invariant] == 0
    runtime.transaction(corrupt)
    assert check_counts(runtime, settings, monkeypatch, capsys)[invariant] >= 1
