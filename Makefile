# Berth: the two commands are `make serve` and `make test` (see README.md).

CARGO ?= cargo
WASM_TARGET := wasm32-wasip2
# The Spin build's adapters (wit/adapters.wit, infra/spin/adapters/).
ADAPTERS := config-variables credentials-variables metadata-postgres blobs-s3
COMPONENTS := registry blobs uploads manifests listings referrers token manage namespaces repositories account admin console gc enterprise webhooks aging retention replication

.PHONY: serve scale-out spin test bench build components host deps fmt lint

## Start the registry on embedded defaults (SQLite + filesystem in ./berth-data) on 127.0.0.1:5000.
serve: build
	./target/release/berth serve $(ARGS)

## One registry on two hosts (:5000, :5001) sharing PostgreSQL and an S3 bucket (Garage),
## both started locally: the scale-out deployment on one machine (scripts/scale-out).
scale-out: build
	scripts/scale-out $(ARGS)

# The PostgreSQL and S3 (Garage) servers `make deps` starts for the tests
# (scripts/install-test-deps, scripts/garage-test).
BERTH_TEST_POSTGRES_URL ?= postgres://berth:berth@127.0.0.1:55432/postgres
BERTH_TEST_S3 ?= http://GK0000000000000000be57e500:0000000000000000000000000000000000000000000000000000000000be57e5@127.0.0.1:3900/berth-test
export BERTH_TEST_POSTGRES_URL BERTH_TEST_S3

## The Spin build: each component composed with its dependencies and the adapters that give
## it Berth's capabilities over Spin's interfaces, in target/spin/ (infra/spin/spin.toml).
spin: build
	$(CARGO) build --release --target $(WASM_TARGET) $(addprefix -p ,$(ADAPTERS))
	./target/release/berth build-spin --manifest spin.toml --adapters target/$(WASM_TARGET)/release --out target/spin

## Run the whole test suite (installs what the tests need first): the Rust tests (those
## on PostgreSQL and S3 included), then the integration suite on the embedded defaults and
## again scaled out (metadata on PostgreSQL, blobs on S3), the conformance and skopeo tests
## on the Spin build (same stores, through its adapters), then a quick benchmark.
test: deps build spin
	$(CARGO) test --release -- --include-ignored
	python3 -m pytest -q tests/integration
	BERTH_TEST_BACKEND=scale-out python3 -m pytest -q tests/integration
	BERTH_TEST_BACKEND=spin python3 -m pytest -q tests/integration/test_spin_build.py \
		tests/integration/test_protocol.py tests/integration/test_clients.py::test_skopeo_round_trip_multilayer
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
	$(CARGO) clippy --release --target $(WASM_TARGET) $(addprefix -p ,$(COMPONENTS) $(ADAPTERS)) -- -D warnings
