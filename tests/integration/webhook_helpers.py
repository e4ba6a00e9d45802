"""Building deliveries as the gateways send them: signed Standard Webhooks, Asaas and PIX bodies."""

from __future__ import annotations

import copy
import json
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from standardwebhooks.webhooks import Webhook

from billing.journal import WebhookEvent
from regua.runtime import Runtime
from tests.conftest import ASAAS_TOKEN, PIX_SECRET, STANDARD_SECRET

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def standard_headers(body: bytes, message_id: str, at: datetime, secret: str = STANDARD_SECRET) -> dict[str, str]:
    signature = Webhook(secret).sign(message_id, at, body.decode())
    return {
        "content-type": "application/json",
        "webhook-id": message_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": signature,
    }


def standard_body(event_type: str, charge: str | None, **data: Any) -> bytes:
    payload = {
        "type": event_type,
        "data": {
            "charge_id": charge,
            "payment_id": "gw_123",
            "amount_cents": 19990,
            "method": "pix",
            "occurred_at": "2026-12-09T14:00:00Z",
            **data,
        },
    }
    return json.dumps(payload).encode()


def asaas_delivery(name: str, *, event_id: str, payment_id: str, reference: str | None, value: float) -> bytes:
    """A recorded Asaas delivery, pointed at one of our charges."""
    body = copy.deepcopy(fixture(f"asaas/{name}.json"))
    body["id"] = event_id
    body["payment"].update(id=payment_id, externalReference=reference, value=value)
    return json.dumps(body).encode()


def asaas_headers(token: str = ASAAS_TOKEN) -> dict[str, str]:
    return {"content-type": "application/json", "asaas-access-token": token}


def pix_url(path: str = "/webhooks/pix", secret: str = PIX_SECRET) -> str:
    return f"{path}?hmac={secret}"


def stored_events(runtime: Runtime) -> int:
    return int(runtime.read(lambda session: session.scalar(select(func.count()).select_from(WebhookEvent))) or 0)


def event_rows(runtime: Runtime) -> list[WebhookEvent]:
    return runtime.read(lambda session: list(session.scalars(select(WebhookEvent).order_by(WebhookEvent.received_at))))
