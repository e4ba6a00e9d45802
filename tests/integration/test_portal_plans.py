"""The plan choice on the payment page, through the app's HTML: choose after a trial, upgrade, downgrade, cancel,
reactivate (rule 3.10). The amounts expected are computed here from the rules' words, not by billing."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.testclient import TestClient

from billing.check import check_books
from billing.clock import FrozenClock, parse_instant
from billing.models import Charge, Invoice, Subscription
from billing.records import SubscriptionChange
from regua.cli import tick_once
from regua.portal.tokens import PortalTokens
from regua.runtime import Runtime
from tests.integration.asaas_fake import FakeAsaas, fake_asaas
from tests.integration.conftest import AUTH, Api
from tests.integration.test_rules import pay

ACCOUNT = "padaria-central"
BASIC, PRO, DELIVERY, FISCAL = 9990, 19990, 3000, 4500
CUSTOMER = ("203.0.113.77", 50123)


def half_up(numerator: int, denominator: int) -> int:
    """The rules' rounding, written here: to the nearest centavo, halves up."""
    quotient, remainder = divmod(numerator, denominator)
    return quotient + (1 if 2 * remainder >= denominator else 0)


def brl(cents: int) -> str:
    reais, centavos = divmod(cents, 100)
    return f"R$ {reais:,}".replace(",", ".") + f",{centavos:02d}"


@pytest.fixture
def asaas() -> Iterator[FakeAsaas]:
    with fake_asaas() as fake:
        yield fake


@pytest.fixture
def catalog(client: TestClient) -> None:
    for kind, item, name, price in [
        ("plans", "basic", "Básico", BASIC),
        ("plans", "pro", "Pro", PRO),
        ("modules", "delivery", "Delivery", DELIVERY),
        ("modules", "fiscal", "Fiscal", FISCAL),
    ]:
        body = {"product": "platform", "name": name, "monthly_price_cents": price}
        response = client.put(f"/api/{kind}/{item}", json=body, headers=AUTH)
        assert response.status_code == 201, response.text


@pytest.fixture
def customer(client: TestClient) -> TestClient:
    """The customer's browser: the same app, seen from the customer's own address."""
    return TestClient(client.app, client=CUSTOMER)


def link(runtime: Runtime) -> str:
    return f"/portal/{PortalTokens(runtime.settings.secret_key).issue(ACCOUNT, runtime.clock.now())}"


def at(clock: FrozenClock, instant: str) -> None:
    clock.set(parse_instant(instant))


def subscription(runtime: Runtime) -> Subscription | None:
    return runtime.read(lambda session: session.scalar(select(Subscription)))


def invoices(runtime: Runtime) -> list[Invoice]:
    return runtime.read(lambda session: list(session.scalars(select(Invoice).order_by(Invoice.period_start))))


@dataclass(frozen=True)
class ChargeRow:
    method: str
    amount_cents: int
    installments: int
    status: str
    invoice_ids: list[str]


def charges(runtime: Runtime) -> list[ChargeRow]:
    def read(session: Session) -> list[ChargeRow]:
        return [
            ChargeRow(c.method, c.amount_cents, c.installments, c.status, list(c.invoice_ids))
            for c in session.scalars(select(Charge).order_by(Charge.created_at))
        ]

    return runtime.read(read)


def books_clean(runtime: Runtime) -> None:
    report = runtime.read(lambda session: check_books(session, runtime.clock.now()))
    assert report.clean, [violation.line() for violation in report.violations]


def told(runtime: Runtime) -> list[tuple[str, str | None]]:
    """The changes recorded for the billing contacts' mail (subscription_changed)."""
    rows = runtime.read(lambda session: list(session.scalars(select(SubscriptionChange))))
    return [(row.effect, row.proration_invoice_id) for row in rows]


def review(customer: TestClient, runtime: Runtime, **choice: Any) -> str:
    page = customer.get(f"{link(runtime)}/plano/platform/revisar", params=choice)
    assert page.status_code == 200, page.text
    return page.text


def confirm(customer: TestClient, runtime: Runtime, **choice: Any) -> Any:
    return customer.post(f"{link(runtime)}/plano/platform", data=choice, follow_redirects=False)


def shown(html: str, attribute: str) -> str:
    match = re.search(rf"{attribute}[^>]*>([^<]*)<", html)
    assert match is not None, attribute
    return match.group(1).strip()


def test_after_the_trial_the_customer_chooses_a_plan_reviews_it_and_pays_the_rest_of_the_month_by_pix(
    api: Api, customer: TestClient, catalog: None, runtime: Runtime, clock: FrozenClock, asaas: FakeAsaas
) -> None:
    api.put_account(ACCOUNT, trial_ends_at="2026-12-10")
    at(clock, "2026-12-10T09:00:00-03:00")

    page = customer.get(link(runtime)).text
    assert "Seu período de teste terminou" in page
    choose = customer.get(f"{link(runtime)}/plano/platform").text
    assert f"{brl(BASIC)} por mês" in choose
    assert f"+ {brl(FISCAL)} por mês" in choose

    monthly = PRO + DELIVERY
    options = customer.get(f"{link(runtime)}/plano/platform/pagamento?plano=pro&modulo=delivery").text
    assert f"{brl(monthly - half_up(monthly * 5, 100))} por mês" in options  # auto-debit, 5% off
    assert f"<s>{brl(monthly)}</s>" in options
    for months in (3, 6, 12):
        assert f"{brl(monthly * months)}</span> a cada {months} meses" in options
    assert "em até 12x" in options

    html = review(customer, runtime, plano="pro", modulo="delivery", opcao="monthly.pix")
    rest_of_december = half_up(monthly * 22, 31)  # 10 to 31 December: 22 of its 31 days
    assert shown(html, "data-now") == brl(rest_of_december)
    assert f"A partir de 01/01/2027: {brl(monthly)} por mês" in html
    assert subscription(runtime) is None, "a review changes nothing"
    assert invoices(runtime) == []

    answer = confirm(customer, runtime, plano="pro", modulo="delivery", opcao="monthly.pix", parcelas="1")
    assert answer.status_code == 303, answer.text
    assert re.search(r"/cobranca/chg_[0-9a-f]+$", answer.headers["location"])
    chosen = subscription(runtime)
    assert chosen is not None
    assert (chosen.plan, chosen.modules, chosen.payment_method, chosen.price_source) == (
        "pro",
        ["delivery"],
        "pix",
        "catalog",
    )
    [first] = invoices(runtime)
    assert (str(first.period_start), str(first.period_end), first.total_cents) == (
        "2026-12-10",
        "2026-12-31",
        rest_of_december,
    )
    [charge] = charges(runtime)
    assert (charge.method, charge.amount_cents, charge.invoice_ids) == ("pix", rest_of_december, [first.id])
    assert "PIX copia e cola" in customer.get(answer.headers["location"]).text

    again = confirm(customer, runtime, plano="pro", modulo="delivery", opcao="monthly.pix", parcelas="1")
    assert again.headers["location"] == answer.headers["location"], "confirming twice pays the same charge"
    assert len(invoices(runtime)) == 1
    books_clean(runtime)


def test_an_upgrade_mid_month_shows_the_pro_rata_difference_and_invoices_it_as_a_proration(
    api: Api, customer: TestClient, catalog: None, runtime: Runtime, clock: FrozenClock, asaas: FakeAsaas
) -> None:
    api.put_account(ACCOUNT)
    api.subscribe(ACCOUNT, "platform", plan="basic", modules=[], monthly_price_cents=None, payment_method="boleto")
    tick_once(runtime)
    pay(runtime, [invoice.id for invoice in invoices(runtime)])
    at(clock, "2026-12-16T10:00:00-03:00")

    html = review(customer, runtime, plano="pro", modulo="fiscal", opcao="monthly.boleto")
    difference = half_up((PRO + FISCAL - BASIC) * 16, 31)  # 16 to 31 December: 16 of its 31 days
    assert "A mudança vale a partir de hoje, 16/12/2026" in html
    assert f"pelos 16 dias que faltam do período atual: {brl(difference)}" in html
    assert shown(html, "data-now") == brl(difference)
    assert [invoice.kind for invoice in invoices(runtime)] == ["period"], "a review invoices nothing"
    assert told(runtime) == [], "nor records a change to tell"

    answer = confirm(customer, runtime, plano="pro", modulo="fiscal", opcao="monthly.boleto", parcelas="1")
    assert answer.status_code == 303, answer.text
    proration = [invoice for invoice in invoices(runtime) if invoice.kind == "proration"]
    assert [(str(i.period_start), str(i.period_end), i.total_cents) for i in proration] == [
        ("2026-12-16", "2026-12-31", difference)
    ]
    [charge] = [charge for charge in charges(runtime) if charge.status == "pending"]
    assert charge.method == "boleto"
    assert (charge.amount_cents, charge.invoice_ids) == (difference, [proration[0].id])
    assert "Linha digitável" in customer.get(answer.headers["location"]).text
    assert "Mudança de plano, 16/12/2026 a 31/12/2026" in customer.get(link(runtime)).text
    assert told(runtime) == [("now", proration[0].id)], "the change is told once, with its invoice"
    books_clean(runtime)


def test_an_auto_debit_choice_opens_the_gateways_card_page_with_the_customers_address(
    api: Api, customer: TestClient, catalog: None, runtime: Runtime, clock: FrozenClock, asaas: FakeAsaas
) -> None:
    api.put_account(ACCOUNT, trial_ends_at="2026-12-01")
    html = review(customer, runtime, plano="basic", opcao="monthly.card_auto_debit")
    december = BASIC - half_up(BASIC * 5, 100)
    assert shown(html, "data-now") == brl(december)

    answer = confirm(customer, runtime, plano="basic", opcao="monthly.card_auto_debit", parcelas="1")
    assert answer.status_code == 303, answer.text
    assert answer.headers["location"].endswith("?cartao=1")
    [card_page] = asaas.sent()
    assert (card_page["billingType"], card_page["remoteIp"], card_page["value"]) == (
        "CREDIT_CARD",
        CUSTOMER[0],
        december / 100,
    )
    assert "creditCardToken" not in card_page
    assert "Pagar com cartão" in customer.get(answer.headers["location"]).text


def test_a_prepaid_plan_by_card_is_split_in_the_installments_chosen(
    api: Api, customer: TestClient, catalog: None, runtime: Runtime, clock: FrozenClock, asaas: FakeAsaas
) -> None:
    api.put_account(ACCOUNT, trial_ends_at="2026-12-01")
    html = review(customer, runtime, plano="pro", opcao="annual.card", parcelas="10")
    assert shown(html, "data-now") == brl(PRO * 12)
    assert "em 10 parcelas" in html
    answer = confirm(customer, runtime, plano="pro", opcao="annual.card", parcelas="10")
    assert answer.status_code == 303, answer.text
    [charge] = charges(runtime)
    assert (charge.amount_cents, charge.installments) == (PRO * 12, 10)


def test_a_downgrade_is_scheduled_for_the_next_period_and_asks_for_no_payment(
    api: Api, customer: TestClient, catalog: None, runtime: Runtime, clock: FrozenClock, asaas: FakeAsaas
) -> None:
    api.put_account(ACCOUNT)
    api.subscribe(ACCOUNT, "platform", plan="pro", modules=["delivery"], monthly_price_cents=None, payment_method="pix")
    tick_once(runtime)
    pay(runtime, [invoice.id for invoice in invoices(runtime)])
    at(clock, "2026-12-20T10:00:00-03:00")

    html = review(customer, runtime, plano="basic", opcao="monthly.pix")
    assert "A mudança vale a partir de 01/01/2027" in html
    assert "Não é um pagamento" in html
    assert "Nada a pagar agora." in html
    assert f"A partir de 01/01/2027: {brl(BASIC)} por mês" in html
    assert '<button type="submit">Confirmar</button>' in html

    answer = confirm(customer, runtime, plano="basic", opcao="monthly.pix", parcelas="1")
    assert answer.status_code == 303
    assert answer.headers["location"].endswith("?aviso=plano#plano-platform")
    kept = subscription(runtime)
    assert kept is not None
    assert (kept.plan, kept.monthly_price_cents, kept.next_plan, str(kept.change_effective_on)) == (
        "pro",
        PRO + DELIVERY,
        "basic",
        "2027-01-01",
    )
    assert [invoice.kind for invoice in invoices(runtime)] == ["period"]
    assert [charge.status for charge in charges(runtime) if charge.status == "pending"] == [], "nothing to pay"
    page = customer.get(answer.headers["location"]).text
    assert 'data-next="01/01/2027"' in page

    # The plan in force chosen again: the waiting downgrade is given up, and the review says so first.
    html = review(customer, runtime, plano="pro", modulo="delivery", opcao="monthly.pix")
    assert 'data-effect="withdrawn"' in html
    assert "A mudança de plano prevista para 01/01/2027 é cancelada:" in html
    answer = confirm(customer, runtime, plano="pro", modulo="delivery", opcao="monthly.pix", parcelas="1")
    assert answer.status_code == 303
    kept = subscription(runtime)
    assert kept is not None
    assert (kept.plan, kept.next_plan, kept.change_effective_on) == ("pro", None, None)
    assert [effect for effect, _ in told(runtime)] == ["next_period", "withdrawn"]
    assert 'data-next="01/01/2027"' not in customer.get(answer.headers["location"]).text


def test_canceling_asks_for_confirmation_then_says_until_when_and_what_stays_owed(
    api: Api, customer: TestClient, catalog: None, runtime: Runtime, clock: FrozenClock
) -> None:
    api.put_account(ACCOUNT)
    api.subscribe(ACCOUNT, "platform", plan="pro", modules=[], monthly_price_cents=None, payment_method="boleto")
    tick_once(runtime)
    at(clock, "2026-12-03T15:00:00-03:00")

    question = customer.get(f"{link(runtime)}/plano/platform/cancelar").text
    assert "Cancelar a assinatura?" in question
    assert shown(question, "data-ends") == "31/12/2026"
    assert shown(question, "data-owed") == brl(PRO)
    kept = subscription(runtime)
    assert kept is not None
    assert kept.canceled_at is None, "asking changes nothing"

    answer = customer.post(f"{link(runtime)}/plano/platform/cancelar", follow_redirects=False)
    assert answer.status_code == 303
    canceled = subscription(runtime)
    assert canceled is not None
    assert str(canceled.ends_on) == "2026-12-31"
    page = customer.get(answer.headers["location"]).text
    assert "O acesso continua até 31/12/2026" in page
    assert "As faturas já emitidas e não pagas continuam devidas" in page
    assert "Escolher um plano e reativar" in page
    assert customer.post(f"{link(runtime)}/plano/platform/cancelar").status_code == 200  # again: nothing new


def test_a_canceled_subscription_is_reactivated_by_choosing_a_plan_again(
    api: Api,
    client: TestClient,
    customer: TestClient,
    catalog: None,
    runtime: Runtime,
    clock: FrozenClock,
    asaas: FakeAsaas,
) -> None:
    api.put_account(ACCOUNT)
    api.subscribe(ACCOUNT, "platform", plan="pro", modules=[], monthly_price_cents=None, payment_method="pix")
    tick_once(runtime)
    pay(runtime, [invoice.id for invoice in invoices(runtime)])
    assert client.delete(f"/api/accounts/{ACCOUNT}/subscriptions/platform", headers=AUTH).status_code == 200
    at(clock, "2027-02-10T10:00:00-03:00")
    tick_once(runtime)
    assert api.access(ACCOUNT, "platform")["state"] == "canceled"
    assert "O acesso terminou em 31/12/2026" in customer.get(link(runtime)).text

    html = review(customer, runtime, plano="basic", opcao="monthly.pix")
    rest_of_february = half_up(BASIC * 19, 28)  # 10 to 28 February
    assert shown(html, "data-now") == brl(rest_of_february)
    answer = confirm(customer, runtime, plano="basic", opcao="monthly.pix", parcelas="1")
    assert answer.status_code == 303, answer.text
    back = subscription(runtime)
    assert back is not None
    assert (back.canceled_at, back.ends_on, back.plan) == (None, None, "basic")
    assert [str(invoice.period_start) for invoice in invoices(runtime)] == ["2026-12-01", "2027-02-10"]
    assert api.access(ACCOUNT, "platform")["state"] == "grace"
    books_clean(runtime)


@pytest.mark.parametrize(
    "choice",
    [
        {"plano": "gold", "opcao": "monthly.pix"},
        {"plano": "pro", "modulo": "telepathy", "opcao": "monthly.pix"},
        {"plano": "pro", "opcao": "annual.card_auto_debit"},
        {"plano": "pro", "opcao": "monthly.card"},
        {"plano": "pro", "opcao": "annual.card", "parcelas": "13"},
        {"plano": "pro"},
    ],
    ids=["unknown-plan", "unknown-module", "auto-debit-annual", "card-monthly", "13-installments", "no-option"],
)
def test_a_choice_outside_the_catalog_or_the_rules_is_refused_and_changes_nothing(
    api: Api, customer: TestClient, catalog: None, runtime: Runtime, choice: dict[str, str]
) -> None:
    api.put_account(ACCOUNT, trial_ends_at="2026-12-01")
    assert customer.get(f"{link(runtime)}/plano/platform/revisar", params=choice).status_code == 422
    assert customer.post(f"{link(runtime)}/plano/platform", data=choice).status_code == 422
    assert subscription(runtime) is None


def test_the_plan_pages_refuse_a_forged_link_and_a_product_without_plans(
    api: Api, customer: TestClient, catalog: None, runtime: Runtime
) -> None:
    api.put_account(ACCOUNT)
    forged = "/portal/eyJhIjoicGFkYXJpYS1jZW50cmFsIiwieCI6OTk5OTk5OTk5OX0.forged"
    assert customer.get(f"{forged}/plano/platform").status_code == 404
    assert customer.post(f"{forged}/plano/platform", data={"plano": "pro", "opcao": "monthly.pix"}).status_code == 404
    assert customer.post(f"{forged}/plano/platform/cancelar").status_code == 404
    assert customer.get(f"{link(runtime)}/plano/mentorship").status_code == 404
    assert customer.get(f"{link(runtime)}/plano/other").status_code == 404
    assert subscription(runtime) is None


def test_going_back_from_the_review_keeps_what_was_chosen(
    api: Api, customer: TestClient, catalog: None, runtime: Runtime
) -> None:
    api.put_account(ACCOUNT)
    api.subscribe(ACCOUNT, "platform", plan="basic", modules=[], monthly_price_cents=None, payment_method="boleto")
    base = f"{link(runtime)}/plano/platform"
    fresh = customer.get(base).text
    assert 'value="basic" checked' in fresh
    assert 'value="monthly.boleto" checked' in customer.get(f"{base}/pagamento?plano=basic").text

    html = review(customer, runtime, plano="pro", modulo="fiscal", opcao="annual.card", parcelas="6")
    back = re.search(r'href="([^"]+/pagamento\?[^"]+)">Voltar e mudar', html)
    assert back is not None
    options = customer.get(back.group(1).replace("&amp;", "&")).text
    assert 'value="annual.card" checked' in options
    assert '<option value="6" selected>' in options
    change = re.search(r'href="([^"]+/plano/platform\?[^"]+)">Mudar', options)
    assert change is not None
    plans = customer.get(change.group(1).replace("&amp;", "&")).text
    assert 'value="pro" checked' in plans
    assert 'value="fiscal" checked' in plans
    assert 'value="basic" checked' not in plans


def test_an_auto_debit_upgrade_with_a_saved_card_is_left_to_the_regua_to_charge_to_that_card(
    api: Api, customer: TestClient, catalog: None, runtime: Runtime, clock: FrozenClock, asaas: FakeAsaas
) -> None:
    api.put_account(ACCOUNT)
    card = {"payment_method": "card_auto_debit", "card_token": "tok_ok"}
    api.subscribe(ACCOUNT, "platform", plan="basic", modules=[], monthly_price_cents=None, **card)
    tick_once(runtime)  # December is charged to the card on day 1, or paid here if its job has not run
    if unpaid := [invoice.id for invoice in invoices(runtime) if invoice.status == "open"]:
        pay(runtime, unpaid)
    assert [invoice.status for invoice in invoices(runtime)] == ["paid"]
    at(clock, "2026-12-16T10:00:00-03:00")
    sent_before = len(asaas.sent())

    html = review(customer, runtime, plano="pro", opcao="monthly.card_auto_debit")
    subtotal = half_up((PRO - BASIC) * 16, 31)
    difference = subtotal - half_up(subtotal * 5, 100)
    assert shown(html, "data-now") == brl(difference)
    assert "no cartão cadastrado" in html
    answer = confirm(customer, runtime, plano="pro", opcao="monthly.card_auto_debit", parcelas="1")
    assert answer.status_code == 303, answer.text
    assert answer.headers["location"].endswith("?aviso=cartao#plano-platform")
    assert len(asaas.sent()) == sent_before, "the page charges nothing itself"
    kept = subscription(runtime)
    assert kept is not None
    assert (kept.card_token, kept.remote_ip) == ("tok_ok", "203.0.113.10"), "the card stays, with its own IP"

    tick_once(runtime)
    [proration] = [invoice for invoice in invoices(runtime) if invoice.kind == "proration"]
    assert [c.invoice_ids for c in charges(runtime) if c.method == "card" and c.status != "canceled"][-1] == [
        proration.id
    ]
