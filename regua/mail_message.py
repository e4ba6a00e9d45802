"""An email as it goes on the wire: the multipart message, its headers and their encodings, written directly."""

from __future__ import annotations

import base64
import binascii
import email
import email.policy
import functools
import hashlib
import re
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, formataddr, formatdate, make_msgid, parseaddr

from billing.clock import as_utc
from regua.mail_variables import EmailContext, RenderedEmail


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
    sender_name, sender = _parsed_sender(mail_from)
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


@functools.lru_cache(maxsize=8)
def _parsed_sender(mail_from: str) -> tuple[str, str]:
    """REGUA_MAIL_FROM's name and address: one setting, parsed once rather than for every email."""
    return parseaddr(mail_from)


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
    if chunk_bytes < 4:
        raise ValueError("an encoded word holds at least one character: 4 bytes of UTF-8")
    encoded = text.encode("utf-8")
    chunks: list[bytes] = []
    start = 0
    while start < len(encoded):
        end = min(start + chunk_bytes, len(encoded))
        while end < len(encoded) and encoded[end] & 0xC0 == 0x80:  # not inside a character
            end -= 1
        chunks.append(encoded[start:end])
        start = end
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


def _quoted_printable(text: str) -> bytes:
    """The text in quoted-printable, CRLF line ends.

    Quoted-printable encodes each line on its own, and most lines of an email are its template's, the
    same in every email of that kind: the encoding of a line is remembered (encoding the whole HTML part
    anew was a tenth of a worker's time).
    """
    if "\r" in text:
        return _encoded(text)
    return b"\r\n".join(map(_encoded_line, text.split("\n")))


@functools.lru_cache(maxsize=2048)
def _encoded_line(line: str) -> bytes:
    return _encoded(line)


def _encoded(text: str) -> bytes:
    encoded = binascii.b2a_qp(text.encode("utf-8"), quotetabs=False, istext=True, header=False)
    return encoded.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


_ADDR_SPEC = re.compile(r"[^\s@<>,;:\"()\[\]\\]+@[^\s@<>,;:\"()\[\]\\]+")
