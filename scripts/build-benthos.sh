#!/usr/bin/env bash
# Benthos, the peer the bench compares the consumer with (bench/peers.py), built once from the Go
# module proxy into the tools cache, pinned:
#
#   scripts/build-benthos.sh [install]   build it unless already built (about 70 s on 2 cores, once
#                                        per version; a second run takes a fraction of a second)
#   scripts/build-benthos.sh path        print the binary's path (exit 1 if it is not built)
#   scripts/build-benthos.sh version     print the built binary's version
#
# Why Benthos v4.27.0 and not Redpanda Connect (../shared/peer-bench/README.md): the module proxy
# refuses every github.com/redpanda-data/connect/v4 version (403); v4.27.0 is the last release under
# the Benthos name, from which Redpanda Connect continued. Its stock cmd/benthos (and
# public/components/all) pulls a module the proxy refuses too (inet.af/peercred, through Pulsar), so
# the program built here is the stock CLI with only the component packages the bench's job needs:
# Kafka and MQTT inputs, http_client output (io), bloblang and batching (pure), Prometheus metrics.
# The component code is stock.
#
# Everything lands under VEC_TOOLS_CACHE (default ~/.cache/vision-events-tools), like
# scripts/install-tools.sh: benthos-<version>/benthos, and bin/benthos a symlink to it.
set -euo pipefail

BENTHOS_VERSION="${BENTHOS_VERSION:-v4.27.0}"
MODULE="github.com/benthosdev/benthos/v4"

SCRIPT_NAME=build-benthos
# shellcheck source=lib/tools.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/tools.sh"
DIR="$TOOLS_CACHE/benthos-$BENTHOS_VERSION"
tmp=""

cmd_install() {
    if [[ -x "$DIR/benthos" ]]; then
        link benthos "$DIR/benthos"
        return
    fi
    command -v go >/dev/null || die "go is needed to build Benthos $BENTHOS_VERSION"
    say "building Benthos $BENTHOS_VERSION from the Go module proxy (about 70 s on 2 cores, once per version)"
    local started
    started="$(now)"
    mkdir -p "$TOOLS_CACHE"
    tmp="$(mktemp -d "$TOOLS_CACHE/.benthos-build.XXXXXX")"
    # Removed however the build ends (a global: the trap runs after this function returned), so an
    # interrupted build leaves nothing behind.
    trap 'rm -rf "$tmp"' EXIT
    mkdir "$tmp/src"
    cat >"$tmp/src/go.mod" <<EOF
module vision-events-consumer/bench/benthos

go 1.21

require $MODULE $BENTHOS_VERSION
EOF
    cat >"$tmp/src/main.go" <<EOF
// The stock Benthos CLI with the components the bench's job uses (see scripts/build-benthos.sh).
package main

import (
	"context"

	"$MODULE/public/service"

	_ "$MODULE/public/components/io"
	_ "$MODULE/public/components/kafka"
	_ "$MODULE/public/components/mqtt"
	_ "$MODULE/public/components/prometheus"
	_ "$MODULE/public/components/pure"
)

func main() {
	service.RunCLI(context.Background())
}
EOF
    # -mod=mod: go resolves the transitive modules from Benthos's own go.mod (minimal version
    # selection, so the same versions every time) and checks them against the checksum database.
    # Its download chatter goes to a log, shown only when the build fails.
    if ! (cd "$tmp/src" && GOFLAGS="-mod=mod -buildvcs=false" CGO_ENABLED=0 \
        go build -trimpath -ldflags "-s -w" -o "$tmp/benthos" .) >"$tmp/build.log" 2>&1; then
        cat "$tmp/build.log" >&2
        die "building Benthos $BENTHOS_VERSION failed"
    fi
    local built
    built="$("$tmp/benthos" --version 2>/dev/null | head -n 1 || true)"
    mkdir -p "$DIR"
    mv "$tmp/benthos" "$DIR/benthos"
    link benthos "$DIR/benthos"
    say "Benthos $BENTHOS_VERSION built in $(elapsed "$started") s: $DIR/benthos ($built)"
}

cmd_path() {
    [[ -x "$DIR/benthos" ]] || die "Benthos $BENTHOS_VERSION is not built: run scripts/build-benthos.sh"
    printf '%s\n' "$DIR/benthos"
}

command="${1:-install}"
case "$command" in
    install) cmd_install ;;
    path) cmd_path ;;
    version) "$(cmd_path)" --version ;;
    *) die "usage: $0 [install|path|version]" ;;
esac
