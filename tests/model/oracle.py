"""The rules of access (SPEC 3.4 to 3.7, 3.10) written again from the text, over the test's own record of the money.

Nothing here asks billing how it decides: the record is what the test sent and what the gateway
simulator holds, and the rules are read from the contract.

  3.1  a monthly invoice covers a calendar month and is due on its day 1; a subscription that starts on
       another day first pays the rest of that month, pro rata by day (half up), due that day;
  3.3  card auto-debit takes 5% off (half up); the saved card is charged for the oldest unpaid month
       of a product, alone; every issued boleto or PIX invoice gets a charge of its own;
  3.4  unpaid by the end of day 6, it blocks its product from 00:00 of day 7 (America/Sao_Paulo);
  3.5  platform: paying the overdue invoice lifts the block; a checkout collects the overdue months
       (every open one when none is overdue);
  3.6  mentorship: once blocked, the block lifts only when every invoice issued so far is paid; a
       checkout collects every open month in one charge;
  3.7  a verifying invoice (a receipt, or a gateway's pending payment) does not block and lifts a
       block it caused, for 72 hours from the first receipt or pending; then it is overdue again.
       Only the window's end, a payment, or the gateway failing that very payment end it;
  3.10 a subscription canceled and past its end blocks nothing: access `canceled`, its unpaid months still
       owed (the rest of rule 3.10 is in plans.py).
"""

from __future__ import annotations

from calendar import monthrange
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

ZONE = ZoneInfo("America/Sao_Paulo")
TOLERANCE_DAYS = 6
VERIFICATION_WINDOW = timedelta(hours=72)
RETRY_DAYS = (3, 5)
AUTO_DEBIT_DISCOUNT_PERCENT = 5
MANUAL = ("boleto", "pix")
RECEIPT = "receipt"


def local_midnight(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=ZONE).astimezone(UTC)


def local_day(instant: datetime) -> date:
    return instant.astimezone(ZONE).date()


def first_of_next_month(day: date) -> date:
    return (day.replace(day=1) + timedelta(days=32)).replace(day=1)


def period_starts(first_day: date, today: date) -> list[date]:
    """The periods a monthly subscription begun on `first_day` has had issued by `today`: its first day,
    then every day 1."""
    starts, start = [], first_day
    while start <= today:
        starts.append(start)
        start = first_of_next_month(start)
    return starts


def half_up(numerator: int, denominator: int) -> int:
    return (2 * numerator + denominator) // (2 * denominator)


def invoice_amounts(period_start: date, monthly_price_cents: int, method: str) -> tuple[int, int]:
    """Subtotal and discount of a monthly invoice: the month's price, or the rest of the month pro rata by
    day when it begins on another day; 5% of it off on card auto-debit."""
    days_in_month = monthrange(period_start.year, period_start.month)[1]
    days = days_in_month - period_start.day + 1
    subtotal = half_up(monthly_price_cents * days, days_in_month)
    discount = half_up(subtotal * AUTO_DEBIT_DISCOUNT_PERCENT, 100) if method == "card_auto_debit" else 0
    return subtotal, discount


@dataclass
class ModelInvoice:
    id: str
    account: str
    product: str
    period_start: date
    method: str
    total_cents: int
    paid_by: str | None = None
    refunded: bool = False
    verify_from: datetime | None = None
    verify_source: str | None = None
    """RECEIPT, or the charge whose gateway reported the payment pending."""
    verify_ended: bool = False
    receipt_backed: bool = False
    """Ops recorded a receipt during this window: a failure of the gateway's payment does not end it."""
    discount_cents: int = 0
    kind: str = "period"
    """`period`, or `proration`: an upgrade's difference for the rest of its period (3.10)."""

    @property
    def block_at(self) -> datetime:
        return local_midnight(self.period_start + timedelta(days=TOLERANCE_DAYS))

    @property
    def unpaid(self) -> bool:
        return self.paid_by is None and not self.refunded

    def verifying(self, now: datetime) -> bool:
        return (
            self.unpaid
            and self.verify_from is not None
            and not self.verify_ended
            and now < self.verify_from + VERIFICATION_WINDOW
        )

    def overdue(self, now: datetime) -> bool:
        return self.unpaid and now >= self.block_at and not self.verifying(now)

    def status(self, now: datetime) -> str:
        if self.refunded:
            return "refunded"
        if self.paid_by is not None:
            return "paid"
        return "verifying" if self.verifying(now) else "open"


@dataclass
class ModelPayment:
    key: str
    charge_id: str
    amount_cents: int
    paid: list[str]
    """The invoices this payment paid: empty for a duplicate."""
    refunded_cents: int = 0
    charged_back: bool = False
    undone: bool = False
    """A receipt in cash undone at the gateway: the money never came."""


@dataclass
class Access:
    state: str
    open_invoices: set[str]


@dataclass
class Model:
    invoices: dict[str, ModelInvoice] = field(default_factory=dict)
    payments: dict[str, ModelPayment] = field(default_factory=dict)
    mentorship_blocked: set[str] = field(default_factory=set)
    """Accounts whose mentorship is blocked: sticky until no unpaid invoice keeps it (3.6)."""
    ends_at: dict[tuple[str, str], datetime] = field(default_factory=dict)
    """When each canceled subscription ends (3.10): from then, no block and access `canceled`."""

    def ended(self, account: str, product: str, now: datetime) -> bool:
        end = self.ends_at.get((account, product))
        return end is not None and now >= end

    def of(self, account: str, product: str) -> list[ModelInvoice]:
        return sorted(
            (i for i in self.invoices.values() if i.account == account and i.product == product),
            key=lambda i: (i.period_start, i.id),  # oldest first; one month's two invoices by id, as regua lists them
        )

    # -- what each charge collects

    def card_collects(self, account: str, product: str) -> list[str]:
        """3.3: the saved card pays the oldest unpaid month of its product, and that month alone."""
        unpaid = [invoice.id for invoice in self.of(account, product) if invoice.unpaid]
        return unpaid[:1]

    def checkout_collects(self, account: str, product: str, now: datetime) -> list[str]:
        """3.5 and 3.6: what a checkout asks to be paid now, of the months open (not verifying) at `now`."""
        open_months = [i for i in self.of(account, product) if i.unpaid and not i.verifying(now)]
        if product == "mentorship":
            return [invoice.id for invoice in open_months]
        overdue = [invoice.id for invoice in open_months if now >= invoice.block_at]
        return overdue or [invoice.id for invoice in open_months]

    def owed_now(self, account: str, product: str, now: datetime) -> list[str]:
        """What `/access` says a payment collects now: a checkout's months; after a cancellation's end (3.10), every
        month issued and still open, for no rule of blocks weighs on them any more."""
        if self.ended(account, product, now):
            return [i.id for i in self.of(account, product) if i.unpaid and not i.verifying(now)]
        return self.checkout_collects(account, product, now)

    def manual_charges_due(self, charged: set[str], now: datetime) -> list[list[str]]:
        """3.3: each open boleto or PIX invoice that no charge collects yet gets one of its own."""
        return [
            [invoice.id]
            for invoice in sorted(self.invoices.values(), key=lambda i: i.id)
            if invoice.method in MANUAL
            and invoice.status(now) == "open"
            and invoice.id not in charged
            and not self.ended(invoice.account, invoice.product, now)
        ]

    # -- money, as it moved

    def confirm(self, key: str, charge_id: str, amount_cents: int, invoice_ids: list[str]) -> None:
        """A payment the gateway confirmed: it pays whichever of its charge's invoices are still unpaid."""
        if key in self.payments:
            return
        paid = [invoice_id for invoice_id in invoice_ids if self.invoices[invoice_id].unpaid]
        for invoice_id in paid:
            # a payment ends a verification: a chargeback later reopens the month as open, not verifying
            self.invoices[invoice_id].paid_by, self.invoices[invoice_id].verify_ended = key, True
        self.payments[key] = ModelPayment(key, charge_id, amount_cents, paid)

    def refund(self, key: str, refunded_cents: int) -> None:
        """The gateway's total refunded on a payment: the months it paid are refunded once it is all back."""
        payment = self.payments[key]
        payment.refunded_cents = refunded_cents
        if refunded_cents >= payment.amount_cents:
            for invoice_id in payment.paid:
                invoice = self.invoices[invoice_id]
                if invoice.paid_by == key:
                    invoice.refunded = True

    def chargeback(self, key: str) -> None:
        """The money of this payment is gone: the months it paid are owed again (and only those)."""
        payment = self.payments[key]
        payment.charged_back = True
        for invoice_id in payment.paid:
            invoice = self.invoices[invoice_id]
            if invoice.paid_by == key and not invoice.refunded:
                invoice.paid_by = None

    def undo(self, key: str) -> None:
        """A receipt in cash undone: the money never came, the months it paid are owed again."""
        payment = self.payments[key]
        payment.undone = True
        for invoice_id in payment.paid:
            invoice = self.invoices[invoice_id]
            if invoice.paid_by == key and not invoice.refunded:
                invoice.paid_by = None

    def reinstate(self, key: str) -> None:
        """A chargeback won, or a receipt undone and then paid: the payment holds its money again (less what
        was refunded) and pays again, in period order and whole months only, the months it paid that are
        still unpaid; the rest is owed back, and a month no longer paid by it is no longer its to take back."""
        payment = self.payments[key]
        payment.charged_back = payment.undone = False
        left = payment.amount_cents - payment.refunded_cents
        repaid = []
        for invoice in sorted((self.invoices[i] for i in payment.paid), key=lambda i: i.period_start):
            if invoice.unpaid and invoice.total_cents <= left:
                invoice.paid_by, invoice.verify_ended = key, True
                left -= invoice.total_cents
                repaid.append(invoice.id)
        payment.paid = repaid

    def start_verification(self, invoice_ids: list[str], source: str, now: datetime) -> None:
        """A receipt or a pending payment: a window from now, unless one is running (later ones do not
        extend it). One window per invoice: after it ended, however it ended, neither a receipt nor a
        pending report opens another (a receipt then waits for a person)."""
        for invoice_id in invoice_ids:
            invoice = self.invoices[invoice_id]
            if invoice.verify_from is not None and not invoice.verifying(now):
                continue  # this invoice had its window
            if invoice.unpaid and not invoice.verifying(now):
                invoice.verify_from, invoice.verify_source, invoice.verify_ended = now, source, False
                invoice.receipt_backed = source == RECEIPT
            elif invoice.verifying(now) and source == RECEIPT:
                invoice.receipt_backed = True

    def gateway_failed(self, charge_id: str, now: datetime) -> None:
        for invoice in self.invoices.values():
            if invoice.verify_source == charge_id and invoice.verifying(now) and not invoice.receipt_backed:
                invoice.verify_ended = True

    # -- access

    def observe(self, now: datetime) -> None:
        """Carry the mentorship blocks forward to `now` (called at every step, so no overdue instant is missed)."""
        accounts = {invoice.account for invoice in self.invoices.values() if invoice.product == "mentorship"}
        for account in accounts:
            if self.ended(account, "mentorship", now):
                self.mentorship_blocked.discard(account)
                continue
            invoices = self.of(account, "mentorship")
            overdue = any(invoice.overdue(now) for invoice in invoices)
            holding = any(invoice.unpaid and not invoice.verifying(now) for invoice in invoices)
            if (account in self.mentorship_blocked or overdue) and holding:
                self.mentorship_blocked.add(account)
            else:
                self.mentorship_blocked.discard(account)

    def blocked(self, account: str, product: str, now: datetime) -> bool:
        if self.ended(account, product, now):
            return False
        if product == "mentorship":
            return account in self.mentorship_blocked
        return any(invoice.overdue(now) for invoice in self.of(account, product))

    def access(self, account: str, product: str, now: datetime) -> Access:
        invoices = self.of(account, product)
        unpaid = {invoice.id for invoice in invoices if invoice.unpaid}
        if self.ended(account, product, now):
            return Access("canceled", unpaid)
        if self.blocked(account, product, now):
            return Access("blocked", unpaid)
        if any(invoice.verifying(now) for invoice in invoices):
            return Access("verifying", unpaid)
        return Access("grace" if unpaid else "active", unpaid)
