"""The product API's catalog and subscription changes (SPEC 4.2, rule 3.10): plans, modules, cancellation."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from billing.accounts import cancel_subscription
from billing.catalog import CatalogItem, ItemInput, ItemKind, catalog, put_item
from billing.models import Subscription
from billing.plan_changes import Change
from regua.http import json_body
from regua.runtime import Runtime


def item_json(item: CatalogItem) -> dict[str, Any]:
    return {
        "id": item.id,
        "kind": item.kind,
        "product": item.product,
        "name": item.name,
        "monthly_price_cents": item.monthly_price_cents,
    }


def change_json(change: Change) -> dict[str, Any]:
    """What a PUT or DELETE did to the subscription's offer, and from when."""
    return {
        "effect": change.effect,
        "effective_on": change.effective_on.isoformat() if change.effective_on else None,
        "proration_invoice_id": change.proration_invoice_id,
        "proration_cents": change.proration_cents,
    }


def pending_change_json(subscription: Subscription) -> dict[str, Any] | None:
    if subscription.change_effective_on is None:
        return None
    return {
        "plan": subscription.next_plan,
        "modules": subscription.next_modules or [],
        "monthly_price_cents": subscription.next_monthly_price_cents,
        "price_source": subscription.next_price_source,
        "frequency": subscription.next_frequency,
        "effective_on": subscription.change_effective_on.isoformat(),
    }


class CatalogAPI:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    async def get_catalog(self, _request: Request) -> JSONResponse:
        def work(session: Session) -> dict[str, Any]:
            return {
                "products": {
                    product: {kind: [item_json(item) for item in items] for kind, items in lists.items()}
                    for product, lists in catalog(session).items()
                }
            }

        return JSONResponse(await run_in_threadpool(self.runtime.read, work))

    async def put_plan(self, request: Request) -> JSONResponse:
        return await self._put(request, ItemKind.PLAN)

    async def put_module(self, request: Request) -> JSONResponse:
        return await self._put(request, ItemKind.MODULE)

    async def _put(self, request: Request, kind: ItemKind) -> JSONResponse:
        item_id = request.path_params["item_id"]
        data = ItemInput.parse(await json_body(request, self.runtime.settings.max_body_bytes))
        rt = self.runtime

        def work(session: Session) -> tuple[dict[str, Any], bool]:
            item, created = put_item(session, kind, item_id, data, rt.clock.now())
            return item_json(item), created

        body, created = await run_in_threadpool(rt.transaction, work)
        return JSONResponse(body, status_code=201 if created else 200)

    async def delete_subscription(self, request: Request) -> JSONResponse:
        account_id = request.path_params["account_id"]
        product = request.path_params["product"]
        rt = self.runtime

        def work(session: Session) -> dict[str, Any]:
            subscription, change = cancel_subscription(session, account_id, product, rt.clock.now(), rt.calendar)
            return {
                "account_id": subscription.account_id,
                "product": subscription.product,
                "canceled_at": subscription.canceled_at.isoformat() if subscription.canceled_at else None,
                "ends_on": subscription.ends_on.isoformat() if subscription.ends_on else None,
                "change": change_json(change),
            }

        return JSONResponse(await run_in_threadpool(rt.transaction, work))


def catalog_routes(runtime: Runtime) -> list[Route]:
    """Routes under /api (the caller mounts them behind the API's bearer token)."""
    api = CatalogAPI(runtime)
    return [
        Route("/catalog", api.get_catalog, methods=["GET"]),
        Route("/plans/{item_id}", api.put_plan, methods=["PUT"]),
        Route("/modules/{item_id}", api.put_module, methods=["PUT"]),
    ]
