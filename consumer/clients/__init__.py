"""Broker clients: what the sources, the dead-letter writers and replay share to talk to a broker.

- :mod:`consumer.clients.kafka`: librdkafka settings (building, which ones are secrets or
  security settings), masking them for logs and redacting them from errors, and the rate-limited
  sink for librdkafka's own log lines;
- :mod:`consumer.clients.mqtt`: broker URLs, TLS, credentials and the paho client;
- :mod:`consumer.clients.throttle`: log lines keyed by what they report, each at most once per
  interval (a broker down for an hour must not write thousands of identical lines).

This package sits below ``sources``, ``deadletter`` and ``replay`` and imports none of them:
only ``config``, ``errors`` and ``redaction`` (its ``MASK`` and ``redact``, never a mask of its own).
"""
