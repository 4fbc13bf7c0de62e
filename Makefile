# Every developer verb of Secrets Bridge. `make help` lists them.
SHELL := /usr/bin/env bash
CARGO ?= cargo

.DEFAULT_GOAL := help

.PHONY: help
help: ## List the verbs
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "} {printf "  make %-10s %s\n", $$1, $$2}'

.PHONY: tools
tools: ## Install (idempotently) what the tests need: cargo-nextest; build kube-apiserver, kubectl, helm (cached)
	@scripts/ensure-tools.sh

.PHONY: build
build: ## Build every crate, tests and benches included
	$(CARGO) build --workspace --all-targets

.PHONY: test
test: tools services boundaries build ## The whole test suite (what CI runs), the release-artifact tests, then the short fuzz pass
	@CARGO="$(CARGO)" FUZZ_SHORT_SECONDS=$(FUZZ_SHORT_SECONDS) scripts/test.sh

# The release for this machine's platform only, for the image, archive, krew and SBOM tests
# (e2e/tests/images.rs, release.rs): the same script as `make release`, into target/dist-host,
# with the unoptimised dist-test profile (Cargo.toml). `make test` builds it in the background.
.PHONY: test-artifacts
test-artifacts: ## Static binaries, images, archives, SBOMs, charts and krew manifest for x86_64, into target/dist-host
	@scripts/test.sh --artifacts-only

# The platforms `make images` builds.
ARCHES ?= x86_64 aarch64

.PHONY: images
images: ## The OCI images of sb-operator and sb-agent (static musl binaries, ARCHES="x86_64 aarch64"), without a container engine, into target/images
	@scripts/release.sh images $(ARCHES)

.PHONY: release
release: ## Write dist/: static binaries and archives, OCI images, packaged charts, SBOMs, the krew manifest, SHA256SUMS (reproducible, from a clean tree)
	@scripts/release.sh dist

.PHONY: release-check
release-check: tools ## `make release` twice, the second from an empty target dir, compare the checksums, then test dist/
	@scripts/release.sh check
	SB_DIST_DIR=dist $(CARGO) nextest run -p sb-e2e --test images --test release --no-fail-fast

.PHONY: services
services: ## Install and start OpenBao, moto and PostgreSQL on loopback (idempotent)
	@scripts/services.sh up

.PHONY: services-down
services-down: ## Stop the services started by `make services`
	@scripts/services.sh down

.PHONY: bench
bench: services kube ## Every benchmark of docs/performance.md (a few minutes): one table, each figure with its same-run baseline
	@scripts/bench.sh

.PHONY: bench-full
bench-full: services kube ## The heavy run of the same table: longer windows, PostgreSQL at 10k, ESO at 10k, 10k jobs
	@scripts/bench.sh --full

.PHONY: load
load: tools services build ## The long load run: 2,000 reads and patches at once on one operator, then on two replicas (PostgreSQL) with the leader killed halfway; prints p50/p99
	$(CARGO) run --quiet -p sb-e2e --bin sb-load -- --readers 1500 --patchers 500
	$(CARGO) run --quiet -p sb-e2e --bin sb-load -- --readers 1500 --patchers 500 --replicas 2 --kill-one-halfway

.PHONY: boundaries
boundaries: ## Check the one-way dependency rules between tiers (cargo tree)
	@scripts/check-boundaries.sh

.PHONY: lint
lint: ## rustfmt check and clippy with warnings as errors
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

.PHONY: fmt
fmt: ## Format the code
	$(CARGO) fmt --all

.PHONY: crdgen
crdgen: ## Regenerate crds/ (and the Helm chart's copy) from the Rust types in core/src/crd
	$(CARGO) run --quiet -p sb-operator -- crdgen --out crds
	$(CARGO) run --quiet -p sb-operator -- crdgen --out charts/secrets-bridge/crds

.PHONY: e2e
e2e: tools services build ## Only the end-to-end scenarios (real kube-apiserver + etcd, kubectl, helm, OpenBao, moto, PostgreSQL)
	$(CARGO) nextest run -p sb-e2e --no-fail-fast

# Seconds each fuzz target runs for in `make fuzz`, and in the short pass `make test` ends with.
FUZZ_SECONDS ?= 120
FUZZ_SHORT_SECONDS ?= 15

.PHONY: fuzz
fuzz: ## Fuzz every parser of network and user input, 120 s per target (FUZZ_SECONDS=…); fails on a crash
	@scripts/fuzz.sh $(FUZZ_SECONDS)

.PHONY: fuzz-short
fuzz-short: ## The short fuzz pass `make test` ends with: 15 s per target, fails on a crash
	@SB_FUZZ_PROFILE=dev scripts/fuzz.sh $(FUZZ_SHORT_SECONDS)

.PHONY: kube
kube: ## Build (cached by go.sum) the real control plane for tests: kube-apiserver + etcd + controller-manager, kubectl, helm
	@scripts/kube.sh

# Where `make install` puts the kubectl plugin; kubectl finds plugins on PATH.
PREFIX ?= $(HOME)/.cargo

.PHONY: install
install: ## Install the kubectl plugin: kubectl-sb and kubectl-approve into $(PREFIX)/bin
	$(CARGO) build --release -p kubectl-sb
	install -d "$(PREFIX)/bin"
	install -m 0755 "$${CARGO_TARGET_DIR:-target}/release/kubectl-sb" "$(PREFIX)/bin/kubectl-sb"
	ln -sf kubectl-sb "$(PREFIX)/bin/kubectl-approve"
	@echo "installed: kubectl sb ... and kubectl approve ... (from $(PREFIX)/bin)"

.PHONY: demo
demo: ## The read → approve → reveal, patch and discovery flows as a tutorial (starts and stops everything)
	@scripts/demo.sh

.PHONY: demo-commands
demo-commands: ## The demo's walkthrough as commands for a real cluster (KUBECONFIG), starting nothing
	@scripts/demo.sh --print-commands
