# Two set-up commands a fresh machine needs: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck unit fuzz clean chromium

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/presence-bridge demo

lint: $(STAMP)
	$(BIN)/ruff check bridge emulators tests bench
	$(BIN)/ruff format --check bridge emulators tests bench
	$(BIN)/lint-imports --no-cache

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP) chromium
	$(BIN)/pytest -n auto

# The admin page's browser tests drive Debian's chromium (tests/web/admin/); as root it is installed when missing,
# otherwise those tests skip and say why.
chromium:
	@command -v chromium >/dev/null 2>&1 || [ "$$(id -u)" != 0 ] \
		|| (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium) \
		>/dev/null 2>&1 || echo "chromium could not be installed: the browser tests will be skipped" >&2

test: lint typecheck unit

# The fuzz tests (`-m fuzz`) with many fresh cases instead of `make test`'s few fixed ones: about half an hour.
# FUZZ_CASES per document / body fuzz test, FUZZ_API_CASES per API operation and mode (docs/hardening.md).
FUZZ_CASES ?= 5000
FUZZ_API_CASES ?= 300
fuzz: $(STAMP)
	FUZZ_CASES=$(FUZZ_CASES) FUZZ_API_CASES=$(FUZZ_API_CASES) $(BIN)/pytest -m fuzz -p no:cacheprovider \
		--timeout=0 --hypothesis-show-statistics -q

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
