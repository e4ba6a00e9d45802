"""`/ops/mail` and `/ops/mail.json`: the mails the dev SMTP sink caught, for `regua dev` only."""

from __future__ import annotations

import base64
import hmac
import json
from html import escape

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from regua.http import error_response
from regua.sandbox.smtp_sink import CaughtMail, MailSink

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem; color: #1d2733; }
table.list { border-collapse: collapse; width: 100%; margin-bottom: 2rem; }
table.list td, table.list th { border-bottom: 1px solid #d8dde3; padding: .35rem .5rem; text-align: left; }
article { border: 1px solid #d8dde3; border-radius: 6px; padding: 1rem; margin-bottom: 1.5rem; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: .15rem 1rem; font-size: .9rem; }
dt { color: #5b6773; } dd { margin: 0; word-break: break-all; }
fieldset.widths { border: 0; padding: 0; margin: .75rem 0 .5rem; display: flex; gap: 1.25rem; }
fieldset.widths legend { float: left; margin-right: .75rem; color: #5b6773; }
.preview iframe { display: block; width: 600px; max-width: 100%; height: 28rem; border: 1px solid #d8dde3; }
.preview:has(input[value='375']:checked) iframe { width: 375px; }
pre { white-space: pre-wrap; background: #f5f7f9; padding: .75rem; }
.note { color: #8a5a00; }
"""


def _allowed(request: Request, token: str) -> bool:
    """Open in dev when REGUA_OPS_TOKEN is empty; otherwise the ops password, bearer or Basic `ops`."""
    if not token:
        return True
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer":
        return hmac.compare_digest(given.strip().encode(), token.encode())
    if scheme.lower() == "basic":
        try:
            user, _, password = base64.b64decode(given.strip()).decode().partition(":")
        except ValueError:
            return False
        return user == "ops" and hmac.compare_digest(password.encode(), token.encode())
    return False


# Each mail is shown at a phone's width or at the 600 px of a desktop reader, and its frame grows to the
# mail's height: nothing is clipped. The frame may be read by this page (allow-same-origin, to measure
# it) but runs no script of the mail's own (no allow-scripts). The page reloads only when the sink
# caught a new mail, so a toggle or a scroll position is not lost every few seconds.
_SCRIPT = """
function fit(frame) {
  const root = frame.contentDocument && frame.contentDocument.documentElement;
  if (root) frame.style.height = Math.ceil(root.getBoundingClientRect().height) + "px";
}
function follow(frame) {
  fit(frame);
  const root = frame.contentDocument && frame.contentDocument.documentElement;
  if (root) new ResizeObserver(() => fit(frame)).observe(root);
}
for (const frame of document.querySelectorAll(".preview iframe")) {
  frame.addEventListener("load", () => follow(frame));
  follow(frame);
}
setInterval(async () => {
  try {
    const answer = await fetch("/ops/mail.json", {cache: "no-store"});
    const mails = answer.ok ? await answer.json() : null;
    if (mails && JSON.stringify(mails[0] || null) !== JSON.stringify(NEWEST)) location.reload();
  } catch (error) {}
}, 5000);
"""

WIDTHS = (375, 600)
"""The preview's widths: a 375 px phone and the 600 px the emails are designed at (the default)."""


def _preview(number: int, subject: str, html_part: str) -> str:
    choices = "".join(
        f'<label><input type="radio" name="width-{number}" value="{width}"'
        f"{' checked' if width == WIDTHS[-1] else ''}> {width} px</label>"
        for width in WIDTHS
    )
    return (
        f'<div class="preview"><fieldset class="widths"><legend>Width</legend>{choices}</fieldset>'
        f'<iframe sandbox="allow-same-origin" title="HTML part of mail {number + 1}: {escape(subject)}" '
        f'srcdoc="{escape(html_part, quote=True)}"></iframe></div>'
    )


def _mail_html(number: int, mail: CaughtMail) -> str:
    headers = "".join(f"<dt>{escape(name)}</dt><dd>{escape(value)}</dd>" for name, value in mail.headers())
    html_part, text_part = mail.part("html"), mail.part("plain")
    subject = mail.header("Subject") or "(no subject)"
    body = ""
    if html_part is not None:
        body += _preview(number, subject, html_part)
    if text_part is not None:
        body += f"<details><summary>Plain text</summary><pre>{escape(text_part)}</pre></details>"
    envelope = f"<dt>Envelope to</dt><dd>{escape(', '.join(mail.rcpt_tos))}</dd>"
    return f'<article id="mail-{number}"><h2>{escape(subject)}</h2><dl>{envelope}{headers}</dl>{body}</article>'


def render_mail_page(sink: MailSink) -> str:
    mails = sink.mails()
    rows = "".join(
        f'<tr><td><a href="#mail-{n}">{escape(m.header("Subject") or "")}</a></td>'
        f"<td>{escape(m.header('X-Regua-Kind') or '')}</td><td>{escape(', '.join(m.rcpt_tos))}</td>"
        f"<td>{escape(m.header('X-Regua-Account') or '')}</td><td>{escape(m.summary()['received_at'])}</td></tr>"
        for n, m in enumerate(mails)
    )
    status = (
        f"<p>The sink listens on {escape(sink.url)}; newest first; "
        "as JSON at <a href='/ops/mail.json'>/ops/mail.json</a></p>"
        if sink.running
        else f"<p class='note'>The sink is not running: {escape(sink.url)} was taken by another program.</p>"
    )
    table = (
        "<table class='list'><tr><th>Subject</th><th>Kind</th><th>To</th><th>Account</th><th>Received</th></tr>"
        f"{rows}</table>"
        if mails
        else "<p>No mail yet.</p>"
    )
    articles = "".join(_mail_html(n, m) for n, m in enumerate(mails))
    # The newest mail as /ops/mail.json lists it, "<" escaped so that no subject can close the script.
    newest = json.dumps(mails[0].summary() if mails else None).replace("<", "\\u003c")
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'><title>regua dev: mail</title>"
        f"<style>{_STYLE}</style></head>"
        f"<body><h1>Mail caught by regua dev ({len(mails)})</h1>{status}{table}{articles}"
        f"<script>const NEWEST = {newest};{_SCRIPT}</script></body></html>"
    )


def mail_routes(sink: MailSink, ops_token: str) -> list[Route]:
    def refused() -> Response:
        challenge = {"WWW-Authenticate": 'Basic realm="regua ops"'}
        return error_response(401, "unauthorized", "the ops password is required", challenge)

    async def page(request: Request) -> Response:
        if not _allowed(request, ops_token):
            return refused()
        return HTMLResponse(render_mail_page(sink))

    async def listing(request: Request) -> Response:
        if not _allowed(request, ops_token):
            return refused()
        return JSONResponse([mail.summary() for mail in sink.mails()])

    return [
        Route("/ops/mail", page, methods=["GET"]),
        Route("/ops/mail.json", listing, methods=["GET"]),
    ]
