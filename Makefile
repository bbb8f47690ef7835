# make test: lint, type check, the test suite on the embedded PostgreSQL 18, the
# database-level tests once more on the machine's PostgreSQL (127.0.0.1:5432) when it
# answers, and every benchmark in --quick mode. Needs nothing but Python and pip.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3
EXTERNAL_PG_URL ?= postgresql://postgres@127.0.0.1:5432/postgres

.PHONY: test system-deps lint typecheck pytest pytest-external-pg bench-quick demo clean

test: system-deps lint typecheck pytest pytest-external-pg bench-quick

# Debian packages some tests drive: systemd-analyze (unit files) and chromium (the
# status page's browser test, driven by Playwright with executable_path). Installed
# only when missing, so a machine that has them needs no network for this step.
system-deps:
	@missing=""; \
	command -v systemd-analyze >/dev/null || missing="$$missing systemd"; \
	test -x /usr/bin/chromium || missing="$$missing chromium"; \
	if [ -n "$$missing" ]; then \
		echo "== installing Debian packages:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(VENV)/.installed
	$(VENV)/bin/mypy

# pytest exits 5 when it collects nothing (with xdist too); make treats that as the
# failure it is. Two workers, an idle one taking tests from the other's queue: on one
# slow hour the suite took 15 min serial, 9 min 48 s with a file per worker, 8 min 27 s so.
pytest: $(VENV)/.installed
	$(PY) -m pytest -q -n 2 --dist worksteal --durations=25

pytest-external-pg: $(VENV)/.installed
	@if $(PY) -c "import socket; socket.create_connection(('127.0.0.1', 5432), 1)" 2>/dev/null; then \
		echo "== database-level tests against $(EXTERNAL_PG_URL)"; \
		SCSYNC_TEST_PG_URL=$(EXTERNAL_PG_URL) $(PY) -m pytest -q -n 2 --dist worksteal -m dblevel; \
	else \
		echo "== no PostgreSQL at 127.0.0.1:5432: database-level tests ran on the embedded server only"; \
	fi

bench-quick: $(VENV)/.installed
	@set -e; for b in bench/*.py; do \
		case "$$b" in */_*) continue;; esac; \
		echo "== $$b --quick"; $(PY) $$b --quick; \
	done

# make demo: a cloud and two clinics on this machine (embedded PostgreSQL, moto S3, the
# APIs, lockd, the replicators as real processes), a narrated and checked scenario, then
# the status pages until Ctrl-C. DEMO_ARGS=--once exits after the checks.
demo: $(VENV)/.installed
	$(VENV)/bin/scsync demo $(DEMO_ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
