#!/usr/bin/env bash
# Builds (once per version) Flux's notification-controller from its Go module, the peer bench/peer_bench.py
# measures hookgate against. `go install module@version` refuses it (its go.mod replaces the api module
# with ./api, a nested module the module zip leaves out), so this builds inside a copy of the downloaded
# module with that one replace pointed at the published api module of the same version.
# Prints NOTIFICATION_CONTROLLER=<path>; a second run prints it at once.
set -euo pipefail

# Latest v1.9.x. Pinned like tests/control-plane/build.sh pins its versions (this machine's Go module proxy
# does not serve the module's version list, so `go list -m -versions` cannot find it).
NOTIFICATION_CONTROLLER_VERSION="${NOTIFICATION_CONTROLLER_VERSION:-v1.9.3}"
CACHE="${HOOKGATE_CACHE:-$HOME/.cache/hookgate}"
BIN="$CACHE/bin"
OUT="$BIN/notification-controller-$NOTIFICATION_CONTROLLER_VERSION"
MODULE=github.com/fluxcd/notification-controller
mkdir -p "$BIN"
export GOFLAGS="${GOFLAGS:--mod=mod}"
export CGO_ENABLED=0

if [ ! -x "$OUT" ]; then
  printf '[flux] building notification-controller %s; the first build takes several minutes\n' \
    "$NOTIFICATION_CONTROLLER_VERSION" >&2
  dir=$(cd "$(mktemp -d)" && pwd)
  trap 'chmod -R u+w "$dir"; rm -rf "$dir"' EXIT
  src=$(cd "$dir" && go mod download -json "$MODULE@$NOTIFICATION_CONTROLLER_VERSION" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
  [ -d "$src" ] || { echo "[flux] cannot download $MODULE@$NOTIFICATION_CONTROLLER_VERSION" >&2; exit 1; }
  # The module cache is read-only.
  cp -r "$src" "$dir/src"
  chmod -R u+w "$dir/src"
  (cd "$dir/src" &&
    go mod edit -dropreplace "$MODULE/api" -require "$MODULE/api@$NOTIFICATION_CONTROLLER_VERSION" &&
    go mod tidy >&2 &&
    go build -trimpath -ldflags "-s -w" -o "$OUT.tmp" . &&
    mv "$OUT.tmp" "$OUT")
fi
echo "NOTIFICATION_CONTROLLER_VERSION=$NOTIFICATION_CONTROLLER_VERSION"
echo "NOTIFICATION_CONTROLLER=$OUT"
