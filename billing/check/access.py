"""Invariants of access: blocks and verifications as rules 3.4 to 3.7 say they must be, written from the rules."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select

from billing.check import rules
from billing.check.scope import Key, Record, Scope
from billing.models import Payment

CHUNK = 500


def wrong_blocks(scope: Scope) -> Iterator[dict[str, Any]]:
    """No block in force that the rules would lift; no overdue product left free after the last tick; a mentorship
    freed only once every invoice issued before was paid; every invoice blocks from 00:00 of its day 7.

    Lifting happens in the job that clears a block, so blocks in force are judged at `now`; applying
    happens in the reconciliation pass, so missing blocks are judged at the last pass's `now`. A product
    left free because a verification lifted its block and was not put back is the verification
    invariant's, not this one's.
    """
    for key, block in sorted(scope.active_blocks.items()):
        if not rules.keeping_blocked(key[1], scope.unpaid.get(key, []), True, scope.now, scope.zone):
            yield {"account": key[0], "product": key[1], "block": block.id, "problem": "nothing keeps it blocked"}
    for key, invoices in sorted(scope.unpaid.items()):
        for invoice in invoices:
            rule = rules.block_instant(invoice.due_date, scope.zone)
            if invoice.block_at != rule:
                yield {
                    "account": key[0],
                    "product": key[1],
                    "invoice": invoice.id,
                    "block_at": invoice.block_at.isoformat(),
                    "rule_block_at": rule.isoformat(),
                    "problem": "does not block from 00:00 of day 7",
                }
    last_tick = scope.last_tick
    if last_tick is not None:
        for key, invoices in sorted(scope.unpaid.items()):
            if key in scope.active_blocks:
                continue
            ended = scope.ends.get(key)
            if ended is not None and ended <= last_tick:
                continue  # 3.10: a canceled subscription past its end blocks nothing more
            keeping = rules.keeping_blocked(key[1], invoices, False, last_tick, scope.zone)
            if keeping and not _left_by_a_verification(scope, key, invoices, keeping):
                yield {
                    "account": key[0],
                    "product": key[1],
                    "invoices": ",".join(sorted(keeping)),
                    "problem": "overdue, not blocked",
                }
    yield from _mentorships_freed_too_soon(scope)


def _left_by_a_verification(scope: Scope, key: Key, invoices: Sequence[Record], keeping: list[str]) -> bool:
    """Whether a product free against the rules got so by a verification: one still marked verifying past its
    window, or a block lifted for a verification whose invoices block again."""
    if any(invoice.status == "verifying" and invoice.id in keeping for invoice in invoices):
        return True
    lifted = scope.last_lifted.get(key)
    return lifted is not None and lifted.lift_reason == "verifying" and bool(set(lifted.invoice_ids) & set(keeping))


def _mentorships_freed_too_soon(scope: Scope) -> Iterator[dict[str, Any]]:
    """Rule 3.6: a mentorship block lifted as paid while an invoice issued before the lift was still unpaid,
    and not blocked again since. An invoice that some payment paid (and a chargeback or an undone receipt
    reopened later) was paid at the lift, and is not counted."""
    candidates: dict[Key, tuple[Record, list[str]]] = {}
    for key, lifted in scope.last_lifted.items():
        if key[1] != rules.MENTORSHIP or key in scope.active_blocks or lifted.lift_reason != "paid":
            continue
        unpaid = [
            invoice.id
            for invoice in scope.unpaid.get(key, [])
            if invoice.issued_at <= lifted.lifted_at and rules.is_open(invoice, scope.now)
        ]
        if unpaid:
            candidates[key] = (lifted, unpaid)
    if not candidates:
        return
    ever_paid: set[str] = set()
    accounts = sorted({key[0] for key in candidates})
    for offset in range(0, len(accounts), CHUNK):
        query = select(Payment.invoice_ids).where(Payment.account_id.in_(accounts[offset : offset + CHUNK]))
        for invoice_ids in scope.session.scalars(query):
            ever_paid.update(invoice_ids)
    for key, (lifted, unpaid) in sorted(candidates.items()):
        never_paid = sorted(set(unpaid) - ever_paid)
        if never_paid:
            yield {
                "account": key[0],
                "product": key[1],
                "block": lifted.id,
                "lifted_at": _iso(lifted.lifted_at),
                "invoices": ",".join(never_paid),
                "problem": "freed while invoices issued before were unpaid",
            }


def verifications_past_their_window(scope: Scope) -> Iterator[dict[str, Any]]:
    """Rule 3.7: a verification lasts its window, then the invoice is overdue again and blocks again.

    No invoice is still `verifying` after the pass that came after its window's end (or with no window
    at all), and no block lifted for a verification stays lifted once that verification has ended with
    the invoice unpaid and overdue. Judged at the last pass's `now`: between the window's end and the
    next pass, the access rules already count the invoice as open, and the pass puts the rows right.
    """
    last_tick = scope.last_tick
    for key, invoices in sorted(scope.unpaid.items()):
        for invoice in invoices:
            if invoice.status != "verifying":
                continue
            if invoice.verifying_until is None:
                yield {"account": key[0], "product": key[1], "invoice": invoice.id, "problem": "verifying, no window"}
            elif last_tick is not None and invoice.verifying_until <= last_tick:
                yield {
                    "account": key[0],
                    "product": key[1],
                    "invoice": invoice.id,
                    "verifying_until": _iso(invoice.verifying_until),
                    "last_tick": _iso(last_tick),
                    "problem": "still verifying after its window",
                }
    if last_tick is None:
        return
    for key, invoices in sorted(scope.unpaid.items()):
        lifted = scope.last_lifted.get(key)
        if key in scope.active_blocks or lifted is None or lifted.lift_reason != "verifying":
            continue
        ended = scope.ends.get(key)
        if ended is not None and ended <= last_tick:
            continue  # 3.10: a canceled subscription past its end blocks nothing more, even after a verification
        keeping = set(rules.keeping_blocked(key[1], invoices, False, last_tick, scope.zone))
        again = sorted(keeping & set(lifted.invoice_ids))
        if again:
            yield {
                "account": key[0],
                "product": key[1],
                "block": lifted.id,
                "lifted_at": _iso(lifted.lifted_at),
                "invoices": ",".join(again),
                "problem": "lifted for a verification that ended, not put back",
            }


def _iso(instant: datetime) -> str:
    return instant.isoformat()
