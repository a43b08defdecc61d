#!/usr/bin/env bash
# Builds (once per version) Flux's controllers from their Go modules, for the benches: notification-controller
# (bench/peer_bench.py measures hookgate against its receiver) and source-controller and kustomize-controller
# (bench/push_to_applied_bench.py). `go install module@version` refuses them (each go.mod replaces its api
# module with ./api, a nested module the module zip leaves out), so each is built inside a copy of the
# downloaded module with that one replace pointed at the published api module of the same version.
#
# Usage: build.sh [notification-controller|source-controller|kustomize-controller ...] (default: all three).
# Prints, per controller, NAME_VERSION=<version> and NAME=<path> (e.g. SOURCE_CONTROLLER=...); a second run
# prints them at once.
set -euo pipefail

# Pinned like tests/control-plane/build.sh pins its versions (this machine's Go module proxy does not serve
# the modules' version lists reliably). Each is the newest release whose dependencies that proxy serves:
# notification-controller v1.9.4 and later are not served; source-controller v1.9.4 to v1.9.6 need
# github.com/fluxcd/pkg/artifact versions it does not serve; kustomize-controller v1.9.6 builds. The v1.10
# releases declare go 1.27, newer than the toolchain here.
NOTIFICATION_CONTROLLER_VERSION="${NOTIFICATION_CONTROLLER_VERSION:-v1.9.3}"
SOURCE_CONTROLLER_VERSION="${SOURCE_CONTROLLER_VERSION:-v1.9.3}"
KUSTOMIZE_CONTROLLER_VERSION="${KUSTOMIZE_CONTROLLER_VERSION:-v1.9.6}"
CACHE="${HOOKGATE_CACHE:-$HOME/.cache/hookgate}"
BIN="$CACHE/bin"
mkdir -p "$BIN"
export GOFLAGS="${GOFLAGS:--mod=mod}"
export CGO_ENABLED=0

# build_controller NAME VERSION: $BIN/NAME-VERSION from github.com/fluxcd/NAME@VERSION, unless already there.
build_controller() {
  local name=$1 version=$2
  local module="github.com/fluxcd/$name" out="$BIN/$name-$version" dir src
  if [ ! -x "$out" ]; then
    printf '[flux] building %s %s; the first build takes several minutes\n' "$name" "$version" >&2
    dir=$(cd "$(mktemp -d)" && pwd)
    # The module cache is read-only, hence the chmod before removing the copy.
    # shellcheck disable=SC2064
    trap "chmod -R u+w '$dir'; rm -rf '$dir'" EXIT
    src=$(cd "$dir" && go mod download -json "$module@$version" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
    [ -d "$src" ] || { echo "[flux] cannot download $module@$version" >&2; exit 1; }
    cp -r "$src" "$dir/src"
    chmod -R u+w "$dir/src"
    (cd "$dir/src" &&
      go mod edit -dropreplace "$module/api" -require "$module/api@$version" &&
      go mod tidy >&2 &&
      go build -trimpath -ldflags "-s -w" -o "$out.tmp" . &&
      mv "$out.tmp" "$out")
    chmod -R u+w "$dir"
    rm -rf "$dir"
    trap - EXIT
  fi
  local var
  var=$(printf '%s' "$name" | tr 'a-z-' 'A-Z_')
  echo "${var}_VERSION=$version"
  echo "$var=$out"
}

[ $# -gt 0 ] || set -- notification-controller source-controller kustomize-controller
for name in "$@"; do
  case "$name" in
    notification-controller) build_controller "$name" "$NOTIFICATION_CONTROLLER_VERSION" ;;
    source-controller) build_controller "$name" "$SOURCE_CONTROLLER_VERSION" ;;
    kustomize-controller) build_controller "$name" "$KUSTOMIZE_CONTROLLER_VERSION" ;;
    *) echo "[flux] unknown controller: $name" >&2; exit 2 ;;
  esac
done
