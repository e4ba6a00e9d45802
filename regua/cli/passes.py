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
from regua.cli.common import CommandError, command_runtime, tick_once
from regua.runtime import Runtime
from regua.settings import Settings
from workers.tick import tick


def cmd_tick(settings: Settings, args: argparse.Namespace) -> int:
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
    if settings.production:
        raise CommandError("the shared clock is refused in production, where only the system clock exists")
    if settings.now is not None and args.action != "show":
        raise CommandError("REGUA_NOW freezes this process's clock: unset it to move the shared clock")
    runtime = command_runtime(settings)
    try:
        zone = runtime.calendar.zone
        current = runtime.clock.now()
        if args.action == "show":
            stored = runtime.read(stored_instant) is not None
            state = "REGUA_NOW" if settings.now is not None else ("set" if stored else "follows the system time")
            print(f"{runtime.calendar.local(current).isoformat()} ({state})")
            return 0
        try:
            if args.action == "set":
                target = parse_local_instant(args.instant, zone)
            else:
                target = current + parse_duration(args.duration)
        except ValueError as error:
            raise CommandError(str(error)) from None
        if target < current:
            print(f"the clock moves back from {runtime.calendar.local(current).isoformat()}: the books keep their past")
        steps = day_boundaries(current, target, zone) if target > current else []
        if target not in steps:
            steps.append(target)
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
            done = ", ".join(f"{name} {count}" for name, count in report.as_dict().items() if count)
            print(f"{runtime.calendar.local(instant).isoformat()}  {done or 'nothing to do'}", flush=True)
    finally:
        runtime.close()
    return 0


def _store(runtime: Runtime, instant: datetime) -> None:
    runtime.transaction(lambda session: store_instant(session, instant, SystemClock().now()))
