"""A local stand-in of the Vision Events API and the on-device Event Store, for tests and demos.

A real HTTP server over sockets that enforces the wire contract (``vision-events-api.md``)
strictly, with fault injection and inspection from Python or over ``/_fake/`` HTTP routes.
"""

from consumer.fakeapi.server import FakeVisionEventsApi, serve

__all__ = ["FakeVisionEventsApi", "serve"]
