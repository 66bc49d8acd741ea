"""Sources: where messages come from (a JSONL file or stdin; MQTT and Kafka).

- :mod:`~consumer.sources.base`: the ``Source`` protocol the app runs, and the ``Intake`` protocol
  (``submit``, ``has_room``) through which sources see the pipeline;
- :mod:`~consumer.sources.file`, :mod:`~consumer.sources.mqtt`, :mod:`~consumer.sources.kafka`:
  the sources themselves;
- :mod:`~consumer.sources.acks`: in-order acknowledgement lanes (MQTT packet ids, Kafka offsets);
- :mod:`~consumer.sources.offsets`: the Kafka ``OffsetBook``, committable offsets per partition;
- :mod:`~consumer.sources.handoff`: the MQTT network thread's batches to the event loop.

How to reach a broker (settings, TLS, credentials, masking) is in :mod:`consumer.clients`, shared
with the dead-letter writers and replay. Sources never import :mod:`consumer.deadletter`.
"""
