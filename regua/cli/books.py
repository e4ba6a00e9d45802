"""`regua replay`, `check`, `refunds`, `receipts` and `portal-link`: reading and mending the books by hand."""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import replace
from pathlib import Path

from sqlalchemy.orm import Session

from billing.accounts import get_account
from billing.check import Report, check_books, snapshot
from billing.errors import BillingError, NotFound
from billing.models import Account, Refund
from billing.refunds import mark_refund_done, refunds_by_hand
from regua.assembly import build_jobs, build_providers, lazy_context
from regua.cli.common import CommandError, command_runtime
from regua.settings import Settings
from workers.processing import event_statuses, process_event, replay_events


def cmd_replay(settings: Settings, args: argparse.Namespace) -> int:
    """Put unmatched or failed webhook events back in line, then process them."""
    runtime = command_runtime(settings)
    try:
        wanted = list(dict.fromkeys(args.event_ids))
        statuses = runtime.read(lambda session: event_statuses(session, wanted))
        unknown = [event_id for event_id in wanted if event_id not in statuses]
        if unknown:
            # All or nothing: a mistyped id stops the command before any event is touched.
            raise CommandError(f"no webhook event {', '.join(unknown)}: nothing replayed")
        ids = runtime.transaction(lambda session: replay_events(session, wanted))
        for event_id in wanted:
            if event_id not in ids:
                print(f"{event_id} is {statuses[event_id]}: only unmatched or failed events are replayed")
        if settings.broker_url and ids:
            build_jobs(settings, lazy_context(settings)).enqueue_events(ids)
        providers = build_providers(settings)
        for event_id in ids if not settings.broker_url else []:
            print(f"{event_id} {process_event(runtime, providers, event_id)}")
    finally:
        runtime.close()
    print(f"events_replayed {len(ids)}")
    return 0


def cmd_check(settings: Settings, args: argparse.Namespace) -> int:
    """The books' invariants over the whole database, read-only: exit 0 when clean, 1 listing what is broken."""
    runtime = command_runtime(settings)
    try:

        def work(session: Session) -> Report:
            snapshot(session)
            return check_books(session, runtime.clock.now(), runtime.calendar.zone)

        report = runtime.read(work)
    finally:
        runtime.close()
    if args.json:
        print(json.dumps(report.as_dict(), default=str))
    elif report.clean:
        print(f"books clean: {len(report.counts)} invariants hold")
    else:
        for violation in report.violations:
            print(violation.line())
        broken = {name: count for name, count in report.counts.items() if count}
        print("broken: " + " ".join(f"{name}={count}" for name, count in broken.items()))
    return 0 if report.clean else 1


def cmd_refunds(settings: Settings, args: argparse.Namespace) -> int:
    """The refunds owed that no gateway can make for regua; `done ID` records one made by hand."""
    runtime = command_runtime(settings)
    try:
        if args.action == "done":
            if not args.refund_id:
                raise CommandError("usage: regua refunds done REFUND_ID [--note TEXT]")
            who = os.environ.get("USER") or "cli"

            def record(session: Session) -> Refund:
                return mark_refund_done(session, args.refund_id, by=who, note=args.note, now=runtime.clock.now())

            try:
                refund = runtime.transaction(record)
            except BillingError as error:
                raise CommandError(error.message) from None
            print(f"{refund.id} done {refund.amount_cents} by {who}")
            return 0
        owed = [
            {
                "id": refund.id,
                "account": refund.account_id,
                "payment": refund.payment_id,
                "amount_cents": refund.amount_cents,
                "reason": refund.reason,
                "status": refund.status,
                "gateway_status": refund.gateway_status,
                "since": refund.created_at.isoformat(),
            }
            for refund in runtime.read(lambda session: refunds_by_hand(session, runtime.clock.now()))
        ]
    finally:
        runtime.close()
    if args.json:
        print(json.dumps(owed))
    else:
        for item in owed:
            print(" ".join(f"{key}={value}" for key, value in item.items()))
        print(f"refunds_to_make_by_hand {len(owed)}")
    return 0


def cmd_portal_link(settings: Settings, args: argparse.Namespace) -> int:
    """A fresh link to an account's payment page, as the emails carry (for support and development)."""
    from regua.mailer import portal_link

    runtime = command_runtime(settings)
    try:
        runtime.read(lambda session: get_account(session, args.account))
        print(portal_link(replace(settings, portal_url=""), args.account, runtime.clock.now()))
    except NotFound as error:
        raise CommandError(str(error)) from None
    finally:
        runtime.close()
    return 0


_EXTENSIONS = {"application/pdf": ".pdf", "image/png": ".png", "image/jpeg": ".jpg"}


def cmd_receipts(settings: Settings, args: argparse.Namespace) -> int:
    """The receipts customers sent from the payment page, newest first; --save writes their files."""
    from sqlalchemy import select

    from billing.models import Invoice
    from billing.records import Receipt

    runtime = command_runtime(settings)
    try:
        if args.account and runtime.read(lambda session: session.get(Account, args.account)) is None:
            raise CommandError(f"no account {args.account}: no receipts to list")
        query = (
            select(Receipt, Invoice.status)
            .join(Invoice, Invoice.id == Receipt.invoice_id)
            .order_by(Receipt.received_at.desc())
            .limit(args.limit)
        )
        if args.account:
            query = query.where(Receipt.account_id == args.account)
        rows = runtime.read(lambda session: [(r, status) for r, status in session.execute(query)])
    finally:
        runtime.close()
    listed = [
        {
            "id": receipt.id,
            "account_id": receipt.account_id,
            "invoice_id": receipt.invoice_id,
            "invoice_status": status,
            "filename": receipt.filename,
            "content_type": receipt.content_type,
            "size_bytes": receipt.size_bytes,
            "sha256": receipt.sha256,
            "received_at": receipt.received_at.isoformat(),
        }
        for receipt, status in rows
    ]
    if args.save:
        directory = Path(args.save)
        directory.mkdir(parents=True, exist_ok=True)
        for receipt, _status in rows:
            (directory / f"{receipt.id}{_EXTENSIONS.get(receipt.content_type, '')}").write_bytes(receipt.content)
    if args.json:
        print(json.dumps(listed, ensure_ascii=False))
    else:
        for item in listed:
            print(
                f"{item['received_at']}  {item['id']}  {item['account_id']}  {item['invoice_id']} "
                f"({item['invoice_status']})  {item['content_type']}  {item['size_bytes']} B  {item['filename']}"
            )
        print(f"receipts {len(listed)}")
    return 0
