"""Asaas's API at the HTTP seam, for charging tests: respx routes that answer as Asaas does, with a memory.

Each route is a respx route, so tests count calls and read request bodies; `decline`, `fail_with`
and friends script what the next POST /payments meets.
"""

from __future__ import annotations

import copy
import itertools
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import respx

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "asaas_api"
BASE = "https://asaas.test"


def fixture(name: str) -> dict[str, Any]:
    return dict(json.loads((FIXTURES / name).read_text(encoding="utf-8")))


def refused(description: str) -> httpx.Response:
    return httpx.Response(400, json={"errors": [{"code": "invalid_creditCard", "description": description}]})


@dataclass
class FakeAsaas:
    router: respx.MockRouter
    payments: dict[str, dict[str, Any]] = field(default_factory=dict)
    customers: dict[str, dict[str, Any]] = field(default_factory=dict)
    refund_status: str = "DONE"
    """The status Asaas gives the next refunds it accepts (PENDING, AWAITING_..., DONE)."""
    next_create: list[Any] = field(default_factory=list)
    """Answers (or exceptions) for the next POSTs; an empty list creates the payment."""
    _ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def __post_init__(self) -> None:
        r = self.router
        self.create = r.post("/payments").mock(side_effect=self._create)
        self.lookup = r.get("/payments").mock(side_effect=self._list)
        self.pix = r.get(path__regex=r"^/payments/(?P<pid>[^/]+)/pixQrCode$").mock(side_effect=self._pix)
        self.line = r.get(path__regex=r"^/payments/(?P<pid>[^/]+)/identificationField$").mock(side_effect=self._line)
        self.refund = r.post(path__regex=r"^/payments/(?P<pid>[^/]+)/refund$").mock(side_effect=self._refund)
        self.fetch = r.get(path__regex=r"^/payments/(?P<pid>[^/]+)$").mock(side_effect=self._get)
        self.delete = r.delete(path__regex=r"^/payments/(?P<pid>[^/]+)$").mock(side_effect=self._delete)
        self.create_customer = r.post("/customers").mock(side_effect=self._create_customer)
        self.find_customers = r.get("/customers").mock(side_effect=self._list_customers)

    # -- scripting

    def add(self, reference: str, *, status: str = "CONFIRMED", value: float = 189.9, kind: str = "CREDIT_CARD") -> str:
        payment_id = f"pay_fake{next(self._ids)}"
        base = fixture("payment_card_confirmed.json" if kind == "CREDIT_CARD" else "payment_pix_pending.json")
        base.update(id=payment_id, externalReference=reference, status=status, value=value, billingType=kind)
        self.payments[payment_id] = base
        return payment_id

    def by_reference(self, reference: str) -> list[dict[str, Any]]:
        return [p for p in self.payments.values() if p["externalReference"] == reference and not p.get("deleted")]

    def set_refund_status(self, payment_id: str, status: str) -> None:
        """Asaas moves the payment's newest refund on (DONE, CANCELLED); a payment refunded whole is REFUNDED."""
        payment = self.payments[payment_id]
        payment["refunds"][-1]["status"] = status
        done = [item for item in payment["refunds"] if item["status"] == "DONE"]
        if sum(item["value"] for item in done) >= payment["value"]:
            payment["status"] = "REFUNDED"

    def sent(self) -> list[dict[str, Any]]:
        return [json.loads(call.request.content) for call in self.create.calls]

    # -- the routes

    def _create(self, request: httpx.Request) -> httpx.Response:
        if self.next_create:
            scripted = self.next_create.pop(0)
            if isinstance(scripted, Exception):
                raise scripted
            if scripted is not None:
                return scripted  # type: ignore[no-any-return]
        body = json.loads(request.content)
        kind = body["billingType"]
        # A card with a saved token is charged at once; without one it waits on its own page (invoiceUrl).
        status = "CONFIRMED" if kind == "CREDIT_CARD" and body.get("creditCardToken") else "PENDING"
        value = body.get("value", body.get("totalValue"))
        payment_id = self.add(body["externalReference"], status=status, value=value, kind=kind)
        return httpx.Response(200, json=self.payments[payment_id])

    def _list(self, request: httpx.Request) -> httpx.Response:
        reference = request.url.params.get("externalReference")
        data = [copy.deepcopy(p) for p in self.payments.values() if p["externalReference"] == reference]
        page = {"object": "list", "hasMore": False, "totalCount": len(data), "limit": 100, "offset": 0}
        return httpx.Response(200, json={**page, "data": data})

    def _find(self, payment_id: str) -> dict[str, Any] | None:
        return self.payments.get(payment_id)

    def _get(self, request: httpx.Request, pid: str) -> httpx.Response:
        payment = self._find(pid)
        return httpx.Response(200, json=payment) if payment else httpx.Response(404, json={"errors": []})

    def _delete(self, request: httpx.Request, pid: str) -> httpx.Response:
        payment = self._find(pid)
        if payment is None:
            return httpx.Response(404, json={"errors": []})
        if payment["status"] not in ("PENDING", "OVERDUE"):
            return httpx.Response(400, json={"errors": [{"code": "invalid_action", "description": "paga"}]})
        payment["deleted"] = True
        return httpx.Response(200, json={"deleted": True, "id": pid})

    def _refund(self, request: httpx.Request, pid: str) -> httpx.Response:
        payment = self._find(pid)
        assert payment is not None
        body = json.loads(request.content or b"{}")
        value = body.get("value", payment["value"])
        payment["refunds"] = [*(payment.get("refunds") or []), {"status": self.refund_status, "value": value}]
        done = [item for item in payment["refunds"] if item["status"] == "DONE"]
        if sum(item["value"] for item in done) >= payment["value"]:
            payment["status"] = "REFUNDED"
        return httpx.Response(200, json=payment)

    def _create_customer(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        customer_id = f"cus_fake{next(self._ids):06d}"
        self.customers[customer_id] = {
            "object": "customer",
            "id": customer_id,
            "name": body["name"],
            "cpfCnpj": body["cpfCnpj"],
            "email": body.get("email"),
            "externalReference": body.get("externalReference"),
            "notificationDisabled": body.get("notificationDisabled", False),
            "deleted": False,
        }
        return httpx.Response(200, json=self.customers[customer_id])

    def _list_customers(self, request: httpx.Request) -> httpx.Response:
        reference = request.url.params.get("externalReference")
        data = [c for c in self.customers.values() if c["externalReference"] == reference]
        page = {"object": "list", "hasMore": False, "totalCount": len(data), "limit": 10, "offset": 0}
        return httpx.Response(200, json={**page, "data": data})

    def _pix(self, request: httpx.Request, pid: str) -> httpx.Response:
        return httpx.Response(200, json={**fixture("pix_qr_code.json"), "payload": f"00020101PIX{pid}"})

    def _line(self, request: httpx.Request, pid: str) -> httpx.Response:
        return httpx.Response(200, json={**fixture("identification_field.json"), "identificationField": f"4619{pid}"})


@contextmanager
def fake_asaas() -> Iterator[FakeAsaas]:
    with respx.mock(base_url=f"{BASE}/v3", assert_all_called=False) as router:
        yield FakeAsaas(router)
