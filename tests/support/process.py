"""The consumer as a real process, for tests that kill it, stop it and read its metrics."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Any

import httpx
import yaml
from prometheus_client.parser import text_string_to_metric_families


def free_port() -> int:
    """A TCP port free on loopback right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_settings(path: Path, settings: dict[str, Any]) -> Path:
    """Write a YAML settings file."""
    path.write_text(yaml.safe_dump(settings, sort_keys=False))
    return path


class ConsumerProcess:
    """``python -m consumer run --config ...`` with its ops port, logs in a file."""

    def __init__(self, config: Path, port: int, log_path: Path, env: dict[str, str] | None = None) -> None:
        self.config = config
        self.port = port
        self.log_path = log_path
        self._env = {**os.environ, **(env or {})}
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(self) -> ConsumerProcess:
        """Start the process (logs appended to ``log_path``)."""
        self._log = self.log_path.open("ab")
        self._process = subprocess.Popen(
            [sys.executable, "-m", "consumer", "run", "--config", str(self.config)],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=self._env,
        )
        return self

    @property
    def process(self) -> subprocess.Popen[bytes]:
        """The running process."""
        assert self._process is not None, "not started"
        return self._process

    def wait_ready(self, timeout: float = 60) -> None:
        """Wait until /readyz says ready; fail with the log tail if it never does."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"consumer exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"consumer not ready after {timeout}s:\n{self.log_tail()}")

    def metrics(self) -> dict[str, float]:
        """Current metric samples, keyed ``name{label="v",...}`` (labels sorted), summed per key."""
        text = httpx.get(f"http://127.0.0.1:{self.port}/metrics", timeout=5).text
        samples: dict[str, float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
                key = f"{sample.name}{{{labels}}}" if labels else sample.name
                samples[key] = samples.get(key, 0.0) + sample.value
        return samples

    def metric_total(self, name: str) -> float:
        """The sum of every series of ``name``."""
        return sum(v for k, v in self.metrics().items() if k == name or k.startswith(name + "{"))

    def kill(self) -> None:
        """SIGKILL: no drain, no commit."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)
        self._close_log()

    def terminate(self, timeout: float) -> int:
        """SIGTERM and wait; returns the exit code."""
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        finally:
            self._close_log()

    def stop_quietly(self) -> None:
        """Clean up after a test, whatever state the process is in."""
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait(10)
        self._close_log()

    def log_contains(self, text: str) -> bool:
        """Whether the process's log holds ``text`` so far."""
        try:
            return text in self.log_path.read_text(errors="replace")
        except OSError:
            return False

    def log_tail(self, lines: int = 40) -> str:
        """The end of the process's log."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None


def wait_until(predicate: Any, timeout: float, what: str, interval: float = 0.2) -> None:
    """Poll ``predicate`` until true; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")
