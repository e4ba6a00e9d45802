"""Generated bodies and headers at the three webhook doors: never a 500, nothing stored unless valid,
every stored event processable.

The app runs as `regua serve` does on PostgreSQL (whose columns refuse what SQLite would take), with
one open charge that the generated deliveries may name. Hypothesis keeps one app and one database
for all its examples, so each example compares the rows before and after itself.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
import respx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from starlette.testclient import TestClient

from billing.journal import WebhookEvent
from billing.models import EventStatus, pix_txid
from regua.app import create_app
from regua.runtime import Runtime
from tests.conftest import ASAAS_API_URL, ASAAS_TOKEN
from tests.integration.test_webhook_settlement import charge_for
from tests.integration.webhook_helpers import fixture, pix_url, standard_headers
from webhooks.base import Provider
from workers.processing import process_event

pytestmark = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)

FUZZ = settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
ANSWERS = {200, 400, 401, 413, 415}
MOSTLY_TRUE = st.sampled_from([True, True, True, False])
SETTLED = {EventStatus.PROCESSED.value, EventStatus.UNMATCHED.value, EventStatus.IGNORED.value}

NASTY_TEXT = st.sampled_from(
    ["", " ", "\x00", "a\x00b", "\ud800", "\u2028", "é", "../../customers", "?x=1", "x" * 201, "9" * 40, "NaN"]
)
TEXT = st.one_of(st.text(max_size=40), NASTY_TEXT)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    TEXT,
)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(TEXT, children, max_size=3),
    max_leaves=8,
)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, child in items:
        yield (*prefix, key)
        yield from _paths(child, (*prefix, key))


@st.composite
def mutated(draw: st.DrawFn, base: Any, specials: st.SearchStrategy[Any] = JSON_VALUES) -> Any:
    """A valid body with up to four of its fields replaced by anything JSON can say, or removed."""
    body = copy.deepcopy(base)
    for _ in range(draw(st.sampled_from([0, 0, 1, 1, 2, 4]))):
        paths = list(_paths(body))
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = body
        for key in path[:-1]:
            parent = parent[key]
        if isinstance(parent, dict) and draw(st.booleans()):
            del parent[path[-1]]
        else:
            parent[path[-1]] = draw(st.one_of(specials, JSON_VALUES))
    return body


@st.composite
def encoded(draw: st.DrawFn, document: st.SearchStrategy[Any]) -> bytes:
    """A JSON document as bytes: mostly UTF-8, sometimes with raw surrogates, UTF-16, or not JSON at all."""
    how = draw(st.sampled_from(["ascii", "utf-8", "utf-8", "utf-8", "utf-8", "utf-16", "garbage"]))
    if how == "garbage":
        return draw(st.binary(max_size=200))
    text = json.dumps(draw(document), ensure_ascii=how == "ascii")
    return text.encode("utf-16" if how == "utf-16" else "utf-8", "surrogatepass")


CONTENT_TYPES = st.sampled_from(
    ["application/json"] * 6 + ["application/json; charset=utf-8", "Application/JSON", "text/plain", ""]
)


class Door:
    """The app as `regua serve` runs it, without a broker: the test processes what was stored itself."""

    def __init__(self, runtime: Runtime, providers: dict[str, Provider]) -> None:
        self.runtime = runtime
        self.providers = providers
        self.app = create_app(runtime, providers, lambda _ids: None)
        self.answers: dict[int, int] = {}
        self.outcomes: dict[str, int] = {}

    def rows(self) -> dict[str, WebhookEvent]:
        return {row.id: row for row in self.runtime.read(lambda s: list(s.scalars(select(WebhookEvent))))}

    def check(self, client: TestClient, url: str, body: bytes, headers: dict[str, Any]) -> None:
        before = self.rows()
        response = client.post(url, content=body, headers=headers)
        assert response.status_code in ANSWERS, response.text
        self.answers[response.status_code] = self.answers.get(response.status_code, 0) + 1
        if response.status_code != 200:
            assert response.json()["error"]["code"]
            assert self.rows().keys() == before.keys(), "a refused delivery stored something"
            return
        assert response.json()["status"] in ("accepted", "duplicate")
        for event_id in self.rows().keys() - before.keys():
            process_event(self.runtime, self.providers, event_id)  # raises if it cannot be processed
            status = self.rows()[event_id].status
            assert status in SETTLED
            self.outcomes[status] = self.outcomes.get(status, 0) + 1

    def assert_it_went_deep(self) -> None:
        """A fuzzer that never gets past the signature tests nothing: some examples must be stored and settle."""
        assert self.answers.get(200, 0) >= 10, self.answers
        assert self.answers.get(400, 0) >= 10, self.answers
        assert self.outcomes.get(EventStatus.PROCESSED.value, 0) >= 3, self.outcomes


@pytest.fixture
def door(runtime: Runtime, providers: dict[str, Provider]) -> Door:
    return Door(runtime, providers)


@pytest.fixture
def charge(runtime: Runtime, api: Any, clock: Any) -> str:
    """One open PIX charge for an issued invoice, for generated deliveries to name."""
    from regua.cli import tick_once

    api.put_account("padaria-central")
    api.subscribe("padaria-central", "platform", payment_method="boleto")
    tick_once(runtime)
    [invoice] = api.invoices("padaria-central")
    return charge_for(runtime, [str(invoice["id"])])


def test_generated_pix_deliveries(door: Door, charge: str) -> None:
    item = fixture("pix/devolucao_devolvido.json")["pix"][0]
    bases = [
        {"pix": [{**item, "txid": pix_txid(charge), "valor": "199.90"}]},
        fixture("pix/callback_spec_example.json"),
        fixture("pix/batch.json"),
    ]
    refs = st.sampled_from([pix_txid(charge), charge, "c3e0e7a4e7f1469a9f782d3d4999343c"])

    def fresh(base: dict[str, Any], end_to_end: str) -> dict[str, Any]:
        batch = copy.deepcopy(base)
        for index, item in enumerate(batch["pix"]):
            item["endToEndId"] = f"{end_to_end}{index}"
        return batch

    valid = st.builds(fresh, st.sampled_from(bases), st.from_regex(r"E[0-9]{8}[a-z0-9]{22}", fullmatch=True))
    documents = st.one_of(valid.flatmap(lambda base: mutated(base, refs)), valid, JSON_VALUES)
    urls = st.sampled_from([pix_url(), pix_url("/webhooks/pix/pix"), "/webhooks/pix?hmac=wrong", "/webhooks/pix"])

    @FUZZ
    @given(body=encoded(documents), url=urls, content_type=CONTENT_TYPES)
    def deliver(body: bytes, url: str, content_type: str) -> None:
        door.check(client, url, body, {"content-type": content_type})

    with TestClient(door.app, raise_server_exceptions=False) as client:
        deliver()
    door.assert_it_went_deep()


def test_generated_standard_deliveries(door: Door, charge: str, clock: Any) -> None:
    data = {
        "charge_id": charge,
        "payment_id": "gw_1",
        "amount_cents": 19990,
        "method": "pix",
        "occurred_at": "2026-12-01T10:00:00Z",
        "refund_id": "rf_1",
        "failure_code": "insufficient_funds",
    }
    types = ["payment.confirmed", "payment.pending", "payment.failed", "payment.refunded", "payment.chargeback"]
    bases = [{"type": kind, "data": data} for kind in types]
    documents = st.one_of(st.sampled_from(bases).flatmap(mutated), st.sampled_from(bases), JSON_VALUES)
    message_ids = st.one_of(
        st.from_regex(r"msg_[a-z0-9]{12}", fullmatch=True),
        st.from_regex(r"msg_[a-z0-9]{12}", fullmatch=True),
        st.text(st.characters(min_codepoint=0x21, max_codepoint=0xFF), min_size=1, max_size=220),
        st.sampled_from(["msg_1", "x" * 201]),
    )
    skews = st.sampled_from([timedelta(0)] * 4 + [timedelta(minutes=-4), timedelta(minutes=6), timedelta(days=-400)])

    @FUZZ
    @given(body=encoded(documents), message_id=message_ids, skew=skews, signed=MOSTLY_TRUE, ct=CONTENT_TYPES)
    def deliver(body: bytes, message_id: str, skew: timedelta, signed: bool, ct: str) -> None:
        at: datetime = clock.now() + skew
        try:
            headers = standard_headers(body, message_id, at)
        except UnicodeDecodeError:  # a body that is not UTF-8 cannot be signed: send it with a made-up signature
            headers = {"webhook-id": message_id, "webhook-timestamp": str(int(at.timestamp()))}
            headers["webhook-signature"] = "v1,bm90IGEgc2lnbmF0dXJl"
        if not signed:
            headers["webhook-signature"] = "v1,bm90IGEgc2lnbmF0dXJl"
        headers["webhook-id"] = message_id.encode("latin-1")  # type: ignore[assignment]  # as a proxy passes it
        door.check(client, "/webhooks/standard", body, {**headers, "content-type": ct})

    with TestClient(door.app, raise_server_exceptions=False) as client:
        deliver()
    door.assert_it_went_deep()


@pytest.fixture
def asaas_api() -> Iterator[respx.MockRouter]:
    with respx.mock(base_url=ASAAS_API_URL, assert_all_called=False) as router:
        yield router


def test_generated_asaas_deliveries(door: Door, charge: str, asaas_api: respx.MockRouter) -> None:
    names = ["PAYMENT_RECEIVED_PIX", "PAYMENT_CONFIRMED", "PAYMENT_REFUNDED", "PAYMENT_DELETED", "PAYMENT_OVERDUE"]
    bases = [fixture(f"asaas/{name}.json") for name in names]
    for base in bases:
        base["payment"].update(externalReference=charge, value=199.9)
    valid = st.builds(lambda base, key: {**base, "id": key}, st.sampled_from(bases), st.uuids().map(str))
    documents = st.one_of(valid.flatmap(mutated), valid, JSON_VALUES)
    statuses = st.sampled_from(["RECEIVED", "CONFIRMED", "PENDING", "REFUNDED", "CHARGEBACK_REQUESTED", "OVERDUE"])
    answered: dict[str, Any] = {}

    def api_payment(request: httpx.Request) -> httpx.Response:
        """Asaas's API answering about whichever payment was asked, in the status the example drew."""
        return httpx.Response(200, json=answered)

    asaas_api.get(path__regex=r"^/v3/payments/[^/]+$").mock(side_effect=api_payment)

    @FUZZ
    @given(body=encoded(documents), token=st.sampled_from([ASAAS_TOKEN] * 5 + ["", "wrong"]), status=statuses)
    def deliver(body: bytes, token: str, status: str) -> None:
        answered.clear()
        answered.update(copy.deepcopy(bases[0]["payment"]), status=status)
        headers = {"content-type": "application/json", "asaas-access-token": token}
        door.check(client, "/webhooks/asaas", body, headers)

    with TestClient(door.app, raise_server_exceptions=False) as client:
        deliver()
    door.assert_it_went_deep()


def test_an_asaas_payment_id_longer_than_the_books_keep_is_refused_at_the_door(
    door: Door, charge: str, asaas_api: respx.MockRouter
) -> None:
    delivery = fixture("asaas/PAYMENT_RECEIVED_PIX.json")
    delivery["payment"].update(id="pay_" + "9" * 97, externalReference=charge, value=199.9)
    asaas_api.get(path__regex=r"^/v3/payments/[^/]+$").mock(
        return_value=httpx.Response(200, json={**delivery["payment"], "status": "RECEIVED"})
    )
    headers = {"content-type": "application/json", "asaas-access-token": ASAAS_TOKEN}
    with TestClient(door.app, raise_server_exceptions=False) as client:
        door.check(client, "/webhooks/asaas", json.dumps(delivery).encode(), headers)
    assert door.answers == {400: 1}
