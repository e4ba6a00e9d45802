"""A simulator of the Asaas API subset regua uses, held to captures of the real sandbox: for dev, demos, tests.

It speaks `/v3/payments` (create, list newest first by externalReference, customer, status,
billingType or installment, get, delete, refund, pixQrCode, identificationField, receiveInCash,
undoReceivedInCash, restore), `/v3/customers` (create, list by externalReference or cpfCnpj, get) and
`/v3/webhooks` (its one webhook configuration: list, get, and PUT `{"interrupted": false}` to start an
interrupted queue again) with the `access_token` header, keeps its state in memory, serves the payer's
pages (`invoiceUrl`, the boleto PDF), and posts Asaas-format webhooks from a background thread as Asaas
does. The parity test (tests/integration/test_simulator_parity.py) replays captured sandbox sessions
against it.

Card tokens script outcomes (any other token approves, as in Asaas's sandbox):

    tok_ok             approved: the payment is CONFIRMED, then RECEIVED at D+32 by the simulator's clock
    tok_soft_decline   HTTP 400 invalid_action, insufficient funds; nothing stored
    tok_hard_decline   HTTP 400 invalid_action, stolen card; nothing stored
    tok_expired        HTTP 400 invalid_action, expired card; nothing stored
    tok_timeout        approved and CONFIRMED, but the answer comes `timeout_delay_s` later, after the
                       client has given up: the charge exists and the client does not know it

A card typed in full (`creditCard.number`, or on the invoice page) approves, except Asaas's sandbox
numbers that decline (5184019740373151, 4916561358240741). A card charged through the API needs the
buyer's `remoteIp`, as Asaas's DTO requires: without it the answer is HTTP 400 `invalid_remoteIp`
(`require_remote_ip=False` turns that off).

Time moves payments by itself: a refund is DONE `refund_delay_s` (0.2 s) after it is asked for, and a
CONFIRMED card payment is RECEIVED once the simulator's clock reaches its creditDate. Both are
settled at every request and every 50 ms by the webhook thread; `POST /sim/clock-tick` settles them
at once (useful after the shared clock was moved).

Test controls live under /sim/ (no token): `POST /sim/payments/{id}/{action}` (the actions are listed
in `controls`), `pay-again`, `GET /sim/state` (payments, customers, refused cards, outages served,
webhook deliveries and "webhook_queue": interrupted, failures, pending), `POST /sim/webhooks/resume`
(an interrupted queue starts again), `POST /sim/clock-tick`, `POST /sim/reset`, and
`POST /sim/outages` with `{"create": [...]}`: how the next payment creations go wrong, in order:

    "500"          HTTP 500 before anything is stored (the request never reached the ledger)
    "502-charged"  the payment is created (a card charged), then the answer is an HTTP 502
    "timeout"      the payment is created, the answer held `timeout_delay_s` like tok_timeout

`GET /sim/state` lists under "outages" each one served, with the externalReference it hit.
`POST /sim/throttle` with `{"share": 0.3, "retry_after": 1}` answers that share of `/v3/` requests with
HTTP 429 and `Retry-After` before they reach the ledger (`throttle`).
"""

from regua.sandbox.simulator.app import (
    DEFAULT_HOST,
    DEFAULT_PORT,
    DEFAULT_TIMEOUT_DELAY_S,
    DEFAULT_WEBHOOK_URL,
    AccessTokenMiddleware,
    create_simulator_app,
    run_simulator,
)
from regua.sandbox.simulator.cards import SCRIPTED_DECLINES, TIMEOUT_TOKEN
from regua.sandbox.simulator.common import ASAAS_TIMEZONE, AsaasJSONResponse, SimulatorError
from regua.sandbox.simulator.ledger import OUTAGES, AsaasSimulator
from regua.sandbox.simulator.payments import BILLING_TYPES
from regua.sandbox.simulator.refunds import DEFAULT_REFUND_DELAY_S
from regua.sandbox.simulator.webhooks import ASAAS_RETRY_SCHEDULE_S, WebhookDispatcher

DEFAULT_WEBHOOK_RETRY_DELAYS = ASAAS_RETRY_SCHEDULE_S

__all__ = [
    "ASAAS_RETRY_SCHEDULE_S",
    "ASAAS_TIMEZONE",
    "BILLING_TYPES",
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "DEFAULT_REFUND_DELAY_S",
    "DEFAULT_TIMEOUT_DELAY_S",
    "DEFAULT_WEBHOOK_RETRY_DELAYS",
    "DEFAULT_WEBHOOK_URL",
    "OUTAGES",
    "SCRIPTED_DECLINES",
    "TIMEOUT_TOKEN",
    "AccessTokenMiddleware",
    "AsaasJSONResponse",
    "AsaasSimulator",
    "SimulatorError",
    "WebhookDispatcher",
    "create_simulator_app",
    "run_simulator",
]
