"""The mutant runner itself: a mutant that moved is named, never skipped; a run that did not test the mutant is
no kill; the invariants of `regua check` each get their mutant from the check's own source."""

from __future__ import annotations

import ast
import re
import shutil
import textwrap
from pathlib import Path

import pytest

from tests.mutation import guard
from tests.mutation.mutants import RULES, Mutant, all_mutants, invariant_mutants
from tests.mutation.run import PROJECT, out_of_date, pytest_run

CHECK_SOURCE = """\
INVARIANTS: dict[str, Invariant] = {
    "invoice_twice_for_a_month": invoices.overlapping_invoices,
    "email_sent_twice": mails.mails_sent_twice,
}
"""


def a_project(root: Path, rule: str) -> Path:
    """A project of one billing module and one test that fails unless the rule says 6, with the real guard."""
    (root / "billing").mkdir(parents=True)
    (root / "billing" / "__init__.py").write_text("")
    (root / "billing" / "rule.py").write_text(rule)
    (root / "tests" / "mutation").mkdir(parents=True)
    (root / "tests" / "__init__.py").write_text("")
    (root / "tests" / "mutation" / "__init__.py").write_text("")
    shutil.copy(Path(guard.__file__), root / "tests" / "mutation" / "guard.py")
    (root / "tests" / "test_rule.py").write_text(
        textwrap.dedent("""\
            from billing.rule import TOLERANCE_DAYS


            def test_the_tolerance_is_six_days() -> None:
                assert TOLERANCE_DAYS == 6
        """)
    )
    return root


def test_a_mutant_whose_text_is_gone_or_found_twice_is_named_with_its_file(tmp_path: Path) -> None:
    (tmp_path / "billing").mkdir()
    (tmp_path / "billing" / "rule.py").write_text("A = 6\nB = 6\n")
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_rule.py").write_text("")
    mutants = [
        Mutant("moved", "billing/rule.py", "C = 6\n", "C = 7\n", ("tests/test_rule.py",)),
        Mutant("twice", "billing/rule.py", " = 6\n", " = 7\n", ("tests/test_rule.py",)),
        Mutant("gone", "billing/other.py", "A = 6\n", "A = 7\n", ("tests/test_rule.py",)),
        Mutant("untested", "billing/rule.py", "A = 6\n", "A = 7\n", ("tests/test_gone*.py",)),
        Mutant("in place", "billing/rule.py", "A = 6\n", "A = 7\n", ("tests/test_rule.py", "tests/test_r*.py")),
    ]
    problems = out_of_date(tmp_path, mutants)
    assert [problem.split(":")[0] for problem in problems] == ["moved", "twice", "gone", "untested"]
    assert "found 0 times in billing/rule.py" in problems[0]
    assert "found 2 times in billing/rule.py" in problems[1]
    assert "found nowhere: the file is gone" in problems[2]
    assert "no test file tests/test_gone*.py" in problems[3]


def test_every_mutant_of_the_project_is_found_exactly_once_and_still_compiles() -> None:
    mutants = all_mutants(PROJECT)
    assert out_of_date(PROJECT, mutants) == []
    for mutant in mutants:
        source = (PROJECT / mutant.path).read_text().replace(mutant.original, mutant.replacement, 1)
        ast.parse(source, mutant.path)
    assert len({mutant.name for mutant in mutants}) == len(mutants)


def test_each_registered_invariant_gets_a_mutant_that_switches_it_off(tmp_path: Path) -> None:
    (tmp_path / "billing" / "check").mkdir(parents=True)
    (tmp_path / "billing" / "check" / "__init__.py").write_text(CHECK_SOURCE)
    mutants = invariant_mutants(tmp_path)
    assert [(m.name, m.original, m.replacement) for m in mutants] == [
        (
            "invariant invoice_twice_for_a_month switched off",
            '"invoice_twice_for_a_month": invoices.overlapping_invoices',
            '"invoice_twice_for_a_month": lambda *_: iter(())',
        ),
        (
            "invariant email_sent_twice switched off",
            '"email_sent_twice": mails.mails_sent_twice',
            '"email_sent_twice": lambda *_: iter(())',
        ),
    ]
    assert {m.module for m in mutants} == {"billing.check"}


def test_invariants_registered_in_another_shape_stop_the_runner(tmp_path: Path) -> None:
    (tmp_path / "billing").mkdir()
    (tmp_path / "billing" / "check.py").write_text("INVARIANTS = [overlapping_invoices, mails_sent_twice]\n")
    with pytest.raises(ValueError, match=re.escape("no `INVARIANTS = {name: invariant, ...}`")):
        invariant_mutants(tmp_path)


def test_the_rule_mutants_are_named_once_each() -> None:
    assert len({mutant.name for mutant in RULES}) == len(RULES)


def test_a_run_of_the_mutated_copy_names_the_test_that_failed(tmp_path: Path) -> None:
    project = a_project(tmp_path / "copy", "TOLERANCE_DAYS = 7\n")
    env = {guard.MODULE: "billing.rule", guard.TEXT: "TOLERANCE_DAYS = 7\n"}
    run = pytest_run(project, tmp_path / "run", ["tests/test_rule.py"], ["-x"], env)
    assert (run.code, run.failed) == (1, ["tests/test_rule.py::test_the_tolerance_is_six_days"])


def test_a_run_whose_module_does_not_hold_the_mutant_is_no_kill(tmp_path: Path) -> None:
    project = a_project(tmp_path / "copy", "TOLERANCE_DAYS = 8\n")
    env = {guard.MODULE: "billing.rule", guard.TEXT: "TOLERANCE_DAYS = 7\n"}
    run = pytest_run(project, tmp_path / "run", ["tests/test_rule.py"], ["-x"], env)
    assert (run.code, run.failed) == (-2, [])
    assert "does not hold the mutant's text" in run.tail
