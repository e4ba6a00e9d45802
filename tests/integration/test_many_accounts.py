"""Reads that take a list of accounts hold any number of them: day 1 asks about every account at once, and one
statement takes at most 65,535 parameters on PostgreSQL (a day-1 tick at 100,000 card subscriptions once failed in
its charging step, asking which subscriptions had ended in one `IN` of 100,000 ids)."""

from __future__ import annotations

from datetime import timedelta

from billing.access import access_by_product
from billing.clock import FrozenClock
from billing.plan_changes import ended_products
from billing.schedule import active_blocks
from regua.cli import tick_once
from regua.runtime import Runtime
from tests.integration.conftest import AUTH, Api

MANY = 70_000
"""More ids than one PostgreSQL statement takes as parameters."""


def test_reads_by_account_take_more_ids_than_a_statement_does(api: Api, runtime: Runtime, clock: FrozenClock) -> None:
    api.put_account("padaria-central")
    api.subscribe("padaria-central", "platform", payment_method="pix")
    api.put_account("oficina-norte")
    api.subscribe("oficina-norte", "platform", payment_method="pix")
    tick_once(runtime)
    response = api.client.delete("/api/accounts/oficina-norte/subscriptions/platform", headers=AUTH)
    assert response.status_code in (200, 202), response.text
    clock.set(clock.now() + timedelta(days=40))
    tick_once(runtime)
    ids = [f"acct-{n:07d}" for n in range(MANY)] + ["padaria-central", "oficina-norte"]
    now = runtime.clock.now()

    ended = runtime.read(lambda session: ended_products(session, ids, now))
    assert ended == {("oficina-norte", "platform")}
    assert runtime.read(lambda session: ended_products(session, [*ids[:10], "oficina-norte"], now)) == ended
    blocked = runtime.read(lambda session: active_blocks(session, set(ids)))
    assert blocked == {("padaria-central", "platform")}
    access = runtime.read(lambda session: access_by_product(session, ids, now, runtime.calendar, runtime.policy))
    assert {key: view.state for key, view in access.items()} == {
        ("padaria-central", "platform"): "blocked",
        ("oficina-norte", "platform"): "canceled",
    }
