"""Secrets stay out of configuration errors, check-config output, logs, dead letters and metrics.

Through the CLI entry point (``main``), as a user runs it; the ``run`` test talks to a real HTTP
server on a loopback socket that echoes the key back in other encodings.
"""

from __future__ import annotations

import base64
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest

from consumer.cli import main

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
