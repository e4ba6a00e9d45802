"""`regua demo`: December for eight accounts in virtual time, told as it happens, ending with the books' table.

The cast, the script and the telling; the running parts are in `demo_stage`. One frozen clock, read
by all of them, is moved from one scripted instant to the next: a tick at 00:05 every day (the
service's own reconciliation pass), the customers' scenes at their hours, each followed by what it
caused, read from the books.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO
from zoneinfo import ZoneInfo

from sqlalchemy import select

from billing.check import check_books
from billing.clock import FrozenClock
from billing.models import Charge, Invoice
from billing.money import format_brl
from regua.sandbox.demo_books import Books, Teller, emails_sent, summary
from regua.sandbox.demo_stage import DemoFailed, Stage, staged
from regua.settings import Settings

# -- the cast --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Role:
    account_id: str
    name: str
    document: str
    contact: str
    product: str
    subscription: dict[str, Any]
    plot: str


def cast(year: int) -> list[Role]:
    december = f"{year}-12-01"

    def plan(
        method: str, price: int | None = 19990, starts_on: str = december, name: str = "pro", **extra: Any
    ) -> dict[str, Any]:
        return {
            "plan": name,
            "modules": [],
            "monthly_price_cents": price,
            "frequency": "monthly",
            "payment_method": method,
            "starts_on": starts_on,
            **extra,
        }

    return [
        Role(
            "padaria-central",
            "Padaria Central Ltda",
            "11.222.333/0001-81",
            "ana@padaria.example",
            "platform",
            plan("card_auto_debit", card_token="tok_ok", remote_ip="203.0.113.21"),
            "auto-debit card, paid on day 1 with 5% off",
        ),
        Role(
            "oficina-do-ze",
            "Oficina do Zé",
            "529.982.247-25",
            "ze@oficina.example",
            "platform",
            plan("card_auto_debit", card_token="tok_soft_decline", remote_ip="203.0.113.22"),
            "card declined on day 1, a new card passes on the day-3 retry",
        ),
        Role(
            "livraria-aurora",
            "Livraria Aurora ME",
            "11.444.777/0001-61",
            "bia@aurora.example",
            "platform",
            plan("boleto"),
            "boleto: reminded, warned, blocked on day 7, pays on day 9",
        ),
        Role(
            "estudio-lumen",
            "Estúdio Lumen",
            "111.444.777-35",
            "caio@lumen.example",
            "mentorship",
            plan("pix", price=50000, starts_on=f"{year}-11-01"),
            "mentorship a month late, pays both months in one checkout",
        ),
        Role(
            "mercado-sol",
            "Mercado Sol Ltda",
            "11.222.333/0001-81",
            "rui@mercadosol.example",
            "platform",
            plan("pix"),
            "PIX paid twice, refunded once",
        ),
        Role(
            "clinica-vida",
            "Clínica Vida",
            "529.982.247-25",
            "lia@clinicavida.example",
            "platform",
            plan("boleto"),
            "sends a receipt: the invoice goes into verification",
        ),
        Role(
            "bistro-serra",
            "Bistrô da Serra Ltda",
            "11.444.777/0001-61",
            "davi@bistroserra.example",
            "platform",
            plan("card_auto_debit", None, name="basic", card_token="tok_ok", remote_ip="203.0.113.24"),
            "catalog plan Básico, upgrades to Pro with Delivery on 16/12: the difference charged at once",
        ),
        Role(
            "casa-verde",
            "Casa Verde Paisagismo",
            "111.444.777-35",
            "eva@casaverde.example",
            "platform",
            plan("pix", None, starts_on=f"{year}-11-01", name="basic"),
            "pays November, cancels on 20/11: access until 30/11, nothing issued in December",
        ),
    ]


CATALOG = [
    ("plans", "basic", "Básico", 9990),
    ("plans", "pro", "Pro", 19990),
    ("modules", "delivery", "Delivery", 3000),
]
"""The platform's plans and modules at their monthly prices; the last two accounts follow it."""


# -- the script ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scene:
    at: datetime
    account: str
    says: str
    act: Callable[[Stage], str | None]
    """Does it; returns what else the story should say, if anything."""


def script(year: int, zone: ZoneInfo) -> list[Scene]:
    def at(month: int, day: int, hour: int, minute: int = 0) -> datetime:
        return datetime(year, month, day, hour, minute, tzinfo=zone)

    def pay(account: str, product: str) -> Callable[[Stage], str | None]:
        def paid(stage: Stage) -> str:
            answer = stage.simulate(f"/sim/payments/{stage.gateway_payment(account, product)}/pay")
            return f"the gateway receives {answer['value']:.2f} ({answer['billingType']}) and posts its webhook"

        return paid

    def new_card(stage: Stage) -> None:
        role = next(role for role in cast(year) if role.account_id == "oficina-do-ze")
        body = {**role.subscription, "card_token": "tok_ok", "remote_ip": "203.0.113.23"}
        stage.call("PUT", "/api/accounts/oficina-do-ze/subscriptions/platform", json=body)

    def pix_twice(stage: Stage) -> None:
        paid = stage.runtime.read(
            lambda session: session.scalar(
                select(Charge.gateway_payment_id).where(
                    Charge.account_id == "mercado-sol", Charge.status == "confirmed"
                )
            )
        )
        stage.simulate(f"/sim/payments/{paid}/pay-again")

    def checkout_both(stage: Stage) -> str:
        body = {"product": "mentorship", "method": "pix"}
        answer = stage.call("POST", "/api/accounts/estudio-lumen/checkout", json=body)
        months = " and ".join(
            f"{invoice['period_start'][5:7]}/{invoice['period_start'][:4]}" for invoice in answer["invoices"]
        )
        return f"checkout answers one PIX of {format_brl(answer['amount_cents'])} for {months}"

    def upgrade(stage: Stage) -> str:
        role = next(role for role in cast(year) if role.account_id == "bistro-serra")
        body = {**role.subscription, "plan": "pro", "modules": ["delivery"]}
        answer = stage.call("PUT", "/api/accounts/bistro-serra/subscriptions/platform", json=body)
        stage.tick()  # the scheduler's next pass, minutes later, charges the difference to the card
        return (
            f"{format_brl(answer['monthly_price_cents'])}/month from today; the difference for the 16 days left "
            f"is invoiced at once: {format_brl(answer['change']['proration_cents'])} with the 5% off"
        )

    def leave(stage: Stage) -> str:
        answer = stage.call("DELETE", "/api/accounts/casa-verde/subscriptions/platform")
        stage.tick()  # the scheduler's next pass, minutes later, tells the customer
        ends = date.fromisoformat(answer["ends_on"])
        return f"canceled: access until {ends:%d/%m/%Y}, the end of the month already paid"

    def receipt(stage: Stage) -> None:
        invoice_id = stage.runtime.read(
            lambda session: session.scalar(
                select(Invoice.id).where(Invoice.account_id == "clinica-vida", Invoice.status == "open")
            )
        )
        stage.call("POST", f"/api/invoices/{invoice_id}/receipts", json={})

    return [
        Scene(at(11, 2, 9), "casa-verde", "pays November's PIX", pay("casa-verde", "platform")),
        Scene(at(11, 20, 16), "casa-verde", "cancels the subscription", leave),
        Scene(at(12, 2, 9), "mercado-sol", "pays the PIX code from the email", pay("mercado-sol", "platform")),
        Scene(at(12, 2, 10), "estudio-lumen", "opens the checkout: both months in one PIX", checkout_both),
        Scene(at(12, 2, 10, 5), "estudio-lumen", "pays that PIX", pay("estudio-lumen", "mentorship")),
        Scene(at(12, 2, 15), "mercado-sol", "pays the same PIX again by mistake", pix_twice),
        Scene(at(12, 2, 18), "oficina-do-ze", "saves a new card (tok_ok)", new_card),
        Scene(at(12, 6, 11), "clinica-vida", "sends the boleto receipt by WhatsApp; ops record it", receipt),
        Scene(at(12, 8, 14), "clinica-vida", "the boleto clears at the bank", pay("clinica-vida", "platform")),
        Scene(at(12, 9, 10), "livraria-aurora", "pays the boleto at the bank", pay("livraria-aurora", "platform")),
        Scene(at(12, 16, 10), "bistro-serra", "upgrades to the Pro plan with Delivery", upgrade),
    ]


# -- the run -------------------------------------------------------------------------------------------


def _days(first: date, last: date) -> Iterator[date]:
    day = first
    while day <= last:
        yield day
        day += timedelta(days=1)


def play(stage: Stage, year: int, zone: ZoneInfo, out: TextIO) -> None:
    """November for the two accounts that start then, December for all: a tick at 00:05 every day,
    the scenes at their hours, each followed by what it caused."""
    teller = Teller(out, zone, Books.read(stage.runtime), [role.account_id for role in cast(year)])
    scenes = sorted(script(year, zone), key=lambda scene: scene.at)
    for day in _days(date(year, 11, 1), date(year, 12, 31)):
        if day.day == 1:
            title = "November: before the story, a mentorship starts, a customer pays and leaves"
            title = title if day.month == 11 else "December"
            print(f"\n-- {title}", file=out)
        tick_at = datetime(day.year, day.month, day.day, 0, 5, tzinfo=zone)
        stage.clock.set(tick_at)
        stage.tick()
        teller.catch_up(stage.runtime, tick_at)
        while scenes and scenes[0].at.date() == day:
            scene = scenes.pop(0)
            stage.clock.set(scene.at)
            teller.line(scene.at, scene.account, "", f"> {scene.says}")
            extra = scene.act(stage)
            if extra:
                teller.line(scene.at, scene.account, "", f"  {extra}")
            stage.settle()
            teller.catch_up(stage.runtime, scene.at)


def run_demo(
    settings: Settings,
    out: TextIO,
    *,
    keep: Path | None = None,
    year: int | None = None,
    smtp_url: str | None = None,
) -> int:
    """Play the demo; 0 when the story ran to its end and `regua check` finds the books clean.

    `keep` is a directory for the database file; `smtp_url` a mail server to send to instead of the
    demo's own sink (Mailpit, to read them)."""
    zone = ZoneInfo(settings.timezone)
    year = year or settings.clock().now().astimezone(zone).year
    started = time.monotonic()
    roles = cast(year)
    with contextlib.ExitStack() as stack:
        if keep is None:
            folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="regua-demo-")))
        else:
            keep.mkdir(parents=True, exist_ok=True)
            folder = keep.resolve()
        database = folder / "regua.db"
        if database.exists():
            raise FileExistsError(f"{database} exists already: the demo starts from an empty database")
        clock = FrozenClock(datetime(year, 10, 31, 12, 0, tzinfo=zone))
        stage = stack.enter_context(staged(settings, database, clock, smtp_url))
        print(f"regua demo: December {year} in virtual time, on {database}", file=out)
        print(
            f"  regua's app {stage.api.base_url}, the Asaas simulator {stage.sim.base_url}, mail to {stage.smtp_url}",
            file=out,
        )
        for kind, item_id, item_name, item_price in CATALOG:
            body = {"product": "platform", "name": item_name, "monthly_price_cents": item_price}
            stage.call("PUT", f"/api/{kind}/{item_id}", json=body)
        print("\nThe accounts:", file=out)
        for role in roles:
            stage.call(
                "PUT",
                f"/api/accounts/{role.account_id}",
                json={
                    "name": role.name,
                    "document": role.document,
                    "contacts": [{"email": role.contact, "name": role.name, "manage_payments": True}],
                    "trial_ends_at": None,
                    "gateway_customer_id": f"cus_{role.account_id.replace('-', '')}",
                },
            )
            subscribed = stage.call(
                "PUT", f"/api/accounts/{role.account_id}/subscriptions/{role.product}", json=role.subscription
            )
            price = format_brl(subscribed["monthly_price_cents"])
            print(f"  {role.account_id:<16} {role.product:<10} {price:>11}/month  {role.plot}", file=out)
        play(stage, year, zone, out)
        print("\nThe books at the end of December:", file=out)
        for line in summary(
            stage.runtime, [(r.account_id, r.product, r.subscription["payment_method"]) for r in roles]
        ):
            print(f"  {line}", file=out)
        kinds = Counter[str]()
        for (_account, kind), count in emails_sent(stage.runtime).items():
            kinds[kind] += count
        listed = ", ".join(f"{kind} {count}" for kind, count in sorted(kinds.items()))
        print(f"\nemails sent: {sum(kinds.values())} ({listed})", file=out)
        if stage.sink is not None:
            received = stage.sink.received()
            print(f"emails received by the SMTP sink at {stage.smtp_url}: {len(received)}", file=out)
            if len(received) != sum(kinds.values()):
                raise DemoFailed("the SMTP sink did not receive every email regua recorded as sent")
        end = stage.clock.now()
        report = stage.runtime.read(lambda session: check_books(session, end))
        if report.clean:
            print(f"regua check: books clean, {len(report.counts)} invariants hold", file=out)
        else:
            for violation in report.violations:
                print(f"regua check: {violation.line()}", file=out)
    print(f"played in {time.monotonic() - started:.1f} s", file=out)
    if keep is not None:
        print(
            f"\nThe database is kept in {database}. Browse it at the demo's last instant with:\n"
            f"  REGUA_DATABASE_URL=sqlite:///{database} REGUA_NOW={end.isoformat()} regua dev",
            file=out,
        )
    return 0 if report.clean else 1
