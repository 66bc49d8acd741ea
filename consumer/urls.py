"""The image-URL allow-list, shared by message validation and the fetcher."""

from __future__ import annotations

from collections.abc import Sequence

from yarl import URL


def host_allowed(url: str, allowed_hosts: Sequence[str]) -> bool:
    """Whether ``url`` is http(s) and its host is in ``allowed_hosts`` (``*.example.com`` allowed)."""
    try:
        parsed = URL(url)
    except (ValueError, TypeError):
        return False
    if parsed.scheme not in ("http", "https") or parsed.host is None:
        return False
    host = parsed.host.lower().rstrip(".")
    if not host:
        return False
    for raw in allowed_hosts:
        pattern = raw.strip().lower().rstrip(".")
        if pattern.startswith("*."):
            suffix = pattern[1:]
            if host.endswith(suffix) and len(host) > len(suffix):
                return True
        elif pattern and host == pattern:
            return True
    return False
