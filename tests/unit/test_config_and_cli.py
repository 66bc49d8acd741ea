"""Settings precedence, secret masking, check-config and validate-message."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
import yaml

from consumer.cli import main
from consumer.config import load_settings
from consumer.errors import ConfigError
from tests.support.images import b64, png_bytes

REPO = Path(__file__).resolve().parents[2]
ROUTES = REPO / "examples" / "routes.yaml"
SECRET = "sk-live-do-not-print-7f3a"


def _write(tmp_path: Path, data: dict[str, object]) -> Path:
    path = tmp_path / "settings.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_environment_beats_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = _write(tmp_path, {"sink": {"cloud": {"api_key": "from-file"}}, "batch": {"linger_ms": 5}})
    monkeypatch.setenv("VEC_BATCH__LINGER_MS", "77")
    settings = load_settings(config)
    assert settings.batch.linger_ms == 77
    assert settings.sink.cloud.api_key is not None
    assert settings.sink.cloud.api_key.get_secret_value() == "from-file"


def test_roboflow_api_key_variable_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROBOFLOW_API_KEY", SECRET)
    settings = load_settings(None)
    assert settings.sink.cloud.api_key is not None
    assert settings.sink.cloud.api_key.get_secret_value() == SECRET


def test_cloud_sink_without_key_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ROBOFLOW_API_KEY", raising=False)
    with pytest.raises(ConfigError, match="api_key"):
        load_settings(None)


def test_invalid_values_are_listed_without_echoing_secrets(tmp_path: Path) -> None:
    config = _write(
        tmp_path,
        {"sink": {"cloud": {"api_key": SECRET, "timeout_seconds": -1}}, "batch": {"max_events": 500}},
    )
    with pytest.raises(ConfigError) as caught:
        load_settings(config)
    text = str(caught.value)
    assert "timeout_seconds" in text and "max_events" in text
    assert SECRET not in text


def test_check_config_masks_secrets(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = _write(
        tmp_path,
        {
            "routes": str(ROUTES),
            "sink": {"type": "local", "cloud": {"api_key": SECRET}, "local": {"api_key": SECRET}},
        },
    )
    assert main(["check-config", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert SECRET not in out
    effective = yaml.safe_load(out)
    assert effective["sink"]["cloud"]["api_key"] == "**********"
    assert effective["sink"]["type"] == "local"
    assert "line-quality" in effective["routes_loaded"]


def test_check_config_reports_bad_routes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    routes = tmp_path / "routes.yaml"
    routes.write_text("routes: [{match: 'a/{x}', use_case: '{y}'}]")
    config = _write(tmp_path, {"routes": str(routes), "sink": {"type": "jsonl"}})
    assert main(["check-config", "--config", str(config)]) == 2
    assert "unknown placeholder {y}" in capsys.readouterr().err


def test_validate_message_prints_the_cloud_body(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    msg = tmp_path / "m.json"
    msg.write_bytes(
        orjson.dumps(
            {
                "event_id": "abc",
                "input_image": {"base64": b64(png_bytes())},
                "predictions": {
                    "image": {"width": 4, "height": 3},
                    "predictions": [
                        {
                            "x": 2.0,
                            "y": 1.5,
                            "width": 2.0,
                            "height": 1.0,
                            "confidence": 0.9,
                            "class": "no_hardhat",
                            "class_id": 0,
                        }
                    ],
                },
            }
        )
    )
    assert (
        main(["validate-message", "--routes", str(ROUTES), "--topic", "site/s1/cam-3/safety", str(msg)]) == 0
    )
    body = orjson.loads(capsys.readouterr().out)
    assert body["eventType"] == "safety_alert"
    assert body["useCaseId"] == "site-safety"
    assert body["eventData"]["alertType"] == "no_hardhat" and body["eventData"]["severity"] == "high"
    assert body["images"][0]["sourceId"] == body["images"][0]["inputSourceId"] == "placeholder-input-image"
    assert body["images"][0]["objectDetections"][0]["class"] == "no_hardhat"
    assert body["displayImagePosition"] == 0
    assert body["deviceId"] == "cam-3"


def test_validate_message_reports_reason_and_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    msg = tmp_path / "m.json"
    msg.write_bytes(b'{"event_type": "quality_check", "use_case": "u", "qc_result": "maybe"}')
    assert main(["validate-message", "--routes", str(ROUTES), "--topic", "events/x", str(msg)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "invalid_value at qc_result" in captured.err


def test_validate_message_reports_when_a_route_emits_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    msg = tmp_path / "m.json"
    msg.write_bytes(b'{"predictions": []}')
    assert main(["validate-message", "--routes", str(ROUTES), "--topic", "site/a/b/safety", str(msg)]) == 3
    assert "filtered" in capsys.readouterr().err


def test_validate_message_on_a_missing_file_is_a_clear_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "no-such-message.json"
    assert main(["validate-message", "--routes", str(ROUTES), "--topic", "events/x", str(missing)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "cannot read the message file" in captured.err and str(missing) in captured.err
    assert "Traceback" not in captured.err


def test_check_config_refuses_a_kafka_source_without_topics_like_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _write(
        tmp_path,
        {
            "routes": str(ROUTES),
            "sink": {"type": "local", "local": {"api_key": SECRET}},
            "source": {"type": "kafka", "kafka": {"bootstrap_servers": "127.0.0.1:9", "topics": []}},
        },
    )
    assert main(["check-config", "--config", str(config)]) == 2
    assert "source.kafka.topics is empty" in capsys.readouterr().err
    # run refuses it with the same check, before connecting anywhere
    assert main(["run", "--config", str(config)]) == 2
    assert "source.kafka.topics is empty" in capsys.readouterr().err


def _check_config(tmp_path: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """``check-config`` as a user runs it: its own process, only the given VEC_* variables."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("VEC_") and k != "ROBOFLOW_API_KEY"}
    return subprocess.run(
        [sys.executable, "-m", "consumer", "check-config", *args],
        cwd=tmp_path,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_check_config_suggests_the_key_meant_for_an_unknown_one(tmp_path: Path) -> None:
    config = _write(tmp_path, {"routes": str(ROUTES), "sink": {"type": "jsonl", "clud": {"region": "us"}}})
    done = _check_config(tmp_path, {}, "--config", str(config))
    assert done.returncode == 2
    assert "sink.clud: unknown setting (did you mean `cloud`?)" in done.stderr
    config = _write(tmp_path, {"routes": str(ROUTES), "sink": {"type": "jsonl"}, "batch": {"lingr_ms": 5}})
    assert (
        "batch.lingr_ms: unknown setting (did you mean `linger_ms`?)"
        in _check_config(tmp_path, {}, "--config", str(config)).stderr
    )


def test_check_config_names_the_environment_variable_of_a_bad_value(tmp_path: Path) -> None:
    config = _write(tmp_path, {"routes": str(ROUTES), "sink": {"type": "jsonl"}})
    done = _check_config(
        tmp_path,
        {"VEC_BATCH__LINGER_MS": "-5", "VEC_SINK__CLUD__REGION": "us"},
        "--config",
        str(config),
    )
    assert done.returncode == 2
    assert "batch.linger_ms (from the environment variable VEC_BATCH__LINGER_MS):" in done.stderr
    assert "sink.clud (from the environment variable VEC_SINK__CLUD__REGION): unknown setting" in done.stderr
    # A file's value is not blamed on the environment.
    config = _write(tmp_path, {"routes": str(ROUTES), "sink": {"type": "jsonl"}, "batch": {"linger_ms": -5}})
    done = _check_config(tmp_path, {}, "--config", str(config))
    assert "batch.linger_ms: " in done.stderr and "environment variable" not in done.stderr


def test_check_config_names_the_variable_holding_json_that_does_not_parse(tmp_path: Path) -> None:
    config = _write(tmp_path, {"routes": str(ROUTES), "sink": {"type": "jsonl"}})
    done = _check_config(tmp_path, {"VEC_SOURCE__KAFKA__TOPICS": "[vision"}, "--config", str(config))
    assert done.returncode == 2
    assert "VEC_SOURCE__KAFKA__TOPICS" in done.stderr and "not valid JSON" in done.stderr
    assert "Traceback" not in done.stderr


def test_check_config_reports_the_missing_api_key_with_the_other_problems(tmp_path: Path) -> None:
    config = _write(tmp_path, {"routes": str(ROUTES), "batch": {"max_events": 500}})
    done = _check_config(tmp_path, {"VEC_RETRY__MAX_BACKOFF_SECONDS": "0"}, "--config", str(config))
    assert done.returncode == 2
    assert "batch.max_events" in done.stderr
    assert (
        "retry.max_backoff_seconds (from the environment variable VEC_RETRY__MAX_BACKOFF_SECONDS)"
        in done.stderr
    )
    assert (
        "sink.cloud.api_key: the cloud sink needs a Roboflow API key and none is set: "
        "set the ROBOFLOW_API_KEY environment variable"
    ) in done.stderr
    # Alone, it is reported the same way; given, it is gone.
    alone = _check_config(tmp_path, {}, "--config", str(_write(tmp_path, {"routes": str(ROUTES)})))
    assert alone.returncode == 2 and "needs a Roboflow API key and none is set" in alone.stderr
    given = _check_config(tmp_path, {"ROBOFLOW_API_KEY": SECRET}, "--config", str(config))
    assert "api_key" not in given.stderr and SECRET not in given.stderr
