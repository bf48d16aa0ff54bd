# Every target sets up what it needs; on a fresh machine `make dev` and `make test`
# are the only two commands required.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
CONSTRAINTS := requirements/constraints.txt
STAMP := $(VENV)/.installed
PROTO_FILES := $(wildcard proto/tether/v1/*.proto)
GEN_DIR := sdk_python/tether/v1
PIP_FLAGS := --quiet --disable-pip-version-check

# The npm workspace (sdk_typescript and the TypeScript apps), installed from the lockfile.
NODE_STAMP := node_modules/.installed
TS_SDK := sdk_typescript
TS_GEN_DIR := $(TS_SDK)/src/gen
TS_BUILT := $(TS_SDK)/dist/.built
TS_SOURCES := $(shell find $(TS_SDK)/src -name '*.ts' 2>/dev/null)
# ts-proto: plain interfaces with encode/decode, and typed @grpc/grpc-js clients.
TS_PROTO_OPTS := env=node,outputServices=grpc-js,esModuleInterop=true,importSuffix=.js,useOptionals=messages,oneof=unions-value,forceLong=number,outputJsonMethods=false,unrecognizedEnum=false
TS_PROTOC = $(PY) -m grpc_tools.protoc -I proto --plugin=protoc-gen-ts_proto=node_modules/.bin/protoc-gen-ts_proto --ts_proto_opt=$(TS_PROTO_OPTS)

# The browser tests drive Debian's Chromium (Playwright never downloads a browser here).
CHROMIUM := /usr/bin/chromium

.PHONY: dev test test-fast lint proto proto-check bench chaos fuzz screenshots clean

$(NODE_STAMP): package.json package-lock.json $(wildcard */package.json */*/package.json */*/*/package.json)
	npm ci --no-audit --no-fund --loglevel=error
	touch $(NODE_STAMP)

$(TS_BUILT): $(NODE_STAMP) $(TS_SOURCES) $(TS_SDK)/tsconfig.json $(TS_SDK)/tsconfig.build.json
	rm -rf $(TS_SDK)/dist
	npm run --silent -w $(TS_SDK) build
	touch $(TS_BUILT)

$(STAMP): pyproject.toml $(CONSTRAINTS)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install $(PIP_FLAGS) --upgrade pip
	$(BIN)/pip install $(PIP_FLAGS) -c $(CONSTRAINTS) -e '.[dev,proto]'
	touch $(STAMP)

## dev: the control plane on SQLite (./.tether) with the example apps' workers
## (DEV_ARGS="--clock virtual" lets sleeps pass at once)
DEV_ARGS ?=
dev: $(STAMP) $(NODE_STAMP) $(TS_BUILT)
	@echo ""
	@echo "Dev UI: http://localhost:4771 (send events, watch runs and their timelines)"
	@echo "Onboarding example (Python app 'onboarding' and TypeScript app 'onboarding-ts'):"
	@echo "in another terminal, send a signup (it starts a run in each app) and watch a run:"
	@echo "  $(BIN)/tether send app/user.signup --data '{\"user_id\": 1, \"email\": \"ada@example.com\"}'"
	@echo "  $(BIN)/tether runs watch RUN_ID      # or: $(BIN)/tether runs show RUN_ID"
	@echo "  $(BIN)/tether send app/project.created --data '{\"user_id\": 1}'   # skips the nudge"
	@echo "Approval example: place an order, then approve it within 24 h:"
	@echo "  $(BIN)/tether send app/order.placed --data '{\"order_id\": \"A-1\"}'"
	@echo "  $(BIN)/tether send app/order.approved --data '{\"order_id\": \"A-1\", \"approver\": \"grace\"}'"
	$(BIN)/tether dev --worker examples.onboarding.worker:app --worker examples.approval.worker:app \
		--worker-command "node --import tsx examples/onboarding-ts/worker.ts" $(DEV_ARGS)

$(CHROMIUM):
	apt-get install -y -q chromium || { apt-get update -q && apt-get install -y -q chromium; }

## test: lint, the generated-code check, then every test suite (browser tests included).
## The process-spawning suites run in TEST_PROCESSES pytest processes (every test
## has its own database, directories and ports); most of their time is spent
## waiting on other processes, so two of them halve the time on two cores.
TEST_PROCESSES ?= 2

test: $(STAMP) $(NODE_STAMP) $(TS_BUILT) $(CHROMIUM) lint proto-check
	$(BIN)/pytest -q tests/unit
	PATH=$(abspath $(BIN)):$$PATH npm test --silent --workspaces --if-present
	PATH=$(abspath $(BIN)):$$PATH $(BIN)/pytest -q -n $(TEST_PROCESSES) tests/integration tests/fuzz tests/conformance tests/chaos tests/e2e tests/browser examples

## chaos: the chaos suite with 1,000 runs per fault (tests/chaos; `make test` runs
## it with 200): kill -9 of the control plane (PostgreSQL and SQLite), kill -9 of a
## worker, PostgreSQL stopped for 5 s, two control planes with one killed. Prints
## the recovery times.
CHAOS_RUNS ?= 1000
chaos: $(STAMP)
	TETHER_CHAOS_RUNS=$(CHAOS_RUNS) $(BIN)/pytest -q -s tests/chaos

## fuzz: the property-based suite alone (tests/fuzz, also part of `make test`):
## garbage and hostile-but-valid messages to every RPC, the worker stream and
## every route, a fixed few thousand cases
fuzz: $(STAMP)
	$(BIN)/pytest -q tests/fuzz

## screenshots: run the browser tests, saving their screenshots into docs/images
screenshots: $(STAMP) $(CHROMIUM)
	TETHER_SCREENSHOT_DIR=docs/images $(BIN)/pytest -q tests/browser

## lint: ruff and mypy --strict on the Python code, tsc --strict and ESLint on the
## TypeScript code (generated code excluded)
lint: $(STAMP) $(NODE_STAMP) $(TS_BUILT)
	$(BIN)/ruff check controlplane sdk_python tests examples bench
	$(BIN)/ruff format --check controlplane sdk_python tests examples bench
	$(BIN)/mypy controlplane sdk_python/tether examples bench tests
	npm run --silent typecheck
	npm run --silent lint

## proto: regenerate sdk_python/tether/v1 and sdk_typescript/src/gen from proto/
proto: $(STAMP) $(NODE_STAMP)
	PATH=$(abspath $(BIN)):$$PATH $(PY) -m grpc_tools.protoc -I proto \
		--python_out=sdk_python --grpc_python_out=sdk_python \
		--mypy_out=sdk_python --mypy_grpc_out=sdk_python $(PROTO_FILES)
	rm -rf $(TS_GEN_DIR) && mkdir -p $(TS_GEN_DIR)
	$(TS_PROTOC) --ts_proto_out=$(TS_GEN_DIR) $(PROTO_FILES)

## proto-check: fail when the committed generated code (Python or TypeScript) is stale
proto-check: $(STAMP) $(NODE_STAMP)
	@tmp=$$(mktemp -d) && mkdir -p $$tmp/py $$tmp/ts && \
	{ PATH=$(abspath $(BIN)):$$PATH $(PY) -m grpc_tools.protoc -I proto \
		--python_out=$$tmp/py --grpc_python_out=$$tmp/py \
		--mypy_out=$$tmp/py --mypy_grpc_out=$$tmp/py $(PROTO_FILES) && \
	  $(TS_PROTOC) --ts_proto_out=$$tmp/ts $(PROTO_FILES); } >$$tmp/protoc.log 2>&1 || \
		{ cat $$tmp/protoc.log; rm -rf $$tmp; exit 1; }; \
	if diff -r -x __init__.py -x __pycache__ $$tmp/py/tether/v1 $(GEN_DIR) >/dev/null && \
	   diff -r $$tmp/ts $(TS_GEN_DIR) >/dev/null; then \
		echo "generated code is up to date"; rm -rf $$tmp; \
	else \
		diff -r -x __init__.py -x __pycache__ $$tmp/py/tether/v1 $(GEN_DIR) | head -20; \
		diff -r $$tmp/ts $(TS_GEN_DIR) | head -20; \
		echo "generated code is stale: run 'make proto' and commit the result"; rm -rf $$tmp; exit 1; \
	fi

## bench: durable steps/s and latency on SQLite and PostgreSQL, next to DBOS, and event
## ingestion with runs waiting for events
## (narrow it with e.g. BENCH_ARGS="--backends sqlite --skip-dbos"; see docs/performance.md)
BENCH_VENV := .venv-bench
$(BENCH_VENV)/.installed: pyproject.toml $(CONSTRAINTS) requirements/bench.txt
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/pip install $(PIP_FLAGS) --upgrade pip
	$(BENCH_VENV)/bin/pip install $(PIP_FLAGS) -c $(CONSTRAINTS) -e . -r requirements/bench.txt
	touch $@

# Restate's server, for the comparison only: its own lockfile, not in the workspace.
RESTATE_STAMP := bench/restate/node_modules/.installed
$(RESTATE_STAMP): bench/restate/package-lock.json
	npm ci --prefix bench/restate --no-audit --no-fund
	touch $@

bench: $(BENCH_VENV)/.installed $(NODE_STAMP) $(TS_BUILT) $(RESTATE_STAMP)
	$(BENCH_VENV)/bin/python -m bench.run $(BENCH_ARGS)

clean:
	rm -rf $(VENV) $(BENCH_VENV) .tether .mypy_cache .ruff_cache .pytest_cache node_modules $(TS_SDK)/dist
