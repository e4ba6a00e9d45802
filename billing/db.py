"""Engines and units of work for PostgreSQL (production) and SQLite (the embedded default)."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import JSON, Connection, Engine, create_engine, event, inspect, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, make_url
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.sql.elements import TextClause

from billing import catalog, journal, records  # noqa: F401  (the tables beside the books, in the same metadata)
from billing.models import Base


def normalize_url(url: str) -> URL:
    """`postgresql://` means psycopg 3 here; any other driver named explicitly is kept."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


POOLER_PARAMETER = "pgbouncer"
"""`postgresql://...?pgbouncer=true`: the URL names a PgBouncer in transaction pooling, not PostgreSQL itself."""


def create_db_engine(url: str, *, pool_size: int = 10) -> Engine:
    parsed = normalize_url(url)
    if parsed.get_backend_name() == "sqlite":
        engine = create_engine(parsed, connect_args={"timeout": 30, "check_same_thread": False})
        _serialize_sqlite_writers(engine)
        return engine
    parsed, pooled = _pooler(parsed)
    return create_engine(
        parsed,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
        pool_recycle=1800,
        connect_args=_psycopg_options(pooled),
        execution_options={POOLER_PARAMETER: pooled},
    )


def _pooler(url: URL) -> tuple[URL, bool]:
    """The URL without `pgbouncer=` (libpq knows no such option), and whether it was true."""
    value = url.query.get(POOLER_PARAMETER)
    if value is None:
        return url, False
    text = (value[-1] if isinstance(value, tuple) else value).strip().lower()
    if text not in ("true", "false", "1", "0", "yes", "no"):
        raise ValueError(f"{POOLER_PARAMETER}= in the database URL is true or false, not {text!r}")
    return url.difference_update_query([POOLER_PARAMETER]), text in ("true", "1", "yes")


def _psycopg_options(pooled: bool) -> dict[str, Any]:
    """Behind PgBouncer's transaction pooling each transaction may run on another server connection, and
    PgBouncer 1.18 (Debian 12's) does not carry prepared statements across them: psycopg then prepares
    none (by default it prepares a query run five times on one connection)."""
    return {"prepare_threshold": None} if pooled else {}


def own_connection(engine: Engine) -> tuple[str, dict[str, Any]]:
    """The libpq conninfo and psycopg options of a connection opened beside the engine's pool."""
    conninfo = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    return conninfo, _psycopg_options(bool(engine.get_execution_options().get(POOLER_PARAMETER)))


def _serialize_sqlite_writers(engine: Engine) -> None:
    """Every SQLite transaction takes the write lock up front (BEGIN IMMEDIATE).

    A deferred transaction that reads and then writes cannot wait for another writer: SQLite
    answers "database is locked" at once. Taking the lock at BEGIN turns that into a wait of at most
    the busy timeout, which is what two concurrent ticks on the embedded default need.
    """

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def unit_of_work(sessions: sessionmaker[Session]) -> Iterator[Session]:
    """A session that rolls back unless the block commits it.

    Closing (not rolling back first) leaves the objects read in it usable, detached, afterwards.
    """
    session = sessions()
    try:
        yield session
    finally:
        session.close()


BULK = 2000
"""Rows written at once past which PostgreSQL's statistics of the table are refreshed (`refresh_statistics`)."""


def refresh_statistics(session: Session, *tables: str) -> None:
    """ANALYZE these tables on PostgreSQL, in the session's transaction; nothing on SQLite.

    Day 1 writes a million invoices and charges into tables whose statistics still say they are nearly empty (the
    autovacuum daemon analyzes them minutes later): the planner then nests loops over what it believes is a handful
    of rows, and the day-1 planner's own next page, over rows it just wrote, slows down page by page. A sample of each
    table (30,000 rows, tens of milliseconds) puts the planner right at once.
    """
    if session.get_bind().dialect.name != "postgresql":
        return
    for table in tables:
        session.execute(text(f"ANALYZE {Base.metadata.tables[table].name}"))


def insert_ignoring_conflicts(
    executor: Session | Connection,
    model: type[Base],
    rows: Sequence[dict[str, Any]],
    *,
    index_elements: Sequence[str],
    index_where: TextClause | None = None,
) -> list[Any]:
    """INSERT ... ON CONFLICT DO NOTHING; returns the primary keys of the rows really inserted.

    The unique constraint decides between concurrent writers: the loser inserts nothing and goes on.
    """
    if not rows:
        return []
    connection = executor.connection() if isinstance(executor, Session) else executor
    dialect = connection.dialect.name
    if dialect == "postgresql":
        return _insert_unnest(connection, model, rows, index_elements, index_where)
    if dialect != "sqlite":
        raise NotImplementedError(f"no ON CONFLICT support for {dialect}")
    statement = (
        sqlite.insert(model)
        .on_conflict_do_nothing(index_elements=list(index_elements), index_where=index_where)
        .returning(inspect(model).primary_key[0])
    )
    return list(executor.scalars(statement, list(rows)))


@dataclass(frozen=True)
class UnnestInsert:
    """INSERT ... SELECT FROM unnest(one binary array a column) ON CONFLICT DO NOTHING RETURNING pk.

    A multi-row VALUES statement spends most of its time in the driver, handling every parameter of
    every row; one array a column leaves that work to the server (100,000 invoices: 23 s to 6 s).
    Columns named in `same` hold one value for the whole batch (taken from the first row) and travel
    once, not once a row. JSON columns travel as text and are cast back. `sql` runs on psycopg,
    sync or async.
    """

    sql: str
    names: tuple[str, ...]
    json_columns: frozenset[str]
    same: tuple[str, ...] = ()

    @classmethod
    def build(
        cls,
        model: type[Base],
        names: Sequence[str],
        index_elements: Sequence[str],
        index_where: TextClause | None = None,
        *,
        same: Sequence[str] = (),
    ) -> UnnestInsert:
        table = Base.metadata.tables[model.__tablename__]
        dialect = postgresql.dialect()  # type: ignore[no-untyped-call]
        json_columns = frozenset(name for name in (*names, *same) if isinstance(table.c[name].type, JSON))
        if json_columns & set(same):
            raise ValueError("a JSON column travels as an array")

        def kind(name: str) -> str:
            return "text" if name in json_columns else str(table.c[name].type.compile(dialect=dialect))

        selected = [f"CAST({name} AS json)" if name in json_columns else name for name in names]
        selected += [f"%b::{kind(name)}" for name in same]
        where = f" WHERE {index_where.text}" if index_where is not None else ""
        sql = (
            f"INSERT INTO {table.name} ({', '.join((*names, *same))}) SELECT {', '.join(selected)} FROM unnest("
            + ", ".join(f"%b::{kind(name)}[]" for name in names)
            + f") AS batch({', '.join(names)}) ON CONFLICT ({', '.join(index_elements)}){where} DO NOTHING"
            + f" RETURNING {inspect(model).primary_key[0].name}"
        )
        return cls(sql, tuple(names), json_columns, tuple(same))

    def columns(self, rows: Sequence[dict[str, Any]]) -> list[Any]:
        """The statement's parameters: the values the batch shares, then one list a column."""
        shared = [rows[0][name] for name in self.same]
        return shared + [
            [json.dumps(row[name]) if name in self.json_columns else row[name] for row in rows] for name in self.names
        ]


def _insert_unnest(
    connection: Connection,
    model: type[Base],
    rows: Sequence[dict[str, Any]],
    index_elements: Sequence[str],
    index_where: TextClause | None,
) -> list[Any]:
    """PostgreSQL: one statement per 10,000 rows (see UnnestInsert)."""
    statement = UnnestInsert.build(model, list(rows[0]), index_elements, index_where)
    driver = connection.connection.driver_connection
    assert driver is not None
    inserted: list[Any] = []
    for offset in range(0, len(rows), 10_000):
        with driver.cursor() as cursor:
            cursor.execute(statement.sql, statement.columns(rows[offset : offset + 10_000]))
            inserted += [row[0] for row in cursor.fetchall()]
    return inserted
