"""Log lines: JSON or text, the ids they concern, and never a secret or a CPF/CNPJ."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from regua.logs import configure_logging, request_id, secrets_of
from regua.settings import Settings

SETTINGS = Settings(
    env="test",
    api_token="api-token-1234",
    ops_token="ops-token-5678",
    secret_key="secret-key-9abc",
    asaas_api_key="$aact_key_def0",
    standard_webhook_secrets=("whsec_c2VjcmV0LXN0YW5kYXJk",),
    database_url="postgresql://regua:db-pass-42@db/regua",
)


@pytest.fixture
def captured() -> Iterator[tuple[io.StringIO, Settings]]:
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    stream = io.StringIO()
    yield stream, SETTINGS
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])


def lines(stream: io.StringIO) -> list[str]:
    return [line for line in stream.getvalue().splitlines() if line]


def test_a_json_line_names_the_ids_among_its_arguments_and_its_request(captured: tuple[io.StringIO, Settings]) -> None:
    stream, settings = captured
    configure_logging(Settings(**{**settings.__dict__, "log_format": "json"}), stream)
    token = request_id.set("req_0123456789abcdef")
    try:
        logging.getLogger("regua.workers").info("webhook event %s: %s", "evt_0a1b2c3d4e5f60718293", "settled")
    finally:
        request_id.reset(token)
    [line] = lines(stream)
    record = json.loads(line)
    assert record["message"] == "webhook event evt_0a1b2c3d4e5f60718293: settled"
    assert record["event_id"] == "evt_0a1b2c3d4e5f60718293"
    assert record["request_id"] == "req_0123456789abcdef"
    assert (record["level"], record["logger"]) == ("info", "regua.workers")


def test_extra_ids_are_kept_and_text_lines_append_them(captured: tuple[io.StringIO, Settings]) -> None:
    stream, settings = captured
    configure_logging(settings, stream)
    logging.getLogger("regua").warning("refused", extra={"account_id": "padaria-central"})
    [line] = lines(stream)
    assert line.endswith("regua: refused [account_id=padaria-central]")


@pytest.mark.parametrize("log_format", ["json", "text"])
def test_no_configured_secret_or_document_number_reaches_a_line(
    captured: tuple[io.StringIO, Settings], log_format: str
) -> None:
    stream, settings = captured
    configure_logging(Settings(**{**settings.__dict__, "log_format": log_format}), stream)
    log = logging.getLogger("regua")
    hidden = secrets_of(settings)
    assert "db-pass-42" in hidden
    assert "c2VjcmV0LXN0YW5kYXJk" in hidden
    for value in hidden:
        log.info("configured with %s", value)
    log.info("account of 11.222.333/0001-81, owner 123.456.789-09, raw 11222333000181 and 12345678909")
    try:
        raise ValueError(f"bad key {settings.asaas_api_key} for 11222333000181")
    except ValueError:
        log.exception("the gateway refused")
    text = stream.getvalue()
    for value in [*hidden, "11.222.333/0001-81", "123.456.789-09", "11222333000181", "12345678909"]:
        assert value not in text
    assert text.count("[redacted]") >= len(hidden) + 4
    assert "ValueError: bad key [redacted] for [redacted]" in text


def test_ids_and_amounts_are_not_mistaken_for_documents(captured: tuple[io.StringIO, Settings]) -> None:
    stream, settings = captured
    configure_logging(settings, stream)
    logging.getLogger("regua").info("charge chg_a12345678909b0011223344ff of 19990 cents at 1795992180")
    assert "charge chg_a12345678909b0011223344ff of 19990 cents at 1795992180" in stream.getvalue()


def test_each_request_gets_an_id_in_its_answer_or_keeps_a_sane_one_it_brought() -> None:
    import re

    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route
    from starlette.testclient import TestClient

    from regua.logs import RequestIdMiddleware

    async def echo(_request: Request) -> PlainTextResponse:
        return PlainTextResponse(request_id.get() or "")

    app = Starlette(routes=[Route("/", echo)])
    app.add_middleware(RequestIdMiddleware)
    client = TestClient(app)

    given = [client.get("/") for _ in range(600)]  # past one read of randomness (512 ids)
    ids = [answer.headers["x-request-id"] for answer in given]
    assert all(re.fullmatch(r"req_[0-9a-f]{16}", value) for value in ids)
    assert len(set(ids)) == len(ids)
    assert [answer.text for answer in given] == ids, "the logs and the answer name the same id"

    kept = client.get("/", headers={"X-Request-Id": "gw.retry-42_A"})
    assert (kept.headers["x-request-id"], kept.text) == ("gw.retry-42_A", "gw.retry-42_A")
    for insane in ("short", "x" * 65, "has space here", "ação-123456"):
        replaced = client.get("/", headers={"X-Request-Id": insane.encode()})
        assert re.fullmatch(r"req_[0-9a-f]{16}", replaced.headers["x-request-id"])
    twice = client.get("/", headers=[("X-Request-Id", "first-one-1"), ("X-Request-Id", "second-one-2")])
    assert twice.headers["x-request-id"] == "second-one-2", "the last one counts"
