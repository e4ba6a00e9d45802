"""Charging through a gateway: planning the day-1 and retry auto-debits and the PIX or boleto charges, one
card attempt, one manual charge, asking again about late charges, refunds and cancels owed at the gateway.

Each module does one of those; this package re-exports what the doors (jobs, the tick, the checkout) call.
"""

from billing.charging.cards import (
    CardResult,
    claim_card_charge,
    make_card_charge,
    make_card_charges,
    record_gateway_answer,
)
from billing.charging.follow_ups import (
    cancel_at_gateway,
    owed_gateway_cancels,
    owed_refunds,
    run_follow_ups,
    send_refund,
)
from billing.charging.leases import ChargeInFlight, Decline, leased, take_lease, was_sent
from billing.charging.manual import claim_manual_charge, issue_manual_charge, send_manual_charge
from billing.charging.manual_plan import manual_charge_key, plan_manual_charges
from billing.charging.outcomes import BOOKS_CHANGED, ChargeOutcome
from billing.charging.planning import (
    Attempt,
    auto_debit_key,
    card_ref,
    due_attempt,
    plan_auto_debits,
)
from billing.charging.recheck import RecheckPlan, charges_to_recheck, recheck_charge

__all__ = [
    "BOOKS_CHANGED",
    "Attempt",
    "CardResult",
    "ChargeInFlight",
    "ChargeOutcome",
    "Decline",
    "RecheckPlan",
    "auto_debit_key",
    "cancel_at_gateway",
    "card_ref",
    "charges_to_recheck",
    "claim_card_charge",
    "claim_manual_charge",
    "due_attempt",
    "issue_manual_charge",
    "leased",
    "make_card_charge",
    "make_card_charges",
    "manual_charge_key",
    "owed_gateway_cancels",
    "owed_refunds",
    "plan_auto_debits",
    "plan_manual_charges",
    "recheck_charge",
    "record_gateway_answer",
    "run_follow_ups",
    "send_manual_charge",
    "send_refund",
    "take_lease",
    "was_sent",
]
