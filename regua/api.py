"""The product API (SPEC 4.2): accounts, subscriptions, access, invoices, payments, receipts, timeline."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route

from billing.access import ProductAccess, account_access
from billing.accounts import (
    AccountInput,
    SubscriptionInput,
    get_account,
    subscribe,
    upsert_account,
    validate_account_id,
)
from billing.checkout import CheckoutRequest, checkout
from billing.errors import NotFound
from billing.history import payment_history
from billing.models import Charge, Invoice
from billing.notifications import record_due_notifications
from billing.ports import Gateway, GatewayRejected, GatewayUnavailable
from billing.timeline import Event, account_timeline
from billing.verification import record_receipt
from regua.api_catalog import CatalogAPI, catalog_routes, change_json
from regua.api_json import (
    account_input,
    account_json,
    charge_json,
    checkout_json,
    invoices_json,
    payment_json,
    refund_json,
    subscription_json,
)
from regua.http import BearerAuthMiddleware, SendMails, error_response, json_body
from regua.runtime import Runtime

Endpoint = Callable[[Request], Awaitable[Response]]
log = logging.getLogger("regua.api")


class ProductAPI:
    """Route handlers bound to one runtime; each runs its billing service in a worker thread."""

    def __init__(self, runtime: Runtime, gateway: Gateway, send_mails: SendMails | None = None) -> None:
        self.runtime = runtime
        self.gateway = gateway
        self.send_mails = send_mails

    async def body(self, request: Request) -> dict[str, Any]:
        return await json_body(request, self.runtime.settings.max_body_bytes)

    def local_text(self, instant: datetime | None) -> str | None:
        """Instants the product shows its users, in the billing zone: "2026-12-07T00:00:00-03:00"."""
        return None if instant is None else self.runtime.calendar.local(instant).isoformat()

    def access_json(self, access: ProductAccess) -> dict[str, Any]:
        return {
            "state": access.state,
            "alert": access.alert,
            "block_at": self.local_text(access.block_at),
            "blocked_since": self.local_text(access.blocked_since),
            "open_invoices": access.open_invoices,
            "owed_now": list(access.owed),
        }

    def event_json(self, event: Event) -> dict[str, Any]:
        return {
            "at": self.local_text(event.at),
            "type": event.type,
            "product": event.product,
            **event.details,
        }

    async def put_account(self, request: Request) -> JSONResponse:
        account_id = validate_account_id(request.path_params["account_id"])
        payload = await self.body(request)
        rt = self.runtime
        data = AccountInput.parse(payload, rt.calendar)

        def work(session: Session) -> tuple[dict[str, Any], bool]:
            account, created = upsert_account(session, account_id, data, rt.clock.now())
            return account_json(account), created

        body, created = await run_in_threadpool(rt.transaction, work)
        return JSONResponse(body, status_code=201 if created else 200)

    async def get_account(self, request: Request) -> JSONResponse:
        account_id = request.path_params["account_id"]

        def work(session: Session) -> dict[str, Any]:
            return account_json(get_account(session, account_id))

        return JSONResponse(await run_in_threadpool(self.runtime.read, work))

    async def patch_account(self, request: Request) -> JSONResponse:
        """Changes only the fields given; the result is validated as a whole, as PUT does."""
        account_id = request.path_params["account_id"]
        payload = await self.body(request)
        rt = self.runtime

        def work(session: Session) -> dict[str, Any]:
            current = account_input(get_account(session, account_id))
            data = AccountInput.parse({**current, **payload}, rt.calendar)
            account, _created = upsert_account(session, account_id, data, rt.clock.now())
            return account_json(account)

        return JSONResponse(await run_in_threadpool(rt.transaction, work))

    async def put_subscription(self, request: Request) -> JSONResponse:
        account_id = request.path_params["account_id"]
        product = request.path_params["product"]
        payload = await self.body(request)
        data = SubscriptionInput.parse(payload)
        rt = self.runtime

        def work(session: Session) -> tuple[dict[str, Any], bool]:
            subscribed = subscribe(session, account_id, product, data, rt.clock.now(), rt.calendar)
            body = {**subscription_json(subscribed.subscription), "change": change_json(subscribed.change)}
            return body, subscribed.created

        body, created = await run_in_threadpool(rt.transaction, work)
        return JSONResponse(body, status_code=201 if created else 200)

    async def get_access(self, request: Request) -> JSONResponse:
        account_id = request.path_params["account_id"]
        rt = self.runtime

        def work(session: Session) -> dict[str, ProductAccess]:
            return account_access(session, account_id, rt.clock.now(), rt.calendar, rt.policy)

        products = await run_in_threadpool(rt.read, work)
        return JSONResponse(
            {
                "account_id": account_id,
                "products": {name: self.access_json(a) for name, a in products.items()},
            }
        )

    async def get_invoices(self, request: Request) -> JSONResponse:
        account_id = request.path_params["account_id"]

        def work(session: Session) -> list[dict[str, Any]]:
            get_account(session, account_id)
            invoices = session.scalars(
                select(Invoice)
                .where(Invoice.account_id == account_id)
                .order_by(Invoice.period_start.desc(), Invoice.product)
            )
            return invoices_json(session, list(invoices))

        return JSONResponse({"invoices": await run_in_threadpool(self.runtime.read, work)})

    async def get_invoice(self, request: Request) -> JSONResponse:
        invoice_id = request.path_params["invoice_id"]

        def work(session: Session) -> dict[str, Any]:
            invoice = session.get(Invoice, invoice_id)
            if invoice is None:
                raise NotFound(f"no invoice {invoice_id!r}")
            [body] = invoices_json(session, [invoice])
            return body

        return JSONResponse(await run_in_threadpool(self.runtime.read, work))

    async def get_charges(self, request: Request) -> JSONResponse:
        account_id = request.path_params["account_id"]

        def work(session: Session) -> list[dict[str, Any]]:
            get_account(session, account_id)
            charges = session.scalars(
                select(Charge)
                .where(Charge.account_id == account_id)
                .options(selectinload(Charge.invoice_links))
                .order_by(Charge.created_at.desc(), Charge.id)
            )
            return [charge_json(charge) for charge in charges]

        return JSONResponse({"charges": await run_in_threadpool(self.runtime.read, work)})

    async def get_payments(self, request: Request) -> JSONResponse:
        account_id = request.path_params["account_id"]
        rt = self.runtime

        def work(session: Session) -> dict[str, Any]:
            history = payment_history(session, account_id, rt.calendar)
            return {
                "payments": [payment_json(p) for p in history.payments],
                "refunds": [refund_json(r) for r in history.refunds],
            }

        return JSONResponse(await run_in_threadpool(rt.read, work))

    async def post_receipt(self, request: Request) -> JSONResponse:
        invoice_id = request.path_params["invoice_id"]
        rt = self.runtime

        def work(session: Session) -> tuple[int, dict[str, Any], list[str]]:
            now = rt.clock.now()
            recorded = record_receipt(session, invoice_id, now, rt.policy)
            [body] = invoices_json(session, [recorded.invoice])
            if recorded.review is not None:
                # The invoice had its verification window: this receipt lifts nothing until a person decides (3.7).
                return 202, {"review": "needs_a_person", "review_id": recorded.review.id, "invoice": body}, []
            # Told at once, as the payment page's receipts are (the block lifted, or the verification's window).
            due = record_due_notifications(session, now, rt.calendar, rt.policy, schedule=False)
            return 200, body, due.pending

        status, body, mails = await run_in_threadpool(rt.transaction, work)
        if self.send_mails is not None and mails:
            try:
                self.send_mails(mails)
            except Exception as error:  # the broker is down: the tick queues them later
                log.warning("could not queue the receipt's emails: %s", error)
        return JSONResponse(body, status_code=status)

    async def post_checkout(self, request: Request) -> JSONResponse:
        """One charge for what must be paid now: 201 a new one, 200 the pending one again, whatever the method."""
        account_id = request.path_params["account_id"]
        data = CheckoutRequest.parse(await self.body(request))
        try:
            result = await run_in_threadpool(checkout, self.runtime, self.gateway, account_id, data)
        except GatewayUnavailable:
            return error_response(
                503, "gateway_unavailable", "the payment gateway did not answer: try again", {"Retry-After": "30"}
            )
        except GatewayRejected as rejected:
            return error_response(
                502, "gateway_rejected", f"the payment gateway refused the charge (HTTP {rejected.status_code})"
            )
        # A card the gateway has not settled yet says so in its body (`status` pending), not in the HTTP status.
        return JSONResponse(checkout_json(result), status_code=201 if result.created else 200)

    async def get_timeline(self, request: Request) -> JSONResponse:
        account_id = request.path_params["account_id"]
        rt = self.runtime

        def work(session: Session) -> dict[str, Any]:
            now = rt.clock.now()
            timeline = account_timeline(session, account_id, now, rt.calendar, rt.policy)
            return {
                "account_id": account_id,
                "now": self.local_text(now),
                "upcoming": [self.event_json(e) for e in timeline.upcoming],
                "past": [self.event_json(e) for e in timeline.past],
            }

        return JSONResponse(await run_in_threadpool(rt.read, work))


def by_method(**handlers: Endpoint) -> Endpoint:
    """One endpoint for a path served by several methods, so a 405 there lists them all in `Allow`."""

    async def endpoint(request: Request) -> Response:
        # Starlette answers HEAD wherever GET is allowed.
        return await handlers["GET" if request.method == "HEAD" else request.method](request)

    return endpoint


def api_routes(runtime: Runtime, gateway: Gateway, send_mails: SendMails | None = None) -> Mount:
    api = ProductAPI(runtime, gateway, send_mails)
    catalog_api = CatalogAPI(runtime)
    return Mount(
        "/api",
        routes=[
            Route(
                "/accounts/{account_id}",
                by_method(GET=api.get_account, PUT=api.put_account, PATCH=api.patch_account),
                methods=["GET", "PUT", "PATCH"],
            ),
            Route(
                "/accounts/{account_id}/subscriptions/{product}",
                by_method(PUT=api.put_subscription, DELETE=catalog_api.delete_subscription),
                methods=["PUT", "DELETE"],
            ),
            *catalog_routes(runtime),
            Route("/accounts/{account_id}/access", api.get_access, methods=["GET"]),
            Route("/accounts/{account_id}/invoices", api.get_invoices, methods=["GET"]),
            Route("/accounts/{account_id}/payments", api.get_payments, methods=["GET"]),
            Route("/accounts/{account_id}/charges", api.get_charges, methods=["GET"]),
            Route("/accounts/{account_id}/timeline", api.get_timeline, methods=["GET"]),
            Route("/accounts/{account_id}/checkout", api.post_checkout, methods=["POST"]),
            Route("/invoices/{invoice_id}", api.get_invoice, methods=["GET"]),
            Route("/invoices/{invoice_id}/receipts", api.post_receipt, methods=["POST"]),
        ],
        middleware=[Middleware(BearerAuthMiddleware, token=runtime.settings.api_token)],
    )
