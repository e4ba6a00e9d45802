"""The model test's reach, printed at the end of the pytest run that played it."""

from __future__ import annotations

import pytest

from tests.model.reach import REPORTS


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if REPORTS:
        terminalreporter.section("model test reach")
        for report in REPORTS:
            terminalreporter.write_line(report)
