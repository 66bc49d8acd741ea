"""Sinks: deliver batches of Vision Events to the cloud API, an on-device Event Store, or JSONL."""
