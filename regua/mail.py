"""Customer emails: the template pair of each kind rendered into a subject, an HTML and a text part."""

from __future__ import annotations

import base64
import binascii
import email
import email.policy
import functools
import hashlib
import re
import sys
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import date, datetime
from email.message import EmailMessage
from email.utils import format_datetime, formataddr, formatdate, make_msgid, parseaddr
from pathlib import Path

import css_inline
import jinja2
from jinja2.runtime import Context

from billing.clock import as_utc
from billing.money import format_brl
from regua import mail_variables
from regua.mail_variables import EmailContext as EmailContext
from regua.mail_variables import InvoiceLine as InvoiceLine

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


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    html: str
    text: str


def render_email(context: EmailContext) -> RenderedEmail:
    """The subject, HTML and text of one email; raises ValueError for an unknown kind, product or method."""
    return _render(context, _environment())


def message_bytes(
    rendered: RenderedEmail,
    context: EmailContext,
    *,
    mail_from: str,
    message_id_domain: str,
    invoice_id: str | None = None,
    sent_at: datetime | None = None,
    message_id: str | None = None,
) -> bytes:
    """The message as it goes on the wire (CRLF lines): multipart/alternative, text then HTML, with
    the X-Regua-* headers the sink and ops read.

    `sent_at` is the clock's now for the Date header; without it the system time is used. A
    `message_id` chosen by the caller (one per notification) makes a resent copy recognisable as
    the same message; without it a fresh one is made.

    Written directly rather than through `email.message.EmailMessage`, whose header objects cost
    about ten times the rendering; `build_message` parses these bytes back for whoever wants one.
    """
    if not context.recipients:
        raise ValueError(f"a {context.kind} email for account {context.account_id!r} has no recipients")
    sender_name, sender = parseaddr(mail_from)
    if "@" not in sender:
        raise ValueError(f"not an email address to send from: {mail_from!r}")
    message_id = message_id or make_msgid(idstring=context.kind, domain=message_id_domain)
    # Both parts are quoted-printable, which writes every "=" as "=3D": a boundary that begins with
    # "=_" can never occur inside them, so it need not be random (os.urandom showed in the profile).
    boundary = "=_regua_" + hashlib.blake2s(message_id.encode(), digest_size=12).hexdigest()
    headers = [
        ("Subject", _header_text("Subject", rendered.subject)),
        ("From", _address(sender_name, sender)),
        ("To", _fold(",", [_address(name, address) for name, address in context.recipients])),
        ("Date", formatdate(usegmt=True) if sent_at is None else format_datetime(as_utc(sent_at))),
        ("Message-ID", message_id),
        ("X-Regua-Kind", context.kind),
        ("X-Regua-Account", context.account_id),
        *([("X-Regua-Invoice", invoice_id)] if invoice_id is not None else []),
        ("MIME-Version", "1.0"),
        ("Content-Type", f'multipart/alternative; boundary="{boundary}"'),
    ]
    for name, value in headers:
        _no_line_breaks(name, value.replace("\r\n ", ""))
    head = "".join(f"{name}: {value}\r\n" for name, value in headers).encode("ascii")
    parts = b"".join(
        b'--%s\r\nContent-Type: text/%s; charset="utf-8"\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n%s\r\n'
        % (boundary.encode(), subtype, _quoted_printable(body))
        for subtype, body in ((b"plain", rendered.text), (b"html", rendered.html))
    )
    return head + b"\r\n" + parts + b"--%s--\r\n" % boundary.encode()


def build_message(
    rendered: RenderedEmail,
    context: EmailContext,
    *,
    mail_from: str,
    message_id_domain: str,
    invoice_id: str | None = None,
    sent_at: datetime | None = None,
    message_id: str | None = None,
) -> EmailMessage:
    """The message of `message_bytes` as an EmailMessage (for samples, tests and the dev sink)."""
    wire = message_bytes(
        rendered,
        context,
        mail_from=mail_from,
        message_id_domain=message_id_domain,
        invoice_id=invoice_id,
        sent_at=sent_at,
        message_id=message_id,
    )
    message = email.message_from_bytes(wire, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def _no_line_breaks(name: str, value: str) -> None:
    if "\r" in value or "\n" in value:
        raise ValueError(f"the {name} header may not contain CR or LF: {value!r}")


def _header_text(name: str, text: str) -> str:
    """Unstructured header text: as it is when ASCII, else as RFC 2047 encoded words."""
    _no_line_breaks(name, text)
    return text if text.isascii() else _encoded_words(text)


def _address(name: str, address: str) -> str:
    _no_line_breaks("address", name + address)
    if not _ADDR_SPEC.fullmatch(address):
        raise ValueError(f"not an email address: {address!r}")
    name = " ".join(name.split())
    if name.isascii():
        return formataddr((name, address))
    # One word, however long: readers disagree on the space between two encoded words of a name.
    return f"{_encoded_words(name, chunk_bytes=len(name) * 4)} <{address}>"


def _encoded_words(text: str, *, chunk_bytes: int = 45) -> str:
    """`=?utf-8?b?...?=` words of at most 72 characters, whole characters each, one per folded line.

    (email.header does the same, but tries quoted-printable character by character first: that
    cost more than rendering the templates.)
    """
    chunks: list[bytes] = [b""]
    for character in text:
        encoded = character.encode("utf-8")
        if len(chunks[-1]) + len(encoded) > chunk_bytes:
            chunks.append(b"")
        chunks[-1] += encoded
    return "\r\n ".join(f"=?utf-8?b?{base64.b64encode(chunk).decode('ascii')}?=" for chunk in chunks)


def _fold(separator: str, items: list[str], width: int = 76) -> str:
    """Items joined by `separator`, a line break before any item that would pass `width`."""
    lines = [items[0]]
    for item in items[1:]:
        if len(lines[-1]) + len(separator) + 1 + len(item) > width:
            lines[-1] += separator
            lines.append(item)
        else:
            lines[-1] += f"{separator} {item}"
    return "\r\n ".join(lines)


@jinja2.pass_environment
def _wordwrap(
    environment: jinja2.Environment,
    text: str,
    width: int = 79,
    break_long_words: bool = True,
    wrapstring: str | None = None,
    break_on_hyphens: bool = True,
) -> str:
    """Jinja's `wordwrap`, with the lines it gives; but a line of words between single spaces, wrapped
    neither inside words nor at hyphens (every line of the text parts), is wrapped without textwrap,
    which took a seventh of a send job's time."""
    if break_long_words or break_on_hyphens:
        return jinja2.filters.do_wordwrap(environment, text, width, break_long_words, wrapstring, break_on_hyphens)
    newline = environment.newline_sequence if wrapstring is None else wrapstring
    return newline.join(_wrap_words(line, width, newline) for line in text.splitlines())


def _wrap_words(line: str, width: int, newline: str) -> str:
    words = line.split(" ")
    # within a line, a tab is the one other place textwrap splits; it drops words that are only whitespace
    if "\t" in line or not all(word.strip() for word in words):
        return newline.join(
            textwrap.wrap(
                line, width, expand_tabs=False, replace_whitespace=False, break_long_words=False, break_on_hyphens=False
            )
        )
    lines: list[str] = []
    taken: list[str] = []
    length = -1
    for word in words:
        if taken and length + 1 + len(word) > width:
            lines.append(" ".join(taken))
            taken, length = [], -1
        taken.append(word)
        length += 1 + len(word)
    lines.append(" ".join(taken))
    return newline.join(lines)


def _quoted_printable(text: str) -> bytes:
    encoded = binascii.b2a_qp(text.encode("utf-8"), quotetabs=False, istext=True, header=False)
    return encoded.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


_ADDR_SPEC = re.compile(r"[^\s@<>,;:\"()\[\]\\]+@[^\s@<>,;:\"()\[\]\\]+")


# Formatting: exactly one filter for money and one for dates.


def _brl(amount_cents: int) -> str:
    if not isinstance(amount_cents, int) or isinstance(amount_cents, bool):
        raise TypeError(f"money is integer centavos, not {type(amount_cents).__name__}: {amount_cents!r}")
    return format_brl(amount_cents)


def _data(day: date, style: str = "dia") -> str:
    """dd/mm/aaaa; with style "mes", the month as people say it: dezembro/2026."""
    if not isinstance(day, date):
        raise TypeError(f"not a date: {day!r}")
    if style == "dia":
        return f"{day.day:02d}/{day.month:02d}/{day.year:04d}"
    if style == "mes":
        return f"{MONTH_NAMES[day.month - 1]}/{day.year:04d}"
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
        _InliningLoader(TEMPLATES_DIR) if inline_css_at_load else jinja2.FileSystemLoader(TEMPLATES_DIR)
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
    environment.filters["wordwrap"] = _wordwrap
    environment.filters["linha"] = mail_variables.printed_boleto_line
    environment.globals["produto"] = mail_variables.product_label
    return environment


# CSS inlining at load time. The layout's <style> is inlined into every HTML template's source once,
# before Jinja compiles it, so rendering costs nothing extra. The HTML parser must not see Jinja
# syntax, so each construct is swapped for a placeholder first: an HTML comment for statements
# between elements (a comment stays where it is, even between table rows, where text would be moved
# out of the table) and a private-use character pair inside tags and for expressions.

_STYLE = re.compile(r"<style[^>]*>(.*?)</style>", re.DOTALL | re.IGNORECASE)
_SCAN = re.compile(r"(\{%.*?%\}|\{\{.*?\}\}|\{#.*?#\})|(<[A-Za-z/!])|(>)", re.DOTALL)
_PLACEHOLDER = re.compile(r"<!--jinja:(\d+)-->|\ue000(\d+)\ue001")
_DYNAMIC_CLASS = re.compile(r"""\sclass=("[^"]*\ue000|'[^']*\ue000)""")
_DOCUMENT = re.compile(r"^\s*(\{%.*?%\}\s*)*<!doctype", re.IGNORECASE | re.DOTALL)


class _InliningLoader(jinja2.FileSystemLoader):
    """Hands Jinja each HTML template with the layout's CSS already inlined."""

    def __init__(self, searchpath: Path) -> None:
        super().__init__(searchpath)
        self._inliner = css_inline.CSSInliner(load_remote_stylesheets=False)
        self._css: str | None = None

    def get_source(self, environment: jinja2.Environment, template: str) -> tuple[str, str, Callable[[], bool]]:
        source, filename, uptodate = super().get_source(environment, template)
        if template.endswith(".html"):
            source = self._inline(source, template, environment)
        return source, filename, uptodate

    def _inline(self, source: str, name: str, environment: jinja2.Environment) -> str:
        protected, originals = _protect(source)
        if _DOCUMENT.match(source):
            inlined = self._inliner.inline(protected)
        else:
            inlined = self._inliner.inline_fragment(protected, self._layout_css(environment))
        if inlined.count("<tbody") != protected.count("<tbody"):
            raise jinja2.TemplateError(f"{name}: write <tbody> in every table, the HTML parser adds it otherwise")
        if _DYNAMIC_CLASS.search(protected):
            raise jinja2.TemplateError(f"{name}: class attributes must be static for the CSS to be inlined")
        return _restore(inlined, originals, name)

    def _layout_css(self, environment: jinja2.Environment) -> str:
        if self._css is None:
            layout, _, _ = super().get_source(environment, "base.html")
            self._css = "\n".join(_STYLE.findall(layout))
        return self._css


def _protect(source: str) -> tuple[str, list[str]]:
    originals: list[str] = []
    pieces: list[str] = []
    position = 0
    in_tag = False
    for match in _SCAN.finditer(source):
        jinja, tag_open, tag_close = match.groups()
        if tag_open:
            in_tag = True
        elif tag_close:
            in_tag = False
        else:
            pieces.append(source[position : match.start()])
            number = len(originals)
            originals.append(jinja)
            statement = not jinja.startswith("{{")
            pieces.append(f"<!--jinja:{number}-->" if statement and not in_tag else f"\ue000{number}\ue001")
            position = match.end()
    pieces.append(source[position:])
    return "".join(pieces), originals


def _restore(inlined: str, originals: list[str], name: str) -> str:
    seen: list[int] = []

    def original(match: re.Match[str]) -> str:
        number = int(match.group(1) or match.group(2))
        seen.append(number)
        return originals[number]

    restored = _PLACEHOLDER.sub(original, inlined)
    if seen != list(range(len(originals))):
        raise jinja2.TemplateError(
            f"{name}: the HTML parser moved or dropped Jinja syntax while inlining CSS; "
            "keep statements between whole elements and expressions inside elements or attribute values"
        )
    return restored


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
