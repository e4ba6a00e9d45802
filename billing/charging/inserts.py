"""Writing many new one-invoice charges and their invoice links at once, each key taken once."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import insert
from sqlalchemy.orm import Session

from billing.db import insert_ignoring_conflicts
from billing.models import Charge, ChargeInvoice

BATCH = 10_000

_UNNEST_CHARGES = """
    WITH draft AS (
        SELECT * FROM unnest(%b::varchar[], %b::varchar[], %b::varchar[], %b::varchar[], %b::integer[],
                             %b::integer[], %b::varchar[], %b::varchar[], %b::varchar[], %b::varchar[],
                             %b::integer[], %b::varchar[], %b::timestamptz[], %b::varchar[])
            AS d(id, account_id, product, method, amount_cents, installments, status, idempotency_key,
                 gateway, source, regua_day, card_ref, created_at, invoice_id)
    ), charge AS (
        INSERT INTO charges (id, account_id, product, method, amount_cents, installments, status,
                             idempotency_key, gateway, source, regua_day, card_ref, created_at)
        SELECT id, account_id, product, method, amount_cents, installments, status, idempotency_key,
               gateway, source, regua_day, card_ref, created_at
        FROM draft
        ON CONFLICT (idempotency_key) DO NOTHING
        RETURNING id
    ), link AS (
        INSERT INTO charge_invoices (charge_id, invoice_id)
        SELECT charge.id, draft.invoice_id FROM charge JOIN draft USING (id)
    )
    SELECT id FROM charge
"""
_COLUMNS = (
    "id",
    "account_id",
    "product",
    "method",
    "amount_cents",
    "installments",
    "status",
    "idempotency_key",
    "gateway",
    "source",
    "regua_day",
    "card_ref",
    "created_at",
    "invoice_id",
)


def insert_charges(
    session: Session, drafts: list[dict[str, Any]], on_batch: Callable[[list[str]], None] | None
) -> list[str]:
    """Insert new one-invoice charges (each draft names its `invoice_id`) and their links; a taken key inserts nothing.

    On PostgreSQL each batch is one statement, charges and links together from unnest(arrays), the
    arrays sent in binary on the session's own connection (same transaction): a statement with
    thousands of rows of placeholders costs more to build and parse than the rows cost to write.
    """
    created: list[str] = []
    invoice_of = {draft["id"]: draft["invoice_id"] for draft in drafts}
    postgres = session.get_bind().dialect.name == "postgresql"
    for offset in range(0, len(drafts), BATCH):
        batch = drafts[offset : offset + BATCH]
        driver = session.connection().connection.driver_connection  # again: on_batch may have committed
        if postgres and driver is not None:
            with driver.cursor() as cursor:
                cursor.execute(_UNNEST_CHARGES, [[draft[name] for draft in batch] for name in _COLUMNS])
                inserted = [row[0] for row in cursor.fetchall()]
        else:
            rows = [{key: value for key, value in draft.items() if key != "invoice_id"} for draft in batch]
            inserted = insert_ignoring_conflicts(session, Charge, rows, index_elements=["idempotency_key"])
            if inserted:
                session.execute(
                    insert(ChargeInvoice),
                    [{"charge_id": charge_id, "invoice_id": invoice_of[charge_id]} for charge_id in inserted],
                )
        created += inserted
        if on_batch is not None and inserted:
            on_batch(inserted)
    return created
