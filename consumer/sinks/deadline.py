"""An httpx client whose request timeout bounds the whole request, not each read.

httpx's timeouts (and the lean transport's) bound each connect, write and read: a server that
answers one byte every so often never trips them and holds a batch forever. ``DeadlineClient``
runs the whole exchange (pool wait, connect, send, head and body) under one ``asyncio.timeout``
of the request's timeout, whichever transport sends it (the lean one or httpx's default behind a
proxy). On expiry the send is cancelled, which closes its connection (a half-read connection is
never reused), and ``httpx.ReadTimeout`` is raised: the sinks retry it like any network error.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx


def request_bound(request: httpx.Request) -> float | None:
    """The whole-request bound of ``request``: the longest of its timeout extension's values."""
    timeouts = request.extensions.get("timeout", {})
    values = [value for value in timeouts.values() if value is not None]
    return max(values) if values else None


class DeadlineClient(httpx.AsyncClient):
    """``httpx.AsyncClient`` whose ``send`` (body included unless streamed) has one deadline."""

    async def send(self, request: httpx.Request, *args: Any, **kwargs: Any) -> httpx.Response:
        """Send ``request``; ReadTimeout when the whole exchange outlasts the request's timeout."""
        bound = request_bound(request)
        try:
            async with asyncio.timeout(bound):
                return await super().send(request, *args, **kwargs)
        except TimeoutError as exc:
            raise httpx.ReadTimeout(f"the request took longer than {bound}s", request=request) from exc
