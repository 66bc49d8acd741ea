"""Throwaway certificates for TLS tests: a private CA, a server certificate and a client one.

Made with the ``openssl`` program; under CI its absence fails the test instead of skipping it.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from tests.support.ci import missing

_NEW_KEY = ("-newkey", "rsa:2048", "-nodes")
_SIGN = ("-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-days", "2")


def require_openssl() -> str:
    """The openssl program's path; fails under CI and skips elsewhere when it is missing."""
    found = shutil.which("openssl")
    if found is None:
        missing("the openssl program is not installed (Debian: apt-get install openssl)")
    return found


def make_certificates(directory: Path, openssl: str) -> None:
    """Write into ``directory``: ``ca.crt``/``ca.key``, ``server.crt``/``server.key`` (for
    localhost and 127.0.0.1) and ``client.crt``/``client.key``, both signed by the CA."""
    (directory / "server.ext").write_text(
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n", encoding="utf-8"
    )
    _run(openssl, "req", "-x509", *_NEW_KEY, "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
         "-subj", "/CN=vec-test-ca", cwd=directory)  # fmt: skip
    for name, extra in (("server", ["-extfile", "server.ext"]), ("client", [])):
        _run(openssl, "req", *_NEW_KEY, "-keyout", f"{name}.key", "-out", f"{name}.csr",
             "-subj", f"/CN={name}", cwd=directory)  # fmt: skip
        _run(openssl, "x509", "-req", "-in", f"{name}.csr", *_SIGN, "-out", f"{name}.crt", *extra,
             cwd=directory)  # fmt: skip


def _run(*args: str, cwd: Path) -> None:
    subprocess.run(args, cwd=cwd, check=True, capture_output=True, timeout=60)
