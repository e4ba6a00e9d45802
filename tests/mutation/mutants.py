"""The mutants: realistic mistakes in the rules of SPEC section 3 and in `regua check`.

Each is one exact piece of text of one file of billing/ and what a careless change would put in its
place. The text must be found exactly once: when the code moves, the mutant is rewritten, never
skipped. Each names the fast SQLite tests that concern its rule, those likeliest to kill it first.

The mutants of `regua check` are not written by hand: one per invariant that billing.check registers,
read from its source, so an invariant added there is covered the day it is added.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

CHECK_MODULES = ("billing/check/__init__.py", "billing/check.py")
"""Where `regua check` registers its invariants (the first that exists)."""
REGISTRY = "INVARIANTS"


@dataclass(frozen=True)
class Mutant:
    name: str
    path: str
    """The file it changes, relative to the project's root."""
    original: str
    replacement: str
    tests: tuple[str, ...]
    """The tests that concern it (files, node ids or file patterns), in the order they run: likeliest killers first."""

    @property
    def module(self) -> str:
        """The dotted name the tests import the mutated file by."""
        return self.path.removesuffix(".py").removesuffix("/__init__").replace("/", ".")


UNIT = "tests/unit/"
INTEGRATION = "tests/integration/"
KILLERS = INTEGRATION + "test_mutant_killers.py"
BLOCKING = (UNIT + "test_blocking_rules.py", INTEGRATION + "test_rules.py")
DISCOUNT = (UNIT + "test_money.py", UNIT + "test_invoicing_rules.py", INTEGRATION + "test_rules.py")
SETTLING = (INTEGRATION + "test_webhook_settlement.py", INTEGRATION + "test_books.py", KILLERS)
VERIFYING = (INTEGRATION + "test_books.py", INTEGRATION + "test_rules.py", KILLERS)
CHECK = (INTEGRATION + "test_check*.py", KILLERS)
BATCHES = INTEGRATION + "test_charge_batches.py"


RULES: tuple[Mutant, ...] = (
    Mutant(
        "tolerance to day 7 (blocks from day 8)",
        "billing/calendar.py",
        "TOLERANCE_DAYS = 6\n",
        "TOLERANCE_DAYS = 7\n",
        (UNIT + "test_calendar.py", *BLOCKING),
    ),
    Mutant(
        "a 4% auto-debit discount",
        "billing/money.py",
        "AUTO_DEBIT_DISCOUNT_PERCENT = 5\n",
        "AUTO_DEBIT_DISCOUNT_PERCENT = 4\n",
        DISCOUNT,
    ),
    Mutant(
        "the discount rounded half-even",
        "billing/money.py",
        "    return percent_of(subtotal_cents, AUTO_DEBIT_DISCOUNT_PERCENT)\n",
        "    return round(Decimal(subtotal_cents * AUTO_DEBIT_DISCOUNT_PERCENT) / 100)\n",
        DISCOUNT,
    ),
    Mutant(
        "retries on days 3 and 6",
        "billing/policy.py",
        "    retry_days: tuple[int, ...] = (3, 5)\n",
        "    retry_days: tuple[int, ...] = (3, 6)\n",
        (UNIT + "test_auto_debit_plan.py", UNIT + "test_dunning.py", INTEGRATION + "test_charging.py"),
    ),
    Mutant(
        "a hard decline retried",
        "billing/charging/planning.py",
        "    if any(attempt.hard_decline and attempt.card_ref in (None, current_card) for attempt in attempts):\n",
        "    if any(attempt.hard_decline and attempt.card_ref is None for attempt in attempts):\n",
        (UNIT + "test_auto_debit_plan.py", INTEGRATION + "test_charging.py"),
    ),
    Mutant(
        "a charged-back card charged again",
        "billing/charging/planning.py",
        "    for query in (hard, charged_back):",
        "    for query in (hard,):",
        (INTEGRATION + "test_charging.py",),
    ),
    Mutant(
        "a pro rata month rounded down",
        "billing/calendar.py",
        "    return divide_half_up(monthly_price_cents * period.days, days_in_month(period.start))\n",
        "    return monthly_price_cents * period.days // days_in_month(period.start)\n",
        (UNIT + "test_calendar.py", UNIT + "test_invoicing_rules.py"),
    ),
    Mutant(
        "newest month first at checkout",
        "billing/blocking.py",
        "    return overdue or unpaid\n",
        "    return unpaid[-1:]\n",
        (INTEGRATION + "test_checkout.py", INTEGRATION + "test_rules.py", KILLERS),
    ),
    Mutant(
        "newest month first at auto-debit",
        "billing/charging/planning.py",
        "select(Invoice.account_id, Invoice.product, func.min(Invoice.period_start))",
        "select(Invoice.account_id, Invoice.product, func.max(Invoice.period_start))",
        (INTEGRATION + "test_charging.py", KILLERS),
    ),
    Mutant(
        "a mentorship freed by paying the overdue month alone",
        "billing/blocking.py",
        "    if product == Product.MENTORSHIP and (overdue or currently_blocked):\n",
        "    if product == Product.MENTORSHIP and overdue:\n",
        BLOCKING,
    ),
    Mutant(
        "a 96-hour verification window",
        "billing/policy.py",
        "    verification_hours: int = 72\n",
        "    verification_hours: int = 96\n",
        VERIFYING,
    ),
    Mutant(
        "a second receipt restarts the window",
        "billing/verification.py",
        "    if in_window(invoice, now):\n",
        "    if in_window(invoice, now):\n        invoice.verifying_until = now + policy.verification_window\n",
        VERIFYING,
    ),
    Mutant(
        "a receipt after the window opens another",
        "billing/verification.py",
        "    elif invoice.verification_started_at is None:\n",
        "    elif invoice.verification_started_at is None or not in_window(invoice, now):\n",
        (INTEGRATION + "test_receipt*.py", *VERIFYING),
    ),
    Mutant(
        "a chargeback leaves the month paid",
        "billing/refunds.py",
        "    if pays_invoices:\n",
        "    if False:\n",
        SETTLING,
    ),
    Mutant(
        "a full refund leaves the month paid",
        "billing/refunds.py",
        "        .values(status=InvoiceStatus.REFUNDED.value)\n",
        "        .values(status=InvoiceStatus.PAID.value)\n",
        SETTLING,
    ),
    Mutant(
        "a duplicate pays the next open month",
        "billing/settlement.py",
        "    payable = [] if short else [invoice for invoice in invoices if invoice.status in UNPAID]\n",
        "    payable = [] if short else [invoice for invoice in invoices if invoice.status in UNPAID]\n"
        "    if not short and not payable:\n"
        "        payable = list(session.scalars(select(Invoice).where(\n"
        "            Invoice.account_id == charge.account_id, Invoice.product == charge.product,\n"
        "            Invoice.status.in_(UNPAID)).order_by(Invoice.period_start).limit(1).with_for_update()))\n",
        (KILLERS, *SETTLING[:2], INTEGRATION + "test_rules.py"),
    ),
    Mutant(
        "no unblock in the settling job",
        "billing/settlement.py",
        "    changes = reconcile_blocks(session, accounts, now) if owed else BlockChanges()\n",
        "    changes = BlockChanges()\n",
        (INTEGRATION + "test_webhook_settlement.py", INTEGRATION + "test_rules.py"),
    ),
    Mutant(
        "a blocked account warned to keep its access",
        "billing/schedule.py",
        '        if access.state == "blocked"\n    }',
        '        if access.state == "grace"\n    }',
        (INTEGRATION + "test_messages_true.py",),
    ),
    Mutant(
        "a reminder to keep access sent to a product blocked since",
        "billing/premises.py",
        "(kind in _KEEP_ACCESS_KINDS and invoice.blocks_in_force)",
        "(kind in _KEEP_ACCESS_KINDS and False)",
        (INTEGRATION + "test_notifications.py",),
    ),
    Mutant(
        "the page asks for every open month of a platform",
        "billing/access.py",
        "    owed = tuple(invoice.id for invoice in owed_now(unpaid, product, now))\n",
        "    owed = tuple(invoice.id for invoice in unpaid if is_open_at(invoice, now))\n",
        (INTEGRATION + "test_messages_true.py", INTEGRATION + "test_portal*.py", "tests/model/test_books_machine.py"),
    ),
    Mutant(
        "the gateway's word on a payment taken back taken for an echo",
        "workers/processing.py",
        "                        Payment.status == PaymentStatus.CONFIRMED,\n",
        "                        Payment.status.is_not(None),\n",
        (BATCHES,),
    ),
    Mutant(
        "an echo fetched and settled again while its charge job records it",
        "workers/actors.py",
        "wait_for_charges=waited < ECHO_WAITS)",
        "wait_for_charges=False)",
        (BATCHES,),
    ),
    Mutant(
        "an echo waiting for its charge job without end",
        "workers/actors.py",
        "wait_for_charges=waited < ECHO_WAITS)",
        "wait_for_charges=True)",
        (BATCHES,),
    ),
    Mutant(
        "a PIX payment's webhook waiting on the job that asks for its codes",
        "billing/charging/leases.py",
        "                Charge.method == PaymentMethod.CARD,\n",
        "                Charge.method.is_not(None),\n",
        (BATCHES,),
    ),
    Mutant(
        "an echo waiting on a charge job that has died",
        "billing/charging/leases.py",
        "                Charge.lease_until > now,\n",
        "                Charge.lease_until.is_not(None),\n",
        (BATCHES,),
    ),
    Mutant(
        "a batch calling the gateway after its leases may have passed to another job",
        "billing/charging/cards.py",
        "        if _seconds() > deadline:\n",
        "        if False:\n",
        (BATCHES,),
    ),
    Mutant(
        "a batch calling on after the gateway stopped answering",
        "billing/charging/cards.py",
        "            calls.untried = list(claims[position + 1 :])\n            break\n",
        "            calls.untried = []\n",
        (BATCHES, INTEGRATION + "test_charging.py"),
    ),
    Mutant(
        "an email whose connection broke after its message was handed over sent again at once",
        "regua/smtp.py",
        "    return isinstance(error, LostBeforeMail)\n",
        "    return isinstance(error, Lost)\n",
        (INTEGRATION + "test_smtp_session.py",),
    ),
    Mutant(
        "an email's lines beginning with a dot sent as they are (the server takes the dot away)",
        "regua/smtp_session.py",
        '    return data.replace(b"\\r\\n.", b"\\r\\n..") + b".\\r\\n"\n',
        '    return data + b".\\r\\n"\n',
        (INTEGRATION + "test_smtp_session.py",),
    ),
    Mutant(
        "a send message whose other notifications went out not retried for the one still waiting",
        "workers/mailing.py",
        "        if waiting:\n            raise NotSentYet(",
        "        if len(waiting) == len(notification_ids):\n            raise NotSentYet(",
        (INTEGRATION + "test_smtp_delivery.py",),
    ),
)


def invariant_mutants(root: Path) -> list[Mutant]:
    """One mutant per invariant registered in billing.check: its entry answers nothing, whatever the books.

    The registry is read as Python, not matched as text: `INVARIANTS = {"name": function, ...}`. Any
    other shape fails here, so a new way of registering invariants gets its mutants written for it.
    """
    path = next((path for path in CHECK_MODULES if (root / path).is_file()), None)
    if path is None:
        raise ValueError(f"no module registering the invariants of `regua check`: none of {', '.join(CHECK_MODULES)}")
    source = (root / path).read_text()
    registry = next(
        (
            node.value
            for node in ast.walk(ast.parse(source))
            if isinstance(node, ast.Assign | ast.AnnAssign)
            and any(
                isinstance(target, ast.Name) and target.id == REGISTRY
                for target in (node.targets if isinstance(node, ast.Assign) else [node.target])
            )
        ),
        None,
    )
    if not isinstance(registry, ast.Dict) or not registry.keys:
        raise ValueError(f"{path}: no `{REGISTRY} = {{name: invariant, ...}}` to switch invariants off in")
    lines = source.splitlines(keepends=True)
    mutants = []
    for key, value in zip(registry.keys, registry.values, strict=True):
        if not isinstance(key, ast.Constant) or not isinstance(key.value, str):
            raise ValueError(f"{path}:{value.lineno}: an invariant registered under a name that is not text")
        if key.lineno != value.end_lineno:
            raise ValueError(f"{path}:{key.lineno}: the entry of {key.value!r} spans lines")
        line = lines[key.lineno - 1]
        entry = line[key.col_offset : value.end_col_offset]
        switched_off = entry[: value.col_offset - key.col_offset] + "lambda *_: iter(())"
        mutants.append(Mutant(f"invariant {key.value} switched off", path, entry, switched_off, CHECK))
    return mutants


def all_mutants(root: Path) -> list[Mutant]:
    return [*RULES, *invariant_mutants(root)]
