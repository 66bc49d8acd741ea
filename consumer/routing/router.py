"""First-match-wins topic routing, cached per topic because topics repeat endlessly."""

from __future__ import annotations

from consumer.routing.route import Route

_NO_MATCH = None


class Router:
    """Finds the first route whose pattern matches a topic, with its captures."""

    def __init__(self, routes: list[Route], cache_size: int = 65_536) -> None:
        self._routes = routes
        self._cache: dict[str, tuple[Route, dict[str, str]] | None] = {}
        self._cache_size = cache_size

    def match(self, topic: str) -> tuple[Route, dict[str, str]] | None:
        """The first matching route and its captures, or None."""
        try:
            return self._cache[topic]
        except KeyError:
            pass
        found: tuple[Route, dict[str, str]] | None = _NO_MATCH
        for route in self._routes:
            captures = route.pattern.match(topic)
            if captures is not None:
                found = (route, captures)
                break
        if len(self._cache) >= self._cache_size:
            # Topics with ids in them could grow the cache without bound; start over instead.
            self._cache.clear()
        self._cache[topic] = found
        return found
