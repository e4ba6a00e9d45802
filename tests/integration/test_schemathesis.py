"""Schemathesis against the app in process on SQLite: generated requests for every documented operation.

No answer may be a server error, and every answer must be one the document lists, its body matching the
schema. The number of examples is bounded (REGUA_SCHEMATHESIS_EXAMPLES, default 50 per operation) so
the run takes a minute or two.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import checks
from starlette.testclient import TestClient

from regua.cli import tick_once
from regua.docs import openapi_document
from regua.runtime import Runtime
from tests.integration.asaas_fake import FakeAsaas, fake_asaas
from tests.integration.conftest import AUTH, Api
from tests.openapi_contract import assert_matches_openapi

EXAMPLES = int(os.environ.get("REGUA_SCHEMATHESIS_EXAMPLES", "50"))
# The documented example account, so that the examples phase reads and changes one that exists.
ACCOUNT = "padaria-central"
# /ops, /metrics and /portal are served by parts of the app that take their own credentials and answer HTML.
# The checks on the answer itself. Left out: those that send probes of their own (they would bypass the
# running app), and positive_data_acceptance, because the rules are stricter than a schema can say (a CPF's
# check digits, a card_token only for cards): a schema-valid body may rightly get 422.
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_headers_conformance,
    checks.response_schema_conformance,
    checks.negative_data_rejection,
]
schema = schemathesis.openapi.from_dict(openapi_document()).exclude(tag="ops").exclude(tag="portal")


@pytest.fixture
def asaas() -> Iterator[FakeAsaas]:
    with fake_asaas() as fake:
        yield fake


@pytest.fixture
def seeded(api: Api, runtime: Runtime, asaas: FakeAsaas) -> TestClient:
    """An account with a boleto platform and a PIX mentorship, their first invoices issued."""
    api.put_account(ACCOUNT)
    api.subscribe(ACCOUNT, "platform", payment_method="boleto")
    api.subscribe(ACCOUNT, "mentorship", payment_method="pix")
    tick_once(runtime)
    return api.client


def send(client: TestClient, case: Any) -> Any:
    request = case.as_transport_kwargs(base_url="http://testserver", headers=AUTH)
    request.pop("cookies", None)
    if "data" in request:
        request["content"] = request.pop("data")
    return client.request(**request)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_generated_requests_get_documented_answers_and_never_a_server_error(case: Any, seeded: TestClient) -> None:
    response = send(seeded, case)
    assert response.status_code < 500 or response.status_code == 503, response.text
    assert_matches_openapi(response)
    case.validate_response(response, headers=AUTH, checks=CHECKS)
