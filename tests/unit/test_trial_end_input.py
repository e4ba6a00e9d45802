"""The trial end an account is given: a bare date or an instant, and an error that names both forms."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from billing.accounts import AccountInput
from billing.calendar import BillingCalendar
from billing.errors import InvalidInput

CALENDAR = BillingCalendar.named("America/Sao_Paulo")
ACCOUNT = {"name": "Padaria Central Ltda", "document": "11.222.333/0001-81", "contacts": []}


def trial_end(value: Any) -> datetime | None:
    return AccountInput.parse({**ACCOUNT, "trial_ends_at": value}, CALENDAR).trial_ends_at


def test_a_bare_date_is_midnight_of_that_day_in_the_billing_zone() -> None:
    assert trial_end("2026-12-10") == datetime(2026, 12, 10, 3, 0, tzinfo=UTC)


def test_an_instant_with_its_offset_is_taken_as_it_is() -> None:
    assert trial_end("2026-12-10T12:00:00-03:00") == datetime(2026, 12, 10, 15, 0, tzinfo=UTC)
    assert trial_end("2026-12-10T15:00:00Z") == datetime(2026, 12, 10, 15, 0, tzinfo=UTC)


def test_null_or_absent_means_no_trial() -> None:
    assert trial_end(None) is None
    assert AccountInput.parse(ACCOUNT, CALENDAR).trial_ends_at is None


@pytest.mark.parametrize(
    "value", ["10/12/2026", "2026-12-10T12:00", "2026-13-01", "tomorrow", 20261210, ["2026-12-10"], "2026-12-10T" * 5]
)
def test_anything_else_is_refused_naming_the_field_and_both_forms_accepted(value: Any) -> None:
    with pytest.raises(InvalidInput) as refused:
        trial_end(value)
    assert refused.value.field == "trial_ends_at"
    message = str(refused.value)
    assert "YYYY-MM-DD (00:00 of that day in the billing time zone)" in message
    assert "YYYY-MM-DDTHH:MM:SS-03:00" in message
    assert "YYYY-MM-DDTHH:MM:SSZ" in message


def test_the_error_quotes_the_text_it_could_not_read() -> None:
    with pytest.raises(InvalidInput, match="not '10/12/2026'"):
        trial_end("10/12/2026")
