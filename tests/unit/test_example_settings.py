"""The settings files in examples/settings/ pass ``check-config``, run as a user runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples" / "settings"
MASK = "**********"

# Secrets as a user gives them: environment variables, never written in the files.
SECRETS = {
    "ROBOFLOW_API_KEY": "rf-example-key-4e1b",
    "VEC_SOURCE__MQTT__PASSWORD": "mqtt-example-password-9c2d",
    "VEC_SOURCE__KAFKA__SASL_PASSWORD": "sasl-example-password-77aa",
    "VEC_SINK__LOCAL__API_KEY": "store-example-key-310f",
}

# Per file: the settings its purpose rests on, as check-config prints them (dotted path -> value).
EXPECTED: dict[str, dict[str, Any]] = {
    "mqtt-cloud.yaml": {
        "source.type": "mqtt",
        "source.mqtt.url": "mqtts://broker.factory.local:8883",
        "source.mqtt.tls.enabled": True,
        "source.mqtt.password": MASK,
        "sink.type": "cloud",
        "sink.cloud.api_key": MASK,
        "dead_letter.type": "mqtt",
    },
    "kafka-sasl-cloud.yaml": {
        "source.type": "kafka",
        "source.kafka.topics": ["^vision\\..*"],
        "source.kafka.settings.security.protocol": "SASL_SSL",
        "source.kafka.settings.sasl.mechanism": "SCRAM-SHA-512",
        "source.kafka.sasl_password": MASK,
        "sink.type": "cloud",
        "sink.cloud.api_key": MASK,
        "dead_letter.type": "kafka",
    },
    "edge-event-store.yaml": {
        "source.type": "mqtt",
        "sink.type": "local",
        "sink.local.url": "http://localhost:8001",
        "sink.local.api_key": MASK,
        "dead_letter.type": "jsonl",
    },
    "spool.yaml": {
        "spool.enabled": True,
        "spool.path": "/var/lib/vision-events/spool.db",
        "spool.synchronous": "full",
        "sink.type": "cloud",
        "sink.cloud.api_key": MASK,
    },
}

# Keys that hold a secret: none may be written in an example file.
_SECRET_KEYS = {"api_key", "password", "sasl_password", "sasl.password", "extra_headers"}


def _lookup(tree: dict[str, Any], dotted: str) -> Any:
    """Follow a dotted path; a librdkafka key (``security.protocol``) is one key holding dots."""
    node: Any = tree
    parts = dotted.split(".")
    while parts:
        for width in range(len(parts), 0, -1):
            key = ".".join(parts[:width])
            if isinstance(node, dict) and key in node:
                node = node[key]
                parts = parts[width:]
                break
        else:
            raise KeyError(dotted)
    return node


def _keys(value: Any) -> set[str]:
    if isinstance(value, dict):
        return {str(key) for key in value} | {k for item in value.values() for k in _keys(item)}
    if isinstance(value, list):
        return {k for item in value for k in _keys(item)}
    return set()


def test_every_example_file_is_checked() -> None:
    assert sorted(path.name for path in EXAMPLES.glob("*.yaml")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_settings_pass_check_config(name: str) -> None:
    path = EXAMPLES / name
    assert not _keys(yaml.safe_load(path.read_text())) & _SECRET_KEYS, "a secret key is written in the file"
    env = {key: value for key, value in os.environ.items() if not key.startswith("VEC_")}
    env.update(SECRETS)
    done = subprocess.run(
        [sys.executable, "-m", "consumer", "check-config", "--config", str(path.relative_to(REPO))],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    for secret in SECRETS.values():
        assert secret not in done.stdout + done.stderr
    effective = yaml.safe_load(done.stdout)
    for dotted, value in EXPECTED[name].items():
        assert _lookup(effective, dotted) == value, dotted
    assert effective["routes_loaded"], "the routes file was not loaded"
