"""The customer's IP that a card came with (Asaas's remoteIp): read from a request, checked, written one way."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any

from billing import validation as v
from billing.errors import InvalidInput

FIELD = "remote_ip"
MISSING_DECLINE = "remote_ip_missing"
"""The decline code of a card charge regua refuses to send: its card has no IP (saved before regua kept one)."""


def normalize_ip(text: str) -> str:
    """One spelling per address: compressed IPv6, and an IPv4 mapped into IPv6 as the IPv4 it is.

    Raises ValueError for anything else, a zoned IPv6 address included (a link-local zone is never a buyer's).
    """
    address = ipaddress.ip_address(text.strip())
    if isinstance(address, ipaddress.IPv6Address):
        if address.scope_id is not None:
            raise ValueError(f"{text!r} is a zoned IPv6 address")
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
    return str(address)


def read_remote_ip(payload: Mapping[str, Any]) -> str | None:
    """The `remote_ip` of a request body, normalized; None when absent or null."""
    text = v.text(payload, FIELD, required=False, max_length=64)
    if text is None:
        return None
    try:
        return normalize_ip(text)
    except ValueError:
        raise InvalidInput(FIELD, "must be an IPv4 or IPv6 address: the customer's, never the server's") from None
