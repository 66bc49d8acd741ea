"""A test's own Mosquitto, for broker settings the shared one must not change (``max_packet_size``)."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.support import brokers
from tests.support.process import free_port

_START_TIMEOUT_SECONDS = 10.0


@contextmanager
def own_mosquitto(directory: Path, *config_lines: str) -> Iterator[str]:
    """Start ``mosquitto`` on a free loopback port with ``config_lines``; yield its URL, then kill it.

    The process is ended by its own PID at exit, never by name: other brokers run on this machine.
    """
    binary = shutil.which("mosquitto") or next(
        (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if Path(p).exists()), None
    )
    if binary is None:
        brokers.unavailable("The mosquitto binary")
    assert binary is not None
    port = free_port()
    config = directory / f"mosquitto-{port}.conf"
    config.write_text(
        "\n".join(
            [f"listener {port} 127.0.0.1", "allow_anonymous true", "persistence false", *config_lines, ""]
        )
    )
    log = (directory / f"mosquitto-{port}.log").open("wb")
    process = subprocess.Popen(
        [binary, "-c", str(config)], stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        _wait_for_port(port, process)
        yield f"mqtt://127.0.0.1:{port}"
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        log.close()


def _wait_for_port(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + _START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"mosquitto exited at start with code {process.returncode}")
        with socket.socket() as probe:
            probe.settimeout(0.5)
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise AssertionError(f"mosquitto did not listen on port {port} within {_START_TIMEOUT_SECONDS:g}s")
