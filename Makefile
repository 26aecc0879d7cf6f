# overlayd: `make demo` sets up and runs the two-host overlay tutorial (`make demo-bridge`
# the single-host one),
# `make test` sets up and runs the whole test suite.
.PHONY: setup demo demo-bridge test unit integration lint bench clean

setup:
	@bash scripts/setup.sh

demo: setup
	@bash scripts/demo-overlay.sh

demo-bridge: setup
	@bash scripts/demo-bridge.sh

test: setup
	.venv/bin/ruff check .
	.venv/bin/python -m pytest -q -x --durations=15

unit: setup
	.venv/bin/python -m pytest -q tests/unit

integration: setup
	.venv/bin/python -m pytest -q tests/integration

lint: setup
	.venv/bin/ruff check .

bench: setup
	.venv/bin/python tests/bench/api_latency.py

clean:
	rm -rf .venv .pytest_cache .ruff_cache
