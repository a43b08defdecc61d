# hookgate: entry points. `make test` and `make demo` work on a fresh machine: they install what they need.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c

CACHE        ?= $(HOME)/.cache/hookgate
VENV         := .venv
PYTHON       := $(VENV)/bin/python
WASM         := target/wasm32-wasip1/release/hookgate_filter.wasm
FUZZ_VERSION := 0.13.2
CARGO_FUZZ   := $(CACHE)/cargo-fuzz-$(FUZZ_VERSION)/bin/cargo-fuzz
FUZZ_SECONDS ?= 120
# The short fuzz run inside `make test`.
FUZZ_SMOKE_SECONDS ?= 20
ARGS ?=
# `make release`: where to push, the artifacts' tag, and where the layouts and the component are written.
REGISTRY ?=
VERSION ?=
RELEASE_OUT ?= target/hookgate-release
RELEASE_TARGETS := x86_64-unknown-linux-musl aarch64-unknown-linux-musl
# The tests run the controller binary the image ships for this machine's architecture; the release test's
# `make release` then finds that half of the image already built.
HOST_MUSL    := $(shell uname -m)-unknown-linux-musl
IMAGE_BIN    := target/$(HOST_MUSL)/image/hookgate
ZIGBUILD     := PATH="$(abspath $(VENV))/bin:$$PATH" cargo zigbuild --profile image --locked -p hookgate-cli

.PHONY: all build wasm probe oci release image-bin musl-targets wasm-target venv control-plane lint unit e2e test fuzz fuzz-smoke fuzz-tools bench demo dashboard-picture clean

all: build

wasm-target:
	@rustup target list --installed | grep -qx wasm32-wasip1 || rustup target add wasm32-wasip1

$(VENV)/.installed: tests/requirements.txt tools/requirements.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r tests/requirements.txt -r tools/requirements.txt
	touch $@

venv: $(VENV)/.installed

wasm: wasm-target
	cargo build --release -p hookgate-filter --target wasm32-wasip1
	@ls -l $(WASM) | awk '{ printf "filter module: %s (%d bytes)\n", $$9, $$5 }'

build: wasm
	cargo build --release -p hookgate-cli

# The filter as an OCI image layout (Envoy Gateway's Image source) and its sha256 (HTTP source).
oci: build
	python3 tools/oci_layout.py --wasm $(WASM) --out target/oci --tag $(shell cargo metadata --no-deps --format-version 1 | python3 -c 'import json,sys; print(json.load(sys.stdin)["packages"][0]["version"])')

# The controller image (linux/amd64, linux/arm64: static musl binaries cross-built with cargo-zigbuild and Zig
# from PyPI) and the filter's OCI artifact, assembled without a container daemon, pushed to $(REGISTRY) with oras
# and pinned by digest in the Kustomize component $(RELEASE_OUT)/component (tools/release.py).
release: wasm venv musl-targets
	@test -n "$(REGISTRY)" -a -n "$(VERSION)" || { echo "usage: make release REGISTRY=ghcr.io/you VERSION=0.1.0" >&2; exit 2; }
	$(ZIGBUILD) $(addprefix --target ,$(RELEASE_TARGETS))
	oras=$$(bash tests/control-plane/build.sh oras | sed -n 's/^ORAS=//p') && \
	  $(PYTHON) tools/release.py --registry "$(REGISTRY)" --version "$(VERSION)" --wasm $(WASM) --binaries target \
	    --profile image --oras "$$oras" --out "$(RELEASE_OUT)"

musl-targets:
	@for target in $(RELEASE_TARGETS); do rustup target list --installed | grep -qx $$target || rustup target add $$target; done

# The static controller binary of this machine's architecture, as `make release` builds it for the image.
image-bin: venv musl-targets
	$(ZIGBUILD) --target $(HOST_MUSL)

# kube-apiserver, kubectl, etcd, kustomize, Envoy Gateway, the OCI registry, eg-translate, Prometheus, promtool and
# Gitea from their Go modules, cached under $(CACHE)/bin by version.
control-plane:
	bash tests/control-plane/build.sh

lint: wasm-target venv
	$(PYTHON) -m pyflakes tests bench tools
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings
	cargo clippy -p hookgate-filter --target wasm32-wasip1 --release -- -D warnings

unit:
	cargo test --workspace

# TEST-ONLY: another tenant's Wasm extension, for the trust tests (tests/probe-module).
probe: wasm-target
	cargo build --release -p hookgate-probe --target wasm32-wasip1

e2e: wasm image-bin probe venv control-plane
	HOOKGATE_BIN=$(abspath $(IMAGE_BIN)) $(PYTHON) -m pytest -q tests

fuzz-tools:
	@rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
	@test -x $(CARGO_FUZZ) || cargo install cargo-fuzz --version $(FUZZ_VERSION) --locked --root $(CACHE)/cargo-fuzz-$(FUZZ_VERSION)

# Each fuzz target for $(1) seconds; any crash fails the run. Inputs that once failed are kept in
# filter/fuzz/regressions/<target> and replayed first; new corpus goes to the ignored fuzz/corpus.
define run_fuzz
	cd filter && for target in deliveries configuration expressions metadata; do \
	  mkdir -p fuzz/corpus/$$target fuzz/regressions/$$target; \
	  PATH="$(dir $(CARGO_FUZZ)):$$PATH" cargo +nightly fuzz run $$target fuzz/corpus/$$target fuzz/regressions/$$target \
	    -- -max_total_time=$(1) -print_final_stats=1 2>&1 \
	    | grep -E 'Done [0-9]+ runs|stat::number_of_executed_units|ERROR|panicked' ; \
	done
endef

fuzz: fuzz-tools
	$(call run_fuzz,$(FUZZ_SECONDS))

fuzz-smoke: fuzz-tools
	$(call run_fuzz,$(FUZZ_SMOKE_SECONDS))

test: lint unit e2e fuzz-smoke

bench: build venv control-plane
	@command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
	$(PYTHON) bench/edge_bench.py $(ARGS)
	$(PYTHON) bench/controller_bench.py
	$(PYTHON) bench/peer_bench.py
	$(PYTHON) bench/flood_bench.py
	$(PYTHON) bench/receivers_bench.py
	$(PYTHON) bench/push_to_applied_bench.py

demo: build venv control-plane
	$(PYTHON) tests/demo.py $(ARGS)

# docs/dashboard.png: the dashboard's panels drawn from a real Prometheus scraping an observed run
# (tools/dashboard_picture.py; no Grafana can be installed here).
dashboard-picture: build venv control-plane
	$(PYTHON) tools/dashboard_picture.py $(ARGS)

clean:
	cargo clean
	rm -rf $(VENV)
