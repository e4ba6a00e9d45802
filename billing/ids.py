"""Opaque ids whose prefix says what they name, and our charge id as the gateways echo it back."""

from __future__ import annotations

import secrets


def new_id(prefix: str, nbytes: int = 10) -> str:
    """`inv_3f9c...`: an opaque id whose prefix says what it names."""
    return f"{prefix}_{secrets.token_hex(nbytes)}"


def new_ids(prefix: str, count: int, nbytes: int = 10) -> list[str]:
    """Many ids from one read of the system's randomness: for batches on hot paths."""
    entropy = secrets.token_bytes(nbytes * count)
    return [f"{prefix}_{entropy[n * nbytes : (n + 1) * nbytes].hex()}" for n in range(count)]


def new_charge_id() -> str:
    """Charge ids are our reference at the gateways; without the `_` they are valid PIX txids."""
    return new_id("chg", 13)


def pix_txid(charge_id: str) -> str:
    """A PIX txid ([a-zA-Z0-9]{26,35}) for a charge: its id without the underscore."""
    return charge_id.replace("_", "")


def charge_id_from_reference(reference: str) -> str:
    """Our charge id from what a gateway echoes back: the id itself, or its PIX txid."""
    if reference.startswith("chg") and "_" not in reference:
        return f"chg_{reference[3:]}"
    return reference
