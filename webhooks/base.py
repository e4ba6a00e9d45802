"""What every provider module offers: authenticate a delivery, parse it into events, normalise them.

WebhookError
├── Unauthorized    signature, token or hmac missing or wrong; timestamp out of tolerance (401)
└── BadPayload      invalid JSON, a required field missing or of the wrong type (400, naming it)
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from billing.gateway_events import GatewayEvent


class WebhookError(Exception):
    status = 400
    code = "bad_request"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Unauthorized(WebhookError):
    status = 401
    code = "unauthorized"


class BadPayload(WebhookError):
    status = 400
    code = "invalid_payload"

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class NothingToApply(Exception):
    """A known event that changes nothing in regua's books (the reason is kept as its outcome)."""


@dataclass(frozen=True)
class Delivery:
    """The parts of an HTTP request a provider needs, read once by the route."""

    headers: Mapping[str, str]
    """Lower-cased names."""
    query: Mapping[str, str]
    body: bytes


@dataclass(frozen=True)
class IncomingEvent:
    """One event of a delivery, ready to store: a PIX batch gives several."""

    dedupe_key: str
    event_type: str
    body: str
    """The raw JSON of this event (the whole body, or one item of a batch)."""
    ignored: bool = False
    """A type regua does not act on: stored as ignored, no job queued."""


@dataclass(frozen=True)
class ToldPaid:
    """What an event that says no more than "this payment was made" names: the payment, and our charge."""

    gateway: str
    payment_id: str
    charge_ref: str | None
    """The charge regua sent the payment for (the gateway's copy of our reference), when the event carries it."""


class Provider(Protocol):
    name: str

    def authenticate(self, delivery: Delivery, now: datetime) -> None:
        """Raise Unauthorized unless the delivery proves it comes from this provider; `now` is the wall
        clock's, which a signature's tolerance is measured against (not the business clock)."""

    def parse(self, delivery: Delivery) -> list[IncomingEvent]:
        """The events of an authenticated delivery; raise BadPayload naming the field that is wrong."""

    def normalize(self, event_type: str, body: str, received_at: datetime) -> list[GatewayEvent]:
        """A stored event in regua's own terms (an empty list: nothing to do)."""

    def told_paid(self, event_type: str, body: str) -> ToldPaid | None:
        """The payment a stored event names when it says no more than that this payment was made; else None.

        An event about a payment the books already hold as confirmed is then done without normalizing it
        (for Asaas, without fetching the payment again): `already_recorded`, as normalizing would end. One
        whose charge is being charged at that moment waits for the charge job to record the answer first.
        """


MAX_ID_LENGTH = 100
"""Gateway ids (payments, refunds, charges) fit the books' columns; real ones are 20 to 40 characters."""
MAX_KEY_LENGTH = 200
MAX_AMOUNT_CENTS = 2**31 - 1
"""The books keep centavos in 32-bit integers: R$ 21.474.836,47 at most, per payment."""


def decode_json(body: bytes) -> Any:
    """The body as JSON in UTF-8 (RFC 8259): `json.loads` would also take UTF-16 and UTF-32 bytes."""
    try:
        return json.loads(body.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        raise BadPayload("body", "is not valid JSON in UTF-8") from None


def identifier(value: Any, field: str, max_length: int = MAX_ID_LENGTH) -> str:
    """A gateway's id: a non-empty printable string the books can keep (no NUL, no lone surrogate)."""
    if not isinstance(value, str) or not value.strip():
        raise BadPayload(field, "is required and must be a string")
    if len(value) > max_length or not value.isprintable():
        raise BadPayload(field, f"must be at most {max_length} printable characters")
    return value


def check_storable(events: list[IncomingEvent]) -> None:
    """Refuse, before the group commit, what the database would refuse: one bad row fails a whole batch.

    Each provider checks its own fields; this is the net under all of them, for the dedupe key and
    the type that become columns, and for a body re-serialised from a batch item.
    """
    for event in events:
        if not 0 < len(event.dedupe_key) <= MAX_KEY_LENGTH or not event.dedupe_key.isprintable():
            raise BadPayload("id", f"must be 1 to {MAX_KEY_LENGTH} printable characters")
        if not event.event_type.isprintable():
            raise BadPayload("type", "must be printable")
        if not event.body.isascii():
            try:
                event.body.encode("utf-8")
            except UnicodeEncodeError:
                raise BadPayload("body", "holds a lone surrogate, which is not Unicode text") from None


def require(payload: Any, path: str, kind: type | tuple[type, ...]) -> Any:
    """payload[a][b]... for "a.b", checked to be of `kind`; BadPayload names the dotted path."""
    value = payload
    walked = []
    for part in path.split("."):
        walked.append(part)
        if not isinstance(value, dict) or part not in value or value[part] is None:
            raise BadPayload(".".join(walked), "is required")
        value = value[part]
    accepted = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool) and bool not in accepted:
        raise BadPayload(path, f"must be {_kind_name(accepted)}")
    if not isinstance(value, accepted):
        raise BadPayload(path, f"must be {_kind_name(accepted)}")
    if isinstance(value, str) and not value.strip():
        raise BadPayload(path, "must not be empty")
    return value


def _kind_name(kinds: tuple[type, ...]) -> str:
    names = {
        str: "a string",
        int: "an integer",
        float: "a number",
        dict: "an object",
        list: "a list",
        bool: "a boolean",
    }
    return " or ".join(names.get(kind, kind.__name__) for kind in kinds)
