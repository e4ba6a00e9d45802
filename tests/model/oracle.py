"""The rules of access (SPEC 3.4 to 3.7) written again from the text, over the test's own record of the money.

Nothing here asks billing how it decides: the record is what the test sent and what the gateway
simulator holds, and the rules are read from the contract.

  3.1  a monthly invoice covers a calendar month and is due on its day 1;
  3.4  unpaid by the end of day 6, it blocks its product from 00:00 of day 7 (America/Sao_Paulo);
  3.5  platform: paying the overdue invoice lifts the block;
  3.6  mentorship: once blocked, the block lifts only when every invoice issued so far is paid;
  3.7  a verifying invoice (a receipt, or a gateway's pending payment) does not block and lifts a
       block it caused, for 72 hours from the first receipt or pending; then it is overdue again.
       Only the window's end, a payment, or the gateway failing that very payment end it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

ZONE = ZoneInfo("America/Sao_Paulo")
TOLERANCE_DAYS = 6
VERIFICATION_WINDOW = timedelta(hours=72)
RECEIPT = "receipt"


def local_midnight(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=ZONE).astimezone(UTC)


@dataclass
class ModelInvoice:
    id: str
    account: str
    product: str
    period_start: date
    paid_by: str | None = None
    refunded: bool = False
    verify_from: datetime | None = None
    verify_source: str | None = None
    """RECEIPT, or the charge whose gateway reported the payment pending."""
    verify_ended: bool = False
    receipt_backed: bool = False
    """Ops recorded a receipt during this window: a failure of the gateway's payment does not end it."""

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


@dataclass
class ModelPayment:
    key: str
    charge_id: str
    amount_cents: int
    paid: list[str]
    """The invoices this payment paid: empty for a duplicate."""
    refunded_cents: int = 0
    charged_back: bool = False


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

    def of(self, account: str, product: str) -> list[ModelInvoice]:
        return sorted(
            (i for i in self.invoices.values() if i.account == account and i.product == product),
            key=lambda i: i.period_start,
        )

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
            invoices = self.of(account, "mentorship")
            overdue = any(invoice.overdue(now) for invoice in invoices)
            holding = any(invoice.unpaid and not invoice.verifying(now) for invoice in invoices)
            if (account in self.mentorship_blocked or overdue) and holding:
                self.mentorship_blocked.add(account)
            else:
                self.mentorship_blocked.discard(account)

    def blocked(self, account: str, product: str, now: datetime) -> bool:
        if product == "mentorship":
            return account in self.mentorship_blocked
        return any(invoice.overdue(now) for invoice in self.of(account, product))

    def access(self, account: str, product: str, now: datetime) -> Access:
        invoices = self.of(account, product)
        unpaid = {invoice.id for invoice in invoices if invoice.unpaid}
        if self.blocked(account, product, now):
            return Access("blocked", unpaid)
        if any(invoice.verifying(now) for invoice in invoices):
            return Access("verifying", unpaid)
        return Access("grace" if unpaid else "active", unpaid)
