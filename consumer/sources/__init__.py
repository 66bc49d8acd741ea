"""Sources: where messages come from (a JSONL file or stdin; MQTT and Kafka)."""
