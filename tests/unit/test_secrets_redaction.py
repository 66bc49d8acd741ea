"""Secrets stay out of configuration errors, check-config output, logs, dead letters and metrics.

Through the CLI entry point (``main``), as a user runs it; the ``run`` test talks to a real HTTP
server on a loopback socket that echoes the key back in other encodings.
"""

from __future__ import annotations

import asyncio
import base64
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import orjson
import pytest
import yaml
from prometheus_client import generate_latest

from consumer.app import App
from consumer.cli import main
from consumer.clients import kafka
from consumer.config import load_settings
from consumer.redaction import MASK, Redactor, mask_url_credentials, redact, secret_forms
from tests.support.images import b64, png_bytes

REPO = Path(__file__).resolve().parents[2]
ROUTES = REPO / "examples" / "routes.yaml"
# Characters that URL-encoding and base64 change, so each form differs from the raw secret.
API_KEY = "rf/key+9 z=Q?&~"
SASL_PASSWORD = "sasl/pa ss+word=="
MQTT_PASSWORD = "mq:tt/pw+1"
HEADER_VALUE = "proxy-auth/tok+en=="


def _forms_by_hand(secret: str) -> list[str]:
    """The encodings a server may echo, computed independently of the code under test."""
    raw = secret.encode()
    return [
        secret,
        quote(secret),
        quote(secret, safe=""),
        quote_plus(secret),
        quote_plus(secret, safe=""),
        base64.b64encode(raw).decode(),
        base64.b64encode(raw).decode().rstrip("="),
        base64.urlsafe_b64encode(raw).decode(),
        base64.urlsafe_b64encode(raw).decode().rstrip("="),
    ]


def _leaks(text: str, *secrets: str) -> list[str]:
    return [form for secret in secrets for form in _forms_by_hand(secret) if form in text]


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# ------------------------------------------------------------------ 1. YAML syntax errors


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ('    api_key: "sk-live-UNTERMINATED-7f3a\n', "found unexpected end of stream"),
        ("\tapi_key: sk-live-TAB-7f3a\n", "found character '\\t' that cannot start any token"),
        ("    api_key: {sk-live-FLOW-7f3a\n", "expected ',' or '}'"),
    ],
)
@pytest.mark.parametrize("command", ["check-config", "run"])
def test_a_yaml_error_on_the_key_line_names_line_and_column_never_the_content(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str, line: str, problem: str
) -> None:
    config = _write(tmp_path / "settings.yaml", "sink:\n  cloud:\n" + line + "  type: cloud\n")
    assert main([command, "--config", str(config)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "sk-live" not in captured.err
    assert "7f3a" not in captured.err
    assert str(config) in captured.err
    assert "line " in captured.err and "column " in captured.err
    assert problem in captured.err
    assert "^" not in captured.err  # the parser's snippet with its caret is never shown


def test_a_yaml_error_points_at_where_the_unterminated_value_started(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _write(tmp_path / "settings.yaml", 'sink:\n  cloud:\n    api_key: "sk-live-x\n  type: cloud\n')
    assert main(["check-config", "--config", str(config)]) == 2
    assert "started at line 3, column 14" in capsys.readouterr().err


# ------------------------------------------------------------------ 2. URLs with credentials


def test_check_config_shows_url_passwords_as_stars(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = {
        "routes": str(ROUTES),
        "source": {"type": "file"},
        "sink": {
            "type": "local",
            "local": {"url": "http://store:st%2Fore-pass@store.local:8001"},
            "cloud": {"api_key": "k", "base_url": "https://proxyuser:cloud-pass-9@proxy.example:3128/"},
        },
        "dead_letter": {"mqtt": {"url": "mqtt://dl:dl-pass/7@broker:1883"}},
    }
    config = _write(tmp_path / "settings.yaml", yaml.safe_dump(settings))
    assert main(["check-config", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    for secret in ("st%2Fore-pass", "cloud-pass-9", "dl-pass", "/7@"):
        assert secret not in out
    effective = yaml.safe_load(out)
    assert effective["sink"]["cloud"]["base_url"] == "https://proxyuser:****@proxy.example:3128/"
    assert effective["sink"]["local"]["url"] == "http://store:****@store.local:8001"
    assert effective["dead_letter"]["mqtt"]["url"] == "mqtt://dl:****@broker:1883"


@pytest.mark.parametrize("command", ["check-config", "run"])
@pytest.mark.parametrize(
    "url",
    ["mqtt://user:p%2Fss/word@host:1883", "mqtt://user:plain-secret@host:1883", "mqtt://user:a/b@c@host"],
)
def test_an_mqtt_url_error_shows_the_user_and_stars_never_the_password(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str, url: str
) -> None:
    settings = {
        "routes": str(ROUTES),
        "source": {"type": "mqtt", "mqtt": {"url": url}},
        "sink": {"type": "jsonl"},
    }
    config = _write(tmp_path / "settings.yaml", yaml.safe_dump(settings))
    assert main([command, "--config", str(config)]) == 2
    err = capsys.readouterr().err
    password = url.split("://", 1)[1].split(":", 1)[1].rsplit("@", 1)[0]
    assert password not in err
    assert "user:****@" in err


def test_a_dead_letter_mqtt_url_error_from_run_hides_the_password(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = {
        "routes": str(ROUTES),
        "source": {"type": "file", "file": {"path": str(_write(tmp_path / "in.jsonl", ""))}},
        "sink": {"type": "jsonl", "jsonl": {"path": str(tmp_path / "out.jsonl")}},
        "dead_letter": {"type": "mqtt", "mqtt": {"url": "mqtt://dl:dl%2Fpa/ss@127.0.0.1:1"}},
        "http": {"port": 0},
    }
    config = _write(tmp_path / "settings.yaml", yaml.safe_dump(settings))
    assert main(["run", "--config", str(config)]) != 0
    err = capsys.readouterr().err
    assert "dl%2Fpa" not in err and "pa/ss" not in err


def test_url_masking_keeps_the_rest_of_the_text() -> None:
    text = "brokers mqtt://a:pw1@h1:1883,mqtt://b:pw2@h2 and https://tok@api.example/x?y=1 and http://plain/"
    assert mask_url_credentials(text) == (
        "brokers mqtt://a:****@h1:1883,mqtt://b:****@h2 and https://****@api.example/x?y=1 and http://plain/"
    )


# ------------------------------------------------------------------ 3. extra_headers


def test_check_config_masks_every_extra_header_value(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = {
        "routes": str(ROUTES),
        "sink": {
            "type": "cloud",
            "cloud": {
                "api_key": API_KEY,
                "extra_headers": {"X-Proxy-Auth": HEADER_VALUE, "X-Site": "plant-7"},
            },
        },
    }
    config = _write(tmp_path / "settings.yaml", yaml.safe_dump(settings))
    assert main(["check-config", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert _leaks(out, HEADER_VALUE, API_KEY) == []
    assert "plant-7" not in out
    headers = yaml.safe_load(out)["sink"]["cloud"]["extra_headers"]
    assert headers == {"X-Proxy-Auth": "**********", "X-Site": "**********"}


# ------------------------------------------------------------------ 4. encoded forms


@pytest.mark.parametrize("secret", [API_KEY, SASL_PASSWORD, MQTT_PASSWORD, HEADER_VALUE])
def test_the_redactor_masks_raw_url_encoded_and_base64_forms(secret: str) -> None:
    redact = Redactor([secret, "unrelated-other-secret"])
    for form in _forms_by_hand(secret):
        text = f"the server said: <{form}> (status 400)"
        redacted = redact(text)
        assert form not in redacted, form
        assert redacted.startswith("the server said: <") and redacted.endswith("> (status 400)")


def test_redact_masks_every_form_of_each_secret_and_url_passwords() -> None:
    for form in _forms_by_hand(SASL_PASSWORD):
        redacted = redact(f"said <{form}> via https://u:pw-7@host/x", [SASL_PASSWORD, ""])
        assert form not in redacted, form
        assert redacted == f"said <{MASK}> via https://u:****@host/x"
    assert redact("nothing secret here", []) == "nothing secret here"


def test_secret_forms_are_computed_once_per_secret() -> None:
    secret_forms.cache_clear()
    Redactor([API_KEY])
    Redactor([API_KEY])
    info = secret_forms.cache_info()
    assert info.misses == 1 and info.hits == 1


def test_kafka_errors_and_logged_settings_hide_every_form_of_the_sasl_password() -> None:
    settings = {
        "sasl.password": SASL_PASSWORD,
        "sasl.oauthbearer.config": "scope=x",
        "proxy.url": "https://client:idp-secret-5@idp.example/token",
    }
    for form in _forms_by_hand(SASL_PASSWORD):
        assert form not in kafka.redact_settings(f"broker said: {form}", settings)
    masked = str(kafka.mask_settings(settings))
    assert SASL_PASSWORD not in masked and "idp-secret-5" not in masked
    assert "https://client:****@idp.example/token" in masked


class _EchoingStore(BaseHTTPRequestHandler):
    """An Event Store that refuses every event and echoes the key back, URL-encoded and base64."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        # The Event Store's key, or the cloud's Bearer key and a proxy credential header.
        bearer = self.headers.get("Authorization", "").removeprefix("Bearer ")
        key = self.headers.get("X-API-Key") or f"{bearer} {self.headers.get('X-Proxy-Auth', '')}"
        raw = key.encode()
        detail = (
            f"bad key {quote(key, safe='')} / {quote_plus(key)} / "
            f"{base64.b64encode(raw).decode()} / {base64.urlsafe_b64encode(raw).decode().rstrip('=')}"
        )
        body = orjson.dumps({"detail": detail})
        self.send_response(422)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        """Keep the test's output quiet."""


@pytest.fixture
def echoing_store() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _EchoingStore)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def _one_alert(tmp_path: Path) -> Path:
    """A JSONL source of one message that becomes an event (a safety alert)."""
    message = {
        "input_image": {"base64": b64(png_bytes())},
        "predictions": {
            "image": {"width": 4, "height": 3},
            "predictions": [
                {"x": 2.0, "y": 1.5, "width": 2.0, "height": 1.0, "confidence": 0.9, "class": "no_hardhat"}
            ],
        },
    }
    source = tmp_path / "in.jsonl"
    source.write_bytes(orjson.dumps({"topic": "site/s1/cam-3/safety", "payload": message}) + b"\n")
    return source


@pytest.mark.parametrize("sink", ["local", "cloud"])
def test_run_keeps_an_echoed_key_out_of_logs_and_dead_letters(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], echoing_store: str, sink: str
) -> None:
    source = _one_alert(tmp_path)
    dead_letters = tmp_path / "dead.jsonl"
    settings = {
        "routes": str(ROUTES),
        "source": {"type": "file", "file": {"path": str(source)}},
        "sink": {
            "type": sink,
            "local": {"url": echoing_store, "api_key": API_KEY},
            "cloud": {
                "base_url": echoing_store,
                "api_key": API_KEY,
                "extra_headers": {"X-Proxy-Auth": HEADER_VALUE},
            },
        },
        "dead_letter": {"type": "jsonl", "jsonl": {"path": str(dead_letters)}},
        "log": {"level": "DEBUG"},
        "http": {"port": 0},
    }
    config = _write(tmp_path / "settings.yaml", yaml.safe_dump(settings))
    assert main(["run", "--config", str(config)]) == 0
    records = [orjson.loads(raw) for raw in dead_letters.read_bytes().splitlines()]
    assert len(records) == 1
    assert records[0]["reason"] == ("api_rejected" if sink == "local" else "image_rejected")
    assert "bad key" in dead_letters.read_text()  # the server's explanation is kept, key masked
    assert _leaks(dead_letters.read_text(), API_KEY, HEADER_VALUE) == []
    assert _leaks(capsys.readouterr().err, API_KEY, HEADER_VALUE) == []


# ------------------------------------------------------------------ 5. metrics labels


def test_metrics_never_carry_a_secret(tmp_path: Path, echoing_store: str) -> None:
    source = _one_alert(tmp_path)
    settings = load_settings(
        None,
        {
            "routes": str(ROUTES),
            "source.type": "file",
            "source.file.path": str(source),
            "sink.type": "local",
            "sink.local.url": echoing_store,
            "sink.local.api_key": API_KEY,
            "dead_letter.jsonl.path": str(tmp_path / "dead.jsonl"),
            "http.port": 0,
        },
    )
    app = App(settings)
    assert asyncio.run(app.run()).clean
    exposition = generate_latest(app.metrics.registry).decode()
    assert 'status="422"' in exposition  # the refused request is in the metrics, without the key
    assert _leaks(exposition, API_KEY) == []


def test_a_very_short_secret_is_not_searched_for_in_free_text() -> None:
    """A 1-character test key must not blank every word that contains it; a real key is still masked."""
    redact = Redactor(["k", "long-enough-key"])
    line = "cannot reach the Kafka broker; keeps trying"
    assert redact(line) == line
    assert "long-enough-key" not in redact("echoed long-enough-key back")
