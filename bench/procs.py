"""Processes of a benchmark run: CPU pinning, CPU seconds and RSS from /proc, child processes."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

_TICKS = os.sysconf("SC_CLK_TCK")
BROKER_STATE = Path(os.environ.get("BROKERS_STATE", "/tmp/vision-events-brokers"))  # noqa: S108


def cpu_count() -> int:
    """CPUs this process may run on."""
    return len(os.sched_getaffinity(0))


def pin(pid: int, cpus: Iterable[int]) -> dict[int, set[int]]:
    """Pin every thread of ``pid`` to ``cpus``; returns each thread's previous affinity.

    ``sched_setaffinity`` applies to one thread; a JVM or librdkafka process has many.
    """
    wanted = set(cpus)
    previous: dict[int, set[int]] = {}
    try:
        tids = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
    except OSError:
        tids = [pid]
    for tid in tids:
        with contextlib.suppress(OSError):
            previous[tid] = set(os.sched_getaffinity(tid))
            os.sched_setaffinity(tid, wanted)
    return previous


def unpin(previous: dict[int, set[int]]) -> None:
    """Restore the affinities :func:`pin` returned (threads that ended are skipped)."""
    for tid, cpus in previous.items():
        with contextlib.suppress(OSError):
            os.sched_setaffinity(tid, cpus)


def broker_pids() -> dict[str, int]:
    """Pids of the brokers started by scripts/brokers.sh (those that are running)."""
    found: dict[str, int] = {}
    for name, file in (("kafka", "kafka/kafka.pid"), ("mqtt", "mqtt/mosquitto.pid")):
        with contextlib.suppress(OSError, ValueError):
            pid = int((BROKER_STATE / file).read_text().strip())
            os.kill(pid, 0)
            found[name] = pid
    return found


@dataclass(frozen=True, slots=True)
class Usage:
    """One reading of a process: CPU seconds (user + system, all threads), RSS and peak RSS in bytes."""

    cpu: float
    rss: int
    peak_rss: int


def usage(pid: int) -> Usage | None:
    """Read /proc/<pid>/stat and /proc/<pid>/status; None once the process is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    cpu = (int(fields[11]) + int(fields[12])) / _TICKS
    rss = peak = 0
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) * 1024
        elif line.startswith("VmHWM:"):
            peak = int(line.split()[1]) * 1024
    return Usage(cpu, rss, peak)


class Child:
    """A child process pinned to ``cpus``, output to a log file; stopped on :meth:`stop`."""

    def __init__(
        self,
        argv: Sequence[str],
        *,
        cpus: Iterable[int] | None,
        log: Path,
        env: dict[str, str] | None = None,
        stdout_pipe: bool = False,
        cwd: str | None = None,
    ) -> None:
        self.argv = list(argv)
        self.log_path = log
        cpu_set = set(cpus) if cpus is not None else None
        self._log: IO[bytes] = log.open("ab")

        def pin_self() -> None:
            if cpu_set:
                os.sched_setaffinity(0, cpu_set)

        self.process = subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE if stdout_pipe else self._log,
            stderr=self._log,
            env={**os.environ, **(env or {})},
            cwd=cwd,
            preexec_fn=pin_self,  # noqa: PLW1509 - no threads in the parent's fork path that matter
        )

    @property
    def pid(self) -> int:
        """The process id."""
        return self.process.pid

    def alive(self) -> bool:
        """Whether it still runs."""
        return self.process.poll() is None

    def pause(self) -> None:
        """SIGSTOP: it reads nothing until :meth:`resume` (its broker queues for it)."""
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT."""
        self.process.send_signal(signal.SIGCONT)

    def terminate(self, timeout: float = 30.0) -> int | None:
        """SIGTERM (after SIGCONT, in case it is paused), then SIGKILL after ``timeout``."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGCONT)
                self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self._log.close()
        return self.process.returncode

    def log_tail(self, lines: int = 30) -> str:
        """The end of its log."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def python(*args: str) -> list[str]:
    """``[sys.executable, *args]``."""
    return [sys.executable, *args]


def wait_for(predicate: object, timeout: float, what: str, interval: float = 0.05) -> None:
    """Poll ``predicate()`` until true or raise TimeoutError naming ``what``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
