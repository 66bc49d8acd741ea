"""What the MQTT source, dead-letter writer and replay share: broker URL, TLS, credentials, paho client.

Everything here runs at start-up and raises :class:`consumer.errors.ConfigError` for settings that
can never work (a bad URL, missing certificate files). Errors show a URL's password as ``****``
(``mqtt://user:****@host:1883``): it is never echoed.
"""

from __future__ import annotations

import logging
import math
import ssl
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from consumer.config import MqttSourceConfig, TlsConfig
from consumer.errors import ConfigError
from consumer.redaction import mask_url_credentials

_DEFAULT_PORTS: Final = {"mqtt": 1883, "mqtts": 8883}

PROTOCOLS: Final = {"5": paho.MQTTv5, "3.1.1": paho.MQTTv311}


@dataclass(frozen=True, slots=True)
class BrokerAddress:
    """Where a broker listens, and whether the URL asked for TLS (``mqtts://``)."""

    host: str
    port: int
    tls: bool

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'mqtts' if self.tls else 'mqtt'}://{host}:{self.port}"


def parse_mqtt_url(url: str, *, tls: bool = False) -> BrokerAddress:
    """Parse ``mqtt://host[:port]`` or ``mqtts://host[:port]``; default ports 1883 and 8883.

    ``tls`` (the ``tls.enabled`` setting) turns TLS on for an ``mqtt://`` URL too; the default port
    then is 8883. Anything else (another scheme, user-info, a path, a query) is a ConfigError.
    """
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        raise ConfigError(f"MQTT URL {_safe(url)!r}: not a valid mqtt://host:port URL") from None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise ConfigError(f"MQTT URL {_safe(url)!r}: the scheme must be mqtt:// or mqtts://")
    if "@" in parts.netloc:
        raise ConfigError(f"MQTT URL {_safe(url)!r}: put credentials in username/password, not in the URL")
    if not parts.hostname:
        raise ConfigError(f"MQTT URL {_safe(url)!r}: no host")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ConfigError(f"MQTT URL {_safe(url)!r}: only scheme, host and port are allowed")
    use_tls = scheme == "mqtts" or tls
    if port is None:
        port = _DEFAULT_PORTS["mqtts" if use_tls else "mqtt"]
    if port == 0:
        raise ConfigError(f"MQTT URL {_safe(url)!r}: port 0 is not a broker port")
    return BrokerAddress(parts.hostname, port, use_tls)


def _safe(url: str) -> str:
    """The URL with its password shown as ``****`` (``user:****@host``), for error messages.

    Everything up to the last ``@`` counts as user-info, so a password holding a ``/`` (which
    breaks URL parsing) is still masked.
    """
    url = url.strip()
    if "://" not in url:
        return url[:200] if "@" not in url else "<redacted>"
    return mask_url_credentials(url)[:200]


def tls_context(tls: TlsConfig) -> ssl.SSLContext:
    """A client TLS context: the CA bundle (or the system store), a client certificate for mTLS.

    ``insecure_skip_verify`` skips the hostname check only; the chain is still verified.
    """
    if tls.key_file and not tls.cert_file:
        raise ConfigError("MQTT TLS: key_file needs cert_file")
    try:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=tls.ca_file)
        if tls.cert_file:
            context.load_cert_chain(tls.cert_file, tls.key_file)
    except (OSError, ssl.SSLError) as exc:
        # The message names files, never key passwords (there are none in the settings).
        raise ConfigError(f"MQTT TLS: cannot load certificates: {exc}") from None
    if tls.insecure_skip_verify:
        context.check_hostname = False
    return context


class _BenignPahoErrors(logging.Filter):
    """Drops paho 2.2's "Client is not connected" error, logged after every clean disconnect.

    The network loop runs once more after the socket closed; the real cause of any disconnect is
    logged by our own ``on_disconnect``.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Keep every other record."""
        return not str(record.msg).startswith("Client is not connected")


_BENIGN = _BenignPahoErrors()


def paho_logger(owner: str) -> logging.Logger:
    """The logger paho's own messages go to: ``<owner>.paho`` (DEBUG shows the packets)."""
    logger = logging.getLogger(f"{owner}.paho")
    if _BENIGN not in logger.filters:
        logger.addFilter(_BENIGN)
    return logger


def new_client(
    config: MqttSourceConfig,
    address: BrokerAddress,
    *,
    client_id: str,
    persistent: bool,
    manual_ack: bool,
    logger: logging.Logger,
) -> paho.Client:
    """A paho 2 client (callback API version 2) with credentials, TLS and reconnect backoff set.

    ``persistent`` selects a session the broker keeps while we are away (MQTT 3.1.1:
    ``clean_session=False``; MQTT 5 sets ``clean_start`` and the session expiry at connect time).
    """
    if not client_id:
        raise ConfigError("MQTT client_id must not be empty: a persistent session needs a stable id")
    protocol = PROTOCOLS[config.protocol]
    client = paho.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        clean_session=None if protocol == paho.MQTTv5 else not persistent,
        protocol=protocol,
        manual_ack=manual_ack,
        reconnect_on_failure=True,
    )
    # A bug in a callback is logged by our own wrappers; never let it end paho's network thread.
    client.suppress_exceptions = True
    client.enable_logger(paho_logger(logger.name))
    if config.username is not None:
        password = None if config.password is None else config.password.get_secret_value()
        client.username_pw_set(config.username, password)
    if address.tls:
        client.tls_set_context(tls_context(config.tls))
    # paho takes whole seconds; round up so a configured minimum is never undercut.
    low = max(1, math.ceil(config.reconnect_min_seconds))
    high = max(low, math.ceil(config.reconnect_max_seconds))
    client.reconnect_delay_set(low, high)
    return client
