from __future__ import annotations

from billing.clock import FrozenClock, parse_instant
from regua.cli import tick_once
from regua.runtime import Runtime
from tests.integration.conftest import Api


def test_an_unpaid_boleto_blocks_on_day_seven(api: Api, runtime: Runtime, clock: FrozenClock) -> None:
    api.put_account("padaria-central")
    api.subscribe("padaria-central", "platform")
    report = tick_once(runtime)
    assert report.counts["invoices_issued"] == 1
    assert tick_once(runtime).counts["invoices_issued"] == 0
    [invoice] = api.invoices("padaria-central")
    assert invoice["total_cents"] == 19990
    clock.set(parse_instant("2026-12-07T00:01:00-03:00"))
    assert tick_once(runtime).counts["blocks_applied"] == 1
    access = api.access("padaria-central", "platform")
    assert access["state"] == "blocked"
    assert access["blocked_since"] == "2026-12-07T00:01:00-03:00"
