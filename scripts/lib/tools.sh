# Shared by the scripts that build or fetch tools into the tools cache (install-tools.sh,
# install-kube.sh, build-benthos.sh). Source it after setting SCRIPT_NAME (the prefix of messages).
# Everything lands under VEC_TOOLS_CACHE (default ~/.cache/vision-events-tools); bin/ holds symlinks.

TOOLS_CACHE="${VEC_TOOLS_CACHE:-${XDG_CACHE_HOME:-${HOME:-/root}/.cache}/vision-events-tools}"
BIN="$TOOLS_CACHE/bin"

say() { printf '%s: %s\n' "$SCRIPT_NAME" "$*" >&2; }
die() {
    printf '%s: ERROR: %s\n' "$SCRIPT_NAME" "$*" >&2
    exit 1
}
# Seconds since the epoch with nanosecond precision, and the seconds since such a reading.
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# Point bin/NAME at TARGET (relative symlinks are not worth the trouble here).
link() {
    local name="$1" target="$2"
    mkdir -p "$BIN"
    if [[ "$(readlink "$BIN/$name" 2>/dev/null)" != "$target" ]]; then
        ln -sfn "$target" "$BIN/$name"
    fi
}
