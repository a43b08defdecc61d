#!/usr/bin/env bash
# Builds bench/flood/eg-xds against Envoy Gateway's Go module, once per Envoy Gateway version and source,
# cached like tests/control-plane/build.sh's binaries. Prints EG_XDS=<path>.
set -euo pipefail

ENVOY_GATEWAY_VERSION="${ENVOY_GATEWAY_VERSION:-v1.9.1}"
BIN="${HOOKGATE_CACHE:-$HOME/.cache/hookgate}/bin"
export GOFLAGS="${GOFLAGS:--mod=mod}"
export CGO_ENABLED=0
source="$(cd "$(dirname "$0")" && pwd)/eg-xds/main.go"
out="$BIN/eg-xds-$ENVOY_GATEWAY_VERSION-$(sha256sum "$source" | cut -c1-12)"
if [ ! -x "$out" ]; then
  mkdir -p "$BIN"
  dir=$(mktemp -d)
  trap 'rm -rf "$dir"' EXIT
  echo "[flood] building eg-xds against Envoy Gateway $ENVOY_GATEWAY_VERSION" >&2
  # Under github.com/envoyproxy/gateway/ so that Go allows importing its internal packages.
  printf 'module github.com/envoyproxy/gateway/hookgate-xds\n\ngo 1.26.7\n\nrequire github.com/envoyproxy/gateway %s\n' \
    "$ENVOY_GATEWAY_VERSION" > "$dir/go.mod"
  cp "$source" "$dir/main.go"
  (cd "$dir" && go mod tidy >&2 && go build -trimpath -o "$out.tmp" . && mv "$out.tmp" "$out")
fi
echo "EG_XDS=$out"
