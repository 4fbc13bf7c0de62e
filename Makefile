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
test: tools services boundaries build ## The whole test suite (what CI runs)
	$(CARGO) nextest run --workspace --no-fail-fast

.PHONY: services
services: ## Install and start OpenBao, moto and PostgreSQL on loopback (idempotent)
	@scripts/services.sh up

.PHONY: services-down
services-down: ## Stop the services started by `make services`
	@scripts/services.sh down

.PHONY: bench
bench: services ## Benchmarks that print the figures issues name (claim latency on SQLite and PostgreSQL)
	$(CARGO) bench -p sb-operator --bench claim_latency

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
