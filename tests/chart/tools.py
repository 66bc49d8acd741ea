"""Where the chart tests find their tools (installed by ``scripts/install-tools.sh``).

1. ``VEC_TOOLS_BIN`` when set, else ``~/.cache/vision-events-tools/bin`` (the script's default);
2. else the ``PATH``;
3. else the test is skipped, except under ``CI=true``, where a missing tool fails the run: a skipped
   chart test in CI would be a green build that proved nothing (as for brokers in tests/support).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from tests.support.ci import missing

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "vision-events-consumer"
INSTALL_HINT = "install it with `bash scripts/install-tools.sh`"


def tools_bin() -> Path:
    """The directory install-tools.sh links the tools into."""
    configured = os.environ.get("VEC_TOOLS_BIN")
    if configured:
        return Path(configured)
    cache = os.environ.get("VEC_TOOLS_CACHE") or str(
        Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "vision-events-tools"
    )
    return Path(cache) / "bin"


def find(name: str) -> str | None:
    """The tool's path, or None."""
    candidate = tools_bin() / name
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return str(candidate)
    return shutil.which(name)


def require(name: str) -> str:
    """The tool's path; fails under CI and skips elsewhere when it is missing."""
    path = find(name)
    if path is None:
        missing(f"{name} is not installed: {INSTALL_HINT}")
    return path
