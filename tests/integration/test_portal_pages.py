"""The payment page in process: what it shows by the rules, and what it refuses (no browser, no gateway)."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.testclient import TestClient

from billing.clock import FrozenClock, parse_instant
from billing.invoicing import issue_due_invoices
from billing.models import Charge, ChargeInvoice, Invoice, Payment, Refund, new_charge_id
from billing.records import Receipt
from regua.portal.receipts import MAX_RECEIPT_BYTES
from regua.portal.tokens import PortalTokens
from regua.runtime import Runtime
from regua.settings import Settings
from tests.integration.conftest import Api

ACCOUNT = "padaria-central"
PDF = b"%PDF-1.4\n%%EOF\n"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The test settings with an ops token: the ops pages answer it."""
    return replace(settings, ops_token="ops-token")


def link(runtime: Runtime, account_id: str = ACCOUNT) -> str:
    return f"/portal/{PortalTokens(runtime.settings.secret_key).issue(account_id, runtime.clock.now())}"


def issue(runtime: Runtime) -> None:
    runtime.transaction(lambda session: issue_due_invoices(session, runtime.clock.now(), runtime.calendar))


def test_an_auto_debit_month_shows_its_five_percent_off_and_the_block_date(
    api: Api, client: TestClient, runtime: Runtime, clock: FrozenClock
) -> None:
    api.put_account(ACCOUNT)
    api.subscribe(ACCOUNT, "platform", payment_method="card_auto_debit", card_token="tok_ok")
    issue(runtime)
    clock.set(clock.now() + timedelta(days=2))

    page = client.get(link(runtime))
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert page.headers["cache-control"] == "no-store"
    assert '<html lang="pt-BR">' in page.text
    assert "<s>R$ 199,90</s>" in page.text
    assert '5% de desconto: <span class="nowrap">−R$ 10,00</span>' in page.text
    assert '<td class="num" data-total>R$ 189,90</td>' in page.text
    assert "O acesso será bloqueado em 07/12/2026" in page.text
    assert "http://" not in page.text
    assert "https://" not in page.text  # no external asset: styles inline, the script from /portal/assets


def test_names_on_the_page_are_escaped(api: Api, client: TestClient, runtime: Runtime) -> None:
    api.put_account(ACCOUNT, name="<script>alert(1)</script> & Filhos")
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; Filhos" in client.get(link(runtime)).text


def test_a_charge_or_an_invoice_of_another_account_is_not_found_through_this_accounts_link(
    api: Api, client: TestClient, runtime: Runtime
) -> None:
    api.put_account(ACCOUNT)
    api.put_account("outra-conta", name="Outra Conta Ltda")
    api.subscribe("outra-conta", "platform")
    issue(runtime)
    [invoice_id] = runtime.read(lambda session: [i.id for i in session.query(Invoice).all()])

    def open_charge(session: object) -> str:
        charge = Charge(
            id=new_charge_id(),
            account_id="outra-conta",
            product="platform",
            method="pix",
            amount_cents=19990,
            idempotency_key="test:other",
            pix_code="000201-other",
            created_at=runtime.clock.now(),
        )
        charge.invoice_links = [ChargeInvoice(invoice_id=invoice_id)]
        session.add(charge)  # type: ignore[attr-defined]
        return charge.id

    charge_id = runtime.transaction(open_charge)
    mine = link(runtime)
    theirs = link(runtime, "outra-conta")
    assert client.get(f"{theirs}/cobranca/{charge_id}/status").json() == {"status": "pending", "access": "grace"}
    assert client.get(f"{mine}/cobranca/{charge_id}").status_code == 404
    assert client.get(f"{mine}/cobranca/{charge_id}/status").status_code == 404
    answer = client.post(
        f"{mine}/comprovante", data={"invoice_id": invoice_id}, files={"arquivo": ("c.pdf", PDF, "application/pdf")}
    )
    assert answer.status_code == 404
    assert runtime.read(lambda session: session.get(Invoice, invoice_id).status) == "open"  # type: ignore[union-attr]


def test_a_receipt_over_the_size_limit_is_refused_before_it_is_read(
    api: Api, client: TestClient, runtime: Runtime
) -> None:
    api.put_account(ACCOUNT)
    api.subscribe(ACCOUNT, "platform")
    issue(runtime)
    [invoice_id] = runtime.read(lambda session: [i.id for i in session.query(Invoice).all()])
    for size in (MAX_RECEIPT_BYTES + 1, MAX_RECEIPT_BYTES + 100_000):
        big = PDF + b"0" * (size - len(PDF))
        answer = client.post(
            f"{link(runtime)}/comprovante",
            data={"invoice_id": invoice_id},
            files={"arquivo": ("c.pdf", big, "application/pdf")},
        )
        assert answer.status_code == 413
        assert "5 MB" in answer.text
    assert runtime.read(lambda session: session.get(Invoice, invoice_id).status) == "open"  # type: ignore[union-attr]


@pytest.mark.parametrize("path", ["", "/pagar", "/comprovante", "/cobranca/chg_x", "/cobranca/chg_x/status"])
def test_every_route_refuses_a_forged_token_without_a_trace(client: TestClient, path: str) -> None:
    method = client.post if path in ("/pagar", "/comprovante") else client.get
    answer = method(f"/portal/eyJhIjoicGFkYXJpYS1jZW50cmFsIiwieCI6OTk5OTk5OTk5OX0.forged{path}")
    assert answer.status_code == 404
    assert "Traceback" not in answer.text
    assert "padaria" not in answer.text


def test_the_history_lists_payments_and_the_refunds_from_14_06_2023_on(
    api: Api, client: TestClient, runtime: Runtime
) -> None:
    api.put_account(ACCOUNT)
    api.subscribe(ACCOUNT, "mentorship", monthly_price_cents=50000, starts_on="2026-11-01")
    issue(runtime)
    at = parse_instant

    def paid(session: Session) -> None:
        invoices = session.scalars(select(Invoice).order_by(Invoice.period_start)).all()
        charge = Charge(
            id=new_charge_id(),
            account_id=ACCOUNT,
            product="mentorship",
            method="pix",
            amount_cents=100000,
            status="confirmed",
            idempotency_key="test:history",
            created_at=at("2026-12-03T10:00:00-03:00"),
        )
        charge.invoice_links = [ChargeInvoice(invoice_id=invoice.id) for invoice in invoices]
        session.add(charge)
        session.flush()
        for n, (status, paid_at) in enumerate(
            [("confirmed", "2026-12-03T10:00:00-03:00"), ("duplicate", "2026-12-03T10:02:00-03:00")]
        ):
            session.add(
                Payment(
                    id=f"pay_{n}",
                    charge_id=charge.id,
                    account_id=ACCOUNT,
                    amount_cents=100000,
                    method="pix",
                    status=status,
                    gateway="asaas",
                    gateway_payment_id=f"gw_{n}",
                    invoice_ids=[invoice.id for invoice in invoices],
                    paid_at=at(paid_at),
                )
            )
        session.flush()
        # the last one was owed, then superseded by the refund the gateway made (the 04/12 one): canceled
        for n, (when, status) in enumerate(
            [
                ("2023-06-13T12:00:00-03:00", "done"),
                ("2026-12-04T09:00:00-03:00", "done"),
                ("2026-12-05T09:00:00-03:00", "canceled"),
            ]
        ):
            session.add(
                Refund(
                    id=f"ref_{n}",
                    payment_id="pay_1",
                    charge_id=charge.id,
                    gateway_payment_id="gw_1",
                    account_id=ACCOUNT,
                    amount_cents=100000,
                    reason="duplicate",
                    status=status,
                    created_at=at(when),
                    refunded_at=at(when) if status == "done" else None,
                )
            )

    runtime.transaction(paid)
    page = client.get(link(runtime)).text
    history = page.split('id="historico"', 1)[1]
    assert history.count("<tr><td>") == 3  # two payments and the one refund made since 14/06/2023
    assert "05/12/2026" not in history, "a refund canceled is no money back: not listed to the customer"
    assert "Mentoria, novembro/2026; Mentoria, dezembro/2026" in history
    assert "Pagamento em duplicidade" in history
    assert "04/12/2026" in history
    assert "13/06/2023" not in history


def test_a_receipt_sent_from_the_page_is_on_the_ops_account_page_and_downloads_as_sent(
    api: Api, client: TestClient, runtime: Runtime
) -> None:
    api.put_account(ACCOUNT)
    api.subscribe(ACCOUNT, "platform")
    issue(runtime)
    [invoice_id] = runtime.read(lambda session: [i.id for i in session.query(Invoice).all()])
    sent = client.post(
        f"{link(runtime)}/comprovante",
        data={"invoice_id": invoice_id},
        files={"arquivo": ("comprovante do banco.pdf", PDF, "application/octet-stream")},
        follow_redirects=False,
    )
    assert sent.status_code == 303
    assert sent.headers["location"].endswith("?aviso=comprovante#situacao")
    [receipt_id] = runtime.read(lambda session: [r.id for r in session.query(Receipt).all()])

    ops = {"Authorization": "Bearer ops-token"}
    page = client.get(f"/ops/accounts/{ACCOUNT}", headers=ops)
    assert page.status_code == 200
    assert f'href="/ops/receipts/{receipt_id}"' in page.text
    assert "comprovante do banco.pdf (application/pdf)" in page.text
    download = client.get(f"/ops/receipts/{receipt_id}", headers=ops)
    assert download.content == PDF
    assert download.headers["content-type"] == "application/pdf"
    assert download.headers["content-disposition"] == f'attachment; filename="{receipt_id}.pdf"'
    assert client.get(f"/ops/receipts/{receipt_id}").status_code == 401
    assert client.get("/ops/receipts/rcp_none", headers=ops).status_code == 404
