"""The shared test clock: one instant in the database that every process outside production reads.

Like a payment gateway's test clock, it follows the system time until it is set; from then on it
stands at the instant it was set to, until it is set or advanced again. Moving it is the business
of `regua clock`, which reconciles at every day boundary crossed (`day_boundaries`).
"""

from __future__ import annotations

import os
import re
import threading
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from billing.clock import Clock, as_utc
from billing.db import unit_of_work
from billing.records import SharedClock

CLOCK_ROW = 1
DEFAULT_CACHE = timedelta(seconds=1)
_DURATION = re.compile(r"(\d+)\s*([dhms])")
_UNITS = {"d": "days", "h": "hours", "m": "minutes", "s": "seconds"}


def stored_instant(session: Session) -> datetime | None:
    """The instant the clock was set to, or None when it follows the system time."""
    row = session.get(SharedClock, CLOCK_ROW)
    return None if row is None else row.instant


def store_instant(session: Session, instant: datetime | None, now: datetime) -> None:
    """Set the clock (None: follow the system time again); the caller commits."""
    row = session.scalars(select(SharedClock).where(SharedClock.id == CLOCK_ROW).with_for_update()).first()
    if row is None:
        row = SharedClock(id=CLOCK_ROW)
        session.add(row)
    row.instant = None if instant is None else as_utc(instant)
    row.updated_at = now


class StoredClock:
    """The shared clock as a `Clock`: the stored instant, or the system time while none is stored.

    The first read is made at once; after that a read older than `cache` (about a second) is renewed
    by a short-lived thread while `now` answers from the last one, and a daemon thread renews it every
    `cache` besides, so that a process idle for an hour does not answer its first request of the hour
    with the instant it read an hour ago. A clock moved by another process is seen within about a
    second, and `now` never waits on the database: on the embedded default every transaction takes
    SQLite's write lock, and an event loop waiting for it could wait for a worker that is itself
    waiting for that loop. A database without the clock's table reads as the system time. Threads do
    not survive a fork: a forked child reads afresh and starts its own.
    """

    def __init__(self, sessions: sessionmaker[Session], system: Clock, *, cache: timedelta = DEFAULT_CACHE) -> None:
        self._sessions = sessions
        self._system = system
        self._cache = cache
        self._lock = threading.Lock()
        self._read_at: datetime | None = None
        self._instant: datetime | None = None
        self._renewing = False
        self._renewal: threading.Thread | None = None
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None
        self._pid = os.getpid()

    def now(self) -> datetime:
        system_now = self._system.now()
        if self._pid != os.getpid():
            self._forked()
        with self._lock:
            if self._read_at is None:
                self._instant, self._read_at = self._read(), system_now
                self._start_ticker()
            elif not self._renewing and not timedelta(0) <= system_now - self._read_at < self._cache:
                self._renewing = True
                self._renewal = threading.Thread(target=self._renew, name="shared-clock", daemon=True)
                self._renewal.start()
            instant = self._instant
        return system_now if instant is None else instant

    def read_now(self) -> datetime:
        """The clock read from the database at this call (and kept for the next `now`): for rare readers
        that must see a move at once, like the gateway simulator dating a payment."""
        instant, system_now = self._read(), self._system.now()
        with self._lock:
            self._instant, self._read_at = instant, system_now
        return system_now if instant is None else instant

    def forget(self) -> None:
        """Read the database again, at once, at the next `now` (after this process moved the clock)."""
        with self._lock:
            self._read_at = None

    def close(self, timeout: float = 5.0) -> None:
        """Stop renewing and wait for a renewal under way, so that none outlives its database engine."""
        self._stop.set()
        for thread in (self._ticker, self._renewal):
            if thread is not None and thread is not threading.current_thread():
                thread.join(timeout)

    def _start_ticker(self) -> None:
        if self._ticker is None and not self._stop.is_set():
            self._ticker = threading.Thread(target=self._tick, name="shared-clock-ticker", daemon=True)
            self._ticker.start()

    def _tick(self) -> None:
        while not self._stop.wait(self._cache.total_seconds()):
            self._renew()

    def _forked(self) -> None:
        """In a forked child: the parent's threads (and any lock they held) stayed behind."""
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._read_at, self._renewing, self._renewal, self._ticker = None, False, None, None

    def _renew(self) -> None:
        try:
            instant = self._read()
        except Exception:  # a thread must not die loudly: the last read stands until the next renewal
            instant = self._instant
        with self._lock:
            self._instant, self._read_at, self._renewing = instant, self._system.now(), False

    def _read(self) -> datetime | None:
        try:
            with unit_of_work(self._sessions) as session:
                return stored_instant(session)
        except DBAPIError:
            return None


def parse_duration(text: str) -> timedelta:
    """ "6d", "36h", "90m", "1d12h", "45s": a positive duration."""
    cleaned = text.strip().lower()
    parts = _DURATION.findall(cleaned)
    if not parts or _DURATION.sub("", cleaned).strip():
        raise ValueError(f"not a duration: {text!r} (write it as 6d, 36h, 90m, 1d12h or 45s)")
    duration = timedelta(0)
    for amount, unit in parts:
        duration += timedelta(**{_UNITS[unit]: int(amount)})
    if duration <= timedelta(0):
        raise ValueError(f"a duration moves the clock forward: {text!r}")
    return duration


def parse_local_instant(text: str, zone: ZoneInfo) -> datetime:
    """An ISO 8601 instant; without an offset it is read in `zone` (REGUA_TIMEZONE). In UTC."""
    try:
        parsed = datetime.fromisoformat(text.strip())
    except ValueError as error:
        raise ValueError(f"not an ISO 8601 instant: {text!r} (for example 2026-12-01T00:05)") from error
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=zone)
    return as_utc(parsed)


def day_boundaries(start: datetime, end: datetime, zone: ZoneInfo) -> list[datetime]:
    """Every 00:00 in `zone` after `start` and up to `end`, in order, in UTC."""
    boundaries: list[datetime] = []
    day = start.astimezone(zone).date() + timedelta(days=1)
    while True:
        midnight = as_utc(datetime.combine(day, datetime.min.time(), tzinfo=zone))
        if midnight > end:
            return boundaries
        if midnight > start:
            boundaries.append(midnight)
        day += timedelta(days=1)


class ReadThroughClock:
    """A `Clock` over a StoredClock that reads the database at every call (see `StoredClock.read_now`)."""

    def __init__(self, stored: StoredClock) -> None:
        self._stored = stored

    def now(self) -> datetime:
        return self._stored.read_now()
