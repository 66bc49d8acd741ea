"""The HTTP client of the sinks: one ``aiohttp.ClientSession`` per sink, and how it is built.

One session serves every request of a sink (API and image hosts), with and without a proxy:

- ``trust_env=True``: ``HTTP_PROXY``/``HTTPS_PROXY`` are applied per URL, honouring ``NO_PROXY``
  (aiohttp ignores ``ALL_PROXY``, and reads ``~/.netrc`` for credentials of hosts it lists).
- TLS is verified against ``SSL_CERT_FILE`` or ``SSL_CERT_DIR`` when set, else certifi's bundle:
  what the sinks did before this module, so a deployment's trust store keeps working.
- At most :data:`MAX_CONNECTIONS` connections open at once, idle ones kept
  :data:`KEEPALIVE_SECONDS`.

Redirects are never followed and every request carries its own whole-request timeout: both are
set per request (``status.send``, ``images.UrlFetcher``), never left to the session's defaults.
The session is created inside the running loop (aiohttp binds it to that loop), so the sinks make
theirs lazily on their first request.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Callable
from typing import Final

import aiohttp
import certifi
from aiohttp.abc import AbstractResolver

MAX_CONNECTIONS: Final = 100
KEEPALIVE_SECONDS: Final = 5.0

SessionFactory = Callable[[], aiohttp.ClientSession]


def tls_context() -> ssl.SSLContext:
    """Verification against ``SSL_CERT_FILE``, else ``SSL_CERT_DIR``, else certifi's bundle."""
    cafile = os.environ.get("SSL_CERT_FILE")
    if cafile:
        return ssl.create_default_context(cafile=cafile)
    capath = os.environ.get("SSL_CERT_DIR")
    if capath:
        return ssl.create_default_context(capath=capath)
    return ssl.create_default_context(cafile=certifi.where())


def new_session(*, resolver: AbstractResolver | None = None) -> aiohttp.ClientSession:
    """A sink's session (call it inside the running loop): proxies from the environment, TLS, pool.

    ``resolver`` replaces the system's name resolution (tests send test host names to loopback).
    """
    connector = aiohttp.TCPConnector(
        ssl=tls_context(),
        limit=MAX_CONNECTIONS,
        limit_per_host=0,
        keepalive_timeout=KEEPALIVE_SECONDS,
        resolver=resolver,
    )
    return aiohttp.ClientSession(connector=connector, trust_env=True)


class SessionHolder:
    """Creates a session on first use (inside the loop) and closes it once, if it created one."""

    def __init__(self, factory: SessionFactory | None = None) -> None:
        self._factory = factory or new_session
        self._session: aiohttp.ClientSession | None = None

    def get(self) -> aiohttp.ClientSession:
        """The session, created now if this is the first request."""
        if self._session is None:
            self._session = self._factory()
        return self._session

    async def aclose(self) -> None:
        """Close the session (its connections); a later request would open a new one."""
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()
