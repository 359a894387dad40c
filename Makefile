# understudy — the two commands: `make demo` and `make test`.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
CARGO ?= cargo
TESTBED := tests/testbed
export CARGO_TERM_COLOR ?= never

.PHONY: bench bench-verify bench-failover bench-wecom bench-fleet help deps build generate check-generated fmt fmt-check clippy unit chart-check e2e testbed testbed-down test demo clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

deps: ## Install the system packages the Rust build needs (idempotent)
	@$(TESTBED)/build-deps.sh

build: deps ## Build the binary and all test targets
	$(CARGO) build --all-targets

generate: deps ## Regenerate manifests/crds, the chart's CRD template, manifests/install.yaml, tests/chart/rules.yaml
	$(CARGO) run -q -- crd > manifests/crds/understudy.dev.yaml.tmp || { rm -f manifests/crds/understudy.dev.yaml.tmp; exit 1; }
	@if cmp -s manifests/crds/understudy.dev.yaml.tmp manifests/crds/understudy.dev.yaml; then \
	  rm -f manifests/crds/understudy.dev.yaml.tmp; \
	else mv -f manifests/crds/understudy.dev.yaml.tmp manifests/crds/understudy.dev.yaml; fi
	@tests/chart/generate.sh

fmt: ## Format the code
	$(CARGO) fmt

fmt-check: ## Fail when the code is not formatted
	$(CARGO) fmt --check

clippy: deps ## Lint, warnings are errors
	$(CARGO) clippy --all-targets --all-features -- -D warnings

unit: deps ## Unit tests and the CRD sync check (no test bed needed)
	$(CARGO) test

chart-check: ## Helm chart: generated files up to date, helm lint, promtool check/test of the alerts (no cluster)
	@tests/chart/check.sh

testbed: ## Build/install and start the local test bed; writes target/testbed/env
	@$(TESTBED)/up.sh

testbed-down: ## Stop what `make testbed` started
	@$(TESTBED)/down.sh

e2e: deps testbed ## End-to-end tests against the running test bed
	$(CARGO) test --features e2e --test 'e2e_*' -- --test-threads=2

test: fmt-check clippy unit chart-check image-test ## Everything CI runs: fmt, clippy, unit tests, CRD and chart checks, the image test (debug build), test bed, e2e
	@$(TESTBED)/up.sh
	@rc=0; $(CARGO) test --features e2e --test 'e2e_*' -- --test-threads=2 || rc=$$?; \
	  if [ $$rc -ne 0 ]; then $(TESTBED)/report.sh; echo "e2e failed; test bed logs are in target/testbed/logs/"; fi; \
	  $(TESTBED)/down.sh; exit $$rc

demo: deps ## The real local stack, end to end (see README); PROVIDER=wecom: a WeCom pair instead (two simulated corps, callbacks, a lost callback, a 50003 freeze)
	@case "$(PROVIDER)" in \
	  ""|http) $(TESTBED)/demo.sh ;; \
	  wecom) $(TESTBED)/demo-wecom.sh ;; \
	  *) echo "make demo: PROVIDER=$(PROVIDER) is not a demo (none, http or wecom)" >&2; exit 2 ;; \
	esac

clean: testbed-down ## Remove build output (tool caches in ~/.cache/understudy stay)
	$(CARGO) clean

bench: deps bench-verify bench-failover bench-wecom bench-fleet ## All benchmarks; replication on the test bed's Kafka (started if needed) writes target/bench/replication.json
	@$(TESTBED)/up.sh kafka
	$(CARGO) bench --bench replication

bench-failover: deps ## Failover latency on the whole test bed (started if needed): notice and status-poll detection to DNS and LB verified, with a per-step breakdown; writes target/bench/failover.json (FAILOVER_BENCH_RUNS, default 50)
	@$(TESTBED)/up.sh
	$(CARGO) bench --bench failover

bench-fleet: deps ## Fleet cost of one operator on the whole test bed (started if needed): 100, 300, 1,000 pairs idle and at 1 change/s per pair (CPU, RSS, threads, TCP and Kafka connections, Kafka clients, API-server and provider requests/s) and one pair's notice-to-verified latency under that load and with it stopped; writes target/bench/fleet.json (FLEET_SIZES, FLEET_SECONDS, FLEET_LATENCY_RUNS)
	@$(TESTBED)/up.sh
	$(CARGO) bench --bench fleet

bench-wecom: deps ## WeCom (release; the test bed's Kafka, started if needed): reconciliation scan rate for 10k and 100k members with the client-side limit off and on (100k on takes about 10 min), callback-to-feed and callback-to-applied (through Kafka to the standby corp) latency; writes target/bench/wecom.json
	@$(TESTBED)/up.sh kafka
	$(CARGO) bench --bench wecom

bench-verify: deps ## Drill verifier benchmark (release, no test bed): 100k and 1M entities per side, in process and over HTTP; writes target/bench/verify.json
	$(CARGO) bench --bench verify

.PHONY: image image-check image-test
image: ## The operator's OCI image (release build, FROM scratch, user 65532; no container engine, needs root): target/image/understudy-VERSION.oci.tar and the OCI layout target/image/oci, tagged with the crate version (Cargo.toml, = the chart's appVersion)
	@packaging/image.sh

image-check: image ## Build the image, then run its entrypoint from the image config as the image user (--version, operator --help) without a container engine
	@tests/image/check.sh

# The debug binary is the one `cargo test` builds (default features): `cargo test --no-run`
# is a no-op after `make unit`, and runs before any `--features e2e` build replaces it.
image-test: deps ## Part of `make test`: the same image from the debug binary `cargo test` built (target/image-debug, tag VERSION-debug, never the release image) and the image-check run of it; needs root
	$(CARGO) test --no-run --quiet
	@IMAGE_PROFILE=debug packaging/image.sh
	@IMAGE_PROFILE=debug tests/image/check.sh
