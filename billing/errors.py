"""The errors billing services raise; entry points turn them into HTTP answers or exit codes.

BillingError
├── NotFound          an id that names nothing (404)
├── InvalidInput      a field that breaks a rule, named (422)
└── Conflict          a request that contradicts the current state (409)
"""

from __future__ import annotations


class BillingError(Exception):
    code = "billing_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotFound(BillingError):
    code = "not_found"


class InvalidInput(BillingError):
    code = "invalid_input"

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class Conflict(BillingError):
    code = "conflict"
