"""The local API stand-in as a child process in its fast mode, and how the benchmark talks to it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from bench.procs import Child, python

API_KEY = "bench-key"
USE_CASES = ("bench-qc", "bench-safety")


class StandIn:
    """``python -m consumer.fakeapi --fast`` pinned to ``cpus``; control over ``/_fake/``."""

    def __init__(self, cpus: set[int] | None, log: Path) -> None:
        argv = python("-m", "consumer.fakeapi", "--fast", "--port", "0", "--api-key", API_KEY)
        for use_case in USE_CASES:
            argv += ["--use-case", use_case]
        self.child = Child(argv, cpus=cpus, log=log, stdout_pipe=True)
        stdout = self.child.process.stdout
        if not (stdout is not None):
            raise RuntimeError("unexpected state")
        line = stdout.readline().decode().strip()
        if "listening on" not in line:
            self.child.terminate(5)
            raise RuntimeError(f"the stand-in did not start: {line!r}\n{self.child.log_tail()}")
        self.url = line.rsplit(" ", 1)[-1]
        self._http = httpx.Client(base_url=self.url, timeout=30)

    def upload(self, image: bytes) -> str:
        """Upload ``image`` as the API would; return its sourceId."""
        response = self._http.post(
            "/vision-events/upload",
            files={"file": ("frame.jpg", image, "image/jpeg")},
            headers={"Authorization": f"Bearer {API_KEY}"},
        )
        response.raise_for_status()
        source_id: str = response.json()["sourceId"]
        return source_id

    def accepted(self) -> int:
        """Events accepted since the last :meth:`clear`."""
        count: int = self._http.get("/_fake/acceptance", params={"summary": "count"}).json()["count"]
        return count

    def acceptance(self, *, timeline: bool = True) -> dict[str, Any]:
        """Count, first/last acceptance time, latency percentiles and the 50 ms timeline."""
        summary: dict[str, Any] = self._http.get(
            "/_fake/acceptance", params={} if timeline else {"timeline": "0"}
        ).json()
        return summary

    def stats(self) -> dict[str, Any]:
        """``GET /_fake/stats``: requests by endpoint and status, events, overwrites."""
        stats: dict[str, Any] = self._http.get("/_fake/stats").json()
        return stats

    def clear(self) -> None:
        """Forget the acceptance log (uploads and events are kept)."""
        self._http.delete("/_fake/acceptance").raise_for_status()

    def stop(self) -> None:
        """Stop the process."""
        self._http.close()
        if self.child.process.stdout is not None:
            self.child.process.stdout.close()
        self.child.terminate(10)
