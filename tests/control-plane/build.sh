#!/usr/bin/env bash
# Builds (once per version) the real control-plane binaries the tests and the demo run:
# kube-apiserver and kubectl from the k8s.io/kubernetes Go module, etcd from go.etcd.io/etcd/server/v3, kustomize,
# envoy-gateway from github.com/envoyproxy/gateway, the OCI registry from github.com/distribution, and
# Prometheus and promtool from github.com/prometheus/prometheus (the observability checks), and Gitea, the
# real forge whose own webhooks on real pushes the tests verify (tests/forge.py), and oras (`make release`).
# `build.sh oras` builds and prints only oras.
# Binaries are cached outside the work tree, keyed by version; a second run prints their paths at once.
set -euo pipefail

KUBERNETES_VERSION="${KUBERNETES_VERSION:-v1.36.3}"
ETCD_VERSION="${ETCD_VERSION:-v3.6.16}"
KUSTOMIZE_VERSION="${KUSTOMIZE_VERSION:-v5.8.1}"
ENVOY_GATEWAY_VERSION="${ENVOY_GATEWAY_VERSION:-v1.9.1}"
REGISTRY_VERSION="${REGISTRY_VERSION:-v3.0.0}"
REGISTRY_NAME=registry-filesystem
# The Go module's version of Prometheus 3.16.0. Built without the `builtinassets` tag: no web UI, whose
# assets are not in the module; the HTTP API that promtool and the tests query is all there.
PROMETHEUS_VERSION="${PROMETHEUS_VERSION:-v0.316.0}"
# Without service discovery other than file and http (Prometheus's own build tag): the tests scrape static
# targets, and the cloud SDKs the discoveries link in were four minutes of a fresh machine's build.
PROMETHEUS_TAGS=remove_all_sd
GITEA_VERSION="${GITEA_VERSION:-v1.27.3}"
# oras, the registry client `make release` pushes with (tools/release.py).
ORAS_VERSION="${ORAS_VERSION:-v1.3.6}"
CACHE="${HOOKGATE_CACHE:-$HOME/.cache/hookgate}"
BIN="$CACHE/bin"
mkdir -p "$BIN"
export GOFLAGS="${GOFLAGS:--mod=mod}"
export CGO_ENABLED=0

log() { printf '[control-plane] %s\n' "$*" >&2; }

# A command of k8s.io/kubernetes (cmd/NAME: kube-apiserver, kubectl) into $BIN/NAME-$KUBERNETES_VERSION, with
# the version its own release build stamps in.
build_kubernetes_command() {
  local name="$1"
  local out="$BIN/$name-$KUBERNETES_VERSION"
  [ -x "$out" ] && return
  local staging="v0.${KUBERNETES_VERSION#v1.}"
  local dir; dir=$(mktemp -d)
  log "building $name $KUBERNETES_VERSION (staging modules $staging); the first build takes several minutes"
  local mod; mod=$(go mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
  {
    echo "module hookgate.local/$name"
    echo
    echo "go 1.26"
    echo
    echo "require k8s.io/kubernetes $KUBERNETES_VERSION"
    echo
    # k8s.io/kubernetes replaces its staging modules with ./staging paths that do not exist outside its
    # repository: point each one at its published version instead.
    grep -E '^\s*k8s.io/[a-z0-9-]+ => \./staging/' "$mod" | awk -v v="$staging" '{ print "replace " $1 " => " $1 " " v }'
  } > "$dir/go.mod"
  # Keeps the command's package (a main package, not importable) in the module graph for `go mod tidy`.
  printf '//go:build tools\n\npackage tools\n\nimport _ "k8s.io/kubernetes/cmd/%s"\n' "$name" > "$dir/tools.go"
  local minor="${KUBERNETES_VERSION#v1.}"; minor="${minor%%.*}"
  local ldflags="" package
  for package in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags="$ldflags -X $package.gitVersion=$KUBERNETES_VERSION -X $package.gitMajor=1 -X $package.gitMinor=$minor"
  done
  (cd "$dir" && go mod tidy && nice go build -trimpath -ldflags "$ldflags" -o "$out.tmp" "k8s.io/kubernetes/cmd/$name" \
    && mv "$out.tmp" "$out")
  rm -rf "$dir"
}

# Our own main package ($4, Go source) over MODULE@VERSION into $BIN/NAME-VERSION: for a command whose module
# has no main package to install (etcd's server), or whose own main links in what no test runs (the registry's
# cloud storage drivers: a minute of a fresh machine's build).
build_own_main() {
  local name="$1" module="$2" version="$3" source="$4"
  local out="$BIN/$name-$version"
  [ -x "$out" ] && return
  local dir; dir=$(mktemp -d)
  log "building $name $version"
  printf 'module hookgate.local/%s\n\ngo 1.26\n\nrequire %s %s\n' "$name" "$module" "$version" > "$dir/go.mod"
  printf '%s\n' "$source" > "$dir/main.go"
  (cd "$dir" && go mod tidy && go build -trimpath -o "$out.tmp" . && mv "$out.tmp" "$out")
  rm -rf "$dir"
}

build_etcd() {
  build_own_main etcd go.etcd.io/etcd/server/v3 "$ETCD_VERSION" 'package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}'
}

# distribution's cmd/registry with only the storage drivers the tests configure (filesystem, inmemory).
build_registry() {
  build_own_main "$REGISTRY_NAME" github.com/distribution/distribution/v3 "$REGISTRY_VERSION" 'package main

import (
	"github.com/distribution/distribution/v3/registry"
	_ "github.com/distribution/distribution/v3/registry/storage/driver/filesystem"
	_ "github.com/distribution/distribution/v3/registry/storage/driver/inmemory"
)

func main() {
	// As cmd/registry: a failing command exits non-zero itself.
	registry.RootCmd.Execute()
}'
}

# `go install PACKAGE@VERSION` into $BIN/NAME-VERSION, for modules without replace directives; with build tags in
# $TAGS, into $BIN/NAME-VERSION-TAGS.
go_install() {
  local name="$1" package="$2" version="$3" tags="${TAGS:-}"
  local out="$BIN/$name-$version${tags:+-$tags}"
  [ -x "$out" ] && return
  log "building $name $version${tags:+ (tags $tags)}${4:+; $4}"
  local gobin; gobin=$(mktemp -d)
  GOBIN="$gobin" go install -trimpath ${tags:+-tags "$tags"} "$package@$version"
  # The one binary, whatever go named it (sigs.k8s.io/kustomize/kustomize/v5 installs `kustomize`).
  mv "$gobin"/* "$out"
  rm -rf "$gobin"
}

# tests/eg-translate: Envoy Gateway's translators as on Kubernetes, keyed by Envoy Gateway's version and the
# helper's source. Sets EG_TRANSLATE (called directly, not in $(...), so that a failure stops the script).
build_eg_translate() {
  local source; source="$(cd "$(dirname "$0")/.." && pwd)/eg-translate/main.go"
  EG_TRANSLATE="$BIN/eg-translate-$ENVOY_GATEWAY_VERSION-$(sha256sum "$source" | cut -c1-12)"
  local out="$EG_TRANSLATE"
  [ -x "$out" ] && return
  local dir; dir=$(mktemp -d)
  log "building eg-translate against Envoy Gateway $ENVOY_GATEWAY_VERSION"
  # Under github.com/envoyproxy/gateway/ so that Go allows importing its internal packages.
  printf 'module github.com/envoyproxy/gateway/hookgate-translate\n\ngo 1.26.7\n\nrequire github.com/envoyproxy/gateway %s\n' \
    "$ENVOY_GATEWAY_VERSION" > "$dir/go.mod"
  cp "$source" "$dir/main.go"
  (cd "$dir" && go mod tidy >&2 && go build -trimpath -o "$out.tmp" . && mv "$out.tmp" "$out")
  rm -rf "$dir"
}

# Gitea from code.gitea.io/gitea. `go install` refuses it (its go.mod names the module gitea.dev and has
# replace directives), so this builds inside a copy of the downloaded module, as bench/flux/build.sh does.
# Without the `bindata` tag Gitea reads its templates, options and public files from disk: they are kept
# beside the binary, and tests/forge.py points STATIC_ROOT_PATH at them. SQLite is the pure-Go driver.
build_gitea() {
  local out="$BIN/gitea-$GITEA_VERSION" static="$CACHE/gitea-$GITEA_VERSION"
  [ -x "$out" ] && [ -d "$static" ] && return
  log "building gitea $GITEA_VERSION; the first build takes several minutes"
  local dir; dir=$(cd "$(mktemp -d)" && pwd)
  local src; src=$(cd "$dir" && go mod download -json "code.gitea.io/gitea@$GITEA_VERSION" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
  [ -d "$src" ] || { log "cannot download code.gitea.io/gitea@$GITEA_VERSION"; exit 1; }
  # The module cache is read-only.
  cp -r "$src" "$dir/src"
  chmod -R u+w "$dir/src"
  # `nice`: the build is long and the machine's cores are shared with the tests.
  (cd "$dir/src" && nice go build -trimpath -ldflags "-s -w -X main.Version=${GITEA_VERSION#v}" -o "$out.tmp" .)
  rm -rf "$static" && mkdir -p "$static"
  cp -r "$dir/src/templates" "$dir/src/options" "$dir/src/public" "$static/"
  mv "$out.tmp" "$out"
  rm -rf "$dir"
}

build_oras() { go_install oras oras.land/oras/cmd/oras "$ORAS_VERSION"; }

if [ "${1:-}" = oras ]; then
  build_oras
  echo "ORAS=$BIN/oras-$ORAS_VERSION"
  exit 0
fi

build_etcd
build_kubernetes_command kube-apiserver
build_kubernetes_command kubectl
go_install kustomize sigs.k8s.io/kustomize/kustomize/v5 "$KUSTOMIZE_VERSION"
go_install envoy-gateway github.com/envoyproxy/gateway/cmd/envoy-gateway "$ENVOY_GATEWAY_VERSION" \
  "the first build takes several minutes"
build_registry
TAGS=$PROMETHEUS_TAGS go_install promtool github.com/prometheus/prometheus/cmd/promtool "$PROMETHEUS_VERSION" \
  "the first build takes a few minutes"
TAGS=$PROMETHEUS_TAGS go_install prometheus github.com/prometheus/prometheus/cmd/prometheus "$PROMETHEUS_VERSION"
build_eg_translate
build_gitea
build_oras
echo "KUBE_APISERVER=$BIN/kube-apiserver-$KUBERNETES_VERSION"
echo "ETCD=$BIN/etcd-$ETCD_VERSION"
echo "KUBECTL=$BIN/kubectl-$KUBERNETES_VERSION"
echo "KUSTOMIZE=$BIN/kustomize-$KUSTOMIZE_VERSION"
echo "ENVOY_GATEWAY=$BIN/envoy-gateway-$ENVOY_GATEWAY_VERSION"
echo "REGISTRY=$BIN/$REGISTRY_NAME-$REGISTRY_VERSION"
echo "EG_TRANSLATE=$EG_TRANSLATE"
echo "PROMTOOL=$BIN/promtool-$PROMETHEUS_VERSION-$PROMETHEUS_TAGS"
echo "PROMETHEUS=$BIN/prometheus-$PROMETHEUS_VERSION-$PROMETHEUS_TAGS"
echo "GITEA=$BIN/gitea-$GITEA_VERSION"
echo "GITEA_STATIC=$CACHE/gitea-$GITEA_VERSION"
echo "ORAS=$BIN/oras-$ORAS_VERSION"
