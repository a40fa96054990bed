# Berth: the two commands are `make serve` and `make test` (see README.md).

CARGO ?= cargo
WASM_TARGET := wasm32-wasip2
COMPONENTS := registry blobs uploads manifests listings referrers token manage namespaces repositories account admin gc enterprise webhooks aging retention replication

.PHONY: serve test bench build components host deps fmt lint

## Start the registry on embedded defaults (SQLite + filesystem in ./berth-data) on 127.0.0.1:5000.
serve: build
	./target/release/berth serve $(ARGS)

# The PostgreSQL server `make deps` starts for the tests (scripts/install-test-deps).
BERTH_TEST_POSTGRES_URL ?= postgres://berth:berth@127.0.0.1:55432/postgres
export BERTH_TEST_POSTGRES_URL

## Run the whole test suite (installs what the tests need first): the Rust tests (those
## on PostgreSQL included), then the integration suite on the embedded defaults and again
## with metadata on PostgreSQL, then a quick benchmark.
test: deps build
	$(CARGO) test --release -- --include-ignored
	python3 -m pytest -q tests/integration
	BERTH_TEST_BACKEND=postgres python3 -m pytest -q tests/integration
	./target/release/berth-bench --quick --json target/bench-quick.json

## Benchmark Berth against CNCF Distribution side by side (~15 min); see bench/.
bench: deps build
	./target/release/berth-bench

build: components host

components:
	@rustup target list --installed | grep -qx $(WASM_TARGET) || rustup target add $(WASM_TARGET)
	$(CARGO) build --release --target $(WASM_TARGET) $(addprefix -p ,$(COMPONENTS))

host:
	$(CARGO) build --release -p berth-host -p berth-bench

deps:
	scripts/install-test-deps

fmt:
	$(CARGO) fmt --all

lint:
	$(CARGO) clippy --release --all-targets -- -D warnings
	$(CARGO) clippy --release --target $(WASM_TARGET) $(addprefix -p ,$(COMPONENTS)) -- -D warnings
