"""Alembic's entry point: runs migrations on the connection or URL that `regua migrate` hands it."""

from __future__ import annotations

from typing import Any

from alembic import context

from billing.db import create_db_engine
from billing.models import Base, UTCDateTime

config = context.config
connection = config.attributes.get("connection")


def render_item(type_: str, obj: Any, _autogen_context: Any) -> str | bool:
    """Migrations are frozen in plain SQLAlchemy types, never in the models' own decorators."""
    if type_ == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


OPTIONS: dict[str, Any] = {
    "target_metadata": Base.metadata,
    "render_as_batch": True,
    "render_item": render_item,
}


def run() -> None:
    if connection is not None:
        context.configure(connection=connection, **OPTIONS)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = create_db_engine(config.get_main_option("sqlalchemy.url") or "")
    with engine.connect() as conn:
        context.configure(connection=conn, **OPTIONS)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


run()
