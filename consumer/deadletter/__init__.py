"""Dead letters: what could not be processed or delivered, kept byte-exact with the reason.

- :mod:`~consumer.deadletter.base`: the record and the ``DeadLetterWriter`` protocol;
- :mod:`~consumer.deadletter.jsonl`, :mod:`~consumer.deadletter.kafka`,
  :mod:`~consumer.deadletter.mqtt`: the writers, and each one's reader for replay.

The Kafka and MQTT writers reach their brokers through :mod:`consumer.clients`; they never import
:mod:`consumer.sources`.
"""

from consumer.deadletter.base import DeadLetterRecord, DeadLetterWriter
from consumer.deadletter.jsonl import JsonlDeadLetterWriter, read_dead_letters

__all__ = ["DeadLetterRecord", "DeadLetterWriter", "JsonlDeadLetterWriter", "read_dead_letters"]
