"""Alembic migrations: an empty database reaches head, the check refuses an unmigrated one, models match."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import make_url

from billing.db import create_db_engine
from billing.models import Base
from regua.migrate import NotMigrated, alembic_config, current_revision, ensure_migrated, head_revision, upgrade
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


def test_the_charge_state_migration_moves_every_value_out_of_the_json_bag(empty_database_url: str) -> None:
    """A database populated at 0004, as the code before typed charge state wrote it, upgraded to head."""
    command.upgrade(alembic_config(empty_database_url), "0004")
    engine = create_db_engine(empty_database_url)
    at = "2026-12-01 03:05:00"
    details = {
        "chg_auto": {
            "source": "auto_debit",
            "invoice_id": "inv_1",
            "day": 3,
            "card_ref": "abcdef0123456789",
            "sent_at": "2026-12-03T03:05:00+00:00",
            "attempts": 2,
            "hard_decline": True,
            "decline_reason": "stolen_or_lost",
            "decline_message": "Transação não autorizada: cartão roubado.",
            "failed_at": "2026-12-03T03:06:00+00:00",
            "gateway_status": "PENDING",
        },
        "chg_pix": {
            "source": "manual",
            "pix_code": "00020101PIX",
            "pix_qr": "iVBORw0KGgo=",
            "pix_expires_at": "2027-12-01 23:59:59",
            "lease_until": "2026-12-01T03:09:00+00:00",
            "sent_at": "2026-12-01T03:05:00+00:00",
            "rechecked_at": "2026-12-01T04:10:00+00:00",
            "early_refunds": [
                {"refund_id": "pix:D1", "payment_id": "E1", "amount_cents": 500, "at": "2026-12-02T10:00:00+00:00"}
            ],
        },
        "chg_boleto": {
            "source": "checkout",
            "boleto_line": "46191110000000000000",
            "boleto_url": "https://gateway.example/b/1",
            "boleto_bar_code": "46199000",
            "canceled": "superseded_by_checkout",
            "superseded_by": "chg_pix",
            "gateway_cancel_owed": True,
            "gateway_cancel": "canceled",
            "gateway_canceled_at": "2026-12-01T05:00:00+00:00",
            "refund_claims": {"ref_1": {"until": "2026-12-02T11:00:00+00:00", "last": "REFUND_REQUESTED"}},
        },
    }
    status = {"chg_auto": "failed", "chg_pix": "pending", "chg_boleto": "confirmed"}
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO accounts (id, name, document, created_at, updated_at) "
                "VALUES ('acc', 'Padaria', '11222333000181', :at, :at)"
            ),
            {"at": at},
        )
        for charge_id, bag in details.items():
            connection.execute(
                text(
                    "INSERT INTO charges (id, account_id, product, method, amount_cents, installments, status, "
                    "idempotency_key, gateway, failure_code, details, created_at) VALUES (:id, 'acc', 'platform', "
                    "'card', 19990, 1, :status, :key, 'asaas', :failure, :details, :at)"
                ),
                {
                    "id": charge_id,
                    "status": status[charge_id],
                    "key": f"key:{charge_id}",
                    "failure": "stolen_or_lost" if charge_id == "chg_auto" else None,
                    "details": json.dumps(bag),
                    "at": at,
                },
            )
        connection.execute(
            text(
                "INSERT INTO payments (id, charge_id, account_id, amount_cents, method, status, gateway, "
                "gateway_payment_id, invoice_ids, paid_at) VALUES ('pay_1', 'chg_boleto', 'acc', 39980, 'boleto', "
                "'confirmed', 'asaas', 'gw_1', '[]', :at)"
            ),
            {"at": at},
        )
        connection.execute(
            text(
                "INSERT INTO refunds (id, payment_id, account_id, amount_cents, reason, status, created_at) "
                "VALUES ('ref_1', 'pay_1', 'acc', 19990, 'duplicate', 'owed', :at)"
            ),
            {"at": at},
        )
    engine.dispose()

    upgrade(empty_database_url)
    engine = create_db_engine(empty_database_url)
    try:
        with engine.connect() as connection:
            charges = {row.id: row for row in connection.execute(text("SELECT * FROM charges"))}
            attempts = list(connection.execute(text("SELECT * FROM charge_attempts ORDER BY charge_id, number")))
            refunds = {row.id: row for row in connection.execute(text("SELECT * FROM refunds"))}
            columns = {column["name"] for column in inspect(connection).get_columns("charges")}
    finally:
        engine.dispose()
    assert "details" not in columns
    auto, pix, boleto = charges["chg_auto"], charges["chg_pix"], charges["chg_boleto"]
    assert (auto.source, auto.regua_day, auto.card_ref, auto.gateway_status) == (
        "auto_debit",
        3,
        "abcdef0123456789",
        "PENDING",
    )
    assert str(auto.sent_at)[:16] == "2026-12-03 03:05"
    assert str(auto.failed_at)[:16] == "2026-12-03 03:06"
    assert [(a.charge_id, a.number, a.outcome) for a in attempts if a.charge_id == "chg_auto"] == [
        ("chg_auto", 1, "answered"),
        ("chg_auto", 2, "declined"),
    ]
    declined = attempts[1]
    assert (declined.decline_code, declined.decline_class, declined.card_ref) == (
        "stolen_or_lost",
        "hard",
        "abcdef0123456789",
    )
    assert declined.message.startswith("Transação não autorizada")
    assert (pix.source, pix.pix_code, pix.pix_qr, pix.pix_expires_at) == (
        "manual",
        "00020101PIX",
        "iVBORw0KGgo=",
        "2027-12-01 23:59:59",
    )
    assert str(pix.lease_until)[:16] == "2026-12-01 03:09"
    assert str(pix.rechecked_at)[:16] == "2026-12-01 04:10"
    early = next(refund for refund in refunds.values() if refund.gateway_refund_id == "pix:D1")
    assert (early.charge_id, early.gateway_payment_id, early.amount_cents, early.status, early.payment_id) == (
        "chg_pix",
        "E1",
        500,
        "done",
        None,
    )
    assert (boleto.source, boleto.boleto_line, boleto.boleto_url, boleto.boleto_bar_code) == (
        "checkout",
        "46191110000000000000",
        "https://gateway.example/b/1",
        "46199000",
    )
    assert (boleto.canceled_reason, boleto.superseded_by, bool(boleto.gateway_cancel_owed)) == (
        "superseded_by_checkout",
        "chg_pix",
        True,
    )
    assert boleto.gateway_cancel_result == "canceled"
    claimed = refunds["ref_1"]
    assert (claimed.charge_id, claimed.gateway_payment_id, claimed.gateway_note) == (
        "chg_boleto",
        "gw_1",
        "REFUND_REQUESTED",
    )
    assert str(claimed.claimed_until)[:16] == "2026-12-02 11:00"
