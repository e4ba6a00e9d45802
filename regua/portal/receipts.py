"""A receipt sent from the payment page: checked by its first bytes, stored, and handed to verification (3.7)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from billing.calendar import BillingCalendar
from billing.models import new_id
from billing.notifications import record_due_notifications
from billing.policy import Policy
from billing.records import Receipt
from billing.verification import record_receipt

MAX_RECEIPT_BYTES = 5 * 1024 * 1024
"""A phone photo or a bank's PDF fits; anything larger is refused before it is stored."""

_SIGNATURES = (
    (b"%PDF-", "application/pdf"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
)


class ReceiptRefused(Exception):
    """The file is not one the page takes; the message is for the customer (pt-BR)."""


def sniff_type(content: bytes) -> str | None:
    """The file's type by its magic bytes (PDF, PNG, JPEG), whatever its name or the browser says."""
    for signature, content_type in _SIGNATURES:
        if content.startswith(signature):
            return content_type
    return None


def check_receipt(content: bytes) -> str:
    if not content:
        raise ReceiptRefused("Escolha o arquivo do comprovante.")
    if len(content) > MAX_RECEIPT_BYTES:
        raise ReceiptRefused("O arquivo passa de 5 MB. Envie uma foto menor ou o PDF do banco.")
    content_type = sniff_type(content)
    if content_type is None:
        raise ReceiptRefused("O comprovante precisa ser um PDF ou uma imagem PNG ou JPEG.")
    return content_type


@dataclass(frozen=True)
class ReceiptStored:
    receipt_id: str
    notification_ids: list[str]
    review_id: str | None = None
    """Set when the invoice had its verification window already: a person checks this receipt."""


def store_receipt(
    session: Session,
    account_id: str,
    invoice_id: str,
    filename: str,
    content: bytes,
    now: datetime,
    calendar: BillingCalendar,
    policy: Policy,
) -> ReceiptStored:
    """Keep the file and hand it to rule 3.7: the invoice's first receipt puts it in verification and records
    the verification_pending email; one after its window ended waits for a person instead.

    The caller has checked that the invoice is this account's; `record_receipt` raises Conflict
    for one that is no longer unpaid. The email ids come back to be queued after the commit.
    """
    content_type = check_receipt(content)
    recorded = record_receipt(session, invoice_id, now, policy)
    receipt = Receipt(
        id=new_id("rcp"),
        account_id=account_id,
        invoice_id=invoice_id,
        filename=(filename or "comprovante")[-200:],
        content_type=content_type,
        size_bytes=len(content),
        sha256=hashlib.sha256(content).hexdigest(),
        content=content,
        received_at=now,
    )
    session.add(receipt)
    session.flush()
    if recorded.review is not None:
        return ReceiptStored(receipt.id, [], recorded.review.id)
    due = record_due_notifications(session, now, calendar, policy, schedule=False)
    return ReceiptStored(receipt.id, due.pending)
