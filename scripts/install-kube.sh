#!/usr/bin/env bash
# A real Kubernetes control plane for the cluster tests (tests/cluster), built from the Go module
# proxy once per version and cached next to helm (scripts/install-tools.sh calls this script):
#
#   etcd                     go.etcd.io/etcd/server/v3 (its package has a main)
#   kube-apiserver           k8s.io/kubernetes/cmd/kube-apiserver
#   kube-controller-manager  k8s.io/kubernetes/cmd/kube-controller-manager
#   crds/                    the Prometheus-operator CRDs and KEDA's ScaledObject CRD, copied from
#                            their module zips (no network at test time)
#
#   scripts/install-kube.sh [etcd|kube|crds]...   install whatever is missing (all by default)
#
# Everything lands under VEC_TOOLS_CACHE (default ~/.cache/vision-events-tools); bin/ holds symlinks.
# Kubernetes' binaries take minutes to build on 2 cores: the Go module cache is reused (it is what
# makes a second cold build fast), the build cache is a private directory removed afterwards (about
# 4 GB that nothing else would reuse).
set -euo pipefail

# Kubernetes matches helm's client-go (v0.37 for helm v3.22.0): helm refuses nothing and warns
# about nothing on an API server of its own minor version.
KUBE_VERSION="${KUBE_VERSION:-v1.37.2}"
ETCD_VERSION="${ETCD_VERSION:-v3.6.17}"
PROMETHEUS_OPERATOR_VERSION="${PROMETHEUS_OPERATOR_VERSION:-v0.85.0}"
KEDA_VERSION="${KEDA_VERSION:-v2.21.1}"

SCRIPT_NAME=install-kube
# shellcheck source=lib/tools.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/tools.sh"

# A scratch Go module and a private build cache, both removed on exit (even when a build fails).
SCRATCH=()
cleanup() { ((${#SCRATCH[@]})) && rm -rf "${SCRATCH[@]}"; return 0; }
trap cleanup EXIT
# scratch NAME: a new scratch directory in $WORK (not printed: the list must grow in this shell, not
# in a command substitution's subshell).
WORK=""
scratch() {
    WORK="$(mktemp -d "$TOOLS_CACHE/.$1-build.XXXXXX")"
    SCRATCH+=("$WORK")
}

# go with the local toolchain only (never a toolchain download), the private build cache and no VCS
# stamping; CGO off: static binaries, and no C compiler needed.
gobuild() {
    local cache="$1"
    shift
    GOTOOLCHAIN=local GOCACHE="$cache" GOFLAGS=-buildvcs=false CGO_ENABLED=0 go "$@"
}

# run LOG COMMAND...: the command's output goes to LOG, shown only when it fails.
run_logged() {
    local log="$1"
    shift
    if ! "$@" >>"$log" 2>&1; then
        cat "$log" >&2
        return 1
    fi
}

install_etcd() {
    local dir="$TOOLS_CACHE/etcd-$ETCD_VERSION"
    if [[ -x "$dir/etcd" ]]; then
        link etcd "$dir/etcd"
        return
    fi
    command -v go >/dev/null || die "go is needed to build etcd ($ETCD_VERSION)"
    say "building etcd $ETCD_VERSION (about a minute on 2 cores, once)"
    local started work
    started="$(now)"
    scratch etcd
    work="$WORK"
    # A throwaway module that requires the server: `go install pkg@version` would do, but etcd's
    # server module has replace directives, which `go install` refuses.
    cat >"$work/go.mod" <<EOF
module vec.local/etcd-build

go 1.24

require go.etcd.io/etcd/server/v3 $ETCD_VERSION
EOF
    printf '//go:build tools\n\npackage tools\n\nimport _ "go.etcd.io/etcd/server/v3"\n' >"$work/tools.go"
    (
        cd "$work"
        run_logged build.log gobuild "$work/cache" mod tidy &&
            run_logged build.log gobuild "$work/cache" build -trimpath -ldflags "-s -w" -o etcd \
                go.etcd.io/etcd/server/v3
    ) || die "building etcd $ETCD_VERSION failed"
    mkdir -p "$dir"
    mv "$work/etcd" "$dir/etcd"
    rm -rf "$work"
    link etcd "$dir/etcd"
    say "etcd $ETCD_VERSION built in $(elapsed "$started") s"
}

install_kube() {
    local dir="$TOOLS_CACHE/kube-$KUBE_VERSION"
    if [[ -x "$dir/kube-apiserver" && -x "$dir/kube-controller-manager" ]]; then
        link kube-apiserver "$dir/kube-apiserver"
        link kube-controller-manager "$dir/kube-controller-manager"
        return
    fi
    command -v go >/dev/null || die "go is needed to build kube-apiserver ($KUBE_VERSION)"
    say "building kube-apiserver and kube-controller-manager $KUBE_VERSION" \
        "(about 5 minutes and 3 GB of memory on 2 cores, once; log: $TOOLS_CACHE/kube-build.log)"
    local started work log staging major minor ldflags pkg
    started="$(now)"
    scratch kube
    work="$WORK"
    log="$TOOLS_CACHE/kube-build.log"
    : >"$log"
    # k8s.io/kubernetes requires its staging modules (k8s.io/api, ...) as v0.0.0 and replaces them
    # with local paths, so `go install ...@version` is refused. The throwaway module replaces each
    # with its published v0.MINOR.PATCH twin, generated from kubernetes' own go.mod.
    local gomod
    gomod="$(GOTOOLCHAIN=local go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" |
        sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')"
    [[ -f "$gomod" ]] || die "cannot download k8s.io/kubernetes@$KUBE_VERSION's go.mod"
    staging="v0.${KUBE_VERSION#v1.}"
    {
        printf 'module vec.local/kube-build\n\ngo 1.24\n\nrequire k8s.io/kubernetes %s\n\n' "$KUBE_VERSION"
        awk -v v="$staging" '$1 ~ /^k8s\.io\// && $2 == "v0.0.0" { print "replace " $1 " => " $1 " " v }' "$gomod"
    } >"$work/go.mod"
    grep -q '^replace k8s.io/api ' "$work/go.mod" || die "no staging modules found in $gomod"
    printf '//go:build tools\n\npackage tools\n\nimport (\n\t_ "k8s.io/kubernetes/cmd/kube-apiserver"\n\t_ "k8s.io/kubernetes/cmd/kube-controller-manager"\n)\n' \
        >"$work/tools.go"
    # Without the version the server reports v0.0.0-master and helm refuses any chart with a
    # kubeVersion constraint (ours: >=1.25.0-0).
    major="${KUBE_VERSION#v}"
    major="${major%%.*}"
    minor="${KUBE_VERSION#v*.}"
    minor="${minor%%.*}"
    ldflags="-s -w"
    for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
        ldflags+=" -X $pkg.gitVersion=$KUBE_VERSION -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
        ldflags+=" -X $pkg.gitTreeState=clean"
    done
    # One `go build` for both commands: the packages they share are compiled once.
    (
        cd "$work"
        run_logged "$log" gobuild "$work/cache" mod tidy &&
            run_logged "$log" gobuild "$work/cache" build -trimpath -ldflags "$ldflags" -o "$work/out/" \
                k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager
    ) || die "building Kubernetes $KUBE_VERSION failed (log: $log)"
    "$work/out/kube-apiserver" --version | grep -qx "Kubernetes $KUBE_VERSION" ||
        die "the built kube-apiserver does not report $KUBE_VERSION"
    mkdir -p "$dir"
    mv "$work/out/kube-apiserver" "$work/out/kube-controller-manager" "$dir/"
    rm -rf "$work"
    link kube-apiserver "$dir/kube-apiserver"
    link kube-controller-manager "$dir/kube-controller-manager"
    say "Kubernetes $KUBE_VERSION built in $(elapsed "$started") s"
}

# module_files MODULE@VERSION GLOB DEST: copy the files of the module's zip (from the Go module proxy,
# cached in the module cache) whose path matches GLOB into DEST. Only the zip is needed, never a
# build: `go mod download` fetches it, then may refuse to unpack a module whose go directive is
# newer than the local toolchain (KEDA's), so the files are read from the zip itself.
module_files() {
    local out zip
    out="$(GOTOOLCHAIN=local go mod download -json "$1" 2>/dev/null || true)"
    zip="$(printf '%s' "$out" | sed -n 's/.*"Zip": "\(.*\)".*/\1/p')"
    [[ -f "$zip" ]] || die "cannot download $1 from the Go module proxy: $out"
    python3 - "$zip" "$1/$2" "$3" <<'PY' || die "no file matches $2 in $1"
import fnmatch, os, sys, zipfile

zip_path, pattern, dest = sys.argv[1:]
with zipfile.ZipFile(zip_path) as archive:
    names = [n for n in archive.namelist() if fnmatch.fnmatch(n, pattern)]
    for name in names:
        with open(os.path.join(dest, os.path.basename(name)), "wb") as out:
            out.write(archive.read(name))
sys.exit(0 if names else 1)
PY
}

install_crds() {
    local dir="$TOOLS_CACHE/crds-$PROMETHEUS_OPERATOR_VERSION-keda-$KEDA_VERSION"
    if [[ -d "$dir" ]]; then
        link crds "$dir"
        return
    fi
    local started partial="$dir.partial"
    started="$(now)"
    say "fetching the Prometheus-operator $PROMETHEUS_OPERATOR_VERSION and KEDA $KEDA_VERSION CRDs"
    rm -rf "$partial"
    mkdir -p "$partial"
    module_files "github.com/prometheus-operator/prometheus-operator@$PROMETHEUS_OPERATOR_VERSION" \
        'example/prometheus-operator-crd/*.yaml' "$partial"
    module_files "github.com/kedacore/keda/v2@$KEDA_VERSION" \
        config/crd/bases/keda.sh_scaledobjects.yaml "$partial"
    rm -rf "$dir"
    mv "$partial" "$dir"
    link crds "$dir"
    say "CRDs copied in $(elapsed "$started") s"
}

mkdir -p "$TOOLS_CACHE" "$BIN"
(($#)) || set -- crds etcd kube
for part in "$@"; do
    case "$part" in
        etcd) install_etcd ;;
        kube) install_kube ;;
        crds) install_crds ;;
        *) die "unknown part: $part (etcd, kube, crds)" ;;
    esac
done
