"""When a product is blocked (rules 3.4 to 3.7) and what the product is told about it (GET .../access)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from billing.access import product_access
from billing.blocking import blocking_invoices
from billing.calendar import BillingCalendar
from billing.models import Block, Invoice, InvoiceStatus, Product
from billing.policy import Policy

SAO_PAULO = ZoneInfo("America/Sao_Paulo")
CALENDAR = BillingCalendar(SAO_PAULO)
POLICY = Policy()
DEC = date(2026, 12, 1)
JAN = date(2027, 1, 1)
PRODUCTS = [Product.PLATFORM, Product.MENTORSHIP]


def local(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=SAO_PAULO)


@dataclass(frozen=True)
class Unpaid:
    id: str
    status: str
    block_at: datetime
    verifying_until: datetime | None = None


def unpaid(invoice_id: str, due: date) -> Unpaid:
    return Unpaid(invoice_id, InvoiceStatus.OPEN.value, CALENDAR.block_at(due))


def verifying(invoice_id: str, due: date, until: datetime) -> Unpaid:
    return Unpaid(invoice_id, InvoiceStatus.VERIFYING.value, CALENDAR.block_at(due), until)


def invoice(
    invoice_id: str,
    due: date,
    product: str = Product.PLATFORM,
    status: InvoiceStatus = InvoiceStatus.OPEN,
    verifying_until: datetime | None = None,
) -> Invoice:
    return Invoice(
        id=invoice_id,
        product=product,
        due_date=due,
        block_at=CALENDAR.block_at(due),
        status=status.value,
        verifying_until=verifying_until,
    )


def block(product: str, started_at: datetime, invoice_ids: list[str]) -> Block:
    return Block(
        id="blk_1",
        account_id="padaria-central",
        product=product,
        invoice_ids=invoice_ids,
        started_at=started_at,
    )


# blocking_invoices: the rule itself.


@pytest.mark.parametrize("product", PRODUCTS)
def test_an_open_invoice_due_on_day_1_does_not_block_at_23_59_of_day_6(product: str) -> None:
    assert blocking_invoices(product, [unpaid("dec", DEC)], False, local(2026, 12, 6, 23, 59)) == []


@pytest.mark.parametrize("product", PRODUCTS)
def test_an_open_invoice_due_on_day_1_blocks_at_midnight_of_day_7(product: str) -> None:
    assert blocking_invoices(product, [unpaid("dec", DEC)], False, local(2026, 12, 7)) == ["dec"]
    assert blocking_invoices(product, [unpaid("dec", DEC)], False, local(2026, 12, 20)) == ["dec"]


def test_a_blocked_platform_is_held_only_by_its_overdue_invoice_not_by_the_current_one() -> None:
    invoices = [unpaid("dec", DEC), unpaid("jan", JAN)]

    assert blocking_invoices(Product.PLATFORM, invoices, True, local(2027, 1, 3)) == ["dec"]


def test_paying_the_overdue_platform_invoice_frees_it_even_with_a_newer_invoice_open() -> None:
    assert blocking_invoices(Product.PLATFORM, [unpaid("jan", JAN)], True, local(2027, 1, 3)) == []


def test_a_platform_with_two_overdue_months_is_held_by_both() -> None:
    invoices = [unpaid("dec", DEC), unpaid("jan", JAN)]

    assert blocking_invoices(Product.PLATFORM, invoices, True, local(2027, 1, 7)) == ["dec", "jan"]


def test_a_mentorship_that_becomes_blocked_is_held_by_the_overdue_and_the_current_month() -> None:
    invoices = [unpaid("dec", DEC), unpaid("jan", JAN)]

    assert blocking_invoices(Product.MENTORSHIP, invoices, False, local(2027, 1, 3)) == ["dec", "jan"]
    assert blocking_invoices(Product.MENTORSHIP, invoices, True, local(2027, 1, 3)) == ["dec", "jan"]


def test_paying_only_the_overdue_mentorship_month_keeps_it_blocked_by_the_current_one() -> None:
    assert blocking_invoices(Product.MENTORSHIP, [unpaid("jan", JAN)], True, local(2027, 1, 3)) == ["jan"]


def test_a_blocked_mentorship_is_freed_only_when_no_invoice_is_open() -> None:
    assert blocking_invoices(Product.MENTORSHIP, [], True, local(2027, 1, 3)) == []


def test_a_mentorship_that_is_not_blocked_is_not_blocked_by_a_current_invoice() -> None:
    assert blocking_invoices(Product.MENTORSHIP, [unpaid("jan", JAN)], False, local(2027, 1, 3)) == []


@pytest.mark.parametrize("product", PRODUCTS)
@pytest.mark.parametrize("currently_blocked", [False, True], ids=["free", "blocked"])
def test_a_verifying_invoice_never_blocks_while_its_verification_lasts(product: str, currently_blocked: bool) -> None:
    invoices = [verifying("dec", DEC, until=local(2026, 12, 20, 14))]

    assert blocking_invoices(product, invoices, currently_blocked, local(2026, 12, 20, 13, 59)) == []


def test_a_mentorship_whose_every_unpaid_invoice_is_verifying_is_freed() -> None:
    until = local(2027, 1, 5)
    invoices = [verifying("dec", DEC, until), verifying("jan", JAN, until)]

    assert blocking_invoices(Product.MENTORSHIP, invoices, True, local(2027, 1, 3)) == []


def test_a_verifying_invoice_does_not_hold_a_platform_that_another_overdue_invoice_blocks() -> None:
    invoices = [verifying("dec", DEC, until=local(2027, 1, 10)), unpaid("jan", JAN)]

    assert blocking_invoices(Product.PLATFORM, invoices, True, local(2027, 1, 8)) == ["jan"]


@pytest.mark.parametrize("product", PRODUCTS)
@pytest.mark.parametrize("currently_blocked", [False, True], ids=["free", "blocked"])
def test_an_overdue_invoice_whose_verification_has_expired_blocks_again(product: str, currently_blocked: bool) -> None:
    # Rule 3.7: after the window the invoice is overdue again, whether or not a tick has reopened it yet.
    until = local(2026, 12, 11, 14)
    invoices = [verifying("dec", DEC, until)]

    assert blocking_invoices(product, invoices, currently_blocked, until) == ["dec"]
    assert blocking_invoices(product, invoices, currently_blocked, until - timedelta(seconds=1)) == []


def test_an_unpaid_mentorship_never_blocks_a_paid_platform_and_the_reverse() -> None:
    now = local(2027, 1, 3)
    overdue = [unpaid("dec", DEC), unpaid("jan", JAN)]
    paid_up = [unpaid("jan", JAN)]

    # Each product is decided from its own invoices only.
    assert blocking_invoices(Product.PLATFORM, paid_up, False, now) == []
    assert blocking_invoices(Product.MENTORSHIP, overdue, False, now) == ["dec", "jan"]
    assert blocking_invoices(Product.MENTORSHIP, paid_up, False, now) == []
    assert blocking_invoices(Product.PLATFORM, overdue, False, now) == ["dec"]


instants = st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2028, 1, 1), timezones=st.just(UTC))
due_dates = st.dates(min_value=date(2026, 1, 1), max_value=date(2027, 12, 1)).map(lambda d: d.replace(day=1))
windows = st.one_of(st.none(), instants)
"""None: the invoice is open; an instant: it is verifying until then."""
invoice_lists = st.lists(st.tuples(due_dates, windows), max_size=6, unique_by=lambda pair: pair[0]).map(
    lambda pairs: [
        unpaid(f"inv_{due}", due) if until is None else verifying(f"inv_{due}", due, until) for due, until in pairs
    ]
)


def open_at(invoice: Unpaid, now: datetime) -> bool:
    """The oracle of rule 3.7: open, or verifying with its window over."""
    if invoice.status == InvoiceStatus.OPEN:
        return True
    return invoice.verifying_until is not None and invoice.verifying_until <= now


@settings(max_examples=300)
@given(invoices=invoice_lists, now=instants)
def test_a_platform_is_blocked_exactly_by_its_open_invoices_past_their_block_instant(
    invoices: list[Unpaid], now: datetime
) -> None:
    expected = [i.id for i in invoices if open_at(i, now) and i.block_at <= now]

    assert blocking_invoices(Product.PLATFORM, invoices, False, now) == expected
    assert blocking_invoices(Product.PLATFORM, invoices, True, now) == expected


@settings(max_examples=300)
@given(invoices=invoice_lists, now=instants, currently_blocked=st.booleans())
def test_a_mentorship_is_blocked_by_every_open_invoice_or_by_none(
    invoices: list[Unpaid], now: datetime, currently_blocked: bool
) -> None:
    open_ids = [i.id for i in invoices if open_at(i, now)]
    any_overdue = any(open_at(i, now) and i.block_at <= now for i in invoices)

    keeping = blocking_invoices(Product.MENTORSHIP, invoices, currently_blocked, now)

    assert keeping == (open_ids if any_overdue or currently_blocked else [])


@settings(max_examples=300)
@given(
    invoices=invoice_lists,
    now=instants,
    currently_blocked=st.booleans(),
    product=st.sampled_from(PRODUCTS),
)
def test_an_invoice_in_its_verification_window_is_never_among_the_blocking_ones(
    invoices: list[Unpaid], now: datetime, currently_blocked: bool, product: str
) -> None:
    in_window = {i.id for i in invoices if not open_at(i, now)}

    assert not in_window & set(blocking_invoices(product, invoices, currently_blocked, now))


# product_access: what the product shows and allows.


def access_at(
    now: datetime,
    invoices: list[Invoice],
    product: str = Product.PLATFORM,
    current_block: Block | None = None,
    trial_ends_at: datetime | None = None,
    policy: Policy = POLICY,
) -> tuple[str, str | None, datetime | None, datetime | None, list[str]]:
    access = product_access(product, invoices, current_block, trial_ends_at, now, CALENDAR, policy)
    return access.state, access.alert, access.block_at, access.blocked_since, access.open_invoices


def test_an_account_in_its_trial_has_no_alert() -> None:
    assert access_at(local(2026, 12, 5), [], trial_ends_at=local(2026, 12, 10)) == (
        "trial",
        None,
        None,
        None,
        [],
    )


def test_a_trial_lasts_until_its_very_instant_of_ending() -> None:
    ends = local(2026, 12, 10, 15)

    assert access_at(ends - timedelta(minutes=1), [], trial_ends_at=ends)[0] == "trial"
    assert access_at(ends, [], trial_ends_at=ends)[0] != "trial"


def test_an_account_with_nothing_to_pay_is_active() -> None:
    assert access_at(local(2026, 12, 5), []) == ("active", None, None, None, [])
    assert access_at(local(2026, 12, 11), [], trial_ends_at=local(2026, 12, 10)) == (
        "active",
        None,
        None,
        None,
        [],
    )


@pytest.mark.parametrize(
    "now",
    [local(2026, 12, 1, 0, 5), local(2026, 12, 3, 12), local(2026, 12, 4, 23, 59)],
    ids=["day-1", "day-3", "day-4-23h59"],
)
def test_an_open_invoice_before_the_block_warning_day_asks_for_payment(now: datetime) -> None:
    assert access_at(now, [invoice("inv_dec", DEC)]) == (
        "grace",
        "payment",
        datetime(2026, 12, 7, 3, 0, tzinfo=UTC),
        None,
        ["inv_dec"],
    )


@pytest.mark.parametrize(
    "now",
    [local(2026, 12, 5), local(2026, 12, 6, 12), local(2026, 12, 6, 23, 59)],
    ids=["day-5-midnight", "day-6", "day-6-23h59"],
)
def test_an_open_invoice_from_the_block_warning_day_warns_of_the_block(now: datetime) -> None:
    assert access_at(now, [invoice("inv_dec", DEC)]) == (
        "grace",
        "block",
        datetime(2026, 12, 7, 3, 0, tzinfo=UTC),
        None,
        ["inv_dec"],
    )


def test_the_spec_example_reports_the_block_instant_in_sao_paulo_time() -> None:
    access = product_access(
        Product.PLATFORM, [invoice("inv_dec", DEC)], None, None, local(2026, 12, 5), CALENDAR, POLICY
    )

    assert access.block_at is not None
    assert access.block_at.astimezone(SAO_PAULO).isoformat() == "2026-12-07T00:00:00-03:00"


def test_a_policy_with_an_earlier_block_warning_day_warns_earlier() -> None:
    policy = Policy(block_warning_day=4)

    assert access_at(local(2026, 12, 3, 23, 59), [invoice("inv_dec", DEC)], policy=policy)[1] == "payment"
    assert access_at(local(2026, 12, 4), [invoice("inv_dec", DEC)], policy=policy)[1] == "block"


def test_an_overdue_invoice_blocks_login_at_midnight_of_day_7_before_any_tick_records_it() -> None:
    assert access_at(local(2026, 12, 7), [invoice("inv_dec", DEC)]) == (
        "blocked",
        "block",
        None,
        datetime(2026, 12, 7, 3, 0, tzinfo=UTC),
        ["inv_dec"],
    )


def test_a_recorded_block_reports_when_it_started() -> None:
    started = local(2026, 12, 7, 0, 1)
    current = block(Product.PLATFORM, started, ["inv_dec"])

    assert access_at(local(2026, 12, 9), [invoice("inv_dec", DEC)], current_block=current) == (
        "blocked",
        "block",
        None,
        started,
        ["inv_dec"],
    )


def test_a_block_in_force_is_honoured_until_a_payment_or_a_verification_lifts_it() -> None:
    current = block(Product.PLATFORM, local(2026, 12, 7, 0, 1), ["inv_dec"])
    assert access_at(local(2026, 12, 3), [invoice("inv_dec", DEC)], current_block=current)[0] == "blocked"


def test_a_platform_blocked_for_december_is_free_once_december_is_paid_though_january_is_open() -> None:
    # The payment's transaction lifts the block (the rules no longer hold it), so access sees none.
    assert blocking_invoices(Product.PLATFORM, [invoice("inv_jan", JAN)], True, local(2027, 1, 3)) == []

    state, alert, block_at, blocked_since, open_ids = access_at(local(2027, 1, 3), [invoice("inv_jan", JAN)])

    assert (state, alert, blocked_since, open_ids) == ("grace", "payment", None, ["inv_jan"])
    assert block_at == datetime(2027, 1, 7, 3, 0, tzinfo=UTC)


def test_a_blocked_mentorship_stays_blocked_by_the_current_month_after_the_overdue_one_is_paid() -> None:
    started = local(2026, 12, 7, 0, 1)
    current = block(Product.MENTORSHIP, started, ["inv_dec"])
    january = invoice("inv_jan", JAN, Product.MENTORSHIP)

    assert access_at(local(2027, 1, 3), [january], Product.MENTORSHIP, current) == (
        "blocked",
        "block",
        None,
        started,
        ["inv_jan"],
    )


def test_a_mentorship_overdue_before_any_tick_is_blocked_since_its_first_block_instant() -> None:
    invoices = [invoice("inv_dec", DEC, Product.MENTORSHIP), invoice("inv_jan", JAN, Product.MENTORSHIP)]

    assert access_at(local(2027, 1, 3), invoices, Product.MENTORSHIP) == (
        "blocked",
        "block",
        None,
        datetime(2026, 12, 7, 3, 0, tzinfo=UTC),
        ["inv_dec", "inv_jan"],
    )


def test_a_mentorship_with_every_month_paid_is_active_again() -> None:
    assert access_at(local(2027, 1, 3), [], Product.MENTORSHIP)[0] == "active"


def test_a_receipt_under_verification_lifts_the_block_until_the_verification_expires() -> None:
    until = local(2026, 12, 11, 14)
    verifying = invoice("inv_dec", DEC, status=InvoiceStatus.VERIFYING, verifying_until=until)
    # The receipt's transaction lifts the block (the rules no longer hold it), so access sees none.
    assert blocking_invoices(Product.PLATFORM, [verifying], True, local(2026, 12, 8, 14)) == []

    assert access_at(local(2026, 12, 8, 14), [verifying]) == ("verifying", "payment", until, None, ["inv_dec"])


def test_a_verification_that_ends_before_day_7_does_not_move_the_block_instant_earlier() -> None:
    verifying = invoice("inv_dec", DEC, status=InvoiceStatus.VERIFYING, verifying_until=local(2026, 12, 5, 10))

    assert access_at(local(2026, 12, 2, 10), [verifying]) == (
        "verifying",
        "payment",
        datetime(2026, 12, 7, 3, 0, tzinfo=UTC),
        None,
        ["inv_dec"],
    )


def test_an_expired_verification_blocks_at_once_even_before_the_tick_reopens_the_invoice() -> None:
    until = local(2026, 12, 11, 14)
    expired = invoice("inv_dec", DEC, status=InvoiceStatus.VERIFYING, verifying_until=until)

    state, alert, block_at, _, open_ids = access_at(until + timedelta(minutes=1), [expired])

    # Rule 3.7: once the window is over the invoice is overdue again and blocks again; login must not
    # stay allowed (with a block_at in the past) until the next tick happens to reopen it.
    assert (state, alert, block_at, open_ids) == ("blocked", "block", None, ["inv_dec"])


def test_a_blocked_mentorship_never_blocks_a_paid_platform() -> None:
    now = local(2027, 1, 3)
    mentorship = [
        invoice("inv_m_dec", DEC, Product.MENTORSHIP),
        invoice("inv_m_jan", JAN, Product.MENTORSHIP),
    ]
    platform = [invoice("inv_p_jan", JAN)]

    assert access_at(now, mentorship, Product.MENTORSHIP)[0] == "blocked"
    assert access_at(now, platform, Product.PLATFORM)[:2] == ("grace", "payment")
    assert access_at(now, [], Product.PLATFORM)[0] == "active"
