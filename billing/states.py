"""The states and kinds the books know, as enums: what code branches on, never free strings."""

from __future__ import annotations

from enum import StrEnum


class Product(StrEnum):
    PLATFORM = "platform"
    MENTORSHIP = "mentorship"


class PaymentMethod(StrEnum):
    CARD_AUTO_DEBIT = "card_auto_debit"
    BOLETO = "boleto"
    PIX = "pix"
    CARD = "card"


class InvoiceStatus(StrEnum):
    OPEN = "open"
    VERIFYING = "verifying"
    PAID = "paid"
    VOID = "void"
    REFUNDED = "refunded"


class InvoiceKind(StrEnum):
    PERIOD = "period"
    """A billing period's invoice (a month, or a prepaid 3, 6 or 12)."""
    PRORATION = "proration"
    """What an upgrade adds for the rest of the current period, pro rata by days (rule 3.10)."""


class PriceSource(StrEnum):
    CATALOG = "catalog"
    """The plan's and modules' monthly prices in the catalog, at each invoice."""
    NEGOTIATED = "negotiated"
    """`monthly_price_cents` as the product set it, overriding the catalog."""


UNPAID = (InvoiceStatus.OPEN, InvoiceStatus.VERIFYING)
MANUAL_METHODS = (PaymentMethod.BOLETO.value, PaymentMethod.PIX.value)
"""The methods a customer pays by themselves, with a PIX code or a boleto line."""


class ChargeStatus(StrEnum):
    PENDING = "pending"
    CONFIRMED = "confirmed"
    FAILED = "failed"
    CANCELED = "canceled"
    REFUNDED = "refunded"


class PaymentStatus(StrEnum):
    CONFIRMED = "confirmed"
    DUPLICATE = "duplicate"
    REFUNDED = "refunded"
    CHARGEBACK = "chargeback"
    UNDONE = "undone"
    """A cash receipt the merchant undid at the gateway: the money was never there; what it paid is open again."""


TAKEN_BACK = (PaymentStatus.CHARGEBACK, PaymentStatus.UNDONE)
"""Payments whose money is no longer regua's: they pay nothing until reinstated."""


class RefundStatus(StrEnum):
    OWED = "owed"
    """Decided by regua, not yet made: sent by a gateway regua can refund through, or listed for a person."""
    PENDING = "pending"
    """Sent and accepted by the gateway, not finished yet (its own word in `gateway_status`): not money back."""
    DONE = "done"
    CANCELED = "canceled"
    """No longer owed: the money went back another way (a chargeback of the same payment)."""


class RefundReason(StrEnum):
    DUPLICATE = "duplicate"
    OVERPAYMENT = "overpayment"
    AMOUNT_MISMATCH = "amount_mismatch"
    GATEWAY = "gateway"
    """Made at the gateway by someone else (a partial refund, a goodwill gesture): recorded, not decided by regua."""


OWED_BACK = (RefundReason.DUPLICATE, RefundReason.OVERPAYMENT, RefundReason.AMOUNT_MISMATCH)
"""The reasons regua itself decides money is owed back."""


class ChargeSource(StrEnum):
    AUTO_DEBIT = "auto_debit"
    """A day-1 or retry attempt on the saved card of a card_auto_debit subscription."""
    MANUAL = "manual"
    """The PIX or boleto charge of a manual invoice, opened when it is issued (rule 3.3)."""
    CHECKOUT = "checkout"
    """What the customer chose to pay now, through the product's checkout or the payment page."""


class DeclineClass(StrEnum):
    HARD = "hard"
    """Expired, stolen, invalid: this card is never charged again."""
    SOFT = "soft"
    """Insufficient funds and the like: retried on the retry days."""


class AttemptOutcome(StrEnum):
    IN_FLIGHT = "in_flight"
    """Sent; no answer recorded yet (the lease holder is talking to the gateway, or died doing so)."""
    ANSWERED = "answered"
    """The gateway answered with its payment (paid, or pending at the gateway)."""
    DECLINED = "declined"
    REJECTED = "rejected"
    """The gateway refused the request itself (a 4xx that is not a card refusal)."""
    UNAVAILABLE = "unavailable"
    """No trustworthy answer (timeout, 5xx): retried with the same reference, never charged twice."""


class EventStatus(StrEnum):
    RECEIVED = "received"
    """Stored and answered 200; its job has not finished yet."""
    PROCESSED = "processed"
    IGNORED = "ignored"
    """A type regua does not act on: kept, never processed."""
    UNMATCHED = "unmatched"
    """Valid, but for a charge regua does not know: parked for ops to replay."""
    FAILED = "failed"
    """Processing raised; retried by its job, then by tick."""


class NotificationStatus(StrEnum):
    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"
    """Refused for good by the mail server (a 5xx answer): recorded, never retried."""
    NO_CONTACT = "no_contact"
    """The account has no contact with manage_payments: nothing sent, listed for ops."""
    OBSOLETE = "obsolete"
    """No longer true when its turn came (paid meanwhile): not sent."""


class Applied(StrEnum):
    """What applying one gateway event did to the books (kept as the stored event's outcome)."""

    SETTLED = "settled"
    DUPLICATE_PAYMENT = "duplicate_payment"
    ALREADY_RECORDED = "already_recorded"
    VERIFYING = "verifying"
    FAILED = "failed"
    CANCELED = "canceled"
    IGNORED = "ignored"
    """The charge is no longer pending: a late failure or cancel changes nothing."""
    REFUNDED = "refunded"
    PARTIALLY_REFUNDED = "partially_refunded"
    REFUND_BEFORE_CONFIRMATION = "refund_before_confirmation"
    CHARGEBACK = "chargeback"
    CHARGEBACK_REVERSED = "chargeback_reversed"
    UNDONE = "undone"
    RESTORED = "restored"
    REFUND_PENDING = "refund_pending"
    REFUND_DENIED = "refund_denied"
