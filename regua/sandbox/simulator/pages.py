"""The pages Asaas serves its payers: the invoice (`invoiceUrl`, where a card can be typed) and the boleto PDF.

`GET /i/{code}` is a small page in Portuguese with the amount, the due date and the status; a card
payment still unpaid has a form where a test card number is typed, and `POST /i/{code}` pays it as
the `pay` control does (a refused test number is told on the page and announced with
PAYMENT_CREDIT_CARD_CAPTURE_REFUSED). A boleto or PIX invoice shows its line and its PIX code.
`GET /b/pdf/{code}` is a one-page PDF with the boleto's line, written by hand here.
"""

from __future__ import annotations

from html import escape
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from regua.sandbox.simulator import cards, codes, controls
from regua.sandbox.simulator.common import SimulatorError
from regua.sandbox.simulator.payments import UNPAID, Ledger, Payment

_STATUS_WORDS = {
    "PENDING": "Aguardando pagamento",
    "OVERDUE": "Vencida",
    "CONFIRMED": "Pagamento confirmado",
    "RECEIVED": "Paga",
    "RECEIVED_IN_CASH": "Paga em dinheiro",
    "REFUNDED": "Estornada",
    "AWAITING_RISK_ANALYSIS": "Em análise",
}


def reais(cents: int) -> str:
    whole, part = divmod(cents, 100)
    return f"R$ {whole:,}".replace(",", ".") + f",{part:02d}"


def _page(title: str, body: str, status_code: int = 200) -> HTMLResponse:
    html = (
        '<!doctype html><html lang="pt-BR"><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title></head><body><main>{body}</main></body></html>"
    )
    return HTMLResponse(html, status_code=status_code)


def invoice_html(payment: Payment, message: str = "") -> str:
    status = _STATUS_WORDS.get(payment.status, payment.status)
    parts = [
        f"<h1>Fatura {escape(payment.id)}</h1>",
        f"<p>{escape(payment.description or 'Cobrança')}</p>",
        f"<p>Valor: <strong>{reais(payment.value_cents)}</strong></p>",
        f"<p>Vencimento: {payment.due_date.strftime('%d/%m/%Y')}</p>",
        f'<p id="status">Situação: {escape(status)}</p>',
    ]
    if message:
        parts.append(f'<p role="alert">{escape(message)}</p>')
    if payment.deleted:
        parts.append("<p>Esta cobrança foi removida.</p>")
    elif payment.billing_type == "CREDIT_CARD" and payment.status in UNPAID and payment.card is None:
        parts.append(
            '<form method="post"><fieldset><legend>Pagar com cartão de crédito</legend>'
            '<label>Número do cartão <input name="creditCardNumber" inputmode="numeric" '
            'autocomplete="cc-number" required></label>'
            '<label>Nome impresso no cartão <input name="holderName" autocomplete="cc-name"></label>'
            '<label>Validade (MM/AA) <input name="expiry" autocomplete="cc-exp"></label>'
            '<label>CVV <input name="ccv" inputmode="numeric" autocomplete="cc-csc"></label>'
            '<button type="submit">Pagar</button></fieldset></form>'
        )
    elif payment.billing_type != "CREDIT_CARD" and payment.status in UNPAID:
        parts.append(f"<p>Pix copia e cola: <code>{escape(codes.pix_payload(payment))}</code></p>")
        if payment.is_boleto:
            line = codes.typeable_line(codes.bar_code(payment))
            pdf = payment.invoice_url.replace("/i/", "/b/pdf/")
            parts.append(f'<p>Linha digitável: <code>{line}</code> (<a href="{escape(pdf)}">boleto em PDF</a>)</p>')
    return "".join(parts)


def boleto_pdf(payment: Payment) -> bytes:
    """A valid one-page PDF (Helvetica, ASCII text) with the boleto's line, amount and due date."""
    line = codes.typeable_line(codes.bar_code(payment))
    texts = (
        "Boleto bancario - Asaas, simulador",
        f"Cobranca {payment.id}",
        f"Valor: {reais(payment.value_cents)}",
        f"Vencimento: {payment.due_date.strftime('%d/%m/%Y')}",
        f"Linha digitavel: {line}",
    )
    stream = "BT /F1 12 Tf 50 790 Td 16 TL " + " ".join(f"({t}) '" for t in texts) + " ET"
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream.encode("ascii")),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    pdf = b"%PDF-1.4\n"
    offsets = []
    for number, content in enumerate(objects, start=1):
        offsets.append(len(pdf))
        pdf += b"%d 0 obj\n%s\nendobj\n" % (number, content)
    xref = len(pdf)
    pdf += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    pdf += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    pdf += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return pdf


def page_routes(sim: Ledger) -> list[Route]:
    def payment_of(request: Request) -> Payment:
        sim.advance()
        return sim.find("pay_" + str(request.path_params["code"]))

    async def invoice(request: Request) -> Response:
        try:
            with sim.lock:
                payment = payment_of(request)
                return _page(f"Fatura {payment.id}", invoice_html(payment))
        except SimulatorError as error:
            return _page("Fatura não encontrada", f"<p>{escape(error.description)}</p>", 404)

    async def pay_invoice(request: Request) -> Response:
        form = parse_qs((await request.body()).decode("utf-8", "replace"))
        number = (form.get("creditCardNumber") or [""])[0]
        try:
            with sim.lock:
                payment = payment_of(request)
                if payment.billing_type != "CREDIT_CARD" or payment.status not in UNPAID or payment.card:
                    return _page(f"Fatura {payment.id}", invoice_html(payment, "Esta fatura não aceita cartão."), 409)
                try:
                    controls.pay(sim, payment, {"creditCardNumber": number})
                except cards.CardRefused as refused:
                    sim.emit("PAYMENT_CREDIT_CARD_CAPTURE_REFUSED", payment)
                    return _page(f"Fatura {payment.id}", invoice_html(payment, refused.description), 402)
                except SimulatorError as invalid:
                    return _page(f"Fatura {payment.id}", invoice_html(payment, invalid.description), 400)
                return _page(f"Fatura {payment.id}", invoice_html(payment, "Pagamento aprovado. Obrigado!"))
        except SimulatorError as error:
            return _page("Fatura não encontrada", f"<p>{escape(error.description)}</p>", 404)

    async def pdf(request: Request) -> Response:
        try:
            with sim.lock:
                payment = payment_of(request)
                if not payment.is_boleto:
                    raise SimulatorError(404, "not_found", "Esta cobrança não possui boleto.")
                return Response(boleto_pdf(payment), media_type="application/pdf")
        except SimulatorError as error:
            return _page("Boleto não encontrado", f"<p>{escape(error.description)}</p>", 404)

    return [
        Route("/i/{code}", invoice, methods=["GET"]),
        Route("/i/{code}", pay_invoice, methods=["POST"]),
        Route("/b/pdf/{code}", pdf, methods=["GET"]),
    ]
