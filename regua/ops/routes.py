"""The /ops pages and their actions: every page a GET, every action a confirmed, logged POST with a CSRF token."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

import dramatiq
import jinja2
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from billing.errors import BillingError
from billing.journal import WebhookEvent
from billing.models import Account, EventStatus
from billing.refunds import mark_refund_done
from billing.reviews import grant_review, reject_review
from regua.http import error_response
from regua.ops import broker as queues
from regua.ops import person, queries
from regua.ops.auth import REALM, csrf_token, csrf_valid, operator
from regua.ops.catalog import catalog_page
from regua.ops.charts import chart
from regua.ops.gateway_queue import GatewayDeliveryWatch, WebhookQueueReader
from regua.runtime import Runtime
from workers.broker import QUEUES
from workers.processing import replay_events
from workers.stats import job_counts

log = logging.getLogger("regua.ops")

TEMPLATES_DIR = Path(__file__).resolve().parent.parent.parent / "templates" / "ops"
Enqueue = Callable[[list[str]], None]
MAX_FORM_BYTES = 1_000_000


class OpsAuthMiddleware:
    """HTTP Basic (or bearer) with the ops token; the person's name is left in `scope["state"]`."""

    def __init__(self, app: ASGIApp, runtime: Runtime) -> None:
        self.app = app
        self.settings = runtime.settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        who = operator(Request(scope), self.settings)
        if who is None:
            response = error_response(401, "unauthorized", "the ops token is required", {"WWW-Authenticate": REALM})
            await response(scope, receive, send)
            return
        scope.setdefault("state", {})["operator"] = who
        await self.app(scope, receive, send)


def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["brl"] = _brl
    return env


def _brl(cents: int | None) -> str:
    if cents is None:
        return ""
    reais, centavos = divmod(abs(cents), 100)
    return f"{'-' if cents < 0 else ''}R$ {reais:,}".replace(",", ".") + f",{centavos:02d}"


@dataclass(frozen=True)
class Action:
    """What a POST does: its summary for the confirmation page and the work itself (returns a result line)."""

    name: str
    summary: str
    targets: list[str]
    run: Callable[[], str]


class OpsPages:
    def __init__(
        self,
        runtime: Runtime,
        broker: dramatiq.Broker | None,
        enqueue: Enqueue,
        delivery: GatewayDeliveryWatch | None = None,
    ) -> None:
        self.runtime = runtime
        self.broker = broker
        self.enqueue = enqueue
        self.delivery = delivery
        self.env = environment()

    # -- rendering ----------------------------------------------------------------------------------------
    def local(self, instant: Any) -> str:
        if instant is None:
            return ""
        return str(self.runtime.calendar.local(instant).strftime("%Y-%m-%d %H:%M:%S"))

    def render(self, request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
        who = request.state.operator
        now = self.runtime.clock.now()
        html = self.env.get_template(template).render(
            operator=who,
            csrf=csrf_token(self.runtime.settings.secret_key, who, now.timestamp()),
            now=self.local(now),
            local=self.local,
            queues=QUEUES,
            notice=request.query_params.get("done", ""),
            path=request.url.path,
            section=[*request.url.path.split("/"), "", ""][2],
            query=str(request.url.query),
            **context,
        )
        return HTMLResponse(html, status, headers={"Cache-Control": "no-store"})

    # -- pages --------------------------------------------------------------------------------------------
    async def overview(self, request: Request) -> Response:
        rt = self.runtime
        now = rt.clock.now()
        data = await run_in_threadpool(rt.read, lambda s: queries.overview(s, now, rt.calendar))
        view = await run_in_threadpool(queues.read_queues, self.broker, now) if self.broker else None
        counts = job_counts(self.broker) if self.broker else None
        charts = []
        if counts is not None:
            minutes, hours = await run_in_threadpool(
                lambda: (counts.buckets("minute", now, 60), counts.buckets("hour", now, 24))
            )
            charts = [
                chart("Jobs per minute, last hour", minutes, "%H:%M UTC"),
                chart("Jobs per hour, last 24 hours", hours, "%d %H:00 UTC"),
            ]
        gateway = await run_in_threadpool(self.delivery.status) if self.delivery is not None else None
        return self.render(request, "overview.html", data=data, broker=view, charts=charts, gateway=gateway)

    async def needs_person(self, request: Request) -> Response:
        rt = self.runtime
        data = await run_in_threadpool(rt.read, lambda s: person.needs_person(s, rt.clock.now()))
        return self.render(request, "person.html", data=data, verification_hours=rt.policy.verification_hours)

    async def events(self, request: Request) -> Response:
        rt = self.runtime
        chosen = queries.EventFilter.parse(dict(request.query_params))
        cursor = request.query_params.get("after", "")
        page = await run_in_threadpool(
            rt.read, lambda s: queries.search_events(s, chosen.conditions(rt.calendar), cursor)
        )
        params = chosen.as_params()
        older = "?" + urlencode({**params, "after": page.next_cursor}) if page.next_cursor else ""
        return self.render(
            request,
            "events.html",
            page=page,
            chosen=chosen,
            params=params,
            older=older,
            statuses=[status.value for status in EventStatus],
            providers=("standard", "asaas", "pix"),
        )

    async def event(self, request: Request) -> Response:
        event_id = request.path_params["event_id"]
        event = await run_in_threadpool(self.runtime.read, lambda s: s.get(WebhookEvent, event_id))
        if event is None:
            return self.render(request, "missing.html", 404, what=f"webhook event {event_id}")
        return self.render(request, "event.html", event=event, body=queries.pretty_body(event.body))

    async def queue(self, request: Request) -> Response:
        name = request.path_params["queue"]
        if name not in QUEUES or self.broker is None:
            return self.render(request, "missing.html", 404, what=f"queue {name}")
        offset = max(int(request.query_params.get("offset", "0") or 0), 0) if _digits(request) else 0
        letters = await run_in_threadpool(queues.dead_letters, self.broker, name, offset=offset, limit=queries.PAGE)
        view = await run_in_threadpool(queues.read_queues, self.broker, self.runtime.clock.now())
        counts = next(c for c in view.queues if c.queue == name)
        return self.render(
            request, "queue.html", queue=name, letters=letters, counts=counts, offset=offset, page=queries.PAGE
        )

    async def accounts(self, request: Request) -> Response:
        text = request.query_params.get("q", "")
        found = await run_in_threadpool(self.runtime.read, lambda s: queries.search_accounts(s, text))
        return self.render(request, "accounts.html", accounts=found, q=text)

    async def account(self, request: Request) -> Response:
        rt = self.runtime
        account_id = request.path_params["account_id"]

        def work(session: Session) -> queries.AccountPage | None:
            account = session.get(Account, account_id)
            if account is None:
                return None
            return queries.account_page(session, account, rt.clock.now(), rt.calendar, rt.policy)

        page = await run_in_threadpool(rt.read, work)
        if page is None:
            return self.render(request, "missing.html", 404, what=f"account {account_id}")
        return self.render(request, "account.html", page=page)

    async def receipt(self, request: Request) -> Response:
        """A receipt's file, as the customer sent it: downloaded, never rendered inside the dashboard."""
        receipt_id = request.path_params["receipt_id"]
        found = await run_in_threadpool(self.runtime.read, lambda s: queries.receipt_file(s, receipt_id))
        if found is None:
            return self.render(request, "missing.html", 404, what=f"receipt {receipt_id}")
        name, content_type, content = found
        return Response(
            content,
            media_type=content_type,
            headers={
                "Content-Disposition": f'attachment; filename="{name}"',
                "X-Content-Type-Options": "nosniff",
                "Content-Security-Policy": "sandbox",
                "Cache-Control": "no-store",
            },
        )

    async def catalog(self, request: Request) -> Response:
        """Each product's plans and modules, and how many subscriptions follow each plan (rule 3.10)."""
        found = await run_in_threadpool(self.runtime.read, catalog_page)
        return self.render(request, "catalog.html", products=found)

    async def actions_log(self, request: Request) -> Response:
        found = await run_in_threadpool(self.runtime.read, lambda s: queries.recent_actions(s, 200))
        return self.render(request, "actions.html", actions=found)

    # -- actions ------------------------------------------------------------------------------------------
    async def act(self, request: Request) -> Response:
        body = await request.body()
        if len(body) > MAX_FORM_BYTES:
            return Response("the form is too large\n", 413)
        pairs = parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
        fields = {key: value for key, value in pairs if key != "ids"}
        ids = [value for key, value in pairs if key == "ids" and value]
        who = request.state.operator
        rt = self.runtime
        now = rt.clock.now()
        if not csrf_valid(rt.settings.secret_key, who, fields.get("csrf", ""), now.timestamp()):
            return Response("the form has expired or did not come from this dashboard: reload it\n", 403)
        back = fields.get("next", "/ops")
        if not back.startswith("/ops") or back.startswith("//"):
            back = "/ops"
        action = await run_in_threadpool(self.action, request.path_params["name"], fields, ids, who)
        if action is None:
            return self.render(request, "missing.html", 404, what="that action")
        if fields.get("confirm") != "yes":
            hidden = [(k, v) for k, v in fields.items() if k not in ("csrf", "confirm")] + [("ids", i) for i in ids]
            return self.render(request, "confirm.html", action=action, hidden=hidden, back=back)
        try:
            result = await run_in_threadpool(action.run)
        except BillingError as error:
            result = f"refused: {error.message}"

        def record(session: Session) -> None:
            queries.record_action(
                session, at=rt.clock.now(), by=who, action=action.name, targets=action.targets, result=result
            )

        await run_in_threadpool(rt.transaction, record)
        log.info("ops action %s by %s: %s", action.name, who, result, extra={"targets": action.targets[:20]})
        separator = "&" if "?" in back else "?"
        return RedirectResponse(f"{back}{separator}{urlencode({'done': result})}", status_code=303)

    def action(self, name: str, fields: dict[str, str], ids: list[str], who: str) -> Action | None:
        rt = self.runtime
        if name == "replay":
            return Action(name, f"Replay {len(ids)} webhook event(s)", ids, lambda: self._replay(ids))
        if name == "replay-filter":
            chosen = queries.EventFilter.parse(fields)
            where = chosen.conditions(rt.calendar)
            found = rt.read(lambda s: queries.replayable_ids(s, where))
            described = ", ".join(f"{k}={v}" for k, v in chosen.as_params().items()) or "no filter"
            return Action(
                name, f"Replay all {len(found)} failed or unmatched events matching {described}", found,
                lambda: self._replay(found),
            )  # fmt: skip
        queue = fields.get("queue", "")
        if name in ("requeue", "delete") and queue in QUEUES and self.broker is not None:
            broker = self.broker
            every = fields.get("all") == "yes"
            chosen_ids = None if every else ids
            what = f"every dead letter of {queue}" if every else f"{len(ids)} dead letter(s) of {queue}"
            if name == "requeue":
                return Action(
                    name, f"Requeue {what} (retries reset)", [queue, *ids],
                    lambda: f"requeued {queues.requeue(broker, queue, chosen_ids)} message(s) on {queue}",
                )  # fmt: skip
            return Action(
                name, f"Delete {what} for good", [queue, *ids],
                lambda: f"deleted {queues.delete(broker, queue, chosen_ids)} message(s) from {queue}",
            )  # fmt: skip
        if name == "refund-done" and len(ids) == 1:
            refund_id = ids[0]
            note = fields.get("note", "").strip()[:500] or None

            def done() -> str:
                def work(session: Session) -> str:
                    refund = mark_refund_done(session, refund_id, by=who, note=note, now=rt.clock.now())
                    return f"refund {refund.id} of {_brl(refund.amount_cents)} marked done by {who}"

                return rt.transaction(work)

            return Action(name, f"Record refund {refund_id} as given back by hand", ids, done)
        if name in ("receipt-grant", "receipt-reject") and len(ids) == 1:
            return self._review(name, ids[0], fields.get("note", ""), who)
        return None

    def _review(self, name: str, review_id: str, note: str, who: str) -> Action:
        """A receipt after its invoice's window: a new window from now, or no (rule 3.7); the note is required."""
        rt = self.runtime
        granting = name == "receipt-grant"

        def decide(session: Session) -> str:
            now = rt.clock.now()
            if granting:
                decision = grant_review(session, review_id, who, note, now, rt.policy)
                until = self.local(decision.invoice.verifying_until)
                outcome = f"granted: invoice {decision.invoice.id} verifying until {until}"
            else:
                decision = reject_review(session, review_id, who, note, now)
                outcome = f"rejected: invoice {decision.invoice.id} stays {decision.invoice.status}"
            return f"receipt review {review_id} {outcome}, by {who}; note: {decision.review.note}"

        summary = (
            f"Grant receipt review {review_id} a new verification window of {rt.policy.verification_hours} hours"
            if granting
            else f"Reject receipt review {review_id}: the invoice stays as it is"
        )
        return Action(name, summary, [review_id], lambda: rt.transaction(decide))

    def _replay(self, ids: list[str]) -> str:
        replayed = self.runtime.transaction(lambda session: replay_events(session, ids))
        if replayed:
            self.enqueue(replayed)
        return f"replayed {len(replayed)} of {len(ids)} event(s)"


def _digits(request: Request) -> bool:
    return request.query_params.get("offset", "0").isdigit()


def ops_routes(
    runtime: Runtime, broker: dramatiq.Broker | None, enqueue: Enqueue, gateway: object | None = None
) -> list[Route]:
    """Plain routes, not a mount: /ops/mail and /ops/mail.json belong to the development mail viewer.
    A `gateway` that can tell whether its webhook queue still delivers is asked at each overview."""
    watch = GatewayDeliveryWatch(gateway) if isinstance(gateway, WebhookQueueReader) else None
    pages = OpsPages(runtime, broker, enqueue, watch)
    auth = [Middleware(OpsAuthMiddleware, runtime=runtime)]
    table: list[tuple[str, Callable[[Request], Any], str]] = [
        ("/ops", pages.overview, "GET"),
        ("/ops/person", pages.needs_person, "GET"),
        ("/ops/events", pages.events, "GET"),
        ("/ops/events/{event_id}", pages.event, "GET"),
        ("/ops/queues/{queue}", pages.queue, "GET"),
        ("/ops/accounts", pages.accounts, "GET"),
        ("/ops/accounts/{account_id}", pages.account, "GET"),
        ("/ops/receipts/{receipt_id}", pages.receipt, "GET"),
        ("/ops/catalog", pages.catalog, "GET"),
        ("/ops/actions", pages.actions_log, "GET"),
        ("/ops/actions/{name}", pages.act, "POST"),
    ]
    return [Route(path, endpoint, methods=[method], middleware=auth) for path, endpoint, method in table]
