"""/metrics on a fresh app exports every label set regua can write, at 0, from the first scrape
(Prometheus's "avoid missing metrics"): a rate or an alert on an outcome sees a series before it happens."""

from __future__ import annotations

from dataclasses import replace
from itertools import product

import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from regua.app import create_app
from regua.runtime import Runtime
from regua.settings import Settings
from tests.integration.ops_helpers import OPS_TOKEN, basic
from webhooks.base import Provider
from workers.actors import Jobs

EMAIL_KINDS = (
    "invoice_issued", "payment_confirmed", "payment_failed", "payment_reminder", "block_warning", "account_blocked",
    "account_unblocked", "verification_pending", "trial_ended", "refund_issued", "subscription_changed",
    "subscription_canceled",
)  # fmt: skip
EMAIL_OUTCOMES = ("pending", "sent", "failed", "no_contact", "obsolete")
PROVIDERS = ("standard", "asaas", "pix")
EVENT_OUTCOMES = ("received", "processed", "ignored", "unmatched", "failed")
CHARGE_METHODS = ("card", "boleto", "pix")
CHARGE_OUTCOMES = ("pending", "confirmed", "failed", "canceled", "refunded")
QUEUES = ("webhooks", "charges", "email")


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return replace(settings, ops_token=OPS_TOKEN)


def first_scrape(
    runtime: Runtime, providers: dict[str, Provider], jobs: Jobs
) -> dict[str, dict[tuple[str, ...], float]]:
    """Each sample of the first scrape by name, keyed by its label values in label-name order."""
    app = create_app(runtime, providers, jobs.enqueue_events, broker=jobs.broker)
    with TestClient(app) as client:
        response = client.get("/metrics", headers=basic())
    assert response.status_code == 200, response.text
    samples: dict[str, dict[tuple[str, ...], float]] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            labels = tuple(value for _name, value in sorted(sample.labels.items()))
            samples.setdefault(sample.name, {})[labels] = sample.value
    return samples


def zeros(*labels: tuple[str, ...]) -> dict[tuple[str, ...], float]:
    return dict.fromkeys(product(*labels), 0.0)


def test_a_fresh_app_exports_every_known_label_set_at_zero(
    runtime: Runtime, providers: dict[str, Provider], jobs: Jobs
) -> None:
    samples = first_scrape(runtime, providers, jobs)

    # label values sorted by label name: kind before outcome, method before outcome, outcome before provider
    assert samples["regua_emails_total"] == zeros(EMAIL_KINDS, EMAIL_OUTCOMES)
    assert samples["regua_webhooks_total"] == {(o, p): 0.0 for p, o in product(PROVIDERS, EVENT_OUTCOMES)}
    assert samples["regua_charges_total"] == zeros(CHARGE_METHODS, CHARGE_OUTCOMES)
    assert samples["regua_blocked_accounts"] == zeros(("platform", "mentorship"))
    assert samples["regua_jobs_total"] == zeros(("processed", "failed"))
    assert samples["regua_queue_messages"] == zeros(QUEUES, ("delayed", "dead", "in_flight", "waiting"))
