# The two commands that matter: `make run` and `make test`. See README.md.
CARGO ?= cargo
export CARGO_TERM_COLOR ?= never

.PHONY: run test lint bench bench-edge bench-validate bench-profile bench-identity bench-pipeline bench-sinks broker-install build

build:
	$(CARGO) build -p cdp

## Start a development broker (unless CDP_KAFKA__BOOTSTRAP_SERVERS is set) and every stage, with a demo stream.
run:
	scripts/run.sh

## Every test of the workspace, against a real broker the tests start themselves; the web SDK's
## unit tests; the browser tests in Debian's headless Chromium.
test: broker-install
	scripts/s3.sh install
	scripts/kinesalite.sh install
	scripts/browser.sh install
	npm test --prefix sdks/js
	$(CARGO) test --workspace --no-fail-fast

## Formatting and lints, as CI checks them; first the deployment files (deploy/k8s against the
## Kubernetes schemas, docker-compose.yml's services), with a checker the script installs.
lint:
	scripts/manifests.sh check
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

## Benchmarks; results go in docs/BENCHMARKS.md.
bench: bench-edge bench-validate bench-profile bench-identity bench-pipeline bench-sinks

bench-edge:
	scripts/bench.sh edge

bench-validate:
	scripts/bench.sh validate

bench-profile:
	scripts/bench.sh profile

bench-identity:
	scripts/bench.sh identity

bench-pipeline:
	scripts/bench.sh pipeline

bench-sinks:
	scripts/kinesalite.sh install
	scripts/bench.sh sinks

broker-install:
	scripts/tansu.sh install
