"""Settings: one frozen pydantic-settings tree, read from a YAML file and the environment.

Precedence, highest first: environment variables (``VEC_`` prefix, ``__`` between levels, e.g.
``VEC_SINK__CLOUD__API_KEY``), files in ``secrets_dir`` (Kubernetes secret mounts), the YAML file
given with ``--config``, the defaults below. ``ROBOFLOW_API_KEY`` is also read for the cloud key.
Secrets are ``SecretStr``: they print as ``**********`` everywhere, ``check-config`` included.
``check-config`` also masks every ``extra_headers`` value and URL passwords (``user:****@``);
a YAML syntax error is reported by line and column, never with the line's content.
"""

from __future__ import annotations

import difflib
import os
import re
from enum import StrEnum
from pathlib import Path
from typing import Any, Final, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ModelWrapValidatorHandler, SecretStr, model_validator
from pydantic import ValidationError as PydanticValidationError
from pydantic_core import InitErrorDetails
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, SettingsError

from consumer.contract import MAX_BATCH_EVENTS
from consumer.errors import ConfigError
from consumer.redaction import MASK as _MASK
from consumer.redaction import mask_url_credentials, url_password

REGION_BASE_URLS = {"us": "https://api.roboflow.com", "eu": "https://api.roboflow.eu"}


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SourceKind(StrEnum):
    """Where messages come from."""

    FILE = "file"
    MQTT = "mqtt"
    KAFKA = "kafka"


class FileSourceConfig(_Section):
    """A JSONL file of messages (or ``-`` for stdin): backfill and replay."""

    path: str = Field("-", description="JSONL file to read, '-' for standard input.")
    default_topic: str = Field(
        "file", description="Topic for lines that are bare messages rather than {topic, payload} records."
    )


class TlsConfig(_Section):
    """TLS for an MQTT connection; client certificate and key for mutual TLS."""

    enabled: bool = False
    ca_file: str | None = Field(None, description="CA bundle; the system store when unset.")
    cert_file: str | None = Field(None, description="Client certificate (mTLS).")
    key_file: str | None = Field(None, description="Client key (mTLS).")
    insecure_skip_verify: bool = Field(
        False, description="Do not verify the server's hostname (testing only)."
    )


class MqttSubscription(_Section):
    """One MQTT topic filter and the QoS to subscribe with."""

    filter: str
    qos: int = Field(1, ge=0, le=2)


class MqttSourceConfig(_Section):
    """An MQTT broker (paho-mqtt 2)."""

    url: str = Field("mqtt://localhost:1883", description="mqtt://host:port, or mqtts:// for TLS.")
    client_id: str = Field(
        default_factory=lambda: f"vision-events-consumer-{os.environ.get('HOSTNAME') or os.uname().nodename}",
        description="Stable per replica, so the broker keeps its session while it is down.",
    )
    protocol: Literal["5", "3.1.1"] = "5"
    subscriptions: list[MqttSubscription] = Field(
        default_factory=list,
        description="Filters to subscribe to; empty: every route's MQTT filter at QoS 1.",
    )
    shared_group: str | None = Field(
        None,
        description="MQTT 5 shared subscription group: replicas share the load ($share/<group>/<filter>).",
    )
    session_expiry_seconds: int = Field(
        3600,
        ge=0,
        description="How long the broker keeps the session (and queues messages) while we are away.",
    )
    keepalive_seconds: int = Field(30, ge=5)
    receive_maximum: int = Field(
        1000,
        ge=1,
        le=65535,
        description="Unacknowledged QoS 1/2 messages the broker may send at once (MQTT 5).",
    )
    username: str | None = None
    password: SecretStr | None = None
    tls: TlsConfig = TlsConfig()
    reconnect_min_seconds: float = Field(1.0, gt=0)
    reconnect_max_seconds: float = Field(30.0, gt=0)


class KafkaSourceConfig(_Section):
    """A Kafka cluster (confluent-kafka 2 / librdkafka)."""

    bootstrap_servers: str = "localhost:9092"
    group_id: str = "vision-events-consumer"
    topics: list[str] = Field(
        default_factory=list,
        description="Topic names, or regexes starting with '^' (librdkafka subscriptions).",
    )
    consume_batch_size: int = Field(500, ge=1, le=100_000, description="Messages per consume() call.")
    # Short: at low rates consume() would otherwise wait for a full batch (p99 797 ms at 0.5 s,
    # under 170 ms at 0.05 s, bench/README.md).
    consume_timeout_seconds: float = Field(0.05, gt=0, description="How long consume() waits for a batch.")
    commit_interval_seconds: float = Field(5.0, gt=0, description="How often stored offsets are committed.")
    sasl_password: SecretStr | None = Field(None, description="Merged into settings as sasl.password.")
    settings: dict[str, str | int | float | bool] = Field(
        default_factory=dict,
        description="Any librdkafka consumer setting (security.protocol, sasl.mechanism, ssl.ca.location).",
    )

    def librdkafka(self) -> dict[str, str | int | float | bool]:
        """The settings for librdkafka, secrets included: never log this."""
        merged: dict[str, str | int | float | bool] = {"bootstrap.servers": self.bootstrap_servers}
        merged.update(self.settings)
        if self.sasl_password is not None:
            merged["sasl.password"] = self.sasl_password.get_secret_value()
        return merged


class SourceConfig(_Section):
    """Which source to read and its settings."""

    type: SourceKind = SourceKind.FILE
    file: FileSourceConfig = FileSourceConfig()
    mqtt: MqttSourceConfig = MqttSourceConfig()
    kafka: KafkaSourceConfig = KafkaSourceConfig()


class SinkKind(StrEnum):
    """Where events go."""

    CLOUD = "cloud"
    LOCAL = "local"
    JSONL = "jsonl"


class CloudSinkConfig(_Section):
    """The Roboflow Vision Events API."""

    region: Literal["us", "eu"] = Field("us", description="Picks the base URL when base_url is not set.")
    base_url: str | None = Field(
        None, description="Overrides the region, e.g. a proxy or the local stand-in."
    )
    api_key: SecretStr | None = Field(None, description="Roboflow API key with vision-events:write scope.")
    timeout_seconds: float = Field(30.0, gt=0, description="Per-request timeout (the blocks use 30 s).")
    upload_concurrency: int = Field(8, ge=1, le=64, description="Image uploads in flight at once.")
    extra_headers: dict[str, str] = Field(default_factory=dict, description="Added to every request.")

    def resolved_base_url(self) -> str:
        """The base URL without a trailing slash."""
        return (self.base_url or REGION_BASE_URLS[self.region]).rstrip("/")


class LocalSinkConfig(_Section):
    """An on-device Event Store (``POST /v2/events``)."""

    url: str = Field("http://localhost:8001", description="Event Store base URL.")
    api_key: SecretStr | None = Field(None, description="Sent as X-API-Key when set.")
    timeout_seconds: float = Field(30.0, gt=0)
    concurrency: int = Field(8, ge=1, le=64, description="Events posted at once.")


class JsonlSinkConfig(_Section):
    """Dry run: write the cloud bodies as JSON lines."""

    path: str = Field("-", description="File to append to, '-' for standard output.")


class SinkConfig(_Section):
    """Which sink to deliver to and its settings."""

    type: SinkKind = SinkKind.CLOUD
    stuck_after_seconds: float = Field(
        300.0,
        ge=0,
        description="Not ready while the oldest batch in flight has waited longer than this for the API "
        "(across retries); 0 disables.",
    )
    cloud: CloudSinkConfig = CloudSinkConfig()
    local: LocalSinkConfig = LocalSinkConfig()
    jsonl: JsonlSinkConfig = JsonlSinkConfig()


class BatchConfig(_Section):
    """How events are grouped into requests."""

    max_events: int = Field(
        MAX_BATCH_EVENTS, ge=1, le=MAX_BATCH_EVENTS, description="Events per batch (API max 100)."
    )
    max_bytes: int = Field(8 * 1024 * 1024, ge=1024, description="Approximate request body bytes per batch.")
    linger_ms: int = Field(200, ge=0, description="How long a partial batch waits for more events.")
    max_in_flight_batches: int = Field(4, ge=1, le=64, description="Batches being delivered at once.")
    max_in_flight_events: int = Field(
        10_000, ge=1, description="Events received and not yet settled; sources pause above it."
    )
    max_in_flight_bytes: int = Field(
        64 * 1024 * 1024,
        ge=64 * 1024,
        description=(
            "Payload bytes received and not yet settled; sources pause above it. Bounds memory "
            "when messages carry images (a batch is let in alone when nothing is in flight)."
        ),
    )


class RetryConfig(_Section):
    """Backoff for transient failures (network, 408, 425, 429, 5xx, 529)."""

    initial_backoff_seconds: float = Field(0.5, gt=0)
    max_backoff_seconds: float = Field(30.0, gt=0)
    auth_backoff_seconds: float = Field(60.0, gt=0, description="Wait between attempts while 401/403.")
    give_up_after_seconds: float | None = Field(
        None, gt=0, description="Dead-letter a batch still failing after this long; null retries forever."
    )


class DeadLetterKind(StrEnum):
    """Where dead letters go."""

    JSONL = "jsonl"
    KAFKA = "kafka"
    MQTT = "mqtt"


class JsonlDeadLetterConfig(_Section):
    """Dead letters as JSON lines in a local file."""

    path: str = Field("dead-letters.jsonl", description="File to append to; fsynced before acknowledging.")


class KafkaDeadLetterConfig(_Section):
    """Dead letters as Kafka records: value = the original bytes, context in headers."""

    topic: str = "vision-events-dead-letters"
    bootstrap_servers: str | None = Field(None, description="Defaults to the Kafka source's.")
    sasl_password: SecretStr | None = None
    settings: dict[str, str | int | float | bool] = Field(
        default_factory=dict,
        description="librdkafka producer settings; defaults to the source's security ones.",
    )
    timeout_seconds: float = Field(30.0, gt=0, description="How long a write may wait for the broker's ack.")


class MqttDeadLetterConfig(_Section):
    """Dead letters published to an MQTT topic (QoS 1), as JSON records."""

    topic: str = "vision-events/dead-letters"
    qos: int = Field(1, ge=1, le=2)
    url: str | None = Field(None, description="Defaults to the MQTT source's broker.")
    timeout_seconds: float = Field(30.0, gt=0)
    max_packet_bytes: int | None = Field(
        None,
        ge=1024,
        le=268_435_455,
        description=(
            "The largest PUBLISH the broker takes (its max_packet_size); larger dead letters are "
            "written cut. Default: MQTT 5 reads it from the broker's CONNACK; MQTT 3.1.1 assumes the "
            "protocol's limit (268435455). Set it for a 3.1.1 broker with a smaller max_packet_size."
        ),
    )


class DeadLetterConfig(_Section):
    """Which dead-letter destination."""

    type: DeadLetterKind = DeadLetterKind.JSONL
    jsonl: JsonlDeadLetterConfig = JsonlDeadLetterConfig()
    kafka: KafkaDeadLetterConfig = KafkaDeadLetterConfig()
    mqtt: MqttDeadLetterConfig = MqttDeadLetterConfig()


class LimitsConfig(_Section):
    """Limits applied to incoming messages before they are interpreted."""

    max_message_bytes: int = Field(
        16 * 1024 * 1024, ge=1024, description="Larger messages are dead-lettered."
    )
    max_json_depth: int = Field(32, ge=4, le=512, description="Deeper JSON nesting is dead-lettered.")


class ImagesConfig(_Section):
    """Image URLs in messages are fetched only from allow-listed hosts."""

    url_allowed_hosts: list[str] = Field(
        default_factory=list,
        description="Hosts image URLs may point to ('*.example.com' allowed); empty: none.",
    )
    url_max_bytes: int = Field(20 * 1024 * 1024, ge=1024)
    url_timeout_seconds: float = Field(10.0, gt=0)
    # One image's own bound, so an image host that hangs or answers 5xx cannot hold the events
    # batched with it (nor a Kafka partition's commit) for longer. The defaults: three tries ride
    # out a camera or CDN restarting for a moment, and 30 s (three 10 s attempts at most, the
    # backoff between them included) is what a site accepts for an event's delivery to wait on a
    # picture; after that the route's ``image_unavailable`` policy applies.
    fetch_attempts: int = Field(
        3,
        ge=1,
        le=20,
        description="Attempts to fetch one image URL (network errors, timeouts, 408/425/429/5xx).",
    )
    fetch_deadline_seconds: float = Field(
        30.0,
        gt=0,
        le=600,
        description="Time spent on one image URL, all attempts; then the route's image_unavailable policy.",
    )


class SpoolSync(StrEnum):
    """SQLite ``synchronous`` level of the spool (WAL mode)."""

    NORMAL = "normal"
    FULL = "full"


class SpoolConfig(_Section):
    """Store-and-forward: a durable local spool (SQLite, WAL) between the pipeline and the API.

    When enabled, a message is acknowledged once its event (with its image bytes) is committed to
    the spool; a forwarder drains the spool to the sink in capture-time order. See docs/spool.md.
    """

    enabled: bool = Field(False, description="Acknowledge once spooled; a forwarder drains the spool.")
    path: str = Field(
        "spool.db",
        description="The SQLite file (plus -wal, -shm and .lock next to it), on a persistent volume.",
    )
    max_events: int = Field(
        1_000_000,
        ge=1,
        description="Events the spool holds at most; when full, nothing more is acknowledged.",
    )
    max_bytes: int = Field(
        1024 * 1024 * 1024,
        ge=1024 * 1024,
        description="Bytes of the spool file in use at most (events, original messages, images once each); "
        "keep it well under the volume's size.",
    )
    synchronous: SpoolSync = Field(
        SpoolSync.FULL,
        description="full: every commit is fsynced (survives power loss); normal: survives a process crash, "
        "a power loss may lose the last commits.",
    )


class HttpConfig(_Section):
    """The /metrics, /healthz and /readyz server."""

    host: str = "0.0.0.0"  # noqa: S104 - a container's metrics port must listen beyond loopback
    port: int = Field(9108, ge=0, le=65535)


class LogConfig(_Section):
    """Structured logs on standard error."""

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["json", "text"] = "json"


class Settings(BaseSettings):
    """The whole effective configuration."""

    model_config = SettingsConfigDict(
        env_prefix="VEC_",
        env_nested_delimiter="__",
        frozen=True,
        extra="forbid",
        secrets_dir=os.environ.get("VEC_SECRETS_DIR") or None,
    )

    routes: Path = Field(Path("routes.yaml"), description="Routes file (see docs/routing.md).")
    source: SourceConfig = SourceConfig()
    sink: SinkConfig = SinkConfig()
    batch: BatchConfig = BatchConfig()
    retry: RetryConfig = RetryConfig()
    dead_letter: DeadLetterConfig = DeadLetterConfig()
    limits: LimitsConfig = LimitsConfig()
    images: ImagesConfig = ImagesConfig()
    spool: SpoolConfig = SpoolConfig()
    http: HttpConfig = HttpConfig()
    log: LogConfig = LogConfig()
    shutdown_deadline_seconds: float = Field(25.0, gt=0, description="SIGTERM drain deadline.")

    @model_validator(mode="wrap")
    @classmethod
    def _cloud_needs_a_key(cls, data: Any, handler: ModelWrapValidatorHandler[Settings]) -> Settings:
        # A wrap validator, not an "after" one: an "after" validator never runs when another
        # field is invalid, so a missing key would show only once everything else was fixed.
        missing = _cloud_key_missing(data)
        try:
            settings = handler(data)
        except PydanticValidationError as exc:
            if not missing:
                raise
            errors = [_init_error(error) for error in exc.errors(include_url=False)]
            raise PydanticValidationError.from_exception_data(
                exc.title, [*errors, _missing_key_error()]
            ) from None
        if missing:
            raise PydanticValidationError.from_exception_data(cls.__name__, [_missing_key_error()])
        return settings

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Environment beats secret files beats the YAML file (passed as init values)."""
        return (env_settings, file_secret_settings, init_settings)


MISSING_API_KEY: Final = (
    "the cloud sink needs a Roboflow API key and none is set: set the ROBOFLOW_API_KEY environment "
    "variable (or VEC_SINK__CLOUD__API_KEY, or sink.cloud.api_key in a secret file), or choose "
    "another sink.type (local, jsonl)"
)
_API_KEY_LOC: Final = ("sink", "cloud", "api_key")
_ENV_PREFIX: Final = "VEC_"
_ENV_DELIMITER: Final = "__"


def _entry(tree: Any, key: str) -> Any:
    """``tree[key]`` for a raw mapping or an already built section; None when absent."""
    if isinstance(tree, dict):
        return tree.get(key)
    return getattr(tree, key, None)


def _cloud_key_missing(data: Any) -> bool:
    """Whether the raw, merged input selects the cloud sink (the default) and holds no key for it."""
    sink = _entry(data, "sink")
    kind = _entry(sink, "type")
    if kind is not None and str(kind) != SinkKind.CLOUD.value:
        return False
    key = _entry(_entry(sink, "cloud"), "api_key")
    if isinstance(key, SecretStr):
        key = key.get_secret_value()
    return not key


def _missing_key_error() -> InitErrorDetails:
    return {"type": "value_error", "loc": _API_KEY_LOC, "input": None, "ctx": {"error": MISSING_API_KEY}}


def _init_error(error: Any) -> InitErrorDetails:
    """A reported error as pydantic takes it back, to re-raise it with one more."""
    details: InitErrorDetails = {"type": error["type"], "loc": error["loc"], "input": error["input"]}
    if "ctx" in error:
        details["ctx"] = error["ctx"]
    return details


def _env_variable(loc: tuple[str | int, ...]) -> str | None:
    """The environment variable a setting at ``loc`` (or a mapping holding it) was read from, if set.

    The environment beats the file, so a variable set for that path (or for a section above it,
    given as JSON) is where the value came from. Names are matched case-insensitively, as
    pydantic-settings reads them.
    """
    if loc == _API_KEY_LOC and os.environ.get("ROBOFLOW_API_KEY"):
        return "ROBOFLOW_API_KEY"
    names = {name.upper(): name for name in os.environ if name.upper().startswith(_ENV_PREFIX)}
    parts = [str(part) for part in loc]
    for depth in range(len(parts), 0, -1):
        wanted = (_ENV_PREFIX + _ENV_DELIMITER.join(parts[:depth])).upper()
        if wanted in names:
            return names[wanted]
    # An unknown key given as a variable below it (VEC_SINK__CLUD__URL for ``sink.clud``).
    below = (_ENV_PREFIX + _ENV_DELIMITER.join(parts) + _ENV_DELIMITER).upper()
    return next((name for upper, name in sorted(names.items()) if upper.startswith(below)), None)


def _env_parse_problem(exc: SettingsError) -> str:
    """A variable's JSON that does not parse, naming the variables it may come from."""
    field = re.search(r'field "([^"]+)"', str(exc))
    if field is None:
        return f"cannot read the environment: {exc}"
    top = (_ENV_PREFIX + field.group(1)).upper()
    suspects = sorted(
        name for name in os.environ if name.upper() == top or name.upper().startswith(top + _ENV_DELIMITER)
    )
    names = " or ".join(suspects) or top
    return f"cannot read the environment variable {names}: not valid JSON for {field.group(1)}"


def _suggestion(loc: tuple[str | int, ...]) -> str:
    """`` (did you mean `x`?)`` for an unknown key close to a field of the model at that level."""
    model: Any = Settings
    for part in loc[:-1]:
        field = model.model_fields.get(part) if isinstance(part, str) else None
        model = field.annotation if field is not None else None
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return ""
    close = difflib.get_close_matches(str(loc[-1]), list(model.model_fields), n=1)
    return f" (did you mean `{close[0]}`?)" if close else ""


def _problem(error: Any) -> str:
    """One validation error in plain words: where, from which variable, what, and a suggestion."""
    loc = tuple(error["loc"])
    where = ".".join(str(part) for part in loc) or "(root)"
    variable = _env_variable(loc) if loc else None
    if variable is not None:
        where += f" (from the environment variable {variable})"
    message = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        message = "unknown setting" + _suggestion(loc)
    return f"{where}: {message}"


def _deep_set(tree: dict[str, Any], keys: list[str], value: Any) -> None:
    for key in keys[:-1]:
        tree = tree.setdefault(key, {})
    tree.setdefault(keys[-1], value)


def load_settings(config_file: Path | None = None, overrides: dict[str, Any] | None = None) -> Settings:
    """Build the settings from an optional YAML file, the environment and ``overrides``.

    ``overrides`` (from command-line flags) take precedence over the file but not the environment.
    Raises ConfigError with every problem listed, secrets never included.
    """
    data: dict[str, Any] = {}
    if config_file is not None:
        try:
            text = config_file.read_text(encoding="utf-8")
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            raise ConfigError(f"cannot read config file {config_file}: {reason}") from None
        except UnicodeDecodeError as exc:
            raise ConfigError(f"cannot read config file {config_file}: not UTF-8 ({exc.reason})") from None
        try:
            loaded = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            # Not chained: the parser's own message quotes the offending line, secret included.
            raise ConfigError(f"cannot read config file {config_file}: {yaml_problem(exc)}") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file {config_file} must hold a mapping at the top level")
        data = loaded
    for dotted, value in (overrides or {}).items():
        keys = dotted.split(".")
        tree = data
        for key in keys[:-1]:
            tree = tree.setdefault(key, {})
        tree[keys[-1]] = value
    roboflow_key = os.environ.get("ROBOFLOW_API_KEY")
    if roboflow_key:
        _deep_set(data, ["sink", "cloud", "api_key"], roboflow_key)
    try:
        return Settings(**data)
    except PydanticValidationError as exc:
        problems = "; ".join(_problem(err) for err in exc.errors())
        raise ConfigError(f"invalid configuration: {problems}") from None
    except SettingsError as exc:
        # A variable holding JSON that does not parse: pydantic-settings names the field only.
        raise ConfigError(_env_parse_problem(exc)) from None


def yaml_problem(exc: yaml.YAMLError) -> str:
    """Where and what the YAML parser found wrong: line, column and its description only.

    ``str(exc)`` quotes the offending line (a snippet with a caret under it), and that line may be
    the ``api_key:`` one: the snippet is never shown.
    """
    if not isinstance(exc, yaml.MarkedYAMLError):
        return f"not valid YAML ({type(exc).__name__})"
    problem = exc.problem or exc.context or "syntax error"
    mark = exc.problem_mark or exc.context_mark
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    started = ""
    if exc.context and exc.problem and exc.context_mark is not None:
        start = exc.context_mark
        started = f" ({exc.context} started at line {start.line + 1}, column {start.column + 1})"
    return f"not valid YAML: {where}{problem}{started}"


MASK: Final = _MASK
# Free-form maps (librdkafka settings, extra headers) can carry secrets under these names.
_SECRET_KEY = re.compile(
    r"password|secret|jaas|token|credential|authorization|api[_.-]?key|\.pem", re.IGNORECASE
)
# Maps whose every value is masked, whatever its key: any request header can carry a credential
# (``X-Proxy-Auth``, ``X-Tenant-Token``...), and no name list can know them all.
_MASKED_MAPS: Final = frozenset({"extra_headers"})


def masked_settings(settings: Settings) -> dict[str, Any]:
    """The effective settings as plain data, secrets replaced by ``**********``.

    SecretStr fields mask themselves; every ``extra_headers`` value is masked; values in other
    free-form maps are masked by key name; URLs show ``user:****@host``.
    """
    masked: dict[str, Any] = _mask_free_form(settings.model_dump(mode="json"))
    return masked


def _mask_free_form(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _mask_entry(key, item) for key, item in value.items()}
    if isinstance(value, list):
        return [_mask_free_form(item) for item in value]
    if isinstance(value, str):
        return mask_url_credentials(value)
    return value


def _mask_entry(key: Any, item: Any) -> Any:
    if key in _MASKED_MAPS and isinstance(item, dict):
        return dict.fromkeys(item, MASK)
    if isinstance(key, str) and _SECRET_KEY.search(key) and item is not None:
        return MASK
    return _mask_free_form(item)


def settings_secrets(settings: Settings) -> list[str]:
    """Every secret the settings hold, for redaction: keys, passwords, header values, URL passwords."""
    secrets = [
        secret.get_secret_value()
        for secret in (
            settings.sink.cloud.api_key,
            settings.sink.local.api_key,
            settings.source.mqtt.password,
            settings.source.kafka.sasl_password,
            settings.dead_letter.kafka.sasl_password,
        )
        if secret is not None
    ]
    secrets.extend(settings.sink.cloud.extra_headers.values())
    for free_form in (settings.source.kafka.settings, settings.dead_letter.kafka.settings):
        secrets.extend(str(v) for k, v in free_form.items() if _SECRET_KEY.search(k))
    for value in _strings(settings.model_dump(mode="json")):
        password = url_password(value)
        if password is not None:
            secrets.append(password)
    return [secret for secret in secrets if secret]


def _strings(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [text for item in value.values() for text in _strings(item)]
    if isinstance(value, list):
        return [text for item in value for text in _strings(item)]
    return [value] if isinstance(value, str) else []
