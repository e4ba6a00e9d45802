"""The payment page's routes: `/portal/{token}` and what it posts (paying, a receipt), all in pt-BR HTML."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import jinja2
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route

from billing.checkout import METHODS, CheckoutRequest, checkout
from billing.errors import Conflict, NotFound
from billing.money import format_brl
from billing.ports import Gateway, GatewayError, GatewayUnavailable
from billing.remote_ip import normalize_ip
from regua.http import SendMails
from regua.portal.plan_panels import PlanPanel, plan_panels
from regua.portal.plan_routes import plan_routes
from regua.portal.receipts import MAX_RECEIPT_BYTES, ReceiptRefused, ReceiptStored, check_receipt, store_receipt
from regua.portal.tokens import ExpiredToken, InvalidToken, PortalTokens
from regua.portal.view import PRODUCTS, ChargeView, PortalView, charge_view, invoice_of_account, portal_view
from regua.runtime import Runtime

log = logging.getLogger("regua.portal")

TEMPLATES_DIR = Path(__file__).resolve().parents[2] / "templates" / "portal"
SCRIPT = TEMPLATES_DIR / "portal.js"
FORM_OVERHEAD = 64 * 1024
"""What a multipart body carries besides the file: boundaries, headers, the invoice field."""
POLL_SECONDS = 3

HEADERS = {
    "Cache-Control": "no-store",
    # The token is in the URL: it must never travel to the gateway's page or anywhere else as a Referer.
    "Referrer-Policy": "no-referrer",
    "X-Robots-Tag": "noindex, nofollow",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": (
        "default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'self'; "
        "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    ),
}


def _environment() -> jinja2.Environment:
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters["brl"] = format_brl
    environment.globals["products"] = PRODUCTS
    return environment


class PortalPages:
    """Handlers bound to one runtime and gateway; billing work runs in worker threads."""

    def __init__(self, runtime: Runtime, gateway: Gateway, send_mails: SendMails | None) -> None:
        self.runtime = runtime
        self.gateway = gateway
        self.send_mails = send_mails
        self.tokens = PortalTokens(runtime.settings.secret_key)
        self.templates = _environment()

    # -- helpers

    def render(self, template: str, status: int = 200, **variables: Any) -> HTMLResponse:
        html = self.templates.get_template(template).render(**variables)
        return HTMLResponse(html, status_code=status, headers=HEADERS)

    def account_of(self, request: Request) -> str | Response:
        """The account the URL's token names, or the page that says the link cannot be used."""
        try:
            return self.tokens.read(request.path_params["token"], self.runtime.clock.now()).account_id
        except ExpiredToken:
            return self.render("link.html", 410, expired=True)
        except InvalidToken:
            return self.render("link.html", 404, expired=False)

    def base(self, request: Request) -> str:
        return f"/portal/{request.path_params['token']}"

    def customer_ip(self, request: Request) -> str | None:
        return customer_ip(request)

    # -- pages

    async def page(self, request: Request) -> Response:
        account_id = self.account_of(request)
        if isinstance(account_id, Response):
            return account_id
        rt = self.runtime

        def read(session: Session) -> tuple[PortalView, dict[str, PlanPanel]]:
            now = rt.clock.now()
            return portal_view(session, account_id, now, rt.calendar, rt.policy), plan_panels(
                session, account_id, now, rt.calendar
            )

        try:
            view, plans = await run_in_threadpool(rt.read, read)
        except NotFound:
            return self.render("link.html", 404, expired=False)
        return self.render(
            "page.html",
            view=view,
            plans=plans,
            base=self.base(request),
            notice=request.query_params.get("aviso"),
            max_receipt_mb=MAX_RECEIPT_BYTES // (1024 * 1024),
        )

    async def pay(self, request: Request) -> Response:
        account_id = self.account_of(request)
        if isinstance(account_id, Response):
            return account_id
        form = await request.form(max_files=0, max_fields=4)
        product, method = str(form.get("product", "")), str(form.get("method", ""))
        if product not in PRODUCTS or method not in METHODS:
            return self.problem(request, "Escolha a forma de pagamento e tente de novo.", 422)
        # Card data never reaches regua: a card without a saved token is a charge the customer pays on
        # the gateway's own page for it, created with the customer's IP (Asaas's remoteIp).
        order = CheckoutRequest(product, method, None, 1, customer_ip(request) if method == "card" else None)
        try:
            result = await run_in_threadpool(checkout, self.runtime, self.gateway, account_id, order)
        except Conflict as conflict:
            log.info("portal checkout for %s refused: %s", account_id, conflict)
            return self.problem(request, "Não há o que pagar agora, ou um pagamento já está em andamento.", 409)
        except GatewayUnavailable:
            return self.problem(request, "O sistema de pagamentos não respondeu. Tente de novo em instantes.", 503)
        except GatewayError as error:
            log.warning("portal checkout for %s failed at the gateway: %s", account_id, error)
            return self.problem(request, "O sistema de pagamentos recusou a cobrança. Fale com o suporte.", 502)
        suffix = "?cartao=1" if method == "card" else ""
        return RedirectResponse(f"{self.base(request)}/cobranca/{result.charge.id}{suffix}", status_code=303)

    async def charge(self, request: Request) -> Response:
        account_id = self.account_of(request)
        if isinstance(account_id, Response):
            return account_id
        view = await self._charge_view(account_id, request.path_params["charge_id"])
        if view is None:
            return self.render("link.html", 404, expired=False)
        card_url = None
        if request.query_params.get("cartao") and view.gateway_payment_id and not view.confirmed:
            card_url = await self._hosted_page(view)
        return self.render(
            "charge.html",
            charge=view,
            base=self.base(request),
            card=bool(request.query_params.get("cartao")),
            card_url=card_url,
            poll_seconds=POLL_SECONDS,
        )

    async def charge_status(self, request: Request) -> Response:
        account_id = self.account_of(request)
        if isinstance(account_id, Response):
            return JSONResponse({"error": {"code": "invalid_link", "message": "link inválido"}}, 404, HEADERS)
        view = await self._charge_view(account_id, request.path_params["charge_id"])
        if view is None:
            return JSONResponse({"error": {"code": "not_found", "message": "cobrança não encontrada"}}, 404, HEADERS)
        return JSONResponse({"status": view.status, "access": view.access_state}, headers=HEADERS)

    async def receipt(self, request: Request) -> Response:
        account_id = self.account_of(request)
        if isinstance(account_id, Response):
            return account_id
        # Browsers always say how long a form is; a body without a length could be of any size.
        length = request.headers.get("content-length", "")
        if not length.isdigit():
            return self.problem(request, "Envie o comprovante pelo formulário desta página.", 411)
        if int(length) > MAX_RECEIPT_BYTES + FORM_OVERHEAD:
            return self.problem(request, "O arquivo passa de 5 MB. Envie uma foto menor ou o PDF do banco.", 413)
        try:
            async with request.form(max_files=1, max_fields=4) as form:
                upload, invoice_id = form.get("arquivo"), str(form.get("invoice_id", ""))
                if not isinstance(upload, UploadFile):
                    return self.problem(request, "Escolha o arquivo do comprovante.", 422)
                filename = upload.filename or ""
                content = await upload.read(MAX_RECEIPT_BYTES + 1)
        except HTTPException:  # the multipart parser's own refusals: malformed, too many parts
            return self.problem(request, "Não foi possível ler o arquivo enviado. Tente de novo.", 400)
        try:
            check_receipt(content)
        except ReceiptRefused as refused:
            return self.problem(request, str(refused), 413 if len(content) > MAX_RECEIPT_BYTES else 422)
        rt = self.runtime

        def store(session: Session) -> ReceiptStored | None:
            if invoice_of_account(session, account_id, invoice_id) is None:
                return None
            return store_receipt(
                session, account_id, invoice_id, filename, content, rt.clock.now(), rt.calendar, rt.policy
            )

        try:
            stored = await run_in_threadpool(rt.transaction, store)
        except ReceiptRefused as refused:
            return self.problem(request, str(refused), 422)
        except Conflict:
            return self.problem(request, "Esta fatura já está paga ou em verificação.", 409)
        if stored is None:
            return self.problem(request, "Fatura não encontrada.", 404)
        log.info("receipt %s for invoice %s of %s", stored.receipt_id, invoice_id, account_id)
        if stored.review_id is not None:
            log.info("receipt %s waits for a person (review %s)", stored.receipt_id, stored.review_id)
            return RedirectResponse(f"{self.base(request)}?aviso=conferencia#situacao", status_code=303)
        if self.send_mails is not None and stored.notification_ids:
            try:
                self.send_mails(stored.notification_ids)
            except Exception as error:  # the broker is down: the tick queues the email later
                log.warning("could not queue the verification email: %s", error)
        return RedirectResponse(f"{self.base(request)}?aviso=comprovante#situacao", status_code=303)

    async def script(self, _request: Request) -> Response:
        return Response(
            SCRIPT.read_text(encoding="utf-8"),
            media_type="text/javascript",
            headers={"Cache-Control": "public, max-age=3600", "X-Content-Type-Options": "nosniff"},
        )

    def problem(self, request: Request, message: str, status: int) -> HTMLResponse:
        return self.render("problem.html", status, message=message, base=self.base(request))

    # -- reads

    async def _charge_view(self, account_id: str, charge_id: str) -> ChargeView | None:
        rt = self.runtime

        def read(session: Session) -> ChargeView | None:
            return charge_view(session, account_id, charge_id, rt.clock.now(), rt.calendar, rt.policy)

        return await run_in_threadpool(rt.read, read)

    async def _hosted_page(self, view: ChargeView) -> str | None:
        """The gateway's own page for this payment (Asaas's invoiceUrl), where the card is typed."""
        if view.codes.invoice_url:
            return view.codes.invoice_url
        assert view.gateway_payment_id is not None
        try:
            payment = await run_in_threadpool(self.gateway.get_payment, view.gateway_payment_id)
        except GatewayError as error:
            log.warning("no hosted page for charge %s: %s", view.id, error)
            return None
        return payment.invoice_url


def customer_ip(request: Request) -> str | None:
    """The customer's address as the server gives it: the connection's peer (uvicorn takes X-Forwarded-For
    only from the proxies named in FORWARDED_ALLOW_IPS, none by default). None when it is no IP address."""
    if request.client is None:
        return None
    try:
        return normalize_ip(request.client.host)
    except ValueError:
        return None  # a Unix socket, or a test client's name


def portal_routes(runtime: Runtime, gateway: Gateway, send_mails: SendMails | None = None) -> list[BaseRoute]:
    pages = PortalPages(runtime, gateway, send_mails)
    return [
        Mount(
            "/portal",
            routes=[
                Route("/assets/portal.js", pages.script, methods=["GET"]),
                Route("/{token}", pages.page, methods=["GET"]),
                Route("/{token}/pagar", pages.pay, methods=["POST"]),
                Route("/{token}/comprovante", pages.receipt, methods=["POST"]),
                Route("/{token}/cobranca/{charge_id}", pages.charge, methods=["GET"]),
                Route("/{token}/cobranca/{charge_id}/status", pages.charge_status, methods=["GET"]),
                *plan_routes(pages),
            ],
        )
    ]
