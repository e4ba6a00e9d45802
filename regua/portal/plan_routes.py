"""The payment page's plan routes: choose a plan, its frequency and method, review, confirm and pay; cancel.

Every form stays on this page's own signed link (the token in the path is what a forged form cannot
know, as for the receipt upload), and every step before a confirmation only reads: the review runs
the billing services in a unit of work that is rolled back.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from billing.checkout import CheckoutRequest, checkout
from billing.errors import Conflict, InvalidInput, NotFound
from billing.models import PaymentMethod
from billing.ports import Gateway, GatewayError, GatewayUnavailable
from regua.portal.plans import (
    MAX_INSTALLMENTS,
    Choice,
    ChoiceRefused,
    Ending,
    Offer,
    Outcome,
    apply_choice,
    cancel_choice,
    offer_of,
    read_choice,
)
from regua.portal.view import PRODUCTS
from regua.runtime import Runtime

log = logging.getLogger("regua.portal")


class PortalPages(Protocol):
    """What the plan pages use of the payment page: its link, rendering, runtime and gateway."""

    runtime: Runtime
    gateway: Gateway

    def account_of(self, request: Request) -> str | Response: ...

    def base(self, request: Request) -> str: ...

    def customer_ip(self, request: Request) -> str | None: ...

    def render(self, template: str, status: int = 200, **variables: Any) -> HTMLResponse: ...

    def problem(self, request: Request, message: str, status: int) -> HTMLResponse: ...


class PlanPages:
    """The plan handlers, on the payment page's own (link, rendering, gateway)."""

    def __init__(self, pages: PortalPages) -> None:
        self.pages = pages
        self.runtime = pages.runtime

    async def _offer(self, request: Request) -> tuple[str, Offer] | Response:
        """The account the link names and the product's offer, or the page that says why there is none."""
        account_id = self.pages.account_of(request)
        if isinstance(account_id, Response):
            return account_id
        product = request.path_params["product"]
        if product not in PRODUCTS:
            return self.pages.render("link.html", 404, expired=False)

        def read(session: Session) -> Offer | None:
            return offer_of(session, account_id, product)

        try:
            offer = await run_in_threadpool(self.runtime.read, read)
        except NotFound:
            return self.pages.render("link.html", 404, expired=False)
        if offer is None:
            return self.pages.problem(request, "Os planos deste produto não estão disponíveis aqui.", 404)
        return account_id, offer

    def _choice(self, offer: Offer, fields: Mapping[str, str], modules: Sequence[str], *, paying: bool) -> Choice:
        option = fields.get("opcao") if paying else None
        if paying and not option:
            raise ChoiceRefused("Escolha a frequência e a forma de pagamento.")
        return read_choice(offer, fields.get("plano", ""), modules, option, fields.get("parcelas", "1"))

    def _base(self, request: Request, offer: Offer) -> str:
        return f"{self.pages.base(request)}/plano/{offer.product}"

    # -- choosing (GET: nothing changes)

    async def choose(self, request: Request) -> Response:
        found = await self._offer(request)
        if isinstance(found, Response):
            return found
        _account_id, offer = found
        current = offer.current if offer.current is not None and offer.plan(offer.current.plan) else None
        # Back from step 2 ("Mudar"): the plan and modules chosen there; else the subscription's own.
        asked = request.query_params.get("plano", "")
        chosen_plan = asked if offer.plan(asked) else (current.plan if current else offer.plans[0].id)
        chosen_modules = request.query_params.getlist("modulo") if asked else (current.modules if current else ())
        return self.pages.render(
            "plan_choose.html",
            offer=offer,
            current=current,
            chosen_plan=chosen_plan,
            chosen_modules=chosen_modules,
            base=self.pages.base(request),
            here=self._base(request, offer),
        )

    async def pay_options(self, request: Request) -> Response:
        found = await self._offer(request)
        if isinstance(found, Response):
            return found
        _account_id, offer = found
        params = request.query_params
        try:
            choice = self._choice(offer, params, params.getlist("modulo"), paying=False)
        except ChoiceRefused as refused:
            return self.pages.problem(request, str(refused), 422)
        current = offer.current
        # Back from the review: the option chosen there; else the subscription's own.
        selected = params.get("opcao") or (f"{current.frequency.value}.{current.method.value}" if current else "")
        installments = params.get("parcelas", "")
        return self.pages.render(
            "plan_payment.html",
            offer=offer,
            choice=choice,
            monthly_cents=offer.monthly_price(choice),
            options=offer.options(choice.plan, choice.modules),
            selected=selected or "monthly.pix",
            installments=int(installments) if installments.isdigit() else (current.installments if current else 1),
            max_installments=MAX_INSTALLMENTS,
            base=self.pages.base(request),
            here=self._base(request, offer),
        )

    async def review(self, request: Request) -> Response:
        found = await self._offer(request)
        if isinstance(found, Response):
            return found
        account_id, offer = found
        params = request.query_params
        try:
            choice = self._choice(offer, params, params.getlist("modulo"), paying=True)
        except ChoiceRefused as refused:
            return self.pages.problem(request, str(refused), 422)
        rt = self.runtime

        def preview(session: Session) -> Outcome:  # read: the unit of work is never committed
            return apply_choice(session, account_id, offer, choice, rt.clock.now(), rt.calendar)

        try:
            outcome = await run_in_threadpool(rt.read, preview)
        except (InvalidInput, Conflict) as refused:
            log.info("plan review for %s refused: %s", account_id, refused)
            return self.pages.problem(request, "Esta escolha não pode ser feita agora. Tente outra.", 422)
        return self.pages.render(
            "plan_review.html",
            offer=offer,
            choice=choice,
            outcome=outcome,
            installments=outcome.installments(choice),
            base=self.pages.base(request),
            here=self._base(request, offer),
        )

    # -- confirming (POST)

    async def confirm(self, request: Request) -> Response:
        found = await self._offer(request)
        if isinstance(found, Response):
            return found
        account_id, offer = found
        form = await request.form(max_files=0, max_fields=40)
        fields = {key: str(value) for key, value in form.items()}
        modules = [str(value) for value in form.getlist("modulo")]
        try:
            choice = self._choice(offer, fields, modules, paying=True)
        except ChoiceRefused as refused:
            return self.pages.problem(request, str(refused), 422)
        rt = self.runtime

        def work(session: Session) -> Outcome:
            return apply_choice(session, account_id, offer, choice, rt.clock.now(), rt.calendar)

        try:
            outcome = await run_in_threadpool(rt.transaction, work)
        except (InvalidInput, Conflict) as refused:
            log.info("plan choice for %s refused: %s", account_id, refused)
            return self.pages.problem(request, "Esta escolha não pode ser feita agora. Tente outra.", 422)
        log.info("plan of %s %s: %s (%s)", account_id, offer.product, choice.plan, outcome.effect)
        if not outcome.owed or outcome.saved_card:
            notice = "cartao" if outcome.owed else "plano"
            return RedirectResponse(f"{self.pages.base(request)}?aviso={notice}#plano-{offer.product}", status_code=303)
        return await self._pay(request, account_id, offer, choice, outcome)

    async def _pay(self, request: Request, account_id: str, offer: Offer, choice: Choice, outcome: Outcome) -> Response:
        """Open the payment of what is owed now: PIX or boleto codes, or the gateway's card page (card data
        never reaches regua; an auto-debit card that is not saved yet is given there, for this payment)."""
        card = choice.method in (PaymentMethod.CARD, PaymentMethod.CARD_AUTO_DEBIT)
        method = "card" if card else choice.method.value
        order = CheckoutRequest(
            offer.product, method, None, outcome.installments(choice), self.pages.customer_ip(request) if card else None
        )
        try:
            result = await run_in_threadpool(checkout, self.runtime, self.pages.gateway, account_id, order)
        except (Conflict, InvalidInput) as conflict:
            log.info("plan checkout for %s refused: %s", account_id, conflict)
            return self.pages.problem(request, "Plano registrado. Um pagamento já está em andamento: veja abaixo.", 409)
        except GatewayUnavailable:
            message = "Plano registrado, mas o sistema de pagamentos não respondeu. Pague pela página de pagamentos."
            return self.pages.problem(request, message, 503)
        except GatewayError as error:
            log.warning("plan checkout for %s failed at the gateway: %s", account_id, error)
            message = "Plano registrado, mas o sistema de pagamentos recusou a cobrança. Fale com o suporte."
            return self.pages.problem(request, message, 502)
        suffix = "?cartao=1" if card else ""
        return RedirectResponse(f"{self.pages.base(request)}/cobranca/{result.charge.id}{suffix}", status_code=303)

    # -- canceling

    async def cancel_page(self, request: Request) -> Response:
        ending = await self._cancel(request, commit=False)
        if isinstance(ending, Response):
            return ending
        product = request.path_params["product"]
        return self.pages.render(
            "plan_cancel.html",
            ending=ending,
            label=PRODUCTS[product],
            base=self.pages.base(request),
            here=f"{self.pages.base(request)}/plano/{product}",
        )

    async def cancel(self, request: Request) -> Response:
        ending = await self._cancel(request, commit=True)
        if isinstance(ending, Response):
            return ending
        product = request.path_params["product"]
        return RedirectResponse(f"{self.pages.base(request)}?aviso=cancelada#plano-{product}", status_code=303)

    async def _cancel(self, request: Request, *, commit: bool) -> Ending | Response:
        account_id = self.pages.account_of(request)
        if isinstance(account_id, Response):
            return account_id
        product = request.path_params["product"]
        if product not in PRODUCTS:
            return self.pages.render("link.html", 404, expired=False)
        rt = self.runtime

        def work(session: Session) -> Ending:
            return cancel_choice(session, account_id, product, rt.clock.now(), rt.calendar)

        try:
            ending = await run_in_threadpool(rt.transaction if commit else rt.read, work)
        except NotFound:
            return self.pages.problem(request, "Não há assinatura deste produto para cancelar.", 404)
        if commit:
            log.info("subscription %s of %s canceled from the payment page", product, account_id)
        return ending


def plan_routes(pages: PortalPages) -> list[BaseRoute]:
    plans = PlanPages(pages)
    return [
        Route("/{token}/plano/{product}", plans.choose, methods=["GET"]),
        Route("/{token}/plano/{product}", plans.confirm, methods=["POST"]),
        Route("/{token}/plano/{product}/pagamento", plans.pay_options, methods=["GET"]),
        Route("/{token}/plano/{product}/revisar", plans.review, methods=["GET"]),
        Route("/{token}/plano/{product}/cancelar", plans.cancel_page, methods=["GET"]),
        Route("/{token}/plano/{product}/cancelar", plans.cancel, methods=["POST"]),
    ]
