"""vision-events-consumer: MQTT/Kafka inference results to Roboflow Vision Events.

The rooms, highest layer first; a module imports only from its own layer and the ones below
(checked by ``lint-imports``, ``[tool.importlinter]`` in pyproject.toml; README: Architecture):

- entry points: :mod:`~consumer.cli` (and ``__main__``), :mod:`~consumer.demo`,
  :mod:`~consumer.inspect`, and the API stand-in :mod:`consumer.fakeapi`;
- :mod:`~consumer.app`: the composition root, the only place that wires the rooms below;
- :mod:`consumer.spool` (store-and-forward), :mod:`~consumer.replay` and
  :mod:`~consumer.replay_origins` (dead letters fed back);
- :mod:`consumer.deadletter` (writers) and :mod:`consumer.sources` (file, MQTT, Kafka), which never
  import each other;
- :mod:`~consumer.pipeline`: normalize, batch, deliver, dead-letter, acknowledge;
- :mod:`consumer.sinks` (cloud API, Event Store, JSONL) and :mod:`~consumer.normalize`;
- :mod:`consumer.routing`, :mod:`consumer.formats`, :mod:`~consumer.validation`,
  :mod:`~consumer.envelope`, :mod:`~consumer.decode`, :mod:`~consumer.identity`;
- :mod:`consumer.clients`: broker clients (librdkafka settings, MQTT/paho) for sources, dead-letter
  writers and replay;
- :mod:`~consumer.config`, :mod:`~consumer.model`, :mod:`~consumer.errors`,
  :mod:`~consumer.metrics` and small leaves (wire, urls, health, logs);
- :mod:`~consumer.contract` and :mod:`~consumer.redaction` (``MASK``, ``redact``: secrets out of text).
"""

__version__ = "0.1.0"
