"""A database URL naming PgBouncer (`?pgbouncer=true`): the flag never reaches libpq; psycopg prepares nothing."""

from __future__ import annotations

import pytest

from billing.db import create_db_engine, own_connection

BOUNCER = "postgresql://regua:secret@pgbouncer:6432/regua"


def test_a_url_flagged_for_pgbouncer_connects_without_the_flag_and_without_prepared_statements() -> None:
    engine = create_db_engine(f"{BOUNCER}?pgbouncer=true&connect_timeout=5")
    try:
        assert dict(engine.url.query) == {"connect_timeout": "5"}
        conninfo, options = own_connection(engine)
        assert conninfo == "postgresql://regua:secret@pgbouncer:6432/regua?connect_timeout=5"
        assert options == {"prepare_threshold": None}
    finally:
        engine.dispose()


@pytest.mark.parametrize("url", [BOUNCER, f"{BOUNCER}?pgbouncer=false", f"{BOUNCER}?pgbouncer=0"])
def test_a_url_straight_to_postgresql_keeps_psycopgs_prepared_statements(url: str) -> None:
    engine = create_db_engine(url)
    try:
        assert "pgbouncer" not in engine.url.query
        assert own_connection(engine)[1] == {}
    finally:
        engine.dispose()


def test_a_pgbouncer_flag_that_is_neither_true_nor_false_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="pgbouncer= in the database URL"):
        create_db_engine(f"{BOUNCER}?pgbouncer=maybe")
