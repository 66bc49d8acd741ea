"""A fake clock for code that takes an injectable clock and sleep."""

from __future__ import annotations


class FakeTime:
    """A clock that only moves when the code under test sleeps; every sleep is recorded."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        """The current fake time."""
        return self.now

    async def sleep(self, seconds: float) -> None:
        """Record the sleep and move the clock; returns at once."""
        self.sleeps.append(seconds)
        self.now += seconds
