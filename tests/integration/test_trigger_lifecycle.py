"""`regua trigger` and Asaas's payment lifecycle: each event name asks the simulator for its controls,
in order, and the simulator's webhooks reach a running regua, whose books stay whole.

regua's app (with its in-process worker) and the Asaas simulator each run under uvicorn in a thread,
on the test's clock standing at the real instant (the command signs Standard Webhooks by the shared
clock, which follows the system time here); the command runs through `regua.cli.main` in this process.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from dramatiq.errors import QueueJoinTimeout
from sqlalchemy import select

from billing.clock import FrozenClock, SystemClock
from billing.journal import WebhookEvent
from billing.models import Charge, EventStatus
from regua.app import create_app
from regua.assembly import InProcessWorker, build_providers
from regua.cli import main
from regua.gateway.asaas import AsaasGateway
from regua.mailer import SmtpPostman
from regua.runtime import Runtime, build_runtime
from regua.sandbox.simulator import create_simulator_app
from regua.sandbox.trigger import ASAAS_ONLY
from regua.settings import Settings
from tests.conftest import ASAAS_TOKEN, STANDARD_SECRET
from tests.integration.conftest import AUTH, PADARIA
from tests.integration.test_charging_simulator import bound_socket, serve
from workers.actors import Jobs, declare_actors
from workers.broker import build_broker
from workers.context import WorkerContext
from workers.tick import tick

ACCOUNT = "padaria-central"
SETTLED = (EventStatus.PROCESSED.value, EventStatus.IGNORED.value, EventStatus.UNMATCHED.value)
UNPAID = ("PENDING", "OVERDUE")


@dataclass(frozen=True)
class Ran:
    code: int
    out: str
    err: str


@dataclass
class Sandbox:
    runtime: Runtime
    context: WorkerContext
    jobs: Jobs
    regua: httpx.Client
    sim: httpx.Client
    sim_url: str
    run: Callable[..., Ran]

    def trigger(self, event: str, *more: str) -> Ran:
        ran = self.run("trigger", event, "--account", ACCOUNT, *more)
        self.settle()
        return ran

    def subscribe(self, method: str) -> None:
        today = self.runtime.calendar.local(self.runtime.clock.now()).date()
        body = {
            "plan": "pro",
            "monthly_price_cents": 19990,
            "frequency": "monthly",
            "payment_method": method,
            "starts_on": today.replace(day=1).isoformat(),
        }
        answer = self.regua.put(f"/api/accounts/{ACCOUNT}/subscriptions/platform", json=body, headers=AUTH)
        assert answer.status_code in (200, 201), answer.text
        tick(self.context, None)  # this month's invoice (and, by PIX or boleto, its charge at the simulator)
        self.settle()

    def payments(self) -> list[dict[str, Any]]:
        return list(self.sim.get("/sim/state").json()["payments"])

    def events(self) -> list[str]:
        return [str(delivery["event"]) for delivery in self.sim.get("/sim/state").json()["webhooks"]]

    def settle(self, timeout: float = 20) -> None:
        """Until every webhook the simulator sent is delivered, stored and processed."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for queue in ("webhooks", "charges"):
                with contextlib.suppress(QueueJoinTimeout):
                    self.jobs.broker.join(queue, timeout=100)
            deliveries = self.sim.get("/sim/state").json()["webhooks"]
            stored = self.runtime.read(lambda session: list(session.scalars(select(WebhookEvent.status))))
            if (
                all(delivery["status"] == "delivered" for delivery in deliveries)
                and len(stored) >= len(deliveries)
                and all(status in SETTLED for status in stored)
            ):
                return
            time.sleep(0.05)
        raise AssertionError(f"never settled: {self.sim.get('/sim/state').json()['webhooks']}")

    def books_clean(self) -> bool:
        return self.run("check").code == 0


@pytest.fixture
def sandbox(settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Sandbox]:
    clock = FrozenClock(SystemClock().now())
    regua_sock, sim_sock = bound_socket(), bound_socket()
    regua_url = f"http://127.0.0.1:{regua_sock.getsockname()[1]}"
    sim_url = f"http://127.0.0.1:{sim_sock.getsockname()[1]}"
    sim_settings = replace(settings, asaas_api_url=sim_url)
    runtime = build_runtime(sim_settings, clock=clock)
    providers = build_providers(sim_settings)
    gateway = AsaasGateway(sim_url, "asaas-test-key", timeout=httpx.Timeout(5.0, connect=2.0))
    context = WorkerContext(runtime, providers, gateway, postman=lambda: SmtpPostman(runtime))
    jobs = declare_actors(build_broker(""), lambda: context)
    app = create_app(runtime, providers, jobs.enqueue_events, [InProcessWorker(jobs.broker)])
    # Refunds are DONE 2 s after they are asked for: `refund-denied` denies one before, on a busy machine too.
    simulator = create_simulator_app(
        f"{regua_url}/webhooks/asaas", ASAAS_TOKEN, clock=clock, webhook_retry_delays=(0.2, 0.5), refund_delay_s=2
    )
    for name in [name for name in os.environ if name.startswith("REGUA_")]:
        monkeypatch.delenv(name)
    environment = {
        "REGUA_ENV": "test",
        "REGUA_DATABASE_URL": settings.database_url,
        "REGUA_PUBLIC_URL": regua_url,
        "REGUA_ASAAS_API_URL": sim_url,
        "REGUA_ASAAS_API_KEY": "asaas-test-key",
        "REGUA_API_TOKEN": settings.api_token,
        "REGUA_STANDARD_WEBHOOK_SECRETS": STANDARD_SECRET,
        "REGUA_ASAAS_WEBHOOK_TOKEN": ASAAS_TOKEN,
        "REGUA_SMTP_URL": "smtp://127.0.0.1:1",
    }
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)

    def run(*args: str) -> Ran:
        """`regua ARGS` in this process; its logging set-up (a handler on the stderr of the moment) is
        undone after, so the servers' threads never write to a stream the command no longer owns."""
        root = logging.getLogger()
        handlers, level = list(root.handlers), root.level
        out, err = io.StringIO(), io.StringIO()
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                code = main(list(args))
        finally:
            root.handlers[:] = handlers
            root.setLevel(level)
        return Ran(code, out.getvalue(), err.getvalue())

    with (
        serve(simulator, sim_sock),
        serve(app, regua_sock),
        httpx.Client(base_url=regua_url, timeout=30) as regua_client,
        httpx.Client(base_url=sim_url, timeout=10) as sim_client,
    ):
        assert regua_client.put(f"/api/accounts/{ACCOUNT}", json=PADARIA, headers=AUTH).status_code == 201
        yield Sandbox(runtime, context, jobs, regua_client, sim_client, sim_url, run)
    gateway.close()
    runtime.close()


def controls_sent(ran: Ran) -> list[str]:
    """The simulator's controls and Asaas API calls the command posted, in order (`refund` for the API's)."""
    posted = [line.split("POST ", 1)[1] for line in ran.out.splitlines() if line.startswith("-> gateway simulator")]
    return [url.rsplit("/", 1)[1] for url in posted]


@dataclass(frozen=True)
class Case:
    method: str  # the subscription's
    before: tuple[str, ...]  # the triggers that bring the payment where the event needs it
    controls: tuple[str, ...]  # what the event asks of the simulator, in order
    events: tuple[str, ...]  # the webhooks the simulator posts for them
    status: tuple[str, ...]  # the payment's status at the simulator afterwards (one of)


CASES = {
    "chargeback-won": Case(
        "pix",
        ("payment", "chargeback"),
        ("chargeback-dispute", "chargeback-won"),
        ("PAYMENT_CHARGEBACK_DISPUTE", "PAYMENT_AWAITING_CHARGEBACK_REVERSAL", "PAYMENT_RECEIVED"),
        ("RECEIVED",),
    ),
    "chargeback-lost": Case(
        "pix",
        ("payment", "chargeback"),
        ("chargeback-lost",),
        ("PAYMENT_CHARGEBACK_DISPUTE",),
        ("CHARGEBACK_REQUESTED",),
    ),
    "cash": Case("boleto", (), ("cash",), ("PAYMENT_RECEIVED",), ("RECEIVED_IN_CASH",)),
    "cash-undone": Case("boleto", ("cash",), ("cash-undone",), ("PAYMENT_RECEIVED_IN_CASH_UNDONE",), UNPAID),
    "refund-denied": Case("pix", ("payment",), ("refund", "refund-denied"), ("PAYMENT_REFUND_DENIED",), ("RECEIVED",)),
    "deleted": Case("pix", (), ("deleted",), ("PAYMENT_DELETED",), UNPAID),
    "restored": Case("boleto", ("deleted",), ("restored",), ("PAYMENT_RESTORED",), ("PENDING",)),
    "risk-review": Case("card", (), ("risk-review",), ("PAYMENT_AWAITING_RISK_ANALYSIS",), ("AWAITING_RISK_ANALYSIS",)),
    "risk-refused": Case(
        "card",
        (),
        ("risk-review", "risk-refused"),
        ("PAYMENT_AWAITING_RISK_ANALYSIS", "PAYMENT_REPROVED_BY_RISK_ANALYSIS"),
        ("PENDING",),
    ),
}


@pytest.mark.parametrize("event", sorted(CASES))
def test_each_lifecycle_event_sends_its_simulator_controls_and_the_books_stay_whole(
    sandbox: Sandbox, event: str
) -> None:
    case = CASES[event]
    sandbox.subscribe(case.method)
    for earlier in case.before:
        assert sandbox.trigger(earlier).code == 0, earlier
    seen = len(sandbox.events())

    ran = sandbox.trigger(event)

    assert ran.code == 0, ran.err
    assert controls_sent(ran) == list(case.controls)
    assert all(f"{sandbox.sim_url}/" in line for line in ran.out.splitlines() if line.startswith("-> gateway"))
    assert sandbox.events()[seen:] == list(case.events)
    [payment] = [p for p in sandbox.payments() if f"/sim/payments/{p['id']}/" in ran.out]
    assert payment["status"] in case.status
    assert payment["deleted"] == (event == "deleted")
    assert sandbox.books_clean()


def test_chargeback_won_on_a_dispute_already_open_only_wins_it(sandbox: Sandbox) -> None:
    sandbox.subscribe("pix")
    for earlier in ("payment", "chargeback"):
        sandbox.trigger(earlier)
    [payment] = sandbox.payments()
    assert sandbox.sim.post(f"/sim/payments/{payment['id']}/chargeback-dispute").status_code == 200
    sandbox.settle()

    ran = sandbox.trigger("chargeback-won")

    assert controls_sent(ran) == ["chargeback-won"]
    assert sandbox.payments()[0]["chargeback"]["status"] == "REVERSED"


@pytest.mark.parametrize(
    ("event", "first"),
    [
        ("chargeback-won", "chargeback"),
        ("chargeback-lost", "chargeback"),
        ("cash-undone", "cash"),
        ("restored", "deleted"),
    ],
)
def test_a_lifecycle_event_with_no_payment_to_act_on_names_the_trigger_to_run_first_and_sends_nothing(
    sandbox: Sandbox, event: str, first: str
) -> None:
    sandbox.subscribe("pix")
    before = sandbox.payments()

    ran = sandbox.trigger(event)

    assert ran.code == 2
    assert f"`regua trigger {first} --account {ACCOUNT}` first" in ran.err
    assert controls_sent(ran) == []
    assert sandbox.payments() == before


@pytest.mark.parametrize("event", ["risk-review", "risk-refused"])
def test_risk_analysis_for_an_account_that_does_not_pay_by_card_says_so_and_sends_nothing(
    sandbox: Sandbox, event: str
) -> None:
    sandbox.subscribe("boleto")
    before = sandbox.payments()

    ran = sandbox.trigger(event)

    assert ran.code == 2
    assert "risk analysis is for card payments" in ran.err
    assert ran.out == ""
    assert sandbox.payments() == before


def test_payment_after_a_risk_review_is_the_risk_analysis_approving_it(sandbox: Sandbox) -> None:
    sandbox.subscribe("card")
    sandbox.trigger("risk-review")

    ran = sandbox.trigger("payment")

    assert controls_sent(ran) == ["risk-approved"]
    [payment] = sandbox.payments()
    assert payment["status"] == "CONFIRMED"
    [invoice] = sandbox.regua.get(f"/api/accounts/{ACCOUNT}/invoices", headers=AUTH).json()["invoices"]
    assert invoice["status"] == "paid"


@pytest.mark.parametrize("event", ASAAS_ONLY)
def test_without_a_simulated_asaas_an_event_with_no_standard_equivalent_exits_non_zero_and_sends_nothing(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch, event: str
) -> None:
    sandbox.subscribe("pix")
    before = sandbox.payments()
    monkeypatch.setenv("REGUA_ASAAS_API_URL", "http://127.0.0.1:1")  # a Standard Webhooks gateway's charges

    ran = sandbox.trigger(event)

    assert ran.code == 2
    assert "no Standard Webhooks equivalent" in ran.err
    assert "->" not in ran.out
    assert sandbox.payments() == before
    assert sandbox.runtime.read(lambda session: len(list(session.scalars(select(Charge))))) == 1


@pytest.mark.parametrize(
    ("event", "delivered"), [("risk-review", "payment.pending"), ("risk-refused", "payment.failed")]
)
def test_without_a_simulated_asaas_risk_analysis_is_told_as_standard_webhooks(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch, event: str, delivered: str
) -> None:
    sandbox.subscribe("card")
    monkeypatch.setenv("REGUA_ASAAS_API_URL", "http://127.0.0.1:1")

    ran = sandbox.trigger(event)

    assert ran.code == 0, ran.err
    assert "-> Standard Webhook" in ran.out
    assert f'"type":"{delivered}"' in ran.out
    assert '<- 200 {"status": "accepted"' in ran.out
    query = select(WebhookEvent.status).where(WebhookEvent.provider == "standard")
    assert sandbox.runtime.read(lambda session: list(session.scalars(query))) == [EventStatus.PROCESSED.value]


def test_a_refund_for_a_regua_that_does_not_answer_acts_on_nothing_and_exits_non_zero(sandbox: Sandbox) -> None:
    sandbox.subscribe("pix")
    assert sandbox.trigger("payment").code == 0
    [paid] = sandbox.payments()

    ran = sandbox.trigger("refund", "--url", "http://127.0.0.1:1")

    assert ran.code == 2
    assert "no regua answers at http://127.0.0.1:1" in ran.err
    assert "nothing sent" in ran.err
    [after] = sandbox.payments()
    assert (after["status"], after["refunds"]) == ("RECEIVED", None)
    assert after == paid


def test_trigger_prints_what_it_sends_without_httpx_or_alembic_lines(sandbox: Sandbox) -> None:
    sandbox.subscribe("pix")

    ran = sandbox.trigger("cash")

    assert ran.code == 0
    assert "-> gateway simulator" in ran.out
    for output in (ran.out, ran.err):
        assert "httpx" not in output
        assert "alembic" not in output
