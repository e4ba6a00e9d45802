"""How far the model test's sequences went: per example what it reached, per run how many reached each thing."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import date

from hypothesis import event

REPORTS: list[str] = []
"""The summary of each run in this pytest session, printed at its end (tests/model/conftest.py)."""


@dataclass
class Reach:
    """What one example lived through."""

    start: date
    last: date
    blocked: bool = False
    refunded: bool = False
    charged_back: bool = False
    verified: bool = False
    mentorship_late_two_months: bool = False
    """A mentorship blocked with two months or more unpaid (3.6)."""
    card_with_a_newer_month: bool = False
    """The saved card charged while a newer month of its product was issued (3.3, oldest month first)."""
    duplicate_beside_an_open_month: bool = False
    """A second payment of a paid month while a later month of its product was unpaid (3.5)."""
    late_month_paid_alone: bool = False
    """One month paid while another of its product stayed unpaid."""
    reinstated: bool = False
    """A payment that pays again: a chargeback won, or a receipt in cash undone and then paid."""
    cash_undone: bool = False
    """A receipt in cash undone at the gateway: the months it paid owed again."""
    upgraded: bool = False
    """A dearer price invoiced now, pro rata for the rest of the month (3.10)."""
    downgraded: bool = False
    """A cheaper price that waited, then priced the next period's invoice (3.10)."""
    canceled: bool = False
    ended: bool = False
    """A canceled subscription lived past its end: nothing issued, blocked or told, access canceled (3.10)."""
    came_back_after_the_end: bool = False

    @property
    def months(self) -> int:
        """Calendar months the clock has been in, the first one included."""
        return (self.last.year - self.start.year) * 12 + self.last.month - self.start.month + 1

    def reached(self) -> list[str]:
        """What this example reached, in the words of the run's summary (and of hypothesis's statistics)."""
        lines = [f"reached month {n}" for n in (2, 3, 6, 12) if self.months >= n]
        lines += [name.replace("_", " ") for name in FLAGS if getattr(self, name)]
        return lines


FLAGS = [f.name for f in fields(Reach) if f.type == "bool"]


@dataclass
class Tally:
    """Every example of one run."""

    name: str
    examples: list[Reach] = field(default_factory=list)

    def add(self, reach: Reach) -> None:
        self.examples.append(reach)
        for line in reach.reached():
            event(line)

    def count(self, line: str) -> int:
        return sum(1 for reach in self.examples if line in reach.reached())

    @property
    def second_month(self) -> int:
        return self.count("reached month 2")

    def summary(self) -> str:
        total = len(self.examples)
        months = sorted(reach.months for reach in self.examples)
        median = months[len(months) // 2] if months else 0
        lines = [f"{self.name}: {total} examples, months lived: median {median}, most {max(months, default=0)}"]
        lines += [f"  {self.count(f'reached month {n}'):>4} reached month {n}" for n in (2, 3, 6, 12)]
        lines += [f"  {self.count(name.replace('_', ' ')):>4} {name.replace('_', ' ')}" for name in FLAGS]
        return "\n".join(lines)
