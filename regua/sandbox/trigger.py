"""`regua trigger`: the webhooks a gateway would post about an account's charge, sent to a running regua.

Where the gateway simulator has a control for the event (paying a boleto or a PIX charge, paying
twice, refunding, a chargeback, a refused card), the simulator is asked and posts its own Asaas
webhook; otherwise (a boleto or PIX failing, a payment pending) a Standard Webhooks delivery is
signed with the configured secret and posted to `/webhooks/standard`.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC
from typing import Any

import httpx
from sqlalchemy import case, select
from sqlalchemy.orm import Session
from standardwebhooks.webhooks import Webhook

from billing.models import Account, Charge, ChargeStatus, Invoice, Subscription
from regua.gateway.asaas import encode_json, money
from regua.runtime import Runtime

EVENTS = ("payment", "duplicate", "refund", "partial-refund", "chargeback", "decline", "pending")
_NEEDS_PAID = ("refund", "partial-refund", "chargeback")
_CHECKOUT_METHOD = {"boleto": "boleto", "pix": "pix", "card": "card", "card_auto_debit": "card"}
_ASAAS_TYPE = {"boleto": "BOLETO", "pix": "PIX"}


def _json(body: dict[str, Any]) -> str:
    """JSON with money as exact decimal numbers (`99.95`), the way Asaas reads it."""
    return encode_json(body).decode()


class TriggerError(Exception):
    """The event cannot be sent; the message says why and what to do."""


@dataclass(frozen=True)
class ChargeRef:
    id: str
    product: str
    method: str
    amount_cents: int
    status: str


def _charge(session: Session, account_id: str, product: str | None, statuses: tuple[str, ...]) -> ChargeRef | None:
    """The account's newest charge in one of `statuses`; first of all the one whose payment the gateway
    reported started (a decline after a `pending` is about that very payment, rule 3.7)."""
    query = select(Charge).where(Charge.account_id == account_id, Charge.status.in_(statuses))
    if product is not None:
        query = query.where(Charge.product == product)
    reported = select(Invoice.verifying_charge_id).where(
        Invoice.account_id == account_id, Invoice.verifying_charge_id.is_not(None)
    )
    first = case((Charge.id.in_(reported), 0), else_=1)
    charge = session.scalars(query.order_by(first, Charge.created_at.desc(), Charge.id.desc())).first()
    if charge is None:
        return None
    return ChargeRef(charge.id, charge.product, charge.method, charge.amount_cents, charge.status)


def _subscription(session: Session, account_id: str, product: str | None) -> tuple[str, str, str | None] | None:
    query = select(Subscription).where(Subscription.account_id == account_id)
    if product is not None:
        query = query.where(Subscription.product == product)
    subscription = session.scalars(query.order_by(Subscription.product)).first()
    if subscription is None:
        return None
    return subscription.product, subscription.payment_method, subscription.card_token


class Trigger:
    """Sends one event about an account's charge to the regua at `url` and prints what happened."""

    def __init__(self, runtime: Runtime, url: str, out: Callable[[str], None] = print) -> None:
        settings = runtime.settings
        self.runtime = runtime
        self.url = url.rstrip("/")
        self.out = out
        self.gateway = httpx.Client(
            base_url=settings.asaas_api_url, headers={"access_token": settings.asaas_api_key}, timeout=30
        )
        self.http = httpx.Client(timeout=30)

    def close(self) -> None:
        self.gateway.close()
        self.http.close()

    def run(self, event: str, account_id: str, product: str | None) -> None:
        if event not in EVENTS:
            raise TriggerError(f"unknown event {event!r}: one of {', '.join(EVENTS)}")
        if self.runtime.read(lambda s: s.get(Account, account_id)) is None:
            raise TriggerError(f"no account {account_id}: nothing sent (the product creates it: PUT /api/accounts/ID)")
        self._check_target()
        if event in _NEEDS_PAID:
            charge = self.runtime.read(lambda s: _charge(s, account_id, product, (ChargeStatus.CONFIRMED,)))
            if charge is None:
                raise TriggerError(f"account {account_id} has no paid charge: `regua trigger payment` first")
        else:
            # A duplicate may also follow a payment already made: the customer pays a second time.
            statuses = (
                (ChargeStatus.PENDING, ChargeStatus.CONFIRMED) if event == "duplicate" else (ChargeStatus.PENDING,)
            )
            found = self.runtime.read(lambda s: _charge(s, account_id, product, statuses))
            if found is None and event == "decline" and self._pays_by_card(account_id, product):
                # A card is declined while it is charged: the checkout's own answer is the decline.
                self._checkout(account_id, product, card_token="tok_soft_decline")
                return
            charge = found or self._checkout(account_id, product)
            if found is None and event == "payment" and charge.status == ChargeStatus.CONFIRMED:
                self.out(f"charge {charge.id}: the card was charged at the checkout; the simulator posts its webhook")
                return
        self.out(f"charge {charge.id}: {charge.method}, {charge.amount_cents} centavos, {charge.status}")
        payment = self._simulated_payment(charge.id)
        getattr(self, "_" + event.replace("-", "_"))(charge, payment)

    # -- the events

    def _payment(self, charge: ChargeRef, payment: dict[str, Any] | None) -> None:
        if payment is None:
            self._standard("payment.confirmed", charge)
        elif payment["billingType"] == "CREDIT_CARD" and payment["status"] == "CONFIRMED":
            self._control(f"/sim/payments/{payment['id']}/event", {"event": "PAYMENT_CONFIRMED"})
        else:
            self._control(f"/sim/payments/{payment['id']}/pay", {"billingType": _ASAAS_TYPE.get(charge.method)})

    def _duplicate(self, charge: ChargeRef, payment: dict[str, Any] | None) -> None:
        if payment is None:
            self._standard("payment.confirmed", charge)
            self._standard("payment.confirmed", charge)
            return
        if payment["status"] in ("PENDING", "OVERDUE"):
            self._payment(charge, payment)
        self._control(f"/sim/payments/{payment['id']}/pay-again", {})

    def _refund(self, charge: ChargeRef, payment: dict[str, Any] | None) -> None:
        if payment is None:
            self._standard("payment.refunded", charge, refund_id=f"re_{uuid.uuid4().hex[:16]}")
        else:
            self._control(f"/v3/payments/{payment['id']}/refund", {}, via_api=True)

    def _partial_refund(self, charge: ChargeRef, payment: dict[str, Any] | None) -> None:
        half = max(1, charge.amount_cents // 2)
        if payment is None:
            self._standard("payment.refunded", charge, amount_cents=half, refund_id=f"re_{uuid.uuid4().hex[:16]}")
        else:
            body = {"value": money(half), "description": "regua trigger partial-refund"}
            self._control(f"/v3/payments/{payment['id']}/refund", body, via_api=True)

    def _chargeback(self, charge: ChargeRef, payment: dict[str, Any] | None) -> None:
        if payment is None:
            self._standard("payment.chargeback", charge)
        else:
            self._control(f"/sim/payments/{payment['id']}/chargeback", {})

    def _decline(self, charge: ChargeRef, payment: dict[str, Any] | None) -> None:
        if payment is not None and payment["billingType"] == "CREDIT_CARD" and payment["status"] == "PENDING":
            self._control(f"/sim/payments/{payment['id']}/refuse", {})
        else:
            self._standard("payment.failed", charge, failure_code="insufficient_funds")

    def _pending(self, charge: ChargeRef, payment: dict[str, Any] | None) -> None:
        if payment is not None and payment["billingType"] == "CREDIT_CARD":
            self._control(f"/sim/payments/{payment['id']}/event", {"event": "PAYMENT_AWAITING_RISK_ANALYSIS"})
        else:
            self._standard("payment.pending", charge)

    # -- how they are sent

    def _check_target(self) -> None:
        """The regua the webhooks are for must answer before anything is asked of the gateway: a refund
        made at the simulator whose webhook reaches nobody is a change nobody sees."""
        url = f"{self.url}/healthz"
        try:
            answer = self.http.get(url, timeout=5)
        except httpx.HTTPError as error:
            raise TriggerError(f"no regua answers at {self.url} (GET /healthz: {error}): nothing sent") from None
        if answer.status_code != 200:
            raise TriggerError(f"{url} answered {answer.status_code}, not 200: nothing sent")

    def _pays_by_card(self, account_id: str, product: str | None) -> bool:
        found = self.runtime.read(lambda s: _subscription(s, account_id, product))
        return found is not None and _CHECKOUT_METHOD[found[1]] == "card"

    def _checkout(self, account_id: str, product: str | None, card_token: str | None = None) -> ChargeRef:
        found = self.runtime.read(lambda s: _subscription(s, account_id, product))
        if found is None:
            raise TriggerError(f"account {account_id} has no subscription{f' to {product}' if product else ''}")
        product_name, payment_method, saved_token = found
        body: dict[str, Any] = {"product": product_name, "method": _CHECKOUT_METHOD[payment_method]}
        if body["method"] == "card":
            body["card_token"] = card_token or saved_token or "tok_ok"
            body["remote_ip"] = "203.0.113.1"  # the customer's, as a product sends it (a documentation range)
        headers = (
            {"Authorization": f"Bearer {self.runtime.settings.api_token}"} if self.runtime.settings.api_token else {}
        )
        url = f"{self.url}/api/accounts/{account_id}/checkout"
        answer = self.http.post(url, json=body, headers=headers)
        self._print("no open charge: checkout", url, body, answer)
        if answer.status_code not in (200, 201):
            raise TriggerError(f"the checkout answered {answer.status_code}: nothing sent")
        charge = answer.json()
        return ChargeRef(charge["charge_id"], product_name, charge["method"], charge["amount_cents"], charge["status"])

    def _simulated_payment(self, charge_id: str) -> dict[str, Any] | None:
        """The payment the simulated gateway holds for the charge, or None (no simulator, or unknown)."""
        try:
            answer = self.gateway.get("/v3/payments", params={"externalReference": charge_id, "limit": 100})
        except httpx.HTTPError:
            return None
        if answer.status_code != 200:
            return None
        payments = [dict(payment) for payment in answer.json().get("data") or []]
        # The first payment still paid (a duplicate refunded by regua is not the one to refund), else the newest.
        paid = [payment for payment in payments if payment["status"] in ("RECEIVED", "CONFIRMED")]
        return paid[0] if paid else (payments[-1] if payments else None)

    def _control(self, path: str, body: dict[str, Any], *, via_api: bool = False) -> None:
        url = f"{self.gateway.base_url}".rstrip("/") + path
        content, headers = _json(body), {"Content-Type": "application/json"}
        post = self.gateway.post if via_api else self.http.post
        answer = post(url, content=content, headers=headers)
        self._print("gateway simulator", url, body, answer)
        if answer.status_code >= 300:
            raise TriggerError(f"the simulator answered {answer.status_code}: nothing sent")
        self.out("the simulator posts its Asaas webhook to /webhooks/asaas now")

    def _standard(self, event_type: str, charge: ChargeRef, **extra: Any) -> None:
        secrets = self.runtime.settings.standard_webhook_secrets
        if not secrets:
            raise TriggerError("REGUA_STANDARD_WEBHOOK_SECRETS is empty: nothing to sign a Standard Webhook with")
        now = self.runtime.clock.now()
        data: dict[str, Any] = {
            "charge_id": charge.id,
            "payment_id": f"trg_{uuid.uuid4().hex[:16]}",
            "amount_cents": charge.amount_cents,
            "method": charge.method,
            "occurred_at": now.astimezone(UTC).isoformat().replace("+00:00", "Z"),
            **extra,
        }
        payload = {"type": event_type, "timestamp": data["occurred_at"], "data": data}
        body = json.dumps(payload)
        message_id = f"msg_{uuid.uuid4().hex}"
        signature = Webhook(secrets[0]).sign(message_id, now, body)
        headers = {
            "Content-Type": "application/json",
            "webhook-id": message_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": signature,
        }
        url = f"{self.url}/webhooks/standard"
        self._print("Standard Webhook", url, payload, self.http.post(url, content=body, headers=headers))

    def _print(self, what: str, url: str, body: dict[str, Any], answer: httpx.Response) -> None:
        self.out(f"-> {what}: POST {url}\n   {_json(body)}")
        self.out(f"<- {answer.status_code} {answer.text[:600]}")
