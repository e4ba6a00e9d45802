# The two commands of the README: `make dev` runs the service, `make test` runs every check.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: install dev test lint bench screenshots fuzz soak mutants

$(BIN)/regua: requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --requirement requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps --editable .
	touch $(BIN)/regua

install: $(BIN)/regua

dev: PORT ?= 8000
dev: install
	$(BIN)/regua dev --port $(PORT)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache

test: lint
	$(BIN)/pytest -n 2 --dist loadfile
	$(BIN)/python -m tests.mutation.run

# Hand-made mutants of the rules (tests/mutation), each applied to a copy of the project: the fast SQLite tests
# must kill every one.
mutants: install
	$(BIN)/python -m tests.mutation.run

# Each ops page at 1280 px, and the payment page's plan choice at 375 px, into docs/screenshots/, from the
# browser tests that check their accessibility.
screenshots: install
	REGUA_WRITE_SCREENSHOTS=1 $(BIN)/pytest tests/browser/test_ops_browser.py -q -k "accessibility and sqlite"
	REGUA_WRITE_SCREENSHOTS=1 $(BIN)/pytest tests/browser/test_portal_plans_browser.py -q
	REGUA_WRITE_SCREENSHOTS=1 $(BIN)/pytest tests/browser/test_email_browser.py tests/browser/test_portal_375_browser.py -q -k "every_email or declined_on_day_1"

# The model-based test at length: many more random months, a new seed each run (SQLite).
fuzz: install
	REGUA_MACHINE_PROFILE=fuzz $(BIN)/pytest tests/model -k "random_months and sqlite" -p no:logging --timeout 0

# Ten minutes of payments at 20 a second against serve and two worker processes: the resident memory
# of each, sampled every 30 s (bench/e2e.py; PostgreSQL and Redis as for the tests).
soak: install
	$(BIN)/python -m bench.e2e --accounts 12500 --seconds 600 --rate 20 --sample 30
