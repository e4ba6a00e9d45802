"""The régua's adjustable numbers: retry days, verification window, when each email goes out."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta


@dataclass(frozen=True)
class Policy:
    retry_days: tuple[int, ...] = (3, 5)
    """Days of the régua (day 1 = due date) on which a softly declined card is charged again."""
    verification_hours: int = 72
    """How long a payment in verification holds off (or lifts) a block."""
    reminder_day: int = 3
    block_warning_day: int = 5

    @property
    def verification_window(self) -> timedelta:
        return timedelta(hours=self.verification_hours)
