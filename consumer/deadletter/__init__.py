"""Dead letters: what could not be processed or delivered, kept byte-exact with the reason.

- :mod:`consumer.deadletter_record` (re-exported here): the record and the ``DeadLetterWriter``
  protocol. They live below the pipeline, which writes dead letters, so it never imports this
  package;
- :mod:`~consumer.deadletter.jsonl`, :mod:`~consumer.deadletter.kafka`,
  :mod:`~consumer.deadletter.mqtt`: the writers, and each one's reader for replay.

The Kafka and MQTT writers reach their brokers through :mod:`consumer.clients`; they never import
:mod:`consumer.sources`.
"""

from consumer.deadletter.jsonl import JsonlDeadLetterWriter, read_dead_letters
from consumer.deadletter_record import DeadLetterRecord, DeadLetterWriter

__all__ = ["DeadLetterRecord", "DeadLetterWriter", "JsonlDeadLetterWriter", "read_dead_letters"]
