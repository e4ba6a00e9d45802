"""Rendering the customer emails: content of every kind, escaping, inlined CSS, the MIME message."""

from __future__ import annotations

import base64
import binascii
import dataclasses
import itertools
import quopri
import re
from datetime import UTC, date, datetime, timedelta, timezone
from email import message_from_bytes, policy
from email.header import decode_header, make_header
from email.message import EmailMessage
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import css_inline
import jinja2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from regua import mail, mail_message, mail_wrap
from regua.mail import KINDS, EmailContext, InvoiceLine, build_message, render_email

PORTAL = "https://app.example.com.br/portal"
SAMPLES = Path(__file__).resolve().parents[2] / "docs" / "samples"

DECEMBER_AUTO_DEBIT = InvoiceLine(
    invoice_id="inv_dec_card",
    product="platform",
    period_start=date(2026, 12, 1),
    period_end=date(2026, 12, 31),
    due_date=date(2026, 12, 1),
    subtotal_cents=19990,
    discount_cents=1000,
    total_cents=18990,
)
DECEMBER_MANUAL = dataclasses.replace(
    DECEMBER_AUTO_DEBIT, invoice_id="inv_dec_pix", discount_cents=0, total_cents=19990
)
PIX_CODE = "00020101021226880014br.gov.bcb.pix2566qr.example.com/v2/cobv/abc5204000053039865406199.905802BR6304ABCD"
BOLETO_LINE = "23793.38128 60000.000003 00000.000406 1 97100000019990"
BASIC = {"plan": "Básico", "modules": [], "monthly_price_cents": 9990, "frequency": "monthly"}
SUBSCRIPTION_CHANGES: dict[str, dict[str, Any]] = {
    "subscription_changed": {
        "product": "platform",
        "effect": "now",
        "effective_on": "2026-12-01",
        "old": BASIC,
        "new": {**BASIC, "plan": "Pro", "monthly_price_cents": 19990},
    },
    "subscription_canceled": {"product": "platform", "effect": "canceled", "effective_on": "2026-12-31", "old": BASIC},
}
"""The change each subscription mail tells, for the tests of every kind (tests/unit/test_subscription_mail_render.py
tells each case)."""


def context(kind: str, **changes: Any) -> EmailContext:
    """A manual (PIX) payer's December platform invoice, changed as the test needs."""
    values: dict[str, Any] = {
        "kind": kind,
        "account_id": "mercearia-boa-vista",
        "account_name": "Mercearia Boa Vista Ltda",
        "recipients": (("Carla", "carla@boavista.example"),),
        "invoices": (DECEMBER_MANUAL,),
        "portal_url": PORTAL,
        "payment_method": "pix",
        "pix_code": PIX_CODE,
        "boleto_line": BOLETO_LINE,
        "change": SUBSCRIPTION_CHANGES.get(kind),
    }
    values.update(changes)
    return EmailContext(**values)


def auto_debit(kind: str, **changes: Any) -> EmailContext:
    return context(
        kind,
        invoices=(DECEMBER_AUTO_DEBIT,),
        payment_method="card_auto_debit",
        pix_code=None,
        boleto_line=None,
        **changes,
    )


def visible_text(html: str) -> str:
    """The words a reader sees: tags dropped, entities decoded, whitespace collapsed."""
    text = re.sub(r"<head>.*?</head>|<[^>]+>", " ", html, flags=re.DOTALL)
    text = text.replace("&nbsp;", " ").replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
    return " ".join(text.split())


class _Tree(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.nodes: list[tuple[str, ...]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.nodes.append(("start", tag, *sorted(f"{name}={value}" for name, value in attrs)))

    def handle_endtag(self, tag: str) -> None:
        self.nodes.append(("end", tag))

    def handle_data(self, data: str) -> None:
        if data.strip():
            self.nodes.append(("text", " ".join(data.split())))


def document_tree(html: str) -> list[tuple[str, ...]]:
    """Elements with their attributes in a fixed order and the visible text: what a mail client sees."""
    parser = _Tree()
    parser.feed(css_inline.inline(html, load_remote_stylesheets=False))
    parser.close()
    return parser.nodes


def flat(text: str) -> str:
    return " ".join(text.split())


def test_kinds_are_the_ten_kinds_of_the_spec_and_the_two_of_a_subscription_that_changes() -> None:
    assert set(KINDS) == {
        "invoice_issued",
        "payment_confirmed",
        "payment_failed",
        "payment_reminder",
        "block_warning",
        "account_blocked",
        "account_unblocked",
        "verification_pending",
        "trial_ended",
        "refund_issued",
        "subscription_changed",
        "subscription_canceled",
    }
    assert len(KINDS) == 12


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_shows_product_period_amount_due_date_next_steps_and_portal_in_both_parts(kind: str) -> None:
    rendered = render_email(auto_debit(kind, next_retry_on=date(2026, 12, 3)))

    assert rendered.subject
    assert "\n" not in rendered.subject
    for part in (visible_text(rendered.html), flat(rendered.text)):
        assert "Plataforma (mensalidade)" in part
        assert "01/12/2026 a 31/12/2026" in part
        assert "R$ 189,90" in part
        assert re.search(r"Vencimento:? 01/12/2026", part)
        assert "o que acontece agora" in part.lower()
        assert "Portal do Cliente" in part
        assert PORTAL in part
    assert f'href="{PORTAL}"' in rendered.html
    assert rendered.text.startswith(rendered.subject)
    assert f"<title>{rendered.subject}</title>" in rendered.html


def test_mentorship_is_named_mentoria() -> None:
    mentorship = dataclasses.replace(DECEMBER_MANUAL, product="mentorship")
    rendered = render_email(context("invoice_issued", invoices=(mentorship,)))

    assert "Mentoria" in rendered.text
    assert "Mentoria" in visible_text(rendered.html)
    assert "Plataforma" not in rendered.text


def test_a_prepaid_or_prorated_platform_invoice_says_which_kind_of_period_it_is() -> None:
    quarter = dataclasses.replace(DECEMBER_MANUAL, period_end=date(2027, 2, 28))
    prorated = dataclasses.replace(DECEMBER_MANUAL, period_start=date(2026, 12, 16))

    assert "Plataforma (plano trimestral)" in render_email(context("invoice_issued", invoices=(quarter,))).text
    assert "Plataforma (mensalidade proporcional)" in render_email(context("trial_ended", invoices=(prorated,))).text


@pytest.mark.parametrize("kind", KINDS)
def test_auto_debit_invoices_show_subtotal_discount_and_total(kind: str) -> None:
    rendered = render_email(auto_debit(kind))

    for part in (visible_text(rendered.html), flat(rendered.text)):
        assert "Subtotal" in part
        assert "R$ 199,90" in part
        assert "Desconto de 5% (débito automático no cartão)" in part
        assert "-R$ 10,00" in part
        assert "R$ 189,90" in part


@pytest.mark.parametrize("kind", KINDS)
def test_invoices_without_discount_show_no_discount_line(kind: str) -> None:
    rendered = render_email(context(kind))

    for part in (visible_text(rendered.html), flat(rendered.text)):
        assert "Desconto de 5%" not in part
        assert "Subtotal" not in part
        assert "R$ 199,90" in part


@pytest.mark.parametrize(
    "kind", ["invoice_issued", "payment_reminder", "block_warning", "account_blocked", "trial_ended"]
)
@pytest.mark.parametrize("method", ["pix", "boleto"])
def test_manual_payers_get_the_pix_code_and_the_boleto_line(kind: str, method: str) -> None:
    rendered = render_email(context(kind, payment_method=method, boleto_url="https://boleto.example/b.pdf"))

    assert "PIX copia e cola" in rendered.text
    assert PIX_CODE in rendered.text
    assert "Linha digitável" in rendered.text
    assert BOLETO_LINE in rendered.text
    html_text = visible_text(rendered.html)
    assert "PIX copia e cola" in html_text
    assert PIX_CODE in html_text
    assert BOLETO_LINE in html_text
    assert 'href="https://boleto.example/b.pdf"' in rendered.html


@pytest.mark.parametrize("kind", ["payment_confirmed", "account_unblocked", "verification_pending", "refund_issued"])
def test_mails_about_money_already_paid_never_show_a_payment_code(kind: str) -> None:
    rendered = render_email(context(kind))

    assert PIX_CODE not in rendered.text
    assert PIX_CODE not in rendered.html
    assert BOLETO_LINE not in rendered.text
    assert BOLETO_LINE not in rendered.html


def test_the_pix_code_is_not_wrapped_in_the_text_part() -> None:
    long_code = "0002" + "9" * 150 + "6304ABCD"
    rendered = render_email(context("invoice_issued", pix_code=long_code))

    assert long_code in rendered.text.splitlines()


def test_payment_failed_names_the_next_retry_date_and_the_block_date() -> None:
    rendered = render_email(
        auto_debit(
            "payment_failed",
            next_retry_on=date(2026, 12, 3),
            block_on=date(2026, 12, 7),
            failure_reason="insufficient_funds",
        )
    )

    assert rendered.subject == "Pagamento não aprovado: nova tentativa em 03/12/2026"
    for part in (visible_text(rendered.html), flat(rendered.text)):
        assert "nova tentativa" in rendered.subject
        assert "automaticamente, em 03/12/2026" in part
        assert "saldo ou limite insuficiente" in part
        assert "tolerância até 06/12/2026" in part
        assert "00h00 de 07/12/2026" in part


def test_payment_failed_without_a_retry_asks_for_another_way_to_pay() -> None:
    rendered = render_email(auto_debit("payment_failed", failure_reason="cartão bloqueado"))

    assert rendered.subject == "Pagamento não aprovado: atualize sua forma de pagamento"
    assert "Não faremos novas tentativas" in flat(rendered.text)
    assert "cartão bloqueado" in flat(rendered.text)


def test_block_warning_names_the_last_day_to_pay_and_the_first_blocked_day() -> None:
    rendered = render_email(context("block_warning", block_on=date(2026, 12, 7)))

    assert "06/12/2026" in rendered.subject
    for part in (visible_text(rendered.html), flat(rendered.text)):
        assert "até 06/12/2026" in part
        assert "bloqueado a partir das 00h00 de 07/12/2026" in part


def test_the_block_date_follows_from_the_due_date_when_not_given() -> None:
    trial = dataclasses.replace(
        DECEMBER_MANUAL, period_start=date(2026, 12, 16), due_date=date(2026, 12, 16), total_cents=10317
    )
    rendered = render_email(context("trial_ended", invoices=(trial,), trial_ended_on=date(2026, 12, 15)))

    text = flat(rendered.text)
    assert "tolerância até 21/12/2026" in text
    assert "00h00 de 22/12/2026" in text
    assert "terminou em 15/12/2026" in text


def test_a_reminder_tells_when_the_block_starts() -> None:
    rendered = render_email(context("payment_reminder", block_on=date(2026, 12, 7)))

    assert rendered.subject == "Lembrete: pague sua fatura de dezembro/2026 até 06/12/2026 e evite o bloqueio"
    assert "00h00 de 07/12/2026" in flat(rendered.text)


def test_a_late_mentorship_mail_lists_the_overdue_and_the_current_month_with_their_total() -> None:
    november = InvoiceLine(
        "inv_nov", "mentorship", date(2026, 11, 1), date(2026, 11, 30), date(2026, 11, 1), 50000, 0, 50000
    )
    december = InvoiceLine(
        "inv_dec", "mentorship", date(2026, 12, 1), date(2026, 12, 31), date(2026, 12, 1), 50000, 0, 50000
    )
    rendered = render_email(context("account_blocked", invoices=(november, december), blocked_since=date(2026, 11, 7)))

    assert rendered.subject == "Acesso bloqueado: regularize suas faturas"
    for part in (visible_text(rendered.html), flat(rendered.text)):
        assert "01/11/2026 a 30/11/2026" in part
        assert "01/12/2026 a 31/12/2026" in part
        assert re.search(r"Total a pagar:? R\$ 1\.000,00", part)
        assert "o mês em atraso e o mês corrente" in part
        assert "bloqueado em 07/11/2026" in part


def test_refund_mail_shows_the_refunded_amount_and_the_reason() -> None:
    rendered = render_email(context("refund_issued", refund_amount_cents=19990, refund_reason="duplicate"))

    assert rendered.subject == "Reembolso de R$ 199,90 realizado"
    for part in (visible_text(rendered.html), flat(rendered.text)):
        assert "Valor reembolsado: R$ 199,90" in part
        assert "Motivo: pagamento em duplicidade" in part


@pytest.mark.parametrize(
    ("ctx", "subject"),
    [
        (context("invoice_issued"), "Sua fatura de dezembro/2026 está disponível"),
        (
            auto_debit("payment_failed", next_retry_on=date(2026, 12, 3)),
            "Pagamento não aprovado: nova tentativa em 03/12/2026",
        ),
        (context("account_blocked"), "Acesso bloqueado: regularize sua fatura"),
        (context("payment_confirmed"), "Pagamento confirmado: fatura de dezembro/2026"),
        (context("account_unblocked"), "Acesso liberado: pagamento confirmado"),
        (
            context("account_unblocked", verifying_until=date(2026, 12, 12)),
            "Acesso liberado provisoriamente: pagamento em verificação",
        ),
        (context("verification_pending"), "Pagamento em verificação: fatura de dezembro/2026"),
        (context("trial_ended"), "Seu período de teste terminou: sua fatura está disponível"),
    ],
)
def test_subjects_say_what_the_mail_is_in_portuguese(ctx: EmailContext, subject: str) -> None:
    assert render_email(ctx).subject == subject


@pytest.mark.parametrize("kind", KINDS)
def test_a_customer_named_script_is_escaped_in_html_and_not_turned_into_markup(kind: str) -> None:
    evil = "<script>alert(1)</script>"
    rendered = render_email(context(kind, account_name=evil, recipients=((evil, "x@example.com"),)))

    assert "<script" not in rendered.html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in rendered.html
    assert evil in rendered.text


def test_css_is_inlined_into_style_attributes_and_no_style_tag_is_left() -> None:
    rendered = render_email(context("invoice_issued"))

    assert "<style" not in rendered.html
    assert 'style="' in rendered.html
    assert re.search(r'<a class="button"[^>]* style="[^"]*background-color', rendered.html)
    assert re.search(r'<td class="total-value"[^>]* style="[^"]*font-weight: bold', rendered.html)
    assert re.search(r'<p class="code"[^>]* style="[^"]*monospace', rendered.html)


@pytest.mark.parametrize("kind", KINDS)
def test_inlining_css_when_templates_load_gives_the_html_of_inlining_every_render(kind: str) -> None:
    slow = mail._build_environment(inline_css_at_load=False)
    for ctx in (context(kind), auto_debit(kind, next_retry_on=date(2026, 12, 3), verifying_until=date(2026, 12, 9))):
        expected = css_inline.inline(mail._render(ctx, slow).html, load_remote_stylesheets=False)
        assert document_tree(render_email(ctx).html) == document_tree(expected)


def test_amounts_must_be_integer_centavos() -> None:
    with pytest.raises(TypeError, match="integer centavos"):
        render_email(context("payment_confirmed", amount_cents=199.9))


def test_an_unknown_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown email kind"):
        render_email(context("payment_maybe"))


def test_an_unknown_product_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown product"):
        render_email(context("invoice_issued", invoices=(dataclasses.replace(DECEMBER_MANUAL, product="hosting"),)))


def test_a_mail_without_invoices_is_refused() -> None:
    with pytest.raises(ValueError, match="invoices"):
        render_email(context("account_blocked", invoices=()))


def test_the_environment_and_the_compiled_templates_are_built_once() -> None:
    render_email(context("invoice_issued"))

    assert mail._environment() is mail._environment()
    environment = mail._environment()
    assert mail._templates(environment, "invoice_issued") is mail._templates(environment, "invoice_issued")


def build(ctx: EmailContext, invoice_id: str | None = "inv_dec_pix") -> EmailMessage:
    return build_message(
        render_email(ctx),
        ctx,
        mail_from="Financeiro <financeiro@example.com.br>",
        message_id_domain="regua.example.com.br",
        invoice_id=invoice_id,
        sent_at=datetime(2026, 12, 1, 3, 5, tzinfo=UTC),
    )


def test_build_message_has_the_regua_headers_two_alternatives_and_a_message_id() -> None:
    ctx = context(
        "invoice_issued", recipients=(("Carla Souza", "carla@boavista.example"), ("Caixa", "caixa@boavista.example"))
    )
    message = build(ctx)

    assert message["X-Regua-Kind"] == "invoice_issued"
    assert message["X-Regua-Account"] == "mercearia-boa-vista"
    assert message["X-Regua-Invoice"] == "inv_dec_pix"
    assert message["Subject"] == "Sua fatura de dezembro/2026 está disponível"
    assert message["From"] == "Financeiro <financeiro@example.com.br>"
    assert [address.addr_spec for address in message["To"].addresses] == [
        "carla@boavista.example",
        "caixa@boavista.example",
    ]
    assert message["Date"] == "Tue, 01 Dec 2026 03:05:00 +0000"
    assert re.fullmatch(r"<[^@<>\s]+@regua\.example\.com\.br>", message["Message-ID"])
    assert message.get_content_type() == "multipart/alternative"
    parts = list(message.iter_parts())
    assert [part.get_content_type() for part in parts] == ["text/plain", "text/html"]


def test_a_built_message_survives_the_wire_with_its_portuguese_intact() -> None:
    message = build(auto_debit("payment_failed", next_retry_on=date(2026, 12, 3)))
    parsed = message_from_bytes(message.as_bytes(), policy=policy.default)

    assert isinstance(parsed, EmailMessage)
    assert parsed["Subject"] == "Pagamento não aprovado: nova tentativa em 03/12/2026"
    text_part = parsed.get_body(preferencelist=("plain",))
    html_part = parsed.get_body(preferencelist=("html",))
    assert text_part is not None
    assert html_part is not None
    assert "Desconto de 5% (débito automático no cartão)" in text_part.get_content()
    assert "tolerância" in html_part.get_content()


def test_build_message_leaves_out_the_invoice_header_when_there_is_none() -> None:
    message = build(context("account_unblocked"), invoice_id=None)

    assert "X-Regua-Invoice" not in message
    assert message["X-Regua-Kind"] == "account_unblocked"


def test_two_messages_never_share_a_message_id() -> None:
    ctx = context("invoice_issued")

    assert build(ctx)["Message-ID"] != build(ctx)["Message-ID"]


def test_build_message_refuses_a_mail_without_recipients() -> None:
    ctx = context("invoice_issued", recipients=())

    with pytest.raises(ValueError, match="no recipients"):
        build(ctx)


def test_a_recipient_name_with_a_line_break_cannot_add_headers() -> None:
    ctx = context("invoice_issued", recipients=(("Carla\r\nBcc: outro@example.com", "carla@boavista.example"),))

    with pytest.raises(ValueError, match="CR or LF"):
        build(ctx)


@pytest.mark.parametrize("kind", KINDS)
def test_the_text_part_wraps_prose_at_72_columns(kind: str) -> None:
    rendered = render_email(context(kind, account_name="Comércio de Alimentos Integrais Boa Vista e Filhos Ltda"))

    long_lines = [line for line in rendered.text.splitlines() if len(line) > 72]
    assert all("https://" in line or PIX_CODE in line or line == rendered.subject for line in long_lines), long_lines


def test_the_samples_in_docs_are_what_the_templates_render_today(tmp_path: Path) -> None:
    written = mail.write_samples(tmp_path)

    assert len(written) == 4
    for path in written:
        committed = SAMPLES / path.name
        assert committed.is_file(), f"missing {committed}: run python -m regua.mail docs/samples"
        assert committed.read_text(encoding="utf-8") == path.read_text(encoding="utf-8"), (
            f"{committed.name} is stale: run python -m regua.mail docs/samples"
        )


@given(
    text=st.text(alphabet=st.sampled_from(list("aéz-R$0,. \u00a0\t\n\r")), max_size=300)
    | st.lists(st.text(alphabet="abcãç-", min_size=1, max_size=90), max_size=40).map(" ".join),
    width=st.integers(min_value=1, max_value=90),
    wrapstring=st.sampled_from([None, "\n", "\r\n  "]),
    breaks=st.sampled_from([(False, False), (True, False), (False, True), (True, True)]),
)
@settings(max_examples=400, deadline=None)
def test_the_text_parts_wrap_exactly_as_jinjas_own_wordwrap(
    text: str, width: int, wrapstring: str | None, breaks: tuple[bool, bool]
) -> None:
    environment = jinja2.Environment(newline_sequence="\n")
    arguments = (text, width, breaks[0], wrapstring, breaks[1])

    assert mail_wrap.wordwrap(environment, *arguments) == jinja2.filters.do_wordwrap(environment, *arguments)


@given(
    text=st.text(alphabet=st.sampled_from(list("aZ 9-çãéÀ€😀\u00a0")), min_size=1, max_size=200),
    chunk_bytes=st.integers(min_value=4, max_value=60),
)
@settings(max_examples=300, deadline=None)
def test_a_header_in_encoded_words_decodes_to_its_text_each_word_whole_characters_and_as_full_as_fits(
    text: str, chunk_bytes: int
) -> None:
    words = mail_message._encoded_words(text, chunk_bytes=chunk_bytes).split("\r\n ")

    payloads = []
    for word in words:
        assert word.startswith("=?utf-8?b?")
        assert word.endswith("?=")
        payloads.append(base64.b64decode(word[len("=?utf-8?b?") : -2]))
    assert all(0 < len(payload) <= chunk_bytes for payload in payloads)
    assert "".join(payload.decode("utf-8") for payload in payloads) == text  # each a whole number of characters
    for payload, following in itertools.pairwise(payloads):
        first = following.decode("utf-8")[0].encode("utf-8")
        assert len(payload) + len(first) > chunk_bytes  # the next character would not have fitted
    assert str(make_header(decode_header(" ".join(words)))) == text


@given(text=st.text(alphabet=st.sampled_from(list("ab =.\t\r\nçé€😀")), max_size=300))
@settings(max_examples=400, deadline=None)
def test_a_part_in_quoted_printable_decodes_to_its_text_in_lines_of_76_at_most(text: str) -> None:
    encoded = mail_message._quoted_printable(text)

    assert mail_message._quoted_printable(text) == encoded  # and again, from the remembered lines
    assert encoded.count(b"\n") == encoded.count(b"\r\n")
    if "\r" in text:  # encoded whole, as binascii does it
        whole = binascii.b2a_qp(text.encode("utf-8"), quotetabs=False, istext=True, header=False)
        assert encoded == whole.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    else:
        assert all(len(line) <= 76 for line in encoded.split(b"\r\n"))
        assert quopri.decodestring(encoded).replace(b"\r\n", b"\n") == text.encode("utf-8")
        lines = text.split("\n")
        per_line = [binascii.b2a_qp(line.encode("utf-8"), quotetabs=False, istext=True) for line in lines]
        assert encoded == b"\r\n".join(line.replace(b"\n", b"\r\n") for line in per_line)


def test_the_date_filter_writes_days_and_months_and_refuses_what_is_not_a_date_every_time() -> None:
    for _ in range(2):  # the second time from the written dates it remembers
        assert mail._data(date(2026, 3, 7)) == "07/03/2026"
        assert mail._data(date(2026, 3, 7), "mes") == "março/2026"
        assert mail._data(datetime(2026, 12, 1, 15, 0, tzinfo=UTC), "mes") == "dezembro/2026"
        # the same instant, another day where it is written: each written as its own day
        assert mail._data(datetime(2026, 12, 1, 2, 0, tzinfo=UTC)) == "01/12/2026"
        assert mail._data(datetime(2026, 11, 30, 23, 0, tzinfo=timezone(timedelta(hours=-3)))) == "30/11/2026"
        with pytest.raises(TypeError, match="not a date"):
            mail._data("2026-03-07")  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="not a date"):
            mail._data(["2026-03-07"])  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="unknown date style 'ano'"):
            mail._data(date(2026, 3, 7), "ano")
