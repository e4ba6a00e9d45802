"""Cards at the simulated Asaas: scripted tokens and test numbers, declines as Asaas answers them, remoteIp.

A refused card is HTTP 400 `invalid_action` and nothing is stored (captured from Asaas's sandbox: its
two test numbers that decline answer "Transação não autorizada. Verifique os dados do cartão de crédito
e tente novamente."). The scripted tokens keep a reason in the text, so a client can tell a stolen
card from a lack of funds as it does with the real acquirers' texts.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from regua.sandbox.simulator.common import SimulatorError

TIMEOUT_TOKEN = "tok_timeout"
GENERIC_DECLINE = "Transação não autorizada. Verifique os dados do cartão de crédito e tente novamente."
SCRIPTED_DECLINES = {
    "tok_soft_decline": "Transação não autorizada. Saldo insuficiente.",
    "tok_hard_decline": "Transação não autorizada. Cartão roubado.",
    "tok_expired": "Transação não autorizada. Cartão expirado.",
}
# Asaas's sandbox: these numbers decline, any other approves (even 4444444444444444, which fails Luhn).
DECLINED_NUMBERS = frozenset({"5184019740373151", "4916561358240741"})
_BRANDS = (("34", "AMEX"), ("37", "AMEX"), ("4", "VISA"), ("5", "MASTERCARD"), ("2", "MASTERCARD"), ("6", "ELO"))


@dataclass(frozen=True)
class Card:
    """The card a payment was charged on, as Asaas shows it (`creditCard`)."""

    token: str
    last4: str
    brand: str

    def to_json(self) -> dict[str, object]:
        return {"creditCardNumber": self.last4, "creditCardBrand": self.brand, "creditCardToken": self.token}


class CardRefused(SimulatorError):
    """A card the (simulated) acquirer refused: HTTP 400 invalid_action, nothing stored."""

    def __init__(self, description: str) -> None:
        super().__init__(400, "invalid_action", description)


def saved_card(token: str) -> Card:
    """A token regua saved earlier; its last digits are made up from it, the same every time."""
    last4 = str(int(hashlib.sha256(token.encode()).hexdigest(), 16) % 10000).zfill(4)
    return Card(token, last4, "VISA")


def typed_card(number: str) -> Card:
    """A card typed in full (the API's `creditCard` or the invoice page): approved, or CardRefused."""
    digits = "".join(ch for ch in number if ch.isdigit())
    if len(digits) < 13:
        raise SimulatorError(400, "invalid_creditCard", "Informe um número de cartão válido.")
    if digits in DECLINED_NUMBERS:
        raise CardRefused(GENERIC_DECLINE)
    brand = next((name for prefix, name in _BRANDS if digits.startswith(prefix)), "VISA")
    return Card(str(uuid.uuid4()), digits[-4:], brand)


def card_of(body: Mapping[str, Any]) -> Card | None:
    """The card a CREDIT_CARD creation charges now: a token, a typed card, or None (paid later on its page)."""
    token = body.get("creditCardToken")
    if isinstance(token, str) and token:
        if token in SCRIPTED_DECLINES:
            raise CardRefused(SCRIPTED_DECLINES[token])
        return saved_card(token)
    typed = body.get("creditCard")
    if isinstance(typed, Mapping):
        return typed_card(str(typed.get("number") or ""))
    return None


def charges_a_card(body: Mapping[str, Any]) -> bool:
    return body.get("billingType") == "CREDIT_CARD" and bool(body.get("creditCardToken") or body.get("creditCard"))


def require_remote_ip(body: Mapping[str, Any]) -> None:
    """Asaas's card payment DTO requires the buyer's IP (`remoteIp`) whenever a card is charged."""
    remote_ip = body.get("remoteIp")
    if charges_a_card(body) and not (isinstance(remote_ip, str) and remote_ip.strip()):
        raise SimulatorError(400, "invalid_remoteIp", "O IP do cliente (remoteIp) deve ser informado.")
