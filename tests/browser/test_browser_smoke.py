"""The browser set-up itself: Debian's Chromium, driven by Playwright, reads a page regua serves."""

from __future__ import annotations

import json
from typing import Any

import pytest

from regua.app import create_app
from regua.runtime import Runtime
from tests.browser.conftest import LiveServer
from webhooks.base import Provider
from workers.actors import Jobs

pytestmark = pytest.mark.browser


def test_chromium_reads_the_health_answer_of_a_live_regua(
    runtime: Runtime, providers: dict[str, Provider], jobs: Jobs, page: Any
) -> None:
    with LiveServer(create_app(runtime, providers, jobs.enqueue_events)) as server:
        page.goto(f"{server.url}/healthz")
        assert json.loads(page.inner_text("body")) == {"status": "ok"}
