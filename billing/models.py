"""The billing records as SQLAlchemy 2 models: accounts, subscriptions, invoices, charges, payments, blocks."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from billing.columns import UTCDateTime
from billing.ids import charge_id_from_reference, new_charge_id, new_id, new_ids, pix_txid
from billing.states import (
    MANUAL_METHODS,
    OWED_BACK,
    TAKEN_BACK,
    UNPAID,
    AttemptOutcome,
    ChargeSource,
    ChargeStatus,
    DeclineClass,
    EventStatus,
    InvoiceKind,
    InvoiceStatus,
    NotificationStatus,
    PaymentMethod,
    PaymentStatus,
    PriceSource,
    Product,
    RefundReason,
    RefundStatus,
)

__all__ = [
    "MANUAL_METHODS",
    "OWED_BACK",
    "TAKEN_BACK",
    "UNPAID",
    "AttemptOutcome",
    "ChargeSource",
    "ChargeStatus",
    "DeclineClass",
    "EventStatus",
    "InvoiceKind",
    "InvoiceStatus",
    "NotificationStatus",
    "PaymentMethod",
    "PaymentStatus",
    "PriceSource",
    "Product",
    "RefundReason",
    "RefundStatus",
    "charge_id_from_reference",
    "new_charge_id",
    "new_id",
    "new_ids",
    "pix_txid",
]


class Base(DeclarativeBase):
    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(table_name)s_%(column_0_N_name)s",
            "uq": "uq_%(table_name)s_%(column_0_N_name)s",
            "ck": "ck_%(table_name)s_%(constraint_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UTCDateTime(), dict[str, Any]: JSON(), list[str]: JSON()}


class Account(Base):
    __tablename__ = "accounts"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    document: Mapped[str] = mapped_column(String(14))
    trial_ends_at: Mapped[datetime | None]
    gateway_customer_id: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]

    contacts: Mapped[list[Contact]] = relationship(
        back_populates="account", cascade="all, delete-orphan", order_by="Contact.id"
    )
    subscriptions: Mapped[list[Subscription]] = relationship(back_populates="account")


class Contact(Base):
    __tablename__ = "contacts"
    __table_args__ = (UniqueConstraint("account_id", "email"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    email: Mapped[str] = mapped_column(String(254))
    name: Mapped[str] = mapped_column(String(200), default="")
    manage_payments: Mapped[bool] = mapped_column(Boolean, default=False)

    account: Mapped[Account] = relationship(back_populates="contacts")


class Subscription(Base):
    __tablename__ = "subscriptions"
    __table_args__ = (UniqueConstraint("account_id", "product"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"))
    product: Mapped[str] = mapped_column(String(16))
    plan: Mapped[str] = mapped_column(String(64))
    modules: Mapped[list[str]]
    monthly_price_cents: Mapped[int]
    frequency: Mapped[str] = mapped_column(String(16))
    payment_method: Mapped[str] = mapped_column(String(16))
    card_token: Mapped[str | None] = mapped_column(String(200))
    remote_ip: Mapped[str | None] = mapped_column(String(45))
    """The customer's IP when they gave `card_token` (Asaas's remoteIp, sent with every charge of that card)."""
    installments: Mapped[int] = mapped_column(default=1)
    starts_on: Mapped[date] = mapped_column(Date)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    price_source: Mapped[str] = mapped_column(String(16), default=PriceSource.NEGOTIATED, server_default="negotiated")
    """Where `monthly_price_cents` comes from: the catalog (plan and modules, repriced with it) or a negotiation."""
    next_plan: Mapped[str | None] = mapped_column(String(64))
    """A change that waits for the next period (a downgrade, another frequency): what the subscription becomes."""
    next_modules: Mapped[list[str] | None]
    next_monthly_price_cents: Mapped[int | None]
    next_price_source: Mapped[str | None] = mapped_column(String(16))
    next_frequency: Mapped[str | None] = mapped_column(String(16))
    change_effective_on: Mapped[date | None] = mapped_column(Date)
    """The first day of the period from which the waiting change applies."""
    canceled_at: Mapped[datetime | None]
    ends_on: Mapped[date | None] = mapped_column(Date)
    """The last day of a canceled subscription: the end of the period already issued (rule 3.10)."""
    ends_at: Mapped[datetime | None]
    """00:00 of the day after `ends_on` in the billing zone: from then no invoice, email, charge or block."""

    account: Mapped[Account] = relationship(back_populates="subscriptions")


class Invoice(Base):
    __tablename__ = "invoices"
    __table_args__ = (
        UniqueConstraint("subscription_id", "period_start", "kind"),
        Index("ix_invoices_unpaid_block_at", "status", "block_at"),
        Index("ix_invoices_account_product", "account_id", "product"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    subscription_id: Mapped[str] = mapped_column(ForeignKey("subscriptions.id"))
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"))
    product: Mapped[str] = mapped_column(String(16))
    period_start: Mapped[date] = mapped_column(Date)
    period_end: Mapped[date] = mapped_column(Date)
    kind: Mapped[str] = mapped_column(String(16), default=InvoiceKind.PERIOD, server_default="period")
    """A billing period's invoice, or the difference an upgrade owes for the rest of one (rule 3.10)."""
    monthly_price_cents: Mapped[int | None]
    """The monthly price in force when it was issued (for a proration: the monthly difference); None before
    invoices kept it. `regua check` holds the amounts to it."""
    due_date: Mapped[date] = mapped_column(Date)
    block_at: Mapped[datetime]
    payment_method: Mapped[str] = mapped_column(String(16))
    """The subscription's method when the invoice was issued (decides the discount and the régua)."""
    subtotal_cents: Mapped[int]
    discount_cents: Mapped[int]
    total_cents: Mapped[int]
    status: Mapped[str] = mapped_column(String(16), default=InvoiceStatus.OPEN)
    issued_at: Mapped[datetime]
    paid_at: Mapped[datetime | None]
    charge_id: Mapped[str | None] = mapped_column(String(32))
    payment_id: Mapped[str | None] = mapped_column(String(32))
    """The payment that paid it (a charge may be paid twice: only one payment pays the invoice)."""
    verifying_until: Mapped[datetime | None]
    verifying_charge_id: Mapped[str | None] = mapped_column(String(32))
    """The charge whose payment the gateway reported started (None: a receipt ops recorded)."""
    cut_from: Mapped[date | None] = mapped_column(Date)
    """The first day of the period this invoice was cut from, when a card plan lost an installment and kept
    only the whole months its money still covers (billing.installments): each part is whole months of it."""
    verification_started_at: Mapped[datetime | None]
    """When its one verification window opened (the first receipt or pending report), kept once the window
    ends: after it, a receipt lifts nothing by itself and waits for a person (rule 3.7)."""


class Charge(Base):
    __tablename__ = "charges"
    __table_args__ = (
        Index("ix_charges_status_created_at", "status", "created_at"),
        Index("ix_charges_confirmed_at", "confirmed_at"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"))
    product: Mapped[str] = mapped_column(String(16))
    method: Mapped[str] = mapped_column(String(16))
    amount_cents: Mapped[int]
    installments: Mapped[int] = mapped_column(default=1)
    status: Mapped[str] = mapped_column(String(16), default=ChargeStatus.PENDING)
    idempotency_key: Mapped[str] = mapped_column(String(100), unique=True)
    gateway: Mapped[str] = mapped_column(String(32), default="asaas")
    gateway_payment_id: Mapped[str | None] = mapped_column(String(100))
    failure_code: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime]
    confirmed_at: Mapped[datetime | None]
    source: Mapped[str] = mapped_column(String(16), default=ChargeSource.CHECKOUT, server_default="checkout")
    regua_day: Mapped[int | None]
    """The day of the régua an auto-debit attempt belongs to (1, then the retry days); None otherwise."""
    card_ref: Mapped[str | None] = mapped_column(String(16))
    """A digest of the card token charged (tells cards apart without keeping the token here)."""
    lease_holder: Mapped[str | None] = mapped_column(String(64))
    lease_until: Mapped[datetime | None]
    """While set and ahead of now, `lease_holder` is talking to the gateway about this charge: nobody else may."""
    sent_at: Mapped[datetime | None]
    """When it was first handed to the gateway: from then on the gateway may hold a payment for it."""
    gateway_status: Mapped[str | None] = mapped_column(String(40))
    rechecked_at: Mapped[datetime | None]
    failed_at: Mapped[datetime | None]
    canceled_reason: Mapped[str | None] = mapped_column(String(40))
    superseded_by: Mapped[str | None] = mapped_column(String(32))
    gateway_cancel_owed: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    """Canceled in the books, still payable at the gateway: a follow-up cancels it there."""
    gateway_cancel_result: Mapped[str | None] = mapped_column(String(200))
    gateway_canceled_at: Mapped[datetime | None]
    pix_code: Mapped[str | None] = mapped_column(Text)
    pix_qr: Mapped[str | None] = mapped_column(Text)
    pix_expires_at: Mapped[str | None] = mapped_column(String(40))
    boleto_line: Mapped[str | None] = mapped_column(String(100))
    boleto_url: Mapped[str | None] = mapped_column(String(500))
    boleto_bar_code: Mapped[str | None] = mapped_column(String(100))
    invoice_url: Mapped[str | None] = mapped_column(String(500))
    """The gateway's own page for this payment (card payments are made there, never through regua)."""

    invoice_links: Mapped[list[ChargeInvoice]] = relationship(cascade="all, delete-orphan")
    attempts: Mapped[list[ChargeAttempt]] = relationship(
        cascade="all, delete-orphan", order_by="ChargeAttempt.number", back_populates="charge"
    )

    @property
    def has_codes(self) -> bool:
        """Whether a PIX or boleto charge holds what the customer needs to pay it."""
        return self.pix_code is not None or self.boleto_line is not None

    @property
    def invoice_ids(self) -> list[str]:
        return [link.invoice_id for link in self.invoice_links]


class ChargeAttempt(Base):
    """One call to the gateway about a charge: who made it, when, and how it ended."""

    __tablename__ = "charge_attempts"
    __table_args__ = (
        UniqueConstraint("charge_id", "number"),
        Index("ix_charge_attempts_decline_class", "decline_class"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    charge_id: Mapped[str] = mapped_column(ForeignKey("charges.id"))
    number: Mapped[int]
    idempotency_key: Mapped[str] = mapped_column(String(120), unique=True)
    """`<charge key>#<number>`; the gateway knows every attempt of a charge by the charge's own id."""
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]
    holder: Mapped[str | None] = mapped_column(String(64))
    card_ref: Mapped[str | None] = mapped_column(String(16))
    outcome: Mapped[str] = mapped_column(String(16), default=AttemptOutcome.IN_FLIGHT)
    decline_code: Mapped[str | None] = mapped_column(String(100))
    decline_class: Mapped[str | None] = mapped_column(String(8))
    message: Mapped[str | None] = mapped_column(String(300))

    charge: Mapped[Charge] = relationship(back_populates="attempts")


class ChargeInvoice(Base):
    __tablename__ = "charge_invoices"
    __table_args__ = (Index("ix_charge_invoices_invoice_id", "invoice_id"),)

    charge_id: Mapped[str] = mapped_column(ForeignKey("charges.id"), primary_key=True)
    invoice_id: Mapped[str] = mapped_column(ForeignKey("invoices.id"), primary_key=True)


class Payment(Base):
    __tablename__ = "payments"
    __table_args__ = (UniqueConstraint("gateway", "gateway_payment_id"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    charge_id: Mapped[str] = mapped_column(ForeignKey("charges.id"))
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"))
    amount_cents: Mapped[int]
    method: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), default=PaymentStatus.CONFIRMED)
    gateway: Mapped[str] = mapped_column(String(32))
    gateway_payment_id: Mapped[str] = mapped_column(String(100))
    invoice_ids: Mapped[list[str]]
    paid_at: Mapped[datetime]
    chargeback_cents: Mapped[int] = mapped_column(default=0, server_default="0")
    """What a chargeback took back: the payment less what was already refunded."""
    charged_back_at: Mapped[datetime | None]
    reinstated_at: Mapped[datetime | None]
    """When money taken back came back (a chargeback won) or a receipt undone was received again."""


class InstallmentChargeback(Base):
    """One installment of a card plan charged back: what it took back of its plan's payment, recorded once."""

    __tablename__ = "installment_chargebacks"
    __table_args__ = (UniqueConstraint("gateway", "gateway_payment_id"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    payment_id: Mapped[str] = mapped_column(ForeignKey("payments.id"))
    """The plan's one payment (recorded at the first installment's confirmation)."""
    gateway: Mapped[str] = mapped_column(String(32))
    gateway_payment_id: Mapped[str] = mapped_column(String(100))
    """The installment's own payment at the gateway."""
    amount_cents: Mapped[int]
    charged_back_at: Mapped[datetime]
    reversed_at: Mapped[datetime | None]
    """When the merchant won this installment's dispute and its money came back to the plan."""


class Refund(Base):
    __tablename__ = "refunds"
    __table_args__ = (Index("ix_refunds_refunded_at", "refunded_at"), Index("ix_refunds_status", "status"))

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    payment_id: Mapped[str | None] = mapped_column(ForeignKey("payments.id"))
    """None while the gateway's refund arrived before the confirmation of its payment."""
    charge_id: Mapped[str] = mapped_column(ForeignKey("charges.id"))
    gateway_payment_id: Mapped[str] = mapped_column(String(100))
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"))
    amount_cents: Mapped[int]
    reason: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16), default=RefundStatus.OWED)
    gateway_refund_id: Mapped[str | None] = mapped_column(String(100), unique=True)
    created_at: Mapped[datetime]
    refunded_at: Mapped[datetime | None]
    claimed_until: Mapped[datetime | None]
    """A job is asking the gateway to make it until then (or it waits that long for the gateway to finish)."""
    gateway_note: Mapped[str | None] = mapped_column(String(200))
    """The gateway's last word on it (requested, refused: why)."""
    done_by: Mapped[str | None] = mapped_column(String(100))
    """Who recorded it made by hand (`regua refunds done`, the ops dashboard)."""
    note: Mapped[str | None] = mapped_column(String(500))
    gateway_status: Mapped[str | None] = mapped_column(String(48))
    """The gateway's own status of the refund it was asked for (PENDING, AWAITING_..., DONE, CANCELLED)."""
    sent_at: Mapped[datetime | None]
    """When the gateway accepted it (status `pending` from then until DONE)."""
    denied_at: Mapped[datetime | None]
    """When the gateway refused or canceled it: owed again, and left to a person (never re-sent by itself)."""


class Block(Base):
    __tablename__ = "blocks"
    __table_args__ = (
        Index(
            "uq_blocks_active",
            "account_id",
            "product",
            unique=True,
            postgresql_where=text("lifted_at IS NULL"),
            sqlite_where=text("lifted_at IS NULL"),
        ),
        Index("ix_blocks_started_at", "started_at"),
        Index("ix_blocks_lifted_at", "lifted_at"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"))
    product: Mapped[str] = mapped_column(String(16))
    invoice_ids: Mapped[list[str]]
    started_at: Mapped[datetime]
    lifted_at: Mapped[datetime | None]
    lift_reason: Mapped[str | None] = mapped_column(String(32))


# The ops dashboard's searches: an account's charges.
Index("ix_charges_account_id", Charge.account_id)
# A settlement and the email pass: a charge's payments and refunds.
Index("ix_payments_charge_id", Payment.charge_id)
Index("ix_refunds_charge_id", Refund.charge_id)
