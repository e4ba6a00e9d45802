"""Rendering the mails of a subscription that changes (rule 3.10): what changes, from when, what is paid or owed."""

from __future__ import annotations

import html
import re
from datetime import date
from typing import Any

import pytest

from regua.mail import EmailContext, InvoiceLine, render_email

PORTAL = "https://app.example.com.br/portal"
BASIC = {"plan": "Básico", "modules": [], "monthly_price_cents": 9990, "frequency": "monthly"}
PRO = {"plan": "Pro", "modules": ["Delivery"], "monthly_price_cents": 22990, "frequency": "monthly"}
# Pro with Delivery from 16/12 instead of Básico: R$ 130,00 a month more for 16 of December's 31 days.
UPGRADE = InvoiceLine("inv_up", "platform", date(2026, 12, 16), date(2026, 12, 31), date(2026, 12, 16), 6710, 0, 6710)
DECEMBER = InvoiceLine("inv_dec", "platform", date(2026, 12, 1), date(2026, 12, 31), date(2026, 12, 1), 9990, 0, 9990)


def change(effect: str, effective_on: str | None, old: dict[str, Any], new: dict[str, Any] | None) -> dict[str, Any]:
    return {"product": "platform", "effect": effect, "effective_on": effective_on, "old": old, "new": new}


def mail(kind: str, the_change: dict[str, Any] | None, invoices: tuple[InvoiceLine, ...] = (), **more: Any) -> Any:
    values: dict[str, Any] = {
        "kind": kind,
        "account_id": "padaria-central",
        "account_name": "Padaria Central Ltda",
        "recipients": (("Ana", "ana@padaria.example"),),
        "invoices": invoices,
        "portal_url": PORTAL,
        "payment_method": "pix",
        "change": the_change,
        **more,
    }
    return render_email(EmailContext(**values))


def both(rendered: Any) -> tuple[str, str]:
    """The words of the text part and of the HTML part as a reader sees them."""
    inline = re.sub(r"</?strong>", "", rendered.html)  # a bold word stays glued to the comma after it
    seen = html.unescape(re.sub(r"<head>.*?</head>|<[^>]+>", " ", inline, flags=re.DOTALL))
    return " ".join(rendered.text.split()), " ".join(seen.split())


def test_an_upgrade_names_the_new_plan_from_today_and_the_difference_due_today_by_the_customers_method() -> None:
    rendered = mail("subscription_changed", change("now", "2026-12-16", BASIC, PRO), (UPGRADE,))

    assert rendered.subject == "Plano alterado: Pro a partir de hoje"
    for part in both(rendered):
        assert "mudou para o plano Pro com Delivery, pagamento mensal, em vigor desde hoje, 16/12/2026" in part
        assert "é de R$ 67,10: a fatura abaixo vence hoje e pode ser paga por PIX" in part
        assert "Antes: Básico, pagamento mensal, R$ 99,90 por mês" in part
        assert "Agora: Pro com Delivery, pagamento mensal, R$ 229,90 por mês" in part
        assert "16/12/2026 a 31/12/2026" in part
        assert "Plataforma (mensalidade proporcional)" in part


def test_an_upgrade_by_auto_debit_is_charged_to_the_card_now_with_the_five_percent_off() -> None:
    discounted = InvoiceLine(**{**UPGRADE.__dict__, "discount_cents": 336, "total_cents": 6374})
    rendered = mail(
        "subscription_changed",
        change("now", "2026-12-16", BASIC, PRO),
        (discounted,),
        payment_method="card_auto_debit",
    )

    for part in both(rendered):
        assert "é de R$ 63,74 e é cobrada agora no seu cartão de crédito, com 5% de desconto" in part
        assert "-R$ 3,36" in part
        assert "confirmação do pagamento da diferença" in part


def test_a_change_before_anything_was_issued_applies_from_its_day_with_nothing_to_pay_now() -> None:
    rendered = mail("subscription_changed", change("now", "2026-12-10", BASIC, PRO))

    assert rendered.subject == "Plano alterado: Pro a partir de 10/12/2026"
    for part in both(rendered):
        assert "Não há nada a pagar agora" in part
        assert "Vencimento" not in part


def test_a_downgrade_says_from_which_day_and_that_it_is_not_a_payment() -> None:
    rendered = mail("subscription_changed", change("next_period", "2027-01-01", PRO, BASIC))

    assert rendered.subject == "Alteração de plano a partir de 01/01/2027"
    for part in both(rendered):
        assert "A partir de 01/01/2027, o início do próximo período, a assinatura da Plataforma passa" in part
        assert "não é um pagamento" in part
        assert "A partir de 01/01/2027: Básico, pagamento mensal, R$ 99,90 por mês" in part
        assert "Vencimento" not in part
        assert "R$ 229,90 por mês" in part  # what it was until then


def test_a_frequency_change_names_the_new_frequency_and_several_modules_in_portuguese() -> None:
    quarterly = {**PRO, "modules": ["Delivery", "Fiscal", "Estoque"], "frequency": "quarterly"}
    rendered = mail("subscription_changed", change("next_period", "2027-01-01", PRO, quarterly))

    for part in both(rendered):
        assert "Pro com Delivery, Fiscal e Estoque, pagamento trimestral" in part


def test_a_reactivation_says_the_cancellation_no_longer_holds() -> None:
    rendered = mail("subscription_changed", change("reactivated", "2026-12-20", PRO, PRO))

    assert rendered.subject == "Assinatura reativada: Plataforma"
    for part in both(rendered):
        assert "O cancelamento pedido antes não vale mais" in part


def test_a_cancellation_names_the_last_day_of_access_and_the_invoice_still_owed() -> None:
    rendered = mail("subscription_canceled", change("canceled", "2026-12-31", BASIC, None), (DECEMBER,))

    assert rendered.subject == "Assinatura cancelada: acesso à Plataforma até 31/12/2026"
    for part in both(rendered):
        assert "O acesso continua até 31/12/2026" in part
        assert "nenhuma fatura nova é emitida" in part
        assert "Continua devida a fatura abaixo, no valor de R$ 99,90" in part
        assert "o período já emitido" in part
        assert "Pague o que está em aberto" in part


def test_a_canceled_mentorship_keeps_its_issued_months_owed() -> None:
    november = InvoiceLine(
        "inv_nov", "mentorship", date(2026, 11, 1), date(2026, 11, 30), date(2026, 11, 1), 50000, 0, 50000
    )
    december = InvoiceLine(
        "inv_dec", "mentorship", date(2026, 12, 1), date(2026, 12, 31), date(2026, 12, 1), 50000, 0, 50000
    )
    mentorship = {**change("canceled", "2026-12-31", {**BASIC, "plan": "Mentoria"}, None), "product": "mentorship"}
    rendered = mail("subscription_canceled", mentorship, (november, december))

    assert rendered.subject == "Assinatura cancelada: acesso à Mentoria até 31/12/2026"
    for part in both(rendered):
        assert "Continuam devidas as faturas abaixo, no valor total de R$ 1.000,00" in part
        assert "os meses do contrato de mentoria já emitidos" in part


def test_a_cancellation_with_nothing_open_says_nothing_stays_owed() -> None:
    rendered = mail("subscription_canceled", change("canceled", "2026-12-31", BASIC, None))

    for part in both(rendered):
        assert "Não há faturas em aberto: nada fica devido" in part
        assert "Pague o que está em aberto" not in part


def test_a_plan_named_like_markup_is_escaped_in_html() -> None:
    evil = {**PRO, "plan": "<b>Pro</b>"}
    rendered = mail("subscription_changed", change("next_period", "2027-01-01", BASIC, evil))

    assert "<b>Pro</b>" not in rendered.html
    assert "&lt;b&gt;Pro&lt;/b&gt;" in rendered.html
    assert "<b>Pro</b>" in rendered.text


@pytest.mark.parametrize(
    ("kind", "the_change", "message"),
    [
        ("subscription_changed", None, "says what changed"),
        ("subscription_canceled", None, "says what changed"),
        ("subscription_changed", change("canceled", "2026-12-31", BASIC, None), "not told by a subscription_changed"),
        ("subscription_canceled", change("now", "2026-12-16", BASIC, PRO), "not told by a subscription_canceled"),
        ("subscription_changed", change("next_period", None, PRO, BASIC), "says from when"),
        ("subscription_changed", change("next_period", "2027-01-01", PRO, {**BASIC, "frequency": "weekly"}), "weekly"),
        ("subscription_changed", {**change("now", "2026-12-16", BASIC, PRO), "product": "hosting"}, "hosting"),
    ],
)
def test_a_subscription_mail_that_cannot_say_what_changed_is_refused(
    kind: str, the_change: dict[str, Any] | None, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        mail(kind, the_change)


def test_the_other_kinds_still_need_the_invoices_they_are_about() -> None:
    with pytest.raises(ValueError, match="names the invoices"):
        mail("payment_confirmed", None)


def test_a_cancellation_before_any_period_was_issued_says_it_holds_at_once_with_no_access_date() -> None:
    trial = {**change("canceled", "2026-12-09", BASIC, None), "changed_on": "2026-12-10"}
    rendered = mail("subscription_canceled", trial)

    assert rendered.subject == "Assinatura cancelada: Plataforma"
    for part in both(rendered):
        assert "foi cancelada em 10/12/2026" in part
        assert "o cancelamento vale desde já: nenhuma fatura nova é emitida" in part
        assert "Acesso até" not in part
        assert "09/12/2026" not in part


def test_a_cancellation_asked_inside_its_period_keeps_the_access_date() -> None:
    inside = {**change("canceled", "2026-12-31", BASIC, None), "changed_on": "2026-12-10"}
    rendered = mail("subscription_canceled", inside)

    assert rendered.subject == "Assinatura cancelada: acesso à Plataforma até 31/12/2026"
    for part in both(rendered):
        assert "Acesso até: 31/12/2026" in part


def test_an_upgrade_of_a_card_paid_plan_is_paid_on_the_portal_not_charged_by_itself() -> None:
    rendered = mail("subscription_changed", change("now", "2026-12-16", BASIC, PRO), (UPGRADE,), payment_method="card")

    for part in both(rendered):
        assert "a fatura abaixo vence hoje e pode ser paga por cartão de crédito" in part
        assert "cobrada agora" not in part


def test_a_waiting_change_given_up_names_it_its_day_and_the_plan_that_stays() -> None:
    rendered = mail("subscription_changed", change("withdrawn", "2027-01-01", BASIC, PRO))

    assert rendered.subject == "Alteração de plano cancelada: Plataforma"
    for part in both(rendered):
        assert (
            "A alteração para o plano Básico, pagamento mensal, que valeria a partir de 01/01/2027, foi cancelada"
            in part
        )
        assert "Cancelada: Básico, pagamento mensal, R$ 99,90 por mês, a partir de 01/01/2027" in part
        assert "Continua: Pro com Delivery, pagamento mensal, R$ 229,90 por mês" in part
        assert "Antes:" not in part
    with pytest.raises(ValueError, match="says from when"):
        mail("subscription_changed", change("withdrawn", None, BASIC, PRO))
