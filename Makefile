# CaseScope developer entry points. One target directory outside the work tree so
# builds survive between checkouts (override CARGO_TARGET_DIR to change it).
export CARGO_TARGET_DIR ?= $(HOME)/.cache/casescope-target
CARGO ?= cargo

.PHONY: serve build test test-deps lint fmt clean-data

## Build and run every service in one process on embedded defaults (./casescope-data).
serve:
	$(CARGO) run --release -p casescope-cli --bin casescope -- serve

build:
	$(CARGO) build -p casescope-cli --bin casescope

## Install what the tests need (nats-server, PostgreSQL) if missing, then run every test.
test: test-deps
	$(CARGO) build -p casescope-cli --bin casescope
	@if $(CARGO) nextest --version >/dev/null 2>&1; then \
		$(CARGO) nextest run --workspace --no-fail-fast; \
	else \
		echo "cargo-nextest not found; running cargo test"; \
		$(CARGO) test --workspace --no-fail-fast; \
	fi

test-deps:
	bash scripts/install-test-deps.sh

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

clean-data:
	rm -rf ./casescope-data
