"""Receipts after an invoice's verification window (rule 3.7): they lift nothing and wait for a person,
who grants a new window with a note or rejects it; through the payment page, the API and the ops forms."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import select
from starlette.testclient import TestClient

from billing.clock import FrozenClock, parse_instant
from billing.journal import Notification
from billing.models import Block, Invoice
from billing.records import OpsAction, Receipt, ReceiptReview
from regua.cli import tick_once
from regua.portal.tokens import PortalTokens
from regua.runtime import Runtime
from regua.settings import Settings
from tests.integration.conftest import Api
from tests.integration.ops_helpers import OPS_TOKEN, basic, csrf_of
from tests.integration.test_webhook_settlement import charge_for, deliver_standard, settle_jobs
from workers.actors import Jobs

ACCOUNT = "padaria-central"
API = {"Authorization": "Bearer test-token"}
PDF = b"%PDF-1.4\n%%EOF\n"
CHECKED_BY_A_PERSON = "ele está sendo conferido por uma pessoa da nossa equipe"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return replace(settings, ops_token=OPS_TOKEN)


def local(text: str) -> datetime:
    """A wall-clock time in São Paulo: "2026-12-08T10:00"."""
    return parse_instant(f"{text}:00-03:00")


def link(runtime: Runtime) -> str:
    return f"/portal/{PortalTokens(runtime.settings.secret_key).issue(ACCOUNT, runtime.clock.now())}"


def blocked_since_day_seven(api: Api, runtime: Runtime, clock: FrozenClock) -> str:
    """A boleto customer who did not pay December: blocked from 00:00 of 7/12."""
    api.put_account(ACCOUNT)
    api.subscribe(ACCOUNT, "platform")
    tick_once(runtime)
    clock.set(local("2026-12-07T00:01"))
    tick_once(runtime)
    assert api.access(ACCOUNT, "platform")["state"] == "blocked"
    [invoice] = api.invoices(ACCOUNT)
    return str(invoice["id"])


def upload(client: TestClient, runtime: Runtime, invoice_id: str) -> str:
    """A receipt sent from the payment page; returns the notice the page is sent back with."""
    sent = client.post(
        f"{link(runtime)}/comprovante",
        data={"invoice_id": invoice_id},
        files={"arquivo": ("comprovante.pdf", PDF, "application/pdf")},
        follow_redirects=False,
    )
    assert sent.status_code == 303, sent.text
    return parse_qs(urlsplit(sent.headers["location"]).query)["aviso"][0]


def window_had_and_ended(api: Api, client: TestClient, runtime: Runtime, clock: FrozenClock) -> str:
    """The issue's story up to its second receipt: a receipt on day 8 lifted the block, 72 hours later the
    window ended and the block came back."""
    invoice_id = blocked_since_day_seven(api, runtime, clock)
    clock.set(local("2026-12-08T10:00"))
    assert upload(client, runtime, invoice_id) == "comprovante"
    assert api.access(ACCOUNT, "platform")["state"] == "verifying"
    clock.set(local("2026-12-11T10:00"))
    tick_once(runtime)
    assert api.access(ACCOUNT, "platform")["state"] == "blocked"
    return invoice_id


def reviews(runtime: Runtime) -> list[ReceiptReview]:
    return runtime.read(lambda s: list(s.scalars(select(ReceiptReview).order_by(ReceiptReview.requested_at))))


def invoice_row(runtime: Runtime, invoice_id: str) -> Invoice:
    invoice = runtime.read(lambda s: s.get(Invoice, invoice_id))
    assert invoice is not None
    return invoice


def decide(client: TestClient, action: str, review_id: str, note: str, who: str = "ana") -> str:
    """Press grant or reject on /ops/person as `who`, then confirm; returns the result the page is told."""
    person = basic(user=who)
    page = client.get("/ops/person", headers=person)
    assert f'data-review="{review_id}"' in page.text
    form = {"csrf": csrf_of(page.text), "ids": review_id, "next": "/ops/person", "note": note}
    asked = client.post(f"/ops/actions/{action}", data=form, headers=person)
    assert asked.status_code == 200, asked.text
    assert "Confirm:" in asked.text
    done = client.post(
        f"/ops/actions/{action}", data={**form, "confirm": "yes"}, headers=person, follow_redirects=False
    )
    assert done.status_code == 303, done.text
    return parse_qs(urlsplit(done.headers["location"]).query)["done"][0]


def test_a_receipt_sent_72_hours_after_the_window_lifts_nothing_and_the_page_says_a_person_checks_it(
    api: Api, client: TestClient, runtime: Runtime, clock: FrozenClock
) -> None:
    invoice_id = window_had_and_ended(api, client, runtime, clock)

    clock.set(local("2026-12-14T10:00"))
    assert upload(client, runtime, invoice_id) == "conferencia"
    assert api.access(ACCOUNT, "platform")["state"] == "blocked"
    invoice = invoice_row(runtime, invoice_id)
    assert (invoice.status, invoice.verifying_until) == ("open", None)
    assert invoice.verification_started_at == local("2026-12-08T10:00")
    assert len(runtime.read(lambda s: list(s.scalars(select(Receipt))))) == 2  # the file is kept all the same
    [review] = reviews(runtime)
    assert (review.invoice_id, review.status, review.requested_at) == (invoice_id, "waiting", clock.now())

    page = client.get(link(runtime) + "?aviso=conferencia").text
    assert "por isso ele está sendo conferido por uma pessoa da nossa equipe" in page
    assert f"Recebemos seu comprovante de dezembro/2026 em 14/12/2026; {CHECKED_BY_A_PERSON}" in page
    assert "e o acesso segue bloqueado" in page

    clock.set(local("2026-12-14T10:05"))
    report = tick_once(runtime)
    assert report.counts["blocks_applied"] == 0
    assert api.access(ACCOUNT, "platform")["state"] == "blocked"

    assert upload(client, runtime, invoice_id) == "conferencia"  # another one joins the review waiting
    assert [r.id for r in reviews(runtime)] == [review.id]


def test_every_upload_every_72_hours_never_opens_a_second_window(
    api: Api, client: TestClient, runtime: Runtime, clock: FrozenClock
) -> None:
    invoice_id = window_had_and_ended(api, client, runtime, clock)
    for days in (3, 6, 9):
        clock.set(local("2026-12-11T10:00") + timedelta(days=days))
        assert upload(client, runtime, invoice_id) == "conferencia"
        tick_once(runtime)
        assert api.access(ACCOUNT, "platform")["state"] == "blocked"
    blocks = runtime.read(lambda s: list(s.scalars(select(Block).order_by(Block.started_at))))
    assert [(b.lift_reason, b.lifted_at is None) for b in blocks] == [("verifying", False), (None, True)]


def test_the_api_answers_that_the_receipt_needs_a_person_and_names_the_review(
    api: Api, client: TestClient, runtime: Runtime, clock: FrozenClock, openapi_checked: None
) -> None:
    invoice_id = blocked_since_day_seven(api, runtime, clock)
    clock.set(local("2026-12-08T10:00"))
    first = client.post(f"/api/invoices/{invoice_id}/receipts", headers=API)
    assert (first.status_code, first.json()["status"]) == (200, "verifying")

    clock.set(local("2026-12-11T10:00") + timedelta(hours=72))
    late = client.post(f"/api/invoices/{invoice_id}/receipts", headers=API)
    assert late.status_code == 202, late.text
    body = late.json()
    [review] = reviews(runtime)
    assert (body["review"], body["review_id"]) == ("needs_a_person", review.id)
    # No tick has closed the ended window yet: the answer shows it as it was, not extended.
    assert (body["invoice"]["id"], body["invoice"]["verifying_until"]) == (invoice_id, first.json()["verifying_until"])
    assert api.access(ACCOUNT, "platform")["state"] == "blocked"

    waiting = client.get("/ops/person", headers=basic()).text
    assert f'data-review="{review.id}"' in waiting
    assert "none: recorded through the API" in waiting


def test_a_named_person_grants_a_new_window_from_the_grant_with_the_note_logged(
    api: Api, client: TestClient, runtime: Runtime, clock: FrozenClock
) -> None:
    invoice_id = window_had_and_ended(api, client, runtime, clock)
    clock.set(local("2026-12-14T10:00"))
    upload(client, runtime, invoice_id)
    [review] = reviews(runtime)

    clock.set(local("2026-12-14T16:30"))
    result = decide(client, "receipt-grant", review.id, "PIX found on the bank statement of 13/12")
    assert f"receipt review {review.id} granted" in result
    assert api.access(ACCOUNT, "platform")["state"] == "verifying"
    invoice = invoice_row(runtime, invoice_id)
    assert (invoice.status, invoice.verifying_until) == ("verifying", local("2026-12-17T16:30"))
    assert invoice.verification_started_at == local("2026-12-08T10:00")
    [decided] = reviews(runtime)
    assert (decided.status, decided.decided_by, decided.decided_at) == ("granted", "ana", clock.now())
    assert decided.note == "PIX found on the bank statement of 13/12"
    [action] = runtime.read(lambda s: list(s.scalars(select(OpsAction))))
    assert (action.by, action.action, action.targets, action.at) == ("ana", "receipt-grant", [review.id], clock.now())
    assert "by ana; note: PIX found on the bank statement of 13/12" in action.result
    blocks = runtime.read(lambda s: list(s.scalars(select(Block).order_by(Block.started_at))))
    assert [(b.lift_reason, b.lifted_at) for b in blocks][-1] == ("verifying", clock.now())

    page = client.get(link(runtime)).text
    assert "Nossa equipe conferiu seu comprovante de dezembro/2026 em 14/12/2026" in page
    assert "até 17/12/2026" in page
    assert CHECKED_BY_A_PERSON not in page
    assert f'data-review="{review.id}"' not in client.get("/ops/person", headers=basic()).text

    tick_once(runtime)  # the customer is told the block is lifted, and until when
    told = runtime.read(lambda s: list(s.scalars(select(Notification).where(Notification.kind == "account_unblocked"))))
    # one for the first receipt's window, one for the window granted
    assert sorted(str(n.context.get("verifying_until")) for n in told) == ["2026-12-11", "2026-12-17"]

    clock.set(local("2026-12-17T16:30"))
    tick_once(runtime)
    assert api.access(ACCOUNT, "platform")["state"] == "blocked"  # the granted window ends like any other


def test_a_rejected_receipt_leaves_the_invoice_open_and_blocked_and_the_customer_is_told(
    api: Api, client: TestClient, runtime: Runtime, clock: FrozenClock
) -> None:
    invoice_id = window_had_and_ended(api, client, runtime, clock)
    clock.set(local("2026-12-14T10:00"))
    upload(client, runtime, invoice_id)
    [review] = reviews(runtime)

    result = decide(client, "receipt-reject", review.id, "no such PIX at our bank", who="bruno")
    assert f"receipt review {review.id} rejected: invoice {invoice_id} stays open" in result
    assert api.access(ACCOUNT, "platform")["state"] == "blocked"
    assert invoice_row(runtime, invoice_id).status == "open"
    [decided] = reviews(runtime)
    assert (decided.status, decided.decided_by, decided.note) == ("rejected", "bruno", "no such PIX at our bank")
    [action] = runtime.read(lambda s: list(s.scalars(select(OpsAction))))
    assert (action.by, action.action) == ("bruno", "receipt-reject")
    account_page = client.get(f"/ops/accounts/{ACCOUNT}", headers=basic()).text
    row = account_page.split(f'<tr data-review="{review.id}">', 1)[1].split("</tr>", 1)[0]
    assert "<td>rejected</td><td>bruno</td>" in row
    assert "no such PIX at our bank" in row

    page = client.get(link(runtime)).text
    assert "e não localizou o pagamento" in page
    assert CHECKED_BY_A_PERSON not in page

    clock.set(local("2026-12-15T10:00"))
    assert upload(client, runtime, invoice_id) == "conferencia"  # a new receipt: a new review waits
    assert [r.status for r in reviews(runtime)] == ["rejected", "waiting"]
    assert CHECKED_BY_A_PERSON in client.get(link(runtime)).text


def test_a_grant_without_a_note_is_refused_and_the_review_still_waits(
    api: Api, client: TestClient, runtime: Runtime, clock: FrozenClock
) -> None:
    invoice_id = window_had_and_ended(api, client, runtime, clock)
    clock.set(local("2026-12-14T10:00"))
    upload(client, runtime, invoice_id)
    [review] = reviews(runtime)

    result = decide(client, "receipt-grant", review.id, "   ")
    assert result.startswith("refused: note:")
    assert [r.status for r in reviews(runtime)] == ["waiting"]
    assert api.access(ACCOUNT, "platform")["state"] == "blocked"
    [action] = runtime.read(lambda s: list(s.scalars(select(OpsAction))))
    assert action.result.startswith("refused: note:")


def test_a_review_another_person_decided_meanwhile_cannot_be_decided_again(
    api: Api, client: TestClient, runtime: Runtime, clock: FrozenClock
) -> None:
    invoice_id = window_had_and_ended(api, client, runtime, clock)
    clock.set(local("2026-12-14T10:00"))
    upload(client, runtime, invoice_id)
    [review] = reviews(runtime)
    person = basic(user="carla")
    carlas_page = client.get("/ops/person", headers=person).text  # open while the review still waits
    decide(client, "receipt-reject", review.id, "no such PIX")

    form = {
        "csrf": csrf_of(carlas_page),
        "ids": review.id,
        "next": "/ops/person",
        "note": "found it after all",
        "confirm": "yes",
    }
    done = client.post("/ops/actions/receipt-grant", data=form, headers=person, follow_redirects=False)
    assert "already+rejected+by+ana" in done.headers["location"]
    assert api.access(ACCOUNT, "platform")["state"] == "blocked"
    assert [r.status for r in reviews(runtime)] == ["rejected"]


def test_a_grant_without_the_forms_csrf_token_is_refused_and_changes_nothing(
    api: Api, client: TestClient, runtime: Runtime, clock: FrozenClock
) -> None:
    invoice_id = window_had_and_ended(api, client, runtime, clock)
    clock.set(local("2026-12-14T10:00"))
    upload(client, runtime, invoice_id)
    [review] = reviews(runtime)
    form = {"csrf": "1.forged", "ids": review.id, "note": "trust me", "confirm": "yes"}
    assert client.post("/ops/actions/receipt-grant", data=form, headers=basic()).status_code == 403
    assert [r.status for r in reviews(runtime)] == ["waiting"]
    assert runtime.read(lambda s: list(s.scalars(select(OpsAction)))) == []


def test_a_pending_report_of_another_payment_after_the_window_opens_none_and_a_receipt_then_waits(
    api: Api, client: TestClient, runtime: Runtime, clock: FrozenClock, jobs: Jobs
) -> None:
    invoice_id = blocked_since_day_seven(api, runtime, clock)
    first = charge_for(runtime, [invoice_id], "boleto")
    deliver_standard(client, clock, "payment.pending", first, "msg_pending_1", payment_id="gw_1", method="boleto")
    settle_jobs(jobs, runtime)
    assert api.access(ACCOUNT, "platform")["state"] == "verifying"
    clock.set(clock.now() + timedelta(hours=72))
    tick_once(runtime)
    assert api.access(ACCOUNT, "platform")["state"] == "blocked"

    second = charge_for(runtime, [invoice_id], "pix")
    deliver_standard(client, clock, "payment.pending", second, "msg_pending_2", payment_id="gw_2")
    settle_jobs(jobs, runtime)
    assert api.access(ACCOUNT, "platform")["state"] == "blocked"

    late = client.post(f"/api/invoices/{invoice_id}/receipts", headers=API)
    assert late.status_code == 202, late.text

    deliver_standard(client, clock, "payment.confirmed", second, "msg_paid_2", payment_id="gw_2")
    settle_jobs(jobs, runtime)
    assert api.access(ACCOUNT, "platform")["state"] == "active"  # the money itself still lifts it at once
