"""Customer emails: the template pair of each kind rendered into a subject, an HTML and a text part."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import date
from pathlib import Path

import jinja2
from jinja2.runtime import Context

from billing.money import format_brl
from regua import mail_variables
from regua.mail_message import build_message as build_message
from regua.mail_message import message_bytes as message_bytes
from regua.mail_templates import InliningLoader
from regua.mail_variables import EmailContext as EmailContext
from regua.mail_variables import InvoiceLine as InvoiceLine
from regua.mail_variables import RenderedEmail as RenderedEmail
from regua.mail_wrap import wordwrap

TEMPLATES_DIR = Path(__file__).resolve().parent.parent / "templates" / "email"

KINDS: tuple[str, ...] = (
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
)

MONTH_NAMES = (
    "janeiro",
    "fevereiro",
    "março",
    "abril",
    "maio",
    "junho",
    "julho",
    "agosto",
    "setembro",
    "outubro",
    "novembro",
    "dezembro",
)


def render_email(context: EmailContext) -> RenderedEmail:
    """The subject, HTML and text of one email; raises ValueError for an unknown kind, product or method."""
    return _render(context, _environment())


# Formatting: exactly one filter for money and one for dates.


def _brl(amount_cents: int) -> str:
    if not isinstance(amount_cents, int) or isinstance(amount_cents, bool):
        raise TypeError(f"money is integer centavos, not {type(amount_cents).__name__}: {amount_cents!r}")
    return format_brl(amount_cents)


def _data(day: date, style: str = "dia") -> str:
    """dd/mm/aaaa; with style "mes", the month as people say it: dezembro/2026."""
    if not isinstance(day, date):
        raise TypeError(f"not a date: {day!r}")
    return _formatted_date(day.year, day.month, day.day, style)


@functools.lru_cache(maxsize=1024)
def _formatted_date(year: int, month: int, day: int, style: str) -> str:
    """An email names a dozen dates, the same few in every email of a day: each is written once (by its
    year, month and day: two aware datetimes of one instant are equal, and may fall on different days)."""
    if style == "dia":
        return f"{day:02d}/{month:02d}/{year:04d}"
    if style == "mes":
        return f"{MONTH_NAMES[month - 1]}/{year:04d}"
    raise ValueError(f"unknown date style {style!r}: use 'dia' or 'mes'")


# Rendering.


def _render(context: EmailContext, environment: jinja2.Environment) -> RenderedEmail:
    if context.kind not in KINDS:
        raise ValueError(f"unknown email kind {context.kind!r}; kinds are: {', '.join(KINDS)}")
    subject_block, html_template, text_template = _templates(environment, context.kind)
    variables = mail_variables.variables(context)
    subject = " ".join("".join(subject_block(text_template.new_context(variables))).split())
    if not subject:
        raise ValueError(f"the {context.kind} template rendered an empty subject")
    variables["subject"] = subject
    return RenderedEmail(subject=subject, html=html_template.render(variables), text=text_template.render(variables))


_SubjectBlock = Callable[[Context], Iterator[str]]


@functools.cache
def _environment() -> jinja2.Environment:
    return _build_environment(inline_css_at_load=True)


@functools.cache
def _templates(environment: jinja2.Environment, kind: str) -> tuple[_SubjectBlock, jinja2.Template, jinja2.Template]:
    """A kind's compiled pair and the subject block of its text template (plain text, never escaped)."""
    html_template = environment.get_template(f"{kind}.html")
    text_template = environment.get_template(f"{kind}.txt")
    subject_block = text_template.blocks.get("subject")
    if subject_block is None:
        raise jinja2.TemplateError(f"{kind}.txt has no {{% block subject %}}")
    return subject_block, html_template, text_template


def _build_environment(*, inline_css_at_load: bool) -> jinja2.Environment:
    loader: jinja2.BaseLoader = (
        InliningLoader(TEMPLATES_DIR) if inline_css_at_load else jinja2.FileSystemLoader(TEMPLATES_DIR)
    )
    environment = jinja2.Environment(
        loader=loader,
        autoescape=jinja2.select_autoescape(enabled_extensions=("html",), default_for_string=False),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        auto_reload=False,
    )
    environment.filters["brl"] = _brl
    environment.filters["data"] = _data
    environment.filters["wordwrap"] = wordwrap
    environment.filters["linha"] = mail_variables.printed_boleto_line
    environment.globals["produto"] = mail_variables.product_label
    return environment


# CSS inlining at load time. The layout's <style> is inlined into every HTML template's source once,
# before Jinja compiles it, so rendering costs nothing extra. The HTML parser must not see Jinja
# syntax, so each construct is swapped for a placeholder first: an HTML comment for statements
# between elements (a comment stays where it is, even between table rows, where text would be moved
# out of the table) and a private-use character pair inside tags and for expressions.

# Samples for docs/samples: regenerate with `python -m regua.mail docs/samples`.

_SAMPLE_PORTAL = "https://app.example.com.br/portal"


_FIRST_SAMPLES = ("invoice_issued_boleto_pix", "payment_failed_card_auto_debit")


def write_samples(directory: Path, *, every_kind: bool = False) -> list[Path]:
    """Render the sample emails into `directory` as NAME.html and NAME.txt; returns the files written.

    The first two samples, or with `every_kind` one more of each other kind.
    """
    directory.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for name, context in _sample_contexts().items():
        if (name in _FIRST_SAMPLES) == every_kind:
            continue
        rendered = render_email(context)
        html_path, text_path = directory / f"{name}.html", directory / f"{name}.txt"
        html_path.write_text(rendered.html, encoding="utf-8")
        text_path.write_text(rendered.text, encoding="utf-8")
        written += [html_path, text_path]
    return written


def _sample_contexts() -> dict[str, EmailContext]:
    """A realistic email of each kind, as the régua records them (docs/samples/<kind>_<case>.*)."""
    manual = InvoiceLine(
        invoice_id="inv_20261201_mbv",
        product="platform",
        period_start=date(2026, 12, 1),
        period_end=date(2026, 12, 31),
        due_date=date(2026, 12, 1),
        subtotal_cents=19990,
        discount_cents=0,
        total_cents=19990,
    )
    auto_debit = replace(manual, invoice_id="inv_20261201_pc", discount_cents=1000, total_cents=18990)
    mentorship_dec = replace(manual, invoice_id="inv_20261201_lumen", product="mentorship", subtotal_cents=50000)
    mentorship_dec = replace(mentorship_dec, total_cents=50000)
    trial = replace(
        manual,
        invoice_id="inv_20261210_ze",
        period_start=date(2026, 12, 10),
        due_date=date(2026, 12, 10),
        subtotal_cents=14186,
        total_cents=14186,
    )
    # Pro with Delivery from 16/12 instead of Básico: R$ 130,00 a month more, 16 of December's 31 days.
    upgrade = replace(
        auto_debit,
        invoice_id="inv_20261216_pc",
        period_start=date(2026, 12, 16),
        due_date=date(2026, 12, 16),
        subtotal_cents=6710,
        discount_cents=336,
        total_cents=6374,
    )
    return {
        "invoice_issued_boleto_pix": EmailContext(
            kind="invoice_issued",
            account_id="mercearia-boa-vista",
            account_name="Mercearia Boa Vista Ltda",
            recipients=(("Carla Souza", "carla@boavista.example"),),
            invoices=(manual,),
            portal_url=_SAMPLE_PORTAL,
            payment_method="boleto",
            pix_code=(
                "00020101021226900014br.gov.bcb.pix2568pix.example.com.br/qr/v2/cobv/"
                "9d36b84fc70b478fb95c12729b90ca255204000053039865406199.905802BR5920"
                "REGUA EXEMPLO LTDA6009SAO PAULO62070503***6304A1B2"
            ),
            boleto_line="23793.38128 60000.000003 00000.000406 1 97100000019990",
            boleto_url="https://app.example.com.br/boletos/inv_20261201_mbv.pdf",
        ),
        "payment_failed_card_auto_debit": EmailContext(
            kind="payment_failed",
            account_id="padaria-central",
            account_name="Padaria Central Ltda",
            recipients=(("Ana", "ana@padaria.example"),),
            invoices=(auto_debit,),
            portal_url=_SAMPLE_PORTAL,
            payment_method="card_auto_debit",
            next_retry_on=date(2026, 12, 3),
            block_on=date(2026, 12, 7),
            failure_reason="insufficient_funds",
        ),
        "payment_confirmed_card_auto_debit": EmailContext(
            kind="payment_confirmed",
            account_id="padaria-central",
            account_name="Padaria Central Ltda",
            recipients=(("Ana", "ana@padaria.example"),),
            invoices=(auto_debit,),
            portal_url=_SAMPLE_PORTAL,
            payment_method="card_auto_debit",
            amount_cents=18990,
        ),
        "payment_reminder_boleto": EmailContext(
            kind="payment_reminder",
            account_id="mercearia-boa-vista",
            account_name="Mercearia Boa Vista Ltda",
            recipients=(("Carla Souza", "carla@boavista.example"),),
            invoices=(manual,),
            portal_url=_SAMPLE_PORTAL,
            payment_method="boleto",
            block_on=date(2026, 12, 7),
            boleto_line="23793.38128 60000.000003 00000.000406 1 97100000019990",
            boleto_url="https://app.example.com.br/boletos/inv_20261201_mbv.pdf",
        ),
        "block_warning_pix": EmailContext(
            kind="block_warning",
            account_id="mercearia-boa-vista",
            account_name="Mercearia Boa Vista Ltda",
            recipients=(("Carla Souza", "carla@boavista.example"), ("Jorge Souza", "jorge@boavista.example")),
            invoices=(manual,),
            portal_url=_SAMPLE_PORTAL,
            payment_method="pix",
            block_on=date(2026, 12, 7),
        ),
        "account_blocked_mentorship": EmailContext(
            kind="account_blocked",
            account_id="estudio-lumen",
            account_name="Estúdio Lúmen Fotografia ME",
            recipients=(("Rafael Lima", "rafael@lumen.example"),),
            invoices=(mentorship_dec,),
            portal_url=_SAMPLE_PORTAL,
            payment_method="boleto",
            blocked_since=date(2026, 12, 7),
        ),
        "account_unblocked_paid": EmailContext(
            kind="account_unblocked",
            account_id="mercearia-boa-vista",
            account_name="Mercearia Boa Vista Ltda",
            recipients=(("Carla Souza", "carla@boavista.example"),),
            invoices=(manual,),
            portal_url=_SAMPLE_PORTAL,
            payment_method="pix",
            amount_cents=19990,
        ),
        "verification_pending_receipt": EmailContext(
            kind="verification_pending",
            account_id="mercearia-boa-vista",
            account_name="Mercearia Boa Vista Ltda",
            recipients=(("Carla Souza", "carla@boavista.example"),),
            invoices=(manual,),
            portal_url=_SAMPLE_PORTAL,
            payment_method="boleto",
            verifying_until=date(2026, 12, 12),
        ),
        "trial_ended_pro_rata": EmailContext(
            kind="trial_ended",
            account_id="oficina-do-ze",
            account_name="Oficina do Zé Ltda",
            recipients=(("José Carlos", "ze@oficina.example"),),
            invoices=(trial,),
            portal_url=_SAMPLE_PORTAL,
            payment_method="pix",
            block_on=date(2026, 12, 16),
            trial_ended_on=date(2026, 12, 10),
        ),
        "refund_issued_duplicate": EmailContext(
            kind="refund_issued",
            account_id="mercearia-boa-vista",
            account_name="Mercearia Boa Vista Ltda",
            recipients=(("Carla Souza", "carla@boavista.example"),),
            invoices=(manual,),
            portal_url=_SAMPLE_PORTAL,
            payment_method="pix",
            amount_cents=19990,
            refund_amount_cents=19990,
            refund_reason="duplicate",
        ),
        "subscription_changed_upgrade": EmailContext(
            kind="subscription_changed",
            account_id="padaria-central",
            account_name="Padaria Central Ltda",
            recipients=(("Ana", "ana@padaria.example"),),
            invoices=(upgrade,),
            portal_url=_SAMPLE_PORTAL,
            payment_method="card_auto_debit",
            change={
                "product": "platform",
                "effect": "now",
                "effective_on": "2026-12-16",
                "old": {"plan": "Básico", "modules": [], "monthly_price_cents": 9990, "frequency": "monthly"},
                "new": {"plan": "Pro", "modules": ["Delivery"], "monthly_price_cents": 22990, "frequency": "monthly"},
            },
        ),
        "subscription_canceled_owing": EmailContext(
            kind="subscription_canceled",
            account_id="mercearia-boa-vista",
            account_name="Mercearia Boa Vista Ltda",
            recipients=(("Carla Souza", "carla@boavista.example"),),
            invoices=(manual,),
            portal_url=_SAMPLE_PORTAL,
            payment_method="boleto",
            change={
                "product": "platform",
                "effect": "canceled",
                "effective_on": "2026-12-31",
                "old": {"plan": "Pro", "modules": [], "monthly_price_cents": 19990, "frequency": "monthly"},
                "new": None,
            },
        ),
    }


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/samples")
    for path in write_samples(target) + write_samples(target, every_kind=True):
        print(path)
