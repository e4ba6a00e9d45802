"""The mails of a subscription that changes (rule 3.10, SPEC 5) end to end: a change through the product API,
told by the next pass once, to the billing contacts only, saying what changes and from when. Amounts and
dates are computed here from the rule's words, not by billing."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select
from starlette.testclient import TestClient

from billing.clock import FrozenClock
from billing.records import SubscriptionChange
from regua.cli import tick_once
from regua.runtime import Runtime
from regua.settings import Settings
from tests.integration.asaas_fake import FakeAsaas, fake_asaas
from tests.integration.conftest import AUTH, Api
from tests.integration.notification_helpers import PORTAL, mail_settings, move, notifications
from tests.integration.smtp_sink import Received, SmtpSink, smtp_sink

__all__ = ["smtp_sink"]

ACCOUNT = "padaria-central"
ANA = "ana@padaria.example"  # manages payments
CAIXA = "caixa@padaria.example"  # does not
BASIC, PRO, DELIVERY = 9990, 19990, 3000


@pytest.fixture
def settings(settings: Settings, smtp_sink: SmtpSink) -> Settings:
    return mail_settings(settings, smtp_sink.url)


@pytest.fixture(autouse=True)
def asaas() -> Iterator[FakeAsaas]:
    """The gateway the tick opens day-1 boleto and PIX charges at."""
    with fake_asaas() as fake:
        yield fake


@pytest.fixture(autouse=True)
def catalog(client: TestClient) -> None:
    for kind, item_id, name, price in [
        ("plans", "basic", "Básico", BASIC),
        ("plans", "pro", "Pro", PRO),
        ("modules", "delivery", "Delivery", DELIVERY),
    ]:
        body = {"product": "platform", "name": name, "monthly_price_cents": price}
        response = client.put(f"/api/{kind}/{item_id}", json=body, headers=AUTH)
        assert response.status_code == 201, response.text


def half_up(numerator: int, denominator: int) -> int:
    quotient, remainder = divmod(numerator, denominator)
    return quotient + (1 if 2 * remainder >= denominator else 0)


def brl(cents: int) -> str:
    """R$ 1.234,56, written here from SPEC 2."""
    reais, centavos = divmod(cents, 100)
    return f"R$ {reais:,}".replace(",", ".") + f",{centavos:02d}"


def choose(api: Api, plan: str, modules: list[str], method: str = "boleto", **more: Any) -> dict[str, Any]:
    return api.subscribe(
        ACCOUNT, "platform", plan=plan, modules=modules, monthly_price_cents=None, payment_method=method, **more
    )


def passes(runtime: Runtime, count: int = 2) -> None:
    """The scheduler's passes: a second at the same instant tells nothing more."""
    for _ in range(count):
        tick_once(runtime)


def only(sink: SmtpSink, kind: str) -> Received:
    [message] = sink.of_kind(kind)
    assert message.rcpt_tos == (ANA,)
    assert message["X-Regua-Account"] == ACCOUNT
    assert PORTAL in message.text
    assert PORTAL in message.html
    return message


def parts(message: Received) -> tuple[str, str]:
    """The words a reader sees in the text part and in the HTML part (tags dropped, entities decoded)."""
    inline = re.sub(r"</?strong>", "", message.html)  # a bold word stays glued to the comma after it
    seen = html.unescape(re.sub(r"<head>.*?</head>|<[^>]+>", " ", inline, flags=re.DOTALL))
    return " ".join(message.text.split()), " ".join(seen.split())


def a_downgrade_waits(api: Api, runtime: Runtime, clock: FrozenClock) -> None:
    """Pro with Delivery by PIX from December; on 10/12 Básico chosen, waiting for January, and told."""
    api.put_account(ACCOUNT)
    choose(api, "pro", ["delivery"], "pix")
    move(clock, "2026-12-01T00:05")
    passes(runtime)
    move(clock, "2026-12-10T15:00")
    assert choose(api, "basic", [], "pix")["change"]["effect"] == "next_period"
    passes(runtime)


def test_an_upgrade_mid_month_is_told_once_with_the_new_plan_the_difference_and_the_method(
    api: Api, runtime: Runtime, clock: FrozenClock, smtp_sink: SmtpSink
) -> None:
    api.put_account(ACCOUNT)
    choose(api, "basic", [])
    move(clock, "2026-12-01T00:05")
    passes(runtime)
    move(clock, "2026-12-16T10:00")
    answer = choose(api, "pro", ["delivery"])
    passes(runtime)
    difference = half_up((PRO + DELIVERY - BASIC) * 16, 31)  # 16 of December's 31 days left, the 16th included
    message = only(smtp_sink, "subscription_changed")
    assert message["X-Regua-Invoice"] == answer["change"]["proration_invoice_id"]
    assert message["Subject"] == "Plano alterado: Pro a partir de hoje"
    for part in parts(message):
        assert "Pro com Delivery, pagamento mensal" in part
        assert "16/12/2026" in part
        assert f"é de {brl(difference)}" in part
        assert "pode ser paga por boleto" in part
        assert f"Antes: Básico, pagamento mensal, {brl(BASIC)} por mês" in part
        assert f"{brl(PRO + DELIVERY)} por mês" in part
    assert CAIXA not in smtp_sink.rcpt_attempts
    assert [n.kind for n in notifications(runtime, kind="subscription_changed")] == ["subscription_changed"]


def test_an_upgrade_by_auto_debit_says_the_difference_is_charged_to_the_card_with_the_discount(
    api: Api, runtime: Runtime, clock: FrozenClock, smtp_sink: SmtpSink
) -> None:
    api.put_account(ACCOUNT)
    choose(api, "basic", [], "card_auto_debit", card_token="tok_ok")
    move(clock, "2026-12-01T00:05")
    passes(runtime)
    move(clock, "2026-12-20T09:00")
    choose(api, "pro", [], "card_auto_debit", card_token="tok_ok")
    passes(runtime)
    subtotal = half_up((PRO - BASIC) * 12, 31)  # 20 to 31 December
    total = subtotal - half_up(subtotal * 5, 100)
    message = only(smtp_sink, "subscription_changed")
    for part in parts(message):
        assert f"é de {brl(total)} e é cobrada agora no seu cartão de crédito, com 5% de desconto" in part
        assert f"Subtotal {brl(subtotal)}" in part.replace(":", "")


def test_a_downgrade_is_told_with_the_day_it_begins_and_no_invoice_to_pay(
    api: Api, runtime: Runtime, clock: FrozenClock, smtp_sink: SmtpSink
) -> None:
    a_downgrade_waits(api, runtime, clock)
    message = only(smtp_sink, "subscription_changed")
    assert message["X-Regua-Invoice"] is None
    assert message["Subject"] == "Alteração de plano a partir de 01/01/2027"
    for part in parts(message):
        assert f"A partir de 01/01/2027: Básico, pagamento mensal, {brl(BASIC)} por mês" in part
        assert "não é um pagamento" in part
        assert "Vencimento" not in part


def test_choosing_the_plan_in_force_again_withdraws_a_waiting_downgrade_and_says_so(
    api: Api, runtime: Runtime, clock: FrozenClock, smtp_sink: SmtpSink
) -> None:
    a_downgrade_waits(api, runtime, clock)
    move(clock, "2026-12-12T09:00")
    kept = choose(api, "pro", ["delivery"], "pix")
    assert kept["change"] == {
        "effect": "withdrawn",
        "effective_on": "2027-01-01",
        "proration_invoice_id": None,
        "proration_cents": 0,
    }
    assert kept["pending_change"] is None
    passes(runtime)
    told = smtp_sink.of_kind("subscription_changed")
    assert [message["Subject"] for message in told] == [
        "Alteração de plano a partir de 01/01/2027",
        "Alteração de plano cancelada: Plataforma",
    ]
    for part in parts(told[1]):
        assert (
            "A alteração para o plano Básico, pagamento mensal, que valeria a partir de 01/01/2027, foi cancelada"
            in part
        )
        assert "continua no plano Pro com Delivery, pagamento mensal" in part
        assert f"Continua: Pro com Delivery, pagamento mensal, {brl(PRO + DELIVERY)} por mês" in part
    assert choose(api, "pro", ["delivery"], "pix")["change"]["effect"] == "unchanged"  # nothing waits: nothing told
    move(clock, "2027-01-01T00:05")
    passes(runtime)
    assert len(smtp_sink.of_kind("subscription_changed")) == 2
    january = [i for i in api.invoices(ACCOUNT) if i["period_start"] == "2027-01-01"]
    assert [invoice["total_cents"] for invoice in january] == [PRO + DELIVERY]


def test_a_cancellation_is_told_once_with_the_last_day_of_access_and_what_stays_owed(
    api: Api, client: TestClient, runtime: Runtime, clock: FrozenClock, smtp_sink: SmtpSink
) -> None:
    api.put_account(ACCOUNT)
    choose(api, "pro", [])
    move(clock, "2026-12-01T00:05")
    passes(runtime)
    [december] = [invoice["id"] for invoice in api.invoices(ACCOUNT)]
    move(clock, "2026-12-03T11:00")
    for _ in range(2):  # canceling again changes nothing, and tells nothing
        response = client.delete(f"/api/accounts/{ACCOUNT}/subscriptions/platform", headers=AUTH)
        assert response.status_code == 200, response.text
        passes(runtime)
    message = only(smtp_sink, "subscription_canceled")
    assert message["X-Regua-Invoice"] == december
    assert message["Subject"] == "Assinatura cancelada: acesso à Plataforma até 31/12/2026"
    for part in parts(message):
        assert "O acesso continua até 31/12/2026" in part
        assert f"Continua devida a fatura abaixo, no valor de {brl(PRO)}" in part
        assert "01/12/2026 a 31/12/2026" in part
    assert runtime.read(lambda session: len(list(session.scalars(select(SubscriptionChange))))) == 1


def test_changes_of_an_account_without_a_billing_contact_are_kept_for_the_dashboard_and_mailed_to_nobody(
    api: Api, runtime: Runtime, clock: FrozenClock, smtp_sink: SmtpSink
) -> None:
    api.put_account(ACCOUNT, contacts=[{"email": CAIXA, "name": "Caixa", "manage_payments": False}])
    choose(api, "basic", [])
    move(clock, "2026-12-05T10:00")
    choose(api, "pro", [])
    passes(runtime)
    assert smtp_sink.of_kind("subscription_changed") == []
    [told] = notifications(runtime, kind="subscription_changed")
    assert (told.status, told.recipients) == ("no_contact", [])


def test_a_cancellation_before_anything_was_issued_is_told_as_holding_at_once(
    api: Api, client: TestClient, runtime: Runtime, clock: FrozenClock, smtp_sink: SmtpSink
) -> None:
    api.put_account(ACCOUNT)
    choose(api, "pro", [], starts_on="2027-01-01")
    move(clock, "2026-12-10T11:00")
    response = client.delete(f"/api/accounts/{ACCOUNT}/subscriptions/platform", headers=AUTH)
    assert response.status_code == 200, response.text
    passes(runtime)
    message = only(smtp_sink, "subscription_canceled")
    assert message["Subject"] == "Assinatura cancelada: Plataforma"
    assert message["X-Regua-Invoice"] is None
    for part in parts(message):
        assert "foi cancelada em 10/12/2026" in part
        assert "Não há faturas em aberto: nada fica devido" in part
