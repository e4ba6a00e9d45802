"""How a charging job ended: one enum, so callers match members, not strings."""

from __future__ import annotations

from enum import StrEnum


class ChargeOutcome(StrEnum):
    SETTLED = "settled"
    """The gateway says paid: the invoices are paid in the same transaction."""
    ALREADY_RECORDED = "already_recorded"
    DUPLICATE = "duplicate"
    """Paid, but its invoices were already paid: recorded and owed back."""
    DECLINED = "declined"
    REJECTED = "rejected"
    AWAITING_GATEWAY = "awaiting_gateway"
    CANCELED_AT_GATEWAY = "canceled_at_gateway"
    IN_FLIGHT = "in_flight"
    NOT_SENT = "not_sent"
    """Claimed with a batch that ran out of time before calling the gateway about it: still pending, to queue again."""
    NOT_PENDING = "not_pending"
    NOTHING_TO_CHARGE = "nothing_to_charge"
    NOT_A_CARD_CHARGE = "not_a_card_charge"
    NOT_A_MANUAL_CHARGE = "not_a_manual_charge"
    NO_GATEWAY_CUSTOMER = "no_gateway_customer"
    ISSUED = "issued"
    ALREADY_ISSUED = "already_issued"
    CANCELED_MEANWHILE = "canceled_meanwhile"
    NEVER_SENT = "never_sent"
    NOT_AT_GATEWAY = "not_at_gateway"
    REFUNDED = "refunded"
    REQUESTED = "requested"
    NOT_OWED = "not_owed"
    CANCELED = "canceled"
    NOT_SUPPORTED = "not_supported"
    REFUSED = "refused"


BOOKS_CHANGED = frozenset(
    {
        ChargeOutcome.SETTLED,
        ChargeOutcome.DUPLICATE,
        ChargeOutcome.DECLINED,
        ChargeOutcome.REJECTED,
        ChargeOutcome.CANCELED_AT_GATEWAY,
        ChargeOutcome.NOTHING_TO_CHARGE,
        ChargeOutcome.CANCELED_MEANWHILE,
        ChargeOutcome.NOT_AT_GATEWAY,
        ChargeOutcome.REFUNDED,
    }
)
"""Outcomes after which emails, refunds or cancels may be owed: the follow-ups are queued."""
