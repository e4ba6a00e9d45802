"""`regua portal-link` and `regua receipts` as ops run them: separate processes on an SQLite file."""

from __future__ import annotations

import json
from pathlib import Path

from billing.clock import FrozenClock, parse_instant
from billing.invoicing import issue_due_invoices
from regua.portal.receipts import store_receipt
from regua.portal.tokens import PortalTokens
from regua.runtime import build_runtime
from regua.settings import DEV_SECRET_KEY, Settings
from tests.integration.test_cli import START, database_url, migrated, regua  # noqa: F401  (fixtures: an SQLite file)

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32


def test_portal_link_prints_a_fresh_signed_link_and_names_an_unknown_account(migrated: str) -> None:  # noqa: F811
    done = regua(migrated, "portal-link", "padaria-central", env={"REGUA_PUBLIC_URL": "https://cobranca.example/"})
    assert done.returncode == 0, done.stderr
    prefix, token = done.stdout.strip().rsplit("/", 1)
    assert prefix == "https://cobranca.example/portal"
    assert PortalTokens(DEV_SECRET_KEY).read(token, parse_instant(START)).account_id == "padaria-central"

    unknown = regua(migrated, "portal-link", "ninguem")
    assert unknown.returncode == 2
    assert "ninguem" in unknown.stderr
    assert "Traceback" not in unknown.stderr


def test_receipts_lists_what_customers_sent_and_saves_the_files(migrated: str, tmp_path: Path) -> None:  # noqa: F811
    runtime = build_runtime(Settings(env="test", database_url=migrated), clock=FrozenClock(parse_instant(START)))
    try:
        now = runtime.clock.now()
        [invoice_id] = runtime.transaction(
            lambda session: issue_due_invoices(session, now, runtime.calendar).invoice_ids
        )
        stored = runtime.transaction(
            lambda session: store_receipt(
                session, "padaria-central", invoice_id, "foto.png", PNG, now, runtime.calendar, runtime.policy
            )
        )
    finally:
        runtime.close()

    done = regua(migrated, "receipts", "--json", "--save", str(tmp_path / "files"))
    assert done.returncode == 0, done.stderr
    [listed] = json.loads(done.stdout)
    assert (listed["id"], listed["invoice_id"], listed["invoice_status"]) == (
        stored.receipt_id,
        invoice_id,
        "verifying",
    )
    assert (listed["content_type"], listed["size_bytes"], listed["filename"]) == ("image/png", len(PNG), "foto.png")
    assert (tmp_path / "files" / f"{stored.receipt_id}.png").read_bytes() == PNG
    text = regua(migrated, "receipts", "--account", "padaria-central")
    assert text.stdout.splitlines()[-1] == "receipts 1"
