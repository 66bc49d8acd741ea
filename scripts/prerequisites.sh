#!/usr/bin/env bash
# What `make demo` and `make test` need from the machine, checked before anything is installed.
#
#   scripts/prerequisites.sh demo|test
#
# Prints one line per missing prerequisite with how to get it, and exits 1 when something cannot
# be installed by the project's scripts. Mosquitto (and, as root, Java 17 + Maven) are installed by
# scripts/brokers.sh from Debian's packages when missing: they are reported, not refused.
set -euo pipefail

goal="${1:-test}"
missing=0
PYTHON="${BASE_PYTHON:-python3}"

say() { printf 'prerequisites: %s\n' "$*" >&2; }
need() {
    say "MISSING $1: $2"
    missing=1
}
have() { command -v "$1" >/dev/null 2>&1; }
root() { [[ "$(id -u)" == 0 ]]; }

if ! have "$PYTHON"; then
    need "Python 3.11+" "install python3 (Debian: apt-get install python3 python3-venv)"
elif ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    need "Python 3.11+" "$PYTHON is $("$PYTHON" -c 'import platform; print(platform.python_version())'); set BASE_PYTHON=/path/to/python3.11"
elif ! "$PYTHON" -c 'import venv, ensurepip' 2>/dev/null; then
    need "Python's venv module" "Debian: apt-get install python3-venv"
fi

if ! have mosquitto && ! [[ -x /usr/sbin/mosquitto ]]; then
    if root; then
        say "Mosquitto will be installed from Debian's packages (apt-get install mosquitto mosquitto-clients)"
    else
        need "Mosquitto" "sudo apt-get install mosquitto mosquitto-clients"
    fi
fi

if [[ "$goal" == test ]]; then
    if ! have java || ! have mvn; then
        if root; then
            say "Java 17 and Maven will be installed from Debian's packages (the Kafka broker's jars come from Maven Central)"
        else
            need "Java 17+ and Maven" "sudo apt-get install openjdk-17-jdk-headless maven (Kafka runs from its Maven Central jars)"
        fi
    fi
    have go || need "Go 1.26+" "https://go.dev/doc/install (helm, the Kubernetes control plane for the chart tests and Benthos are built from the Go module proxy; the Go publisher example)"
    have node && have npm || need "Node.js 20+ and npm" "Debian: apt-get install nodejs npm (the Node.js publisher example)"
    have openssl || need "openssl" "Debian: apt-get install openssl (throwaway certificates for the TLS tests)"
fi

if ((missing)); then
    say "install what is missing above, then run make $goal again"
    exit 1
fi
