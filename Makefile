# CaseScope developer entry points. One target directory outside the work tree so
# builds survive between checkouts (override CARGO_TARGET_DIR to change it).
export CARGO_TARGET_DIR ?= $(HOME)/.cache/casescope-target
CARGO ?= cargo

.PHONY: web serve build test test-large test-deps lint fmt clean-data fuzz bench bench-ingest bench-detect bench-gateway bench-search bench-ioc bench-web chart-check chart-tools

## The web app (web/, TypeScript): npm ci from its lockfile, then the production build in
## web/dist, which the next cargo build embeds. Without Node.js it says so and the server
## runs without the app (its / says how to build it).
web:
	@if command -v npm >/dev/null 2>&1; then \
		cd web && npm ci --no-audit --no-fund --loglevel=error && npm run build; \
	else \
		echo "Node.js/npm not found: the web app is not built (install Node.js 20+, then make web)"; \
	fi

## Build and run every service in one process on embedded defaults (./casescope-data),
## with the web app at http://127.0.0.1:7700/ (sign in as admin; the first password is
## printed once in the log).
serve: web
	$(CARGO) run --release -p casescope-cli --bin casescope -- serve

build: web
	$(CARGO) build -p casescope-cli --bin casescope

## Install what the tests need (nats-server, PostgreSQL) if missing, then run every test.
test: test-deps web
	$(CARGO) build -p casescope-cli --bin casescope
	@if $(CARGO) nextest --version >/dev/null 2>&1; then \
		$(CARGO) nextest run --workspace --no-fail-fast; \
	else \
		echo "cargo-nextest not found; running cargo test"; \
		$(CARGO) test --workspace --no-fail-fast; \
	fi

## The issue-size scenarios in release mode: kill -9 midway through 1,000,000 events on
## the embedded store, and a replica SIGKILLed midway through 1,000,000 events with two
## ingest replicas on OpenSearch (figures in docs/ingestion.md).
LARGE_ENV = CASESCOPE_TEST_KILL_EVENTS=1000000 CASESCOPE_TEST_SCALE_OUT_EVENTS=1000000 \
	CASESCOPE_TEST_SCALE_OUT_LEASE_TTL_SECS=15
test-large: test-deps
	$(CARGO) build --release -p casescope-cli --bin casescope
	$(LARGE_ENV) $(CARGO) test --release -p casescope-e2e --test kill_ingest --test scale_out \
		-- --nocapture --test-threads 1 a_worker_killed a_second_ingest_replica

## Fuzzing (cargo fuzz, libFuzzer, nightly toolchain): each target for FUZZ_SECONDS,
## seeded with fuzz/seeds/<target> and, where present, the shared EVTX corpus and SigmaHQ
## rules; what it finds is kept in fuzz/corpus (grown inputs) and fuzz/artifacts
## (crashes, which stop the run). cargo-fuzz is installed from crates.io when missing.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?= evtx jsonl csv zip query sigma
FUZZ_TARGET_DIR ?= $(HOME)/.cache/casescope-fuzz-target
fuzz:
	@command -v cargo-fuzz >/dev/null 2>&1 || $(CARGO) install cargo-fuzz --locked
	@for target in $(FUZZ_TARGETS); do \
		mkdir -p fuzz/corpus/$$target fuzz/seeds/$$target; \
		seeds=fuzz/seeds/$$target; \
		case $$target in \
			evtx) [ -d $(SHARED_DATA)/evtx-attack-samples ] && seeds="$$seeds $(SHARED_DATA)/evtx-attack-samples";; \
			sigma) [ -d $(SHARED_DATA)/sigma/rules/windows ] && seeds="$$seeds $(SHARED_DATA)/sigma/rules/windows";; \
		esac; \
		echo "== fuzz $$target for $(FUZZ_SECONDS) s (seeds: $$seeds)"; \
		CARGO_TARGET_DIR=$(FUZZ_TARGET_DIR) cargo +nightly fuzz run $$target fuzz/corpus/$$target $$seeds -- \
			-max_total_time=$(FUZZ_SECONDS) -timeout=20 -rss_limit_mb=2048 -max_len=1048576 \
			-print_final_stats=1 || exit 1; \
	done

## Benchmarks: whole-process figures, medians, with the baseline measured in the same run.
bench: bench-ingest bench-detect bench-ioc bench-gateway bench-search bench-web

SHARED_DATA ?= $(abspath ../shared/data)
bench-ingest:
	$(CARGO) build --release -p casescope-cli -p casescope-bench
	$(CARGO_TARGET_DIR)/release/casescope-bench --binary $(CARGO_TARGET_DIR)/release/casescope \
		--corpus $(SHARED_DATA)/evtx-attack-samples --synthetic-events 1000000 \
		--ingest-rules $(SHARED_DATA)/sigma/rules/windows

## Detection: `casescope analyze` over the corpus with the three SigmaHQ Windows rule
## folders, and over a synthetic 1,000,000-event file (whole process, medians).
bench-detect:
	$(CARGO) build --release -p casescope-cli -p casescope-bench
	$(CARGO_TARGET_DIR)/release/casescope-bench --binary $(CARGO_TARGET_DIR)/release/casescope \
		--corpus $(SHARED_DATA)/evtx-attack-samples --synthetic-events 1000000 \
		--detect-rules $(SHARED_DATA)/sigma/rules/windows \
		--detect-rules $(SHARED_DATA)/sigma/rules-threat-hunting/windows \
		--detect-rules $(SHARED_DATA)/sigma/rules-emerging-threats

## IOC hunting: 1,000,000 synthetic events with 10, 10,000 and 100,000 IOCs of mixed
## types through `casescope analyze --iocs` (whole process, medians), with the
## parse-only floors of the same run.
bench-ioc:
	$(CARGO) build --release -p casescope-cli -p casescope-bench --bin casescope --bin casescope-bench
	$(CARGO_TARGET_DIR)/release/casescope-bench --binary $(CARGO_TARGET_DIR)/release/casescope \
		--synthetic-events 1000000 --ioc-list 10 --ioc-list 10000 --ioc-list 100000

## The gateway's checks on a cheap RPC (GetCase), against the bare service in the same run.
bench-gateway:
	$(CARGO) build --release -p casescope-bench --bin casescope-bench-gateway
	$(CARGO_TARGET_DIR)/release/casescope-bench-gateway

## The analyst's queries on a 10,000,000-event case (all-in-one, release): p50/p95 per
## query shape alone and from 8 clients, against the empty query in the same run; the
## export rate; the index size. BENCH_SEARCH_EVENTS=N for a smaller case.
BENCH_SEARCH_EVENTS ?= 10000000
bench-search:
	$(CARGO) build --release -p casescope-cli -p casescope-bench --bin casescope --bin casescope-bench-search
	$(CARGO_TARGET_DIR)/release/casescope-bench-search --binary $(CARGO_TARGET_DIR)/release/casescope \
		--events $(BENCH_SEARCH_EVENTS)

## The web app in Debian's headless Chromium: first-load JavaScript (gzip), a 1,000-row
## timeline page against its SearchTimeline call, and scrolling through a
## 100,000-event case (frame intervals, main-thread tasks over 50 ms from the trace).
BENCH_WEB_EVENTS ?= 100000
bench-web: web
	$(CARGO) build --release -p casescope-cli --bin casescope
	cd web && node bench/timeline.mjs --binary $(CARGO_TARGET_DIR)/release/casescope --events $(BENCH_WEB_EVENTS)

test-deps:
	bash scripts/install-test-deps.sh

## The Helm chart and k8s/ checked offline: helm lint --strict, rendering with the default
## and the every-option values, Kubernetes and CRD schema validation, alert rules
## unit-tested and dashboard queries parsed by promtool, planted errors that must fail.
chart-check: chart-tools
	bash scripts/chart-check.sh

chart-tools:
	bash scripts/install-chart-tools.sh

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

clean-data:
	rm -rf ./casescope-data
