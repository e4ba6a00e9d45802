"""The composition root: settings in, engine, sessions, clock, calendar and policy out."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from billing.calendar import BillingCalendar
from billing.clock import Clock, FrozenClock, SystemClock
from billing.db import create_db_engine, session_factory, unit_of_work
from billing.policy import Policy
from billing.shared_clock import StoredClock
from regua.settings import Settings

T = TypeVar("T")


@dataclass
class Runtime:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    clock: Clock
    calendar: BillingCalendar
    policy: Policy
    wall_clock: Clock = field(default_factory=SystemClock)
    """The real time, whatever `clock` says: what protects a transport (a signature's 5-minute tolerance)
    is measured on it, while `clock` (shared or frozen outside production) is the business instant."""

    def transaction(self, work: Callable[[Session], T]) -> T:
        """Run `work` in a unit of work and commit it; any exception rolls everything back."""
        with unit_of_work(self.sessions) as session:
            result = work(session)
            session.commit()
            return result

    def read(self, work: Callable[[Session], T]) -> T:
        with unit_of_work(self.sessions) as session:
            return work(session)

    def close(self) -> None:
        if isinstance(self.clock, StoredClock):
            self.clock.close()
        self.engine.dispose()


def build_clock(settings: Settings, sessions: sessionmaker[Session]) -> Clock:
    """Production has the system clock only; REGUA_NOW freezes one process; anything else reads the
    shared clock in the database, so that serve, worker, scheduler, tick and dev agree on the time."""
    if settings.now is not None:
        return FrozenClock(settings.now)
    if settings.production:
        return SystemClock()
    return StoredClock(sessions, SystemClock())


def build_runtime(settings: Settings, *, clock: Clock | None = None, wall_clock: Clock | None = None) -> Runtime:
    """A `clock` given is the whole world's time (the wall clock too) unless `wall_clock` is given as well:
    a test that freezes time freezes its senders' with it."""
    engine = create_db_engine(settings.database_url)
    sessions = session_factory(engine)
    return Runtime(
        settings=settings,
        engine=engine,
        sessions=sessions,
        clock=clock or build_clock(settings, sessions),
        calendar=settings.calendar,
        policy=settings.policy,
        wall_clock=wall_clock or clock or SystemClock(),
    )
