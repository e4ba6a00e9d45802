"""The block mail of a customer who pays by boleto or PIX carries the codes to pay with (SPEC 5), the boleto line in
its printed groups, and a boleto customer is told of the boleto, not of a PIX they were never given."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from billing.clock import FrozenClock, parse_instant
from billing.journal import Notification
from billing.models import Charge
from regua.cli import tick_once
from regua.mail import render_email
from regua.mail_variables import printed_boleto_line
from regua.mailer import email_context
from regua.runtime import Runtime
from tests.integration.conftest import Api

DIGITS = "23793381286000000000300000000406197100000019990"
PIX = "00020126580014br.gov.bcb.pix0136regua-test-key5204000053039865406199.905802BR6304ABCD"


def codes_arrived(runtime: Runtime) -> None:
    """The gateway answered the invoice's boleto with its line and PIX code (as the charge job records them)."""

    def work(session: Session) -> None:
        for charge in session.scalars(select(Charge)):
            charge.boleto_line, charge.pix_code, charge.boleto_url = DIGITS, PIX, "https://boletos.test/1.pdf"

    runtime.transaction(work)


def rendered(runtime: Runtime, kind: str) -> str:
    [note] = runtime.read(lambda s: list(s.scalars(select(Notification).where(Notification.kind == kind))))
    mail = render_email(email_context(note.kind, note.account_id, note.context, "https://portal.test/x"))
    return mail.text


def test_the_block_mail_of_a_boleto_payer_carries_the_printed_line_and_the_pix_code(
    api: Api, runtime: Runtime, clock: FrozenClock
) -> None:
    api.put_account("padaria-central")
    api.subscribe("padaria-central", "platform", payment_method="boleto")
    tick_once(runtime)
    codes_arrived(runtime)
    clock.set(parse_instant("2026-12-07T00:05:00-03:00"))
    tick_once(runtime)
    text = rendered(runtime, "account_blocked")
    assert "COMO PAGAR" in text
    assert printed_boleto_line(DIGITS) in text
    assert PIX in text
    issued = rendered(runtime, "invoice_issued")
    assert "pagar o boleto com a linha digitável" in issued
    assert "PIX ou boleto" not in issued


def test_a_line_of_47_digits_is_printed_in_its_five_groups() -> None:
    assert printed_boleto_line("23793381286000000000300000000406197100000019990") == (
        "23793.38128 60000.000003 00000.000406 1 97100000019990"
    )
    assert printed_boleto_line("23793.38128 60000.000003 00000.000406 1 97100000019990") == (
        "23793.38128 60000.000003 00000.000406 1 97100000019990"
    )
    assert printed_boleto_line("8366000000") == "8366000000"  # not a bank slip's line: left as it came
