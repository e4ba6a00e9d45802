"""How `regua trigger` talks: to the running regua (health, checkout, Standard Webhooks) and to the
simulated Asaas (its payments and its controls), printing every request and answer."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
from standardwebhooks.webhooks import Webhook

from regua.gateway.asaas import encode_json
from regua.runtime import Runtime


class TriggerError(Exception):
    """The event cannot be sent; the message says why and what to do."""


@dataclass(frozen=True)
class ChargeRef:
    id: str
    product: str
    method: str
    amount_cents: int
    status: str
    gateway_payment_id: str | None = None


def as_json(body: dict[str, Any]) -> str:
    """JSON with money as exact decimal numbers (`99.95`), the way Asaas reads it."""
    return encode_json(body).decode()


class Wire:
    """The HTTP side of one trigger: the regua at `url` and the gateway of the runtime's settings."""

    def __init__(self, runtime: Runtime, url: str, out: Callable[[str], None]) -> None:
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

    def check_target(self) -> None:
        """The regua the webhooks are for must answer before anything is asked of the gateway: a refund
        made at the simulator whose webhook reaches nobody is a change nobody sees."""
        url = f"{self.url}/healthz"
        try:
            answer = self.http.get(url, timeout=5)
        except httpx.HTTPError as error:
            raise TriggerError(f"no regua answers at {self.url} (GET /healthz: {error}): nothing sent") from None
        if answer.status_code != 200:
            raise TriggerError(f"{url} answered {answer.status_code}, not 200: nothing sent")

    def simulator_answers(self) -> bool:
        """Whether the gateway of these settings lists payments (the simulator in dev)."""
        try:
            return self.gateway.get("/v3/payments", params={"limit": 1}).status_code == 200
        except httpx.HTTPError:
            return False

    def payments(self, charge: ChargeRef) -> list[dict[str, Any]]:
        """The gateway's payments for the charge, newest first as Asaas lists them; a deleted one, which
        Asaas leaves out of lists, is fetched by the id regua keeps. Empty when the gateway does not know it."""
        try:
            answer = self.gateway.get("/v3/payments", params={"externalReference": charge.id, "limit": 100})
        except httpx.HTTPError:
            return []
        if answer.status_code != 200:
            return []
        found = [dict(payment) for payment in answer.json().get("data") or []]
        if charge.gateway_payment_id and charge.gateway_payment_id not in {payment["id"] for payment in found}:
            kept = self.gateway.get(f"/v3/payments/{charge.gateway_payment_id}")
            if kept.status_code == 200:
                found.append(dict(kept.json()))
        return found

    def checkout(self, account_id: str, body: dict[str, Any]) -> ChargeRef:
        settings = self.runtime.settings
        headers = {"Authorization": f"Bearer {settings.api_token}"} if settings.api_token else {}
        url = f"{self.url}/api/accounts/{account_id}/checkout"
        answer = self.http.post(url, json=body, headers=headers)
        self.show("no open charge: checkout", url, body, answer)
        if answer.status_code not in (200, 201):
            raise TriggerError(f"the checkout answered {answer.status_code}: nothing sent")
        charge = answer.json()
        return ChargeRef(
            charge["charge_id"], body["product"], charge["method"], charge["amount_cents"], charge["status"]
        )

    def control(self, path: str, body: dict[str, Any] | None = None, *, via_api: bool = False) -> None:
        """A simulator control (`/sim/...`) or an Asaas API call (`via_api`, with the API key)."""
        body = body or {}
        url = f"{self.gateway.base_url}".rstrip("/") + path
        content, headers = as_json(body), {"Content-Type": "application/json"}
        post = self.gateway.post if via_api else self.http.post
        answer = post(url, content=content, headers=headers)
        self.show("gateway simulator", url, body, answer)
        if answer.status_code >= 300:
            raise TriggerError(f"the simulator answered {answer.status_code}: nothing more sent")
        self.out("the simulator posts its Asaas webhook to /webhooks/asaas now")

    def standard(self, event_type: str, charge: ChargeRef, **extra: Any) -> None:
        """A Standard Webhooks delivery about the charge, signed with the first configured secret."""
        secrets = self.runtime.settings.standard_webhook_secrets
        if not secrets:
            raise TriggerError("REGUA_STANDARD_WEBHOOK_SECRETS is empty: nothing to sign a Standard Webhook with")
        # The event happens at regua's instant (the shared clock, perhaps moved); the signature is
        # stamped with the real time, which the receiver's 5-minute tolerance is measured against.
        now, signed_at = self.runtime.clock.now(), self.runtime.wall_clock.now()
        data: dict[str, Any] = {
            "charge_id": charge.id,
            "payment_id": f"trg_{uuid.uuid4().hex[:16]}",
            "amount_cents": charge.amount_cents,
            "method": charge.method,
            "occurred_at": _z(now),
            **extra,
        }
        payload = {"type": event_type, "timestamp": data["occurred_at"], "data": data}
        body = json.dumps(payload)
        message_id = f"msg_{uuid.uuid4().hex}"
        headers = {
            "Content-Type": "application/json",
            "webhook-id": message_id,
            "webhook-timestamp": str(int(signed_at.timestamp())),
            "webhook-signature": Webhook(secrets[0]).sign(message_id, signed_at, body),
        }
        url = f"{self.url}/webhooks/standard"
        self.show("Standard Webhook", url, payload, self.http.post(url, content=body, headers=headers))

    def show(self, what: str, url: str, body: dict[str, Any], answer: httpx.Response) -> None:
        self.out(f"-> {what}: POST {url}\n   {as_json(body)}")
        self.out(f"<- {answer.status_code} {answer.text[:600]}")


def _z(instant: datetime) -> str:
    return instant.astimezone(UTC).isoformat().replace("+00:00", "Z")
