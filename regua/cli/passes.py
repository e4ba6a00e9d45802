"""`regua tick` and `regua clock`: reconciliation passes, at the clock's instant or at each day it crosses."""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime

from billing.clock import SystemClock, parse_instant
from billing.shared_clock import (
    DEFAULT_CACHE,
    StoredClock,
    day_boundaries,
    parse_duration,
    parse_local_instant,
    store_instant,
    stored_instant,
)
from regua.assembly import build_jobs, lazy_context, worker_context
from regua.cli.common import CommandError, command_runtime, library_chatter_quieted, tick_once
from regua.runtime import Runtime
from regua.sandbox.dev_record import with_running_dev
from regua.settings import Settings
from workers.tick import tick


def cmd_tick(settings: Settings, args: argparse.Namespace) -> int:
    settings = with_running_dev(settings)
    now = None
    if args.now:
        if settings.production:
            raise CommandError("--now moves the clock: it is refused in production")
        try:
            now = parse_instant(args.now)
        except ValueError as error:
            raise CommandError(f"--now: {error}") from None
        print("--now moves this pass only: `regua clock set` moves every process's clock", file=sys.stderr)
    runtime = command_runtime(settings)
    try:
        if settings.broker_url:
            report = tick(worker_context(runtime), build_jobs(settings, lazy_context(settings)), now)
        else:
            report = tick_once(runtime, now)
    finally:
        runtime.close()
    print(json.dumps(report.as_dict()) if args.json else "\n".join(report.lines()))
    return 0


CLOCK_SEEN_AFTER_S = DEFAULT_CACHE.total_seconds() + 0.2
"""How long every other process takes to read a moved shared clock (it renews its read every second)."""


def cmd_clock(settings: Settings, args: argparse.Namespace) -> int:
    """Show or move the shared clock; moving it reconciles at every day boundary crossed, in order."""
    settings = with_running_dev(settings)  # the passes charge at a running dev's simulator, mail its sink
    if settings.production:
        raise CommandError("the shared clock is refused in production, where only the system clock exists")
    if settings.now is not None and args.action != "show":
        raise CommandError("REGUA_NOW freezes this process's clock: unset it to move the shared clock")
    if args.action == "advance" and args.duration.strip().startswith("-"):
        raise CommandError(
            f"durations are forward only: {args.duration} would move the clock back; "
            "`regua clock set INSTANT` sets an earlier instant"
        )
    with library_chatter_quieted():
        runtime = command_runtime(settings)
        try:
            if args.action == "show":
                _show(runtime)
            else:
                _move(runtime, args)
        finally:
            runtime.close()
    return 0


def _show(runtime: Runtime) -> None:
    stored = runtime.read(stored_instant) is not None
    state = "REGUA_NOW" if runtime.settings.now is not None else ("set" if stored else "follows the system time")
    print(f"{runtime.calendar.local(runtime.clock.now()).isoformat()} ({state})")


def _move(runtime: Runtime, args: argparse.Namespace) -> None:
    """Store each day boundary crossed and the instant reached, reconciling at each: printed as it goes,
    or, with --json, as one object once done."""
    settings, calendar = runtime.settings, runtime.calendar
    current = runtime.clock.now()
    try:
        if args.action == "set":
            target = parse_local_instant(args.instant, calendar.zone)
        else:
            target = current + parse_duration(args.duration)
    except ValueError as error:
        raise CommandError(str(error)) from None
    if target < current:
        print(
            f"the clock moves back from {calendar.local(current).isoformat()}: the books keep their past",
            file=sys.stderr if args.json else sys.stdout,
        )
    steps = day_boundaries(current, target, calendar.zone) if target > current else []
    if target not in steps:
        steps.append(target)
    passes: list[dict[str, object]] = []
    for instant in steps:
        _store(runtime, instant)
        if isinstance(runtime.clock, StoredClock):
            runtime.clock.forget()
        if settings.broker_url:
            # the workers read the clock again within a second: a job this pass queues must not
            # meet the instant before it (a mail claimed "in flight" at the old instant waits minutes)
            time.sleep(CLOCK_SEEN_AFTER_S)
            report = tick(worker_context(runtime), build_jobs(settings, lazy_context(settings)), instant)
        else:
            report = tick_once(runtime, instant)
        counts = report.as_dict()
        passes.append({"at": calendar.local(instant).isoformat(), "counts": counts})
        if not args.json:
            done = ", ".join(f"{name} {count}" for name, count in counts.items() if count)
            print(f"{calendar.local(instant).isoformat()}  {done or 'nothing to do'}", flush=True)
    if args.json:
        moved = {"from": calendar.local(current).isoformat(), "to": calendar.local(target).isoformat()}
        print(json.dumps({**moved, "passes": passes}))


def _store(runtime: Runtime, instant: datetime) -> None:
    runtime.transaction(lambda session: store_instant(session, instant, SystemClock().now()))
