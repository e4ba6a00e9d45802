"""Alembic migrations: an empty database reaches head, the check refuses an unmigrated one, models match."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import make_url

from billing.db import create_db_engine
from billing.models import Base
from regua.migrate import NotMigrated, current_revision, ensure_migrated, head_revision, upgrade
from tests.conftest import POSTGRES_ADMIN_URL, service_missing


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database with nothing in it: a new SQLite file, or a PostgreSQL database made for this test."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'empty.db'}"
        return
    name = f"regua_migrate_{uuid.uuid4().hex[:10]}"
    admin = create_engine(
        make_url(POSTGRES_ADMIN_URL).set(drivername="postgresql+psycopg"), isolation_level="AUTOCOMMIT"
    )
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as error:
        admin.dispose()
        service_missing("PostgreSQL", error)
    try:
        yield make_url(POSTGRES_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def test_upgrading_an_empty_database_reaches_the_head_revision(empty_database_url: str) -> None:
    upgrade(empty_database_url)
    engine = create_db_engine(empty_database_url)
    try:
        assert current_revision(engine) == head_revision()
        ensure_migrated(engine)
        tables = set(inspect(engine).get_table_names())
        assert set(Base.metadata.tables) <= tables
    finally:
        engine.dispose()


def test_upgrading_twice_changes_nothing(empty_database_url: str) -> None:
    upgrade(empty_database_url)
    upgrade(empty_database_url)
    engine = create_db_engine(empty_database_url)
    try:
        assert current_revision(engine) == head_revision()
    finally:
        engine.dispose()


def test_an_unmigrated_database_is_refused_with_a_message_naming_regua_migrate(
    empty_database_url: str,
) -> None:
    engine = create_db_engine(empty_database_url)
    try:
        with pytest.raises(NotMigrated, match="regua migrate"):
            ensure_migrated(engine)
    finally:
        engine.dispose()


def test_the_migrated_schema_and_the_models_agree(empty_database_url: str) -> None:
    upgrade(empty_database_url)
    engine = create_db_engine(empty_database_url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(
                connection, opts={"compare_type": True, "compare_server_default": True}
            )
            assert compare_metadata(context, Base.metadata) == []
    finally:
        engine.dispose()
