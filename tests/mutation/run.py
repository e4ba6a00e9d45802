"""`make mutants`: apply each mutant to a copy of the project, one at a time, and run the tests that concern it.

    .venv/bin/python -m tests.mutation.run [--jobs 2] [--only TEXT ...] [--from-commit REV] [--keep]

The project is copied once to a temporary directory (the working tree, or a commit's tree with
--from-commit), then once more per job; the working tree itself is never written to. Before anything
runs, every mutant's text must be found exactly once in its file, or the run stops naming each one
that is not. Each mutant is written into its job's copy, the copy's fast SQLite tests that concern it
run there (`-x`: the first failure kills it), and the file is put back. Each run proves that billing
and the mutated module were imported from the copy and hold the mutant (tests/mutation/guard.py);
a run without that proof is broken, not a kill. At the end, the tests that killed mutants run
together on the unmutated copy: a killer that fails there too kills nothing.

Prints one line per mutant (killed or survived, by which test, in how many seconds) and exits 1 when
any mutant survived, any run broke or any killer failed without its mutant.
"""

from __future__ import annotations

import argparse
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from tests.mutation import guard
from tests.mutation.mutants import Mutant, all_mutants

PROJECT = Path(__file__).resolve().parents[2]
LEFT_OUT = {".git", ".venv", ".hypothesis", ".pytest_cache", ".mypy_cache", ".ruff_cache", "regua.egg-info"}
FAST = ("-k", "not postgresql", "-m", "not postgres and not redis and not e2e and not browser and not faults")
RUN_SECONDS = 600
KILLED, SURVIVED, BROKEN, UNPROVEN = "killed", "SURVIVED", "BROKEN", "KILLER FAILS UNMUTATED"


@dataclass
class Outcome:
    mutant: Mutant
    result: str
    seconds: float
    cpu: float
    killer: str = ""
    detail: str = ""


class MutantsOutOfDate(Exception):
    """Some mutant's text is not in its file exactly once: the code moved and the mutant must follow it."""


def snapshot(into: Path, from_commit: str | None) -> Path:
    """The project as the tests need it, without the virtualenv, git's data or any cached bytecode."""
    root = into / "project"
    if from_commit is None:
        shutil.copytree(
            PROJECT,
            root,
            ignore=lambda folder, names: [
                name
                for name in names
                if name == "__pycache__" or name.endswith(".pyc") or (Path(folder) == PROJECT and name in LEFT_OUT)
            ],
        )
        return root
    root.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(PROJECT), "archive", "--format=tar", from_commit], check=True, capture_output=True
    )
    subprocess.run(["tar", "-x", "-C", str(root)], input=archive.stdout, check=True)
    # The runner's own files as they are here: the guard it loads into each run must be the one it knows.
    shutil.rmtree(root / "tests" / "mutation", ignore_errors=True)
    shutil.copytree(Path(__file__).parent, root / "tests" / "mutation", ignore=shutil.ignore_patterns("__pycache__"))
    return root


def selection(root: Path, mutant: Mutant) -> list[str]:
    """The mutant's tests as pytest takes them: each pattern expanded to its files, in order."""
    tests: list[str] = []
    for entry in mutant.tests:
        found = [str(path.relative_to(root)) for path in sorted(root.glob(entry))] if "*" in entry else [entry]
        tests += [test for test in found if test not in tests]
    return tests


def out_of_date(root: Path, mutants: Sequence[Mutant]) -> list[str]:
    problems = []
    for mutant in mutants:
        path = root / mutant.path
        found = path.read_text().count(mutant.original) if path.is_file() else 0
        if found != 1:
            where = f"{found} times" if path.is_file() else "nowhere: the file is gone"
            problems.append(f"{mutant.name}: its text is found {where} in {mutant.path}:\n    {mutant.original!r}")
        for entry in mutant.tests:
            if not (any(root.glob(entry)) if "*" in entry else (root / entry.split("::")[0]).is_file()):
                problems.append(f"{mutant.name}: no test file {entry}")
    return problems


@dataclass(frozen=True)
class Run:
    code: int
    """pytest's exit code; -1 when it did not end in time, -2 when it left no proof of what it tested."""
    failed: list[str]
    tail: str
    cpu: float
    """CPU seconds of the run (user and system), a measure that other work on the machine does not inflate."""


def pytest_run(copy: Path, scratch: Path, tests: Sequence[str], options: Sequence[str], env: dict[str, str]) -> Run:
    """One pytest in `copy`, with the guard."""
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    proof, failures, log = scratch / "proof.json", scratch / "failures.txt", scratch / "output.txt"
    command = [
        sys.executable,
        "-m",
        "pytest",
        *tests,
        *options,
        "-q",
        "-p",
        "no:cacheprovider",
        "-p",
        "tests.mutation.guard",
        "--basetemp",
        str(scratch / "tmp"),
    ]
    environment = {
        **os.environ,
        **env,
        "PYTHONPATH": str(copy),
        "PYTHONDONTWRITEBYTECODE": "1",
        guard.ROOT: str(copy),
        guard.PROOF: str(proof),
        guard.FAILURES: str(failures),
    }
    with log.open("w") as output:
        process = subprocess.Popen(command, cwd=copy, env=environment, stdout=output, stderr=subprocess.STDOUT)
        timer = threading.Timer(RUN_SECONDS, process.kill)
        timer.start()
        try:
            # wait4 rather than Popen.wait: the CPU time of this run alone, whatever runs beside it.
            _, status, usage = os.wait4(process.pid, 0)
        finally:
            timer.cancel()
    process.returncode = code = os.waitstatus_to_exitcode(status)
    cpu = usage.ru_utime + usage.ru_stime
    tail = "\n".join(log.read_text(errors="replace").strip().splitlines()[-15:])
    if code == -signal.SIGKILL:
        return Run(-1, [], f"no answer in {RUN_SECONDS} s", cpu)
    if not proof.is_file():
        return Run(-2, [], tail or "no proof that the copy was tested", cpu)
    failed = failures.read_text().splitlines() if failures.is_file() else []
    return Run(code, failed, tail, cpu)


def try_mutant(mutant: Mutant, copy: Path, scratch: Path, pristine: str) -> Outcome:
    tests = selection(copy, mutant)
    target = copy / mutant.path
    target.write_text(pristine.replace(mutant.original, mutant.replacement, 1))
    started = time.monotonic()
    try:
        run = pytest_run(
            copy,
            scratch,
            tests,
            ["-x", *FAST],
            {guard.MODULE: mutant.module, guard.TEXT: mutant.replacement},
        )
    finally:
        target.write_text(pristine)
    seconds = time.monotonic() - started
    if run.code == 1 and run.failed:
        return Outcome(mutant, KILLED, seconds, run.cpu, killer=run.failed[0])
    if run.code == 0:
        return Outcome(mutant, SURVIVED, seconds, run.cpu, detail="every test of its selection passed")
    return Outcome(mutant, BROKEN, seconds, run.cpu, detail=f"pytest exited {run.code}:\n{run.tail}")


def confirm_killers(outcomes: list[Outcome], copy: Path, scratch: Path) -> float:
    """Run every killer on the unmutated copy: one that fails there too proves nothing."""
    killers = sorted({outcome.killer for outcome in outcomes if outcome.result == KILLED})
    if not killers:
        return 0.0
    started = time.monotonic()
    run = pytest_run(copy, scratch, killers, [], {})
    failed = run.failed if run.code in (0, 1) else killers
    for outcome in outcomes:
        if outcome.result == KILLED and outcome.killer in failed:
            outcome.result, outcome.detail = UNPROVEN, run.tail
    return time.monotonic() - started


def table(outcomes: Sequence[Outcome]) -> str:
    width = max(len(outcome.mutant.name) for outcome in outcomes)
    lines = [f"{'mutant':<{width}}  {'result':<8}  {'seconds':>7}  {'cpu':>5}  killed by"]
    for outcome in outcomes:
        result = outcome.result if outcome.result == KILLED else outcome.result.split()[0]
        lines.append(
            f"{outcome.mutant.name:<{width}}  {result:<8}  {outcome.seconds:7.1f}  {outcome.cpu:5.1f}  {outcome.killer}"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.mutation.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=2, help="mutants tried at the same time (default 2)")
    parser.add_argument("--only", nargs="+", default=[], help="only the mutants whose name holds one of these")
    parser.add_argument("--from-commit", help="test this commit's tree instead of the working tree")
    parser.add_argument("--keep", action="store_true", help="keep the copies and the runs' output")
    args = parser.parse_args(argv)

    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="regua-mutants-"))
    try:
        root = snapshot(workdir, args.from_commit)
        mutants = [m for m in all_mutants(root) if not args.only or any(text in m.name for text in args.only)]
        problems = out_of_date(root, mutants)
        if problems:
            raise MutantsOutOfDate("\n".join(problems))
        pristine = {m.path: (root / m.path).read_text() for m in mutants}
        jobs = max(1, min(args.jobs, len(mutants)))
        copies: queue.Queue[int] = queue.Queue()
        for job in range(jobs):
            if job:
                shutil.copytree(root, workdir / f"project-{job}")
            copies.put(job)

        def one(mutant: Mutant) -> Outcome:
            job = copies.get()
            copy = root if job == 0 else workdir / f"project-{job}"
            try:
                outcome = try_mutant(mutant, copy, workdir / f"run-{job}", pristine[mutant.path])
            finally:
                copies.put(job)
            print(f"{outcome.result:<8} {outcome.seconds:5.1f} s  {mutant.name}", flush=True)
            return outcome

        print(f"{len(mutants)} mutants, {jobs} at a time", flush=True)
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            outcomes = list(pool.map(one, mutants))
        confirming = confirm_killers(outcomes, root, workdir / "run-unmutated")
    except (MutantsOutOfDate, ValueError) as error:
        print(f"mutants out of date with the code (update tests/mutation/mutants.py):\n{error}", file=sys.stderr)
        return 1
    finally:
        if args.keep:
            print(f"copies and runs kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    print()
    print(table(outcomes))
    cpu = sum(outcome.cpu for outcome in outcomes)
    print(
        f"\nkillers run again without their mutants in {confirming:.1f} s;"
        f" {time.monotonic() - started:.1f} s in all, the mutants' runs {cpu:.0f} CPU seconds"
    )
    bad = [outcome for outcome in outcomes if outcome.result != KILLED]
    for outcome in bad:
        print(f"\n{outcome.result}: {outcome.mutant.name} ({outcome.mutant.path})\n{outcome.detail}", file=sys.stderr)
    if bad:
        print(f"\n{len(bad)} of {len(outcomes)} mutants not killed", file=sys.stderr)
        return 1
    print(f"all {len(outcomes)} mutants killed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
