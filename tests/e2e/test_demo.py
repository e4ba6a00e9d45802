"""`regua demo` as a user runs it: a subprocess on its own embedded database, read back from what it prints."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, select

from billing.journal import Notification
from billing.models import Block, Invoice, NotificationStatus, Refund
from regua.migrate import current_revision, head_revision
from tests.integration.smtp_sink import SmtpSink

pytestmark = pytest.mark.e2e

COLUMNS = [
    "account",
    "product",
    "method",
    "invoices",
    "paid",
    "billed",
    "discount",
    "charges",
    "declined",
    "payments",
    "received",
    "refunds",
    "emails",
    "blocks",
    "lifted",
    "subscription",
]
CAST = {
    "padaria-central",
    "oficina-do-ze",
    "livraria-aurora",
    "estudio-lumen",
    "mercado-sol",
    "clinica-vida",
    "bistro-serra",
    "casa-verde",
}


@dataclass(frozen=True)
class Played:
    returncode: int
    stdout: str
    stderr: str
    seconds: float
    database: Path

    def table(self) -> dict[str, dict[str, str]]:
        """The final table, account -> column -> cell."""
        lines = self.stdout.split("The books at the end of December:\n", 1)[1].splitlines()
        header = re.split(r"\s{2,}", lines[0].strip())
        assert header == COLUMNS
        rows = {}
        for line in lines[2:]:
            if not line.strip():
                break
            cells = re.split(r"\s{2,}", line.strip())
            rows[cells[0]] = dict(zip(COLUMNS, cells, strict=True))
        return rows

    def story(self, account: str) -> list[str]:
        return [line for line in self.stdout.splitlines() if re.match(rf"\d\d/\d\d \d\d:\d\d  {account}\b", line)]


def environment() -> dict[str, str]:
    """The user's environment without any REGUA_* setting: the demo brings its own."""
    return {name: value for name, value in os.environ.items() if not name.startswith("REGUA_")}


@pytest.fixture(scope="module")
def played(tmp_path_factory: pytest.TempPathFactory) -> Played:
    keep = tmp_path_factory.mktemp("demo") / "kept"
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "regua.cli", "demo", "--keep", str(keep), "--year", "2026"],
        env=environment(),
        cwd=tmp_path_factory.mktemp("cwd"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    return Played(done.returncode, done.stdout, done.stderr, time.monotonic() - started, keep / "regua.db")


def test_the_demo_exits_zero_within_a_minute(played: Played) -> None:
    assert played.returncode == 0, played.stderr[-3000:]
    assert played.seconds < 60


def test_the_demo_ends_with_regua_check_clean_on_its_books(played: Played, tmp_path: Path) -> None:
    assert re.search(r"^regua check: books clean, \d+ invariants hold$", played.stdout, re.MULTILINE)
    env = {**environment(), "REGUA_DATABASE_URL": f"sqlite:///{played.database}"}
    done = subprocess.run(
        [sys.executable, "-m", "regua.cli", "check", "--json"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout
    assert '"clean": true' in done.stdout


def test_the_story_tells_each_case_as_it_happens_with_its_date(played: Played) -> None:
    assert any("invoice 12/2026 issued: R$ 199,90 - 5% = R$ 189,90" in line for line in played.story("padaria-central"))
    assert any(
        line.startswith("01/12") and "card charge" in line and "confirmed" in line
        for line in played.story("padaria-central")
    )
    oficina = played.story("oficina-do-ze")
    assert any(line.startswith("01/12") and "declined (insufficient_funds)" in line for line in oficina)
    assert any(line.startswith("03/12") and "card charge of R$ 189,90 confirmed" in line for line in oficina)
    aurora = played.story("livraria-aurora")
    for day, what in (
        ("03/12", "payment_reminder"),
        ("05/12", "block_warning"),
        ("07/12", "BLOCKED"),
        ("09/12", "UNBLOCKED"),
        ("09/12", "account_unblocked"),
    ):
        assert any(line.startswith(day) and what in line for line in aurora), (day, what)
    lumen = played.story("estudio-lumen")
    assert any("R$ 1.000,00" in line and "2 invoices in one" in line and "confirmed" in line for line in lumen)
    assert any("UNBLOCKED" in line for line in lumen)
    sol = played.story("mercado-sol")
    assert any("by pix: duplicate" in line for line in sol)
    assert sum("refund of R$ 199,90 (duplicate): done" in line for line in sol) == 1
    assert any(
        line.startswith("06/12") and "invoice 12/2026 verifying" in line for line in played.story("clinica-vida")
    )


def test_the_final_table_counts_what_the_rules_say(played: Played) -> None:
    table = played.table()
    assert set(table) == CAST
    padaria = table["padaria-central"]
    assert (padaria["billed"], padaria["discount"], padaria["paid"], padaria["charges"]) == (
        "R$ 189,90",
        "R$ 10,00",
        "1",
        "1",
    )
    oficina = table["oficina-do-ze"]
    assert (oficina["charges"], oficina["declined"], oficina["paid"], oficina["discount"]) == (
        "2",
        "1",
        "1",
        "R$ 10,00",
    )
    aurora = table["livraria-aurora"]
    assert (aurora["blocks"], aurora["lifted"], aurora["paid"], aurora["discount"]) == ("1", "1", "1", "R$ 0,00")
    # issued, reminder, block warning, blocked, unblocked: one each
    assert aurora["emails"] == "5"
    lumen = table["estudio-lumen"]
    assert (lumen["invoices"], lumen["paid"], lumen["payments"], lumen["received"]) == ("2", "2", "1", "R$ 1.000,00")
    assert (lumen["blocks"], lumen["lifted"]) == ("1", "1")
    sol = table["mercado-sol"]
    assert (sol["payments"], sol["refunds"], sol["received"]) == ("2", "1", "R$ 399,80")
    assert sum(int(row["refunds"]) for row in table.values()) == 1
    clinica = table["clinica-vida"]
    assert (clinica["blocks"], clinica["paid"]) == ("0", "1")
    assert all(row["paid"] == row["invoices"] for row in table.values())
    bistro = table["bistro-serra"]
    assert (bistro["invoices"], bistro["charges"], bistro["subscription"]) == ("2", "2", "pro+delivery, upgraded 16/12")
    casa = table["casa-verde"]
    assert (casa["invoices"], casa["paid"], casa["subscription"]) == ("1", "1", "ended 30/11")


def half_up(numerator: int, denominator: int) -> int:
    quotient, remainder = divmod(numerator, denominator)
    return quotient + (1 if 2 * remainder >= denominator else 0)


def test_an_upgrade_mid_month_is_invoiced_pro_rata_charged_at_once_and_told(played: Played) -> None:
    subtotal = half_up((19990 + 3000 - 9990) * 16, 31)  # Pro with Delivery instead of Básico, 16 of 31 days
    total = subtotal - half_up(subtotal * 5, 100)
    amounts = f"R$ {subtotal // 100},{subtotal % 100:02d} - 5% = R$ {total // 100},{total % 100:02d}"
    bistro = [line for line in played.story("bistro-serra") if line.startswith("16/12")]
    assert any(f"invoice 12/2026 from 16/12 (pro rata) issued: {amounts}" in line for line in bistro), bistro
    assert any(f"card charge of R$ {total // 100},{total % 100:02d} confirmed" in line for line in bistro)
    assert sum("email subscription_changed sent to davi@bistroserra.example" in line for line in bistro) == 1


def test_a_cancellation_ends_the_subscription_with_the_month_paid_and_nothing_is_issued_after(played: Played) -> None:
    casa = played.story("casa-verde")
    assert any(line.startswith("20/11") and "access until 30/11/2026" in line for line in casa)
    assert sum("email subscription_canceled sent to eva@casaverde.example" in line for line in casa) == 1
    assert not [line for line in casa if line[3:5] == "12"], "nothing is told of an ended subscription in December"
    engine = create_engine(f"sqlite:///{played.database}")
    with engine.connect() as connection:
        after_end = connection.scalar(
            select(func.count())
            .select_from(Invoice)
            .where(Invoice.account_id == "casa-verde", Invoice.period_start > date(2026, 11, 30))
        )
    engine.dispose()
    assert after_end == 0


def test_every_email_sent_reached_the_demos_smtp_sink(played: Played) -> None:
    sent = re.search(r"^emails sent: (\d+) \((.*)\)$", played.stdout, re.MULTILINE)
    received = re.search(
        r"^emails received by the SMTP sink at smtp://127\.0\.0\.1:\d+: (\d+)$", played.stdout, re.MULTILINE
    )
    assert sent is not None, played.stdout[-2000:]
    assert received is not None, played.stdout[-2000:]
    assert int(received.group(1)) == int(sent.group(1)) == sum(int(row["emails"]) for row in played.table().values())
    kinds = dict(item.rsplit(" ", 1) for item in sent.group(2).split(", "))
    assert kinds["account_blocked"] == "2"  # the late mentorship in November, the boleto in December
    assert kinds["refund_issued"] == "1"
    assert kinds["verification_pending"] == "1"
    assert (kinds["subscription_changed"], kinds["subscription_canceled"]) == ("1", "1")
    engine = create_engine(f"sqlite:///{played.database}")
    with engine.connect() as connection:
        in_books = connection.scalar(
            select(func.count()).select_from(Notification).where(Notification.status == NotificationStatus.SENT.value)
        )
        refunds = connection.scalar(select(func.count()).select_from(Refund))
        lifted = connection.scalar(select(func.count()).select_from(Block).where(Block.lifted_at.is_not(None)))
    engine.dispose()
    assert in_books == int(sent.group(1))
    assert (refunds, lifted) == (1, 2)


def test_the_kept_database_is_migrated_and_regua_tick_opens_it(played: Played, tmp_path: Path) -> None:
    assert played.database.is_file()
    assert f"REGUA_DATABASE_URL=sqlite:///{played.database}" in played.stdout
    engine = create_engine(f"sqlite:///{played.database}")
    assert current_revision(engine) == head_revision()
    engine.dispose()
    env = {
        **environment(),
        "REGUA_DATABASE_URL": f"sqlite:///{played.database}",
        "REGUA_NOW": "2026-12-31T12:00:00-03:00",
        "REGUA_SMTP_URL": "smtp://127.0.0.1:9",
        "REGUA_ASAAS_API_URL": "http://127.0.0.1:9",
    }
    done = subprocess.run(
        [sys.executable, "-m", "regua.cli", "tick", "--json"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert '"invoices_issued": 0' in done.stdout
    assert '"blocks_applied": 0' in done.stdout


def test_a_kept_database_is_never_played_over(played: Played, tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "regua.cli", "demo", "--keep", str(played.database.parent)],
        env=environment(),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "exists already" in done.stderr


def test_with_smtp_url_every_email_reaches_that_server_with_its_headers(tmp_path: Path) -> None:
    sink = SmtpSink()
    sink.start()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "regua.cli", "demo", "--year", "2026", "--smtp-url", sink.url],
            env=environment(),
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        sent = re.search(r"^emails sent: (\d+) \((.*)\)$", done.stdout, re.MULTILINE)
        assert sent is not None, done.stdout[-2000:]
        messages = sink.wait_for(int(sent.group(1)), timeout=5)
    finally:
        sink.stop()
    assert "received by the SMTP sink" not in done.stdout
    assert len(messages) == int(sent.group(1))
    printed = {kind: int(count) for kind, count in (item.rsplit(" ", 1) for item in sent.group(2).split(", "))}
    assert Counter(message.kind for message in messages) == printed
    assert {message["X-Regua-Account"] for message in messages} == CAST
    [refund] = [message for message in messages if message.kind == "refund_issued"]
    assert refund.rcpt_tos == ("rui@mercadosol.example",)
