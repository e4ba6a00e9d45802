"""The simulated Asaas as an ASGI app: its routes, Asaas's `access_token` check, and the server."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from decimal import Decimal

import anyio
import uvicorn
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from billing.clock import Clock, SystemClock
from regua.sandbox.simulator import controls
from regua.sandbox.simulator.common import AsaasJSONResponse, SimulatorError, error_response, json_body, listing
from regua.sandbox.simulator.ledger import AsaasSimulator
from regua.sandbox.simulator.pages import page_routes
from regua.sandbox.simulator.refunds import DEFAULT_REFUND_DELAY_S
from regua.sandbox.simulator.throttle import Throttle, ThrottleMiddleware
from regua.sandbox.simulator.webhooks import ASAAS_RETRY_SCHEDULE_S, DEFAULT_DELAY_DIVISOR, WebhookDispatcher

DEFAULT_WEBHOOK_URL = "http://127.0.0.1:8000/webhooks/asaas"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8001
# Longer than AsaasGateway's default read timeout (20 s), so that a default client gives up first.
DEFAULT_TIMEOUT_DELAY_S = 25.0

Handler = Callable[[Request], Awaitable[tuple[object, int]]]


class AccessTokenMiddleware:
    """Asaas's authentication for /v3/: a non-empty `access_token` header, equal to `api_key` if one is set."""

    def __init__(self, app: ASGIApp, api_key: str | None = None) -> None:
        self.app = app
        self.api_key = api_key

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Mounted under a prefix (as in `regua dev`), the path still starts with the mount's root_path.
        path, root = scope.get("path", ""), scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root) :]
        if scope["type"] == "http" and path.startswith("/v3/"):
            headers = dict(scope["headers"])
            token = headers.get(b"access_token", b"").decode("latin-1")
            if not token or (self.api_key is not None and token != self.api_key):
                error = SimulatorError(401, "invalid_access_token", "A chave de API informada é inválida.")
                await error_response(error)(scope, receive, send)
                return
        await self.app(scope, receive, send)


async def _linger(request: Request, seconds: float) -> None:
    """Hold the answer back, giving up as soon as the client has gone (so servers stop fast)."""
    step = 0.05
    waited = 0.0
    while waited < seconds:
        if await request.is_disconnected():
            return
        await anyio.sleep(step)
        waited += step


def _base_url(request: Request) -> str:
    """Where the simulator is reached, with the prefix it is mounted under (`/gateway-sim` in `regua dev`),
    so that the payer's pages it links to are served by it."""
    root = str(request.scope.get("root_path", "")).rstrip("/")
    return f"{request.url.scheme}://{request.url.netloc}{root}"


def _endpoint(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    async def run(request: Request) -> Response:
        try:
            content, status_code = await handler(request)
        except SimulatorError as error:
            return error_response(error)
        return AsaasJSONResponse(content, status_code=status_code)

    return run


def _routes(sim: AsaasSimulator) -> list[BaseRoute]:
    def payment_id(request: Request) -> str:
        return str(request.path_params["payment_id"])

    async def create(request: Request) -> tuple[object, int]:
        payment, outage = sim.create(await json_body(request), _base_url(request))
        if outage == "timeout":
            await _linger(request, sim.timeout_delay_s)
        if outage == "502-charged":
            raise SimulatorError(502, "bad_gateway", "Bad Gateway")
        return payment, 200

    async def list_payments(request: Request) -> tuple[object, int]:
        return sim.list(request.query_params), 200

    async def get(request: Request) -> tuple[object, int]:
        return sim.get(payment_id(request)), 200

    async def delete(request: Request) -> tuple[object, int]:
        return sim.delete(payment_id(request)), 200

    async def refund(request: Request) -> tuple[object, int]:
        return sim.refund(payment_id(request), await json_body(request)), 200

    async def pix(request: Request) -> tuple[object, int]:
        return sim.pix_code(payment_id(request)), 200

    async def line(request: Request) -> tuple[object, int]:
        return sim.identification_field(payment_id(request)), 200

    async def asaas_action(request: Request) -> tuple[object, int]:
        action = controls.API_ACTIONS[request.url.path.rsplit("/", 1)[-1]]
        return controls.run(sim, payment_id(request), action, await json_body(request)), 200

    async def control(request: Request) -> tuple[object, int]:
        action = str(request.path_params["action"])
        return controls.run(sim, payment_id(request), action, await json_body(request)), 200

    async def pay_again(request: Request) -> tuple[object, int]:
        return controls.pay_again(sim, payment_id(request), _base_url(request)), 201

    async def create_customer(request: Request) -> tuple[object, int]:
        return sim.customers.create(await json_body(request), sim.today()), 200

    async def list_customers(request: Request) -> tuple[object, int]:
        return sim.customers.search(request.query_params), 200

    async def get_customer(request: Request) -> tuple[object, int]:
        return sim.customers.get(str(request.path_params["customer_id"])), 200

    async def state(_request: Request) -> tuple[object, int]:
        return sim.state(), 200

    async def reset(_request: Request) -> tuple[object, int]:
        sim.reset()
        return {"reset": True}, 200

    async def outages(request: Request) -> tuple[object, int]:
        return sim.script_outages(await json_body(request)), 200

    async def resume(_request: Request) -> tuple[object, int]:
        return {"requeued": sim.dispatcher.resume()}, 200

    def webhook_config(request: Request) -> dict[str, object]:
        config = sim.dispatcher.config()
        if request.path_params["webhook_id"] != config["id"]:
            raise SimulatorError(404, "not_found", "Webhook não encontrado.")
        return config

    async def list_webhooks(request: Request) -> tuple[object, int]:
        return listing([sim.dispatcher.config()], request.query_params, lambda config: config), 200

    async def get_webhook(request: Request) -> tuple[object, int]:
        return webhook_config(request), 200

    async def update_webhook(request: Request) -> tuple[object, int]:
        """Asaas's way to start an interrupted queue again: `{"interrupted": false}`."""
        webhook_config(request)
        if (await json_body(request)).get("interrupted") is False:
            sim.dispatcher.resume()
        return sim.dispatcher.config(), 200

    async def clock_tick(_request: Request) -> tuple[object, int]:
        sim.advance()
        return {"now": sim.now().isoformat()}, 200

    api_actions = [
        Route(f"/v3/payments/{{payment_id}}/{name}", _endpoint(asaas_action), methods=["POST"])
        for name in controls.API_ACTIONS
    ]
    return [
        Route("/v3/payments", _endpoint(create), methods=["POST"]),
        Route("/v3/payments", _endpoint(list_payments), methods=["GET"]),
        Route("/v3/payments/{payment_id}", _endpoint(get), methods=["GET"]),
        Route("/v3/payments/{payment_id}", _endpoint(delete), methods=["DELETE"]),
        Route("/v3/payments/{payment_id}/refund", _endpoint(refund), methods=["POST"]),
        Route("/v3/payments/{payment_id}/pixQrCode", _endpoint(pix), methods=["GET"]),
        Route("/v3/payments/{payment_id}/identificationField", _endpoint(line), methods=["GET"]),
        *api_actions,
        Route("/v3/customers", _endpoint(create_customer), methods=["POST"]),
        Route("/v3/customers", _endpoint(list_customers), methods=["GET"]),
        Route("/v3/customers/{customer_id}", _endpoint(get_customer), methods=["GET"]),
        Route("/v3/webhooks", _endpoint(list_webhooks), methods=["GET"]),
        Route("/v3/webhooks/{webhook_id}", _endpoint(get_webhook), methods=["GET"]),
        Route("/v3/webhooks/{webhook_id}", _endpoint(update_webhook), methods=["PUT"]),
        Route("/sim/payments/{payment_id}/pay-again", _endpoint(pay_again), methods=["POST"]),
        Route("/sim/payments/{payment_id}/{action}", _endpoint(control), methods=["POST"]),
        Route("/sim/state", _endpoint(state), methods=["GET"]),
        Route("/sim/reset", _endpoint(reset), methods=["POST"]),
        Route("/sim/outages", _endpoint(outages), methods=["POST"]),
        Route("/sim/clock-tick", _endpoint(clock_tick), methods=["POST"]),
        Route("/sim/webhooks/resume", _endpoint(resume), methods=["POST"]),
        Route("/sim/webhooks/resend", _endpoint(resume), methods=["POST"]),  # its older name
        *page_routes(sim),
    ]


def create_simulator_app(
    webhook_url: str = DEFAULT_WEBHOOK_URL,
    webhook_token: str = "",
    *,
    timeout_delay_s: float = DEFAULT_TIMEOUT_DELAY_S,
    api_key: str | None = None,
    clock: Clock | None = None,
    webhook_retry_delays: Sequence[float] = ASAAS_RETRY_SCHEDULE_S,
    webhook_delay_divisor: float | None = None,
    send_created_events: bool = False,
    refund_delay_s: float = DEFAULT_REFUND_DELAY_S,
    require_remote_ip: bool = True,
    throttle_share: Decimal = Decimal(0),
    throttle_retry_after: int = 1,
) -> Starlette:
    """The simulator as an ASGI app. Webhooks go to `webhook_url` (none if empty) with `webhook_token`
    in `asaas-access-token`; `api_key`, if set, is the only access_token accepted.

    Failed webhooks are retried after `webhook_retry_delays` divided by `webhook_delay_divisor` (by
    default Asaas's own schedule divided by 60, or the delays given as they are); a refund is DONE
    `refund_delay_s` after it is asked for (0: at once); `require_remote_ip` (on unless turned off)
    refuses a card payment without `remoteIp`, as Asaas does; `throttle_share` of the API's requests are
    answered 429 with `Retry-After: throttle_retry_after` (also set at `POST /sim/throttle`)."""
    if webhook_delay_divisor is None:
        webhook_delay_divisor = DEFAULT_DELAY_DIVISOR if tuple(webhook_retry_delays) == ASAAS_RETRY_SCHEDULE_S else 1.0
    dispatcher = WebhookDispatcher(
        webhook_url, webhook_token, retry_delays=webhook_retry_delays, delay_divisor=webhook_delay_divisor
    )
    sim = AsaasSimulator(
        dispatcher,
        clock=clock or SystemClock(),
        timeout_delay_s=timeout_delay_s,
        send_created_events=send_created_events,
        refund_delay_s=refund_delay_s,
        require_remote_ip=require_remote_ip,
    )

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        dispatcher.start()
        try:
            yield
        finally:
            await anyio.to_thread.run_sync(dispatcher.stop)

    throttle = Throttle()
    throttle.set(throttle_share, throttle_retry_after)
    app = Starlette(
        routes=_routes(sim),
        middleware=[
            Middleware(AccessTokenMiddleware, api_key=api_key),
            Middleware(ThrottleMiddleware, throttle=throttle),
        ],
        lifespan=lifespan,
    )
    app.state.simulator = sim
    app.state.throttle = throttle
    return app


def run_simulator(
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    webhook_url: str = DEFAULT_WEBHOOK_URL,
    webhook_token: str = "",
    *,
    api_key: str | None = None,
    timeout_delay_s: float = DEFAULT_TIMEOUT_DELAY_S,
    clock: Clock | None = None,
) -> None:
    """Serve the simulator under uvicorn until stopped (the `regua gateway-sim` command)."""
    app = create_simulator_app(
        webhook_url, webhook_token, timeout_delay_s=timeout_delay_s, api_key=api_key, clock=clock
    )
    uvicorn.run(app, host=host, port=port, log_level="info")
