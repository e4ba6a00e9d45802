"""A pytest plugin for the mutant runs (`-p tests.mutation.guard`): the run proves what it tested, and names its killer.

Before any test, it checks that billing is imported from the copy the runner mutated (not from the
project the virtualenv points at) and that the mutated module, as imported, holds the mutant's text;
it writes that proof to a file, without which the runner counts the run as broken. Every test that
fails is written to another file: the runner reports the first as the killer, and runs it again
without the mutant to show that it passes there.
"""

from __future__ import annotations

import importlib
import json
import os
from pathlib import Path

import pytest

ROOT = "REGUA_MUTANT_ROOT"
MODULE = "REGUA_MUTANT_MODULE"
TEXT = "REGUA_MUTANT_TEXT"
PROOF = "REGUA_MUTANT_PROOF"
FAILURES = "REGUA_MUTANT_FAILURES"


def _inside(path: str | None, root: Path) -> bool:
    return path is not None and Path(path).resolve().is_relative_to(root)


def pytest_sessionstart(session: pytest.Session) -> None:
    root = Path(os.environ[ROOT]).resolve()
    billing = importlib.import_module("billing")
    if not _inside(billing.__file__, root):
        raise pytest.UsageError(f"billing is imported from {billing.__file__}, not from the mutated copy {root}")
    proof: dict[str, str | None] = {"billing": billing.__file__}
    if os.environ.get(MODULE):
        module = importlib.import_module(os.environ[MODULE])
        if not _inside(module.__file__, root):
            raise pytest.UsageError(f"{module.__name__} is imported from {module.__file__}, not from {root}")
        assert module.__file__ is not None
        if os.environ[TEXT] not in Path(module.__file__).read_text():
            raise pytest.UsageError(f"{module.__file__} does not hold the mutant's text")
        proof["module"] = module.__file__
    Path(os.environ[PROOF]).write_text(json.dumps(proof))


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.failed:
        with Path(os.environ[FAILURES]).open("a") as failures:
            failures.write(report.nodeid + "\n")
