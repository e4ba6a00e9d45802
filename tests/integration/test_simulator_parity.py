"""The simulator held to Asaas's real sandbox: every captured scenario replayed, every answer compared.

The captures (tests/fixtures/asaas_golden, MIT, see its README) are sessions against
api-sandbox.asaas.com. Each step is sent again to the simulator in process, on a clock standing at
the scenario's day, with the session's ids translated to the simulator's. Compared: the HTTP status,
and in every object of the body the exact set of keys and every value, dates as days from the
scenario's day; ids, numbers and URLs that name a record only need to be there (or be null) as in
the capture; `anticipable` is Asaas's credit analysis of the capturing account and is not compared.

One step is sent elsewhere than captured: `POST /v3/installments` (a route regua does not use) goes
to `POST /v3/payments` with the same body, the way Asaas also accepts an installment purchase; its
answer (the first installment rather than the installment object) is not compared, and the listing
of the installments that follows is.
"""

from __future__ import annotations

import json
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from starlette.testclient import TestClient

from billing.clock import FrozenClock
from regua.sandbox.simulator import create_simulator_app

GOLDEN = Path(__file__).parents[1] / "fixtures" / "asaas_golden"
SCENARIOS = sorted(GOLDEN.glob("*.json"))
PROBES = json.loads((GOLDEN / "probes" / "card-probe.json").read_text(encoding="utf-8"))
PROBE_DAY = date(2026, 7, 14)  # the probes' dateCreated
HEADERS = {"access_token": "any-key"}

ROUTED_ELSEWHERE = {("POST", "/v3/installments"): "/v3/payments"}
NAMES_A_RECORD = frozenset(
    {
        "id",
        "customer",
        "installment",
        "invoiceUrl",
        "bankSlipUrl",
        "invoiceNumber",
        "nossoNumero",
        "transactionReceiptUrl",
        "creditCardToken",
    }
)
NOT_COMPARED = frozenset({"anticipable"})
DATES = frozenset(
    {
        "dateCreated",
        "dueDate",
        "originalDueDate",
        "paymentDate",
        "clientPaymentDate",
        "confirmedDate",
        "creditDate",
        "estimatedCreditDate",
        "limitDate",
    }
)


def differences(expected: Any, actual: Any, day: date, where: str = "body") -> list[str]:
    """Every way `actual` (the simulator's) differs from `expected` (Asaas's), each naming where."""
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return [f"{where}: {actual!r} instead of an object"]
        found = []
        if set(expected) != set(actual):
            missing, extra = sorted(set(expected) - set(actual)), sorted(set(actual) - set(expected))
            found.append(f"{where}: keys missing {missing}, keys Asaas does not send {extra}")
        for key in expected.keys() & actual.keys():
            found += _field(key, expected[key], actual[key], day, f"{where}.{key}")
        return found
    if isinstance(expected, list):
        if not isinstance(actual, list) or len(actual) != len(expected):
            return [f"{where}: {len(actual) if isinstance(actual, list) else actual!r} items, Asaas {len(expected)}"]
        pairs = enumerate(zip(expected, actual, strict=True))
        return [problem for i, (e, a) in pairs for problem in differences(e, a, day, f"{where}[{i}]")]
    if _number(expected) and _number(actual):
        return [] if Decimal(str(expected)) == Decimal(str(actual)) else [f"{where}: {actual}, Asaas {expected}"]
    return [] if expected == actual and type(expected) is type(actual) else [f"{where}: {actual!r}, Asaas {expected!r}"]


def _number(value: object) -> bool:
    return isinstance(value, int | float | Decimal) and not isinstance(value, bool)


def _field(key: str, expected: Any, actual: Any, day: date, where: str) -> list[str]:
    if key in NOT_COMPARED:
        return []
    if key in NAMES_A_RECORD:
        same = (expected is None) == (actual is None) and (expected is None or isinstance(actual, str))
        return [] if same else [f"{where}: {actual!r}, Asaas {expected!r}"]
    if key in DATES and isinstance(expected, str) and isinstance(actual, str):
        offset, ours = (date.fromisoformat(expected[:10]) - day).days, (date.fromisoformat(actual[:10]) - day).days
        return [] if offset == ours else [f"{where}: D{ours:+d} ({actual}), Asaas D{offset:+d} ({expected})"]
    return differences(expected, actual, day, where)


class Replay:
    """The simulator at a scenario's day, and the captured ids translated to the simulator's."""

    def __init__(self, day: date) -> None:
        clock = FrozenClock(datetime(day.year, day.month, day.day, 10, 0, tzinfo=ZoneInfo("America/Sao_Paulo")))
        app = create_simulator_app("", "", clock=clock, refund_delay_s=0, require_remote_ip=True)
        self.client = TestClient(app, base_url="http://sim.test")
        self.ids: dict[str, str] = {}

    def translate(self, value: Any) -> Any:
        if isinstance(value, dict):
            return {key: self.translate(item) for key, item in value.items()}
        if isinstance(value, list):
            return [self.translate(item) for item in value]
        if isinstance(value, str):
            for theirs, ours in self.ids.items():
                value = value.replace(theirs, ours)
        return value

    def send(self, method: str, path: str, body: Any = None, query: dict[str, str] | None = None) -> Any:
        return self.client.request(
            method,
            self.translate(path),
            params=self.translate(query or {}),
            content=None if body is None else json.dumps(self.translate(body)),
            headers=HEADERS | {"content-type": "application/json"},
        )


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda path: path.stem)
def test_the_simulator_answers_each_captured_scenario_as_asaas_s_sandbox_did(scenario: Path) -> None:
    capture = json.loads(scenario.read_text(encoding="utf-8"))
    day = date.fromisoformat(capture["anchorDate"])
    replay = Replay(day)
    found: list[str] = []

    for number, step in enumerate(capture["steps"], start=1):
        request, expected = step["request"], step["response"]
        method, path = request["method"], request["path"]
        elsewhere = ROUTED_ELSEWHERE.get((method, path))
        answer = replay.send(method, elsewhere or path, request.get("body"), request.get("query"))
        label = f"step {number} ({step['step']['label']})"
        if elsewhere is not None:
            assert answer.status_code == 200, f"{label}: {answer.text}"
            replay.ids[expected["body"]["id"]] = answer.json()["installment"]
            continue
        if answer.status_code != expected["status"]:
            found.append(f"{label}: HTTP {answer.status_code}, Asaas {expected['status']}: {answer.text}")
            continue
        found += [f"{label} {problem}" for problem in differences(expected["body"], answer.json(), day)]
        for name in step["step"].get("capture", {}).values():
            replay.ids[expected["body"][name]] = answer.json()[name]

    assert not found, "\n".join(found)


@pytest.mark.parametrize("probe", PROBES, ids=lambda probe: probe["number"])
def test_each_test_card_number_is_approved_or_declined_as_in_asaas_s_sandbox(probe: dict[str, Any]) -> None:
    replay = Replay(PROBE_DAY)
    customer = replay.send("POST", "/v3/customers", {"name": "Cliente Paridade", "cpfCnpj": "24971563792"})
    card = {"holderName": "Cliente Paridade", "number": probe["number"], "expiryMonth": "12", "expiryYear": "2030"}
    body = {
        "customer": customer.json()["id"],
        "billingType": "CREDIT_CARD",
        "value": 100,
        "dueDate": "2026-07-15",
        "description": f"probe {probe['number'][-4:]}",
        "creditCard": card | {"ccv": "123"},
        "remoteIp": "127.0.0.1",
    }

    answer = replay.send("POST", "/v3/payments", body)

    assert answer.status_code == probe["httpStatus"], answer.text
    assert differences(probe["response"], answer.json(), PROBE_DAY) == []


def test_every_capture_in_the_folder_is_replayed() -> None:
    assert [path.stem for path in SCENARIOS] == [
        "boleto-com-juros-e-multa",
        "cartao-a-vista",
        "erros-de-validacao",
        "parcelamento-350-em-12x",
        "parcelamento-no-cartao",
        "pix-recebido",
    ]
    assert len(PROBES) == 10


def test_the_comparison_notices_a_key_too_many_a_day_off_a_centavo_and_a_missing_id() -> None:
    day = date(2026, 7, 14)
    asaas = {"id": "pay_1", "value": 29.24, "dueDate": "2026-07-24", "discount": {"value": 0}, "anticipable": True}
    ours = {"id": None, "value": Decimal("29.16"), "dueDate": "2026-07-25", "discount": {"value": 0, "type": "FIXED"}}
    ours |= {"anticipable": False}

    assert sorted(differences(asaas, ours, day)) == [
        "body.discount: keys missing [], keys Asaas does not send ['type']",
        "body.dueDate: D+11 (2026-07-25), Asaas D+10 (2026-07-24)",
        "body.id: None, Asaas 'pay_1'",
        "body.value: 29.16, Asaas 29.24",
    ]
    assert differences(asaas, asaas, day) == []
