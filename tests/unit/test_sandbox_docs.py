"""The README's sandbox section and docs/api.md list every card token and every control the simulator has."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from regua.sandbox.simulator.cards import SCRIPTED_DECLINES, TIMEOUT_TOKEN
from regua.sandbox.simulator.controls import CONTROLS

ROOT = Path(__file__).parent.parent.parent
DOCS = {"README.md": ROOT / "README.md", "docs/api.md": ROOT / "docs" / "api.md"}


@pytest.mark.parametrize("document", DOCS)
def test_every_scripted_card_token_is_documented(document: str) -> None:
    text = DOCS[document].read_text()
    for token in ("tok_ok", TIMEOUT_TOKEN, *SCRIPTED_DECLINES):
        assert f"| `{token}` |" in text, f"{document} does not list {token}"


@pytest.mark.parametrize("document", DOCS)
def test_every_simulator_control_is_documented(document: str) -> None:
    text = DOCS[document].read_text()
    rows = re.findall(r"^\| `(?:POST|GET) /sim/payments/\{id\}/([^`]+)`(.*?)\|", text, re.MULTILINE)
    listed = {first for first, _ in rows} | {name for _, more in rows for name in re.findall(r"`([a-z-]+)`", more)}
    missing = (set(CONTROLS) | {"pay-again"}) - listed
    assert not missing, f"{document} does not list the controls {sorted(missing)}"
    paths = ("/sim/state", "/sim/outages", "/sim/throttle", "/sim/webhooks/resume", "/sim/clock-tick", "/sim/reset")
    for path in (*paths, "/v3/webhooks"):
        assert path in text, f"{document} does not mention {path}"
