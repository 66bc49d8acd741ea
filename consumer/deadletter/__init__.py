"""Dead letters: what could not be processed or delivered, kept byte-exact with the reason."""

from consumer.deadletter.base import DeadLetterRecord, DeadLetterWriter
from consumer.deadletter.jsonl import JsonlDeadLetterWriter, read_dead_letters

__all__ = ["DeadLetterRecord", "DeadLetterWriter", "JsonlDeadLetterWriter", "read_dead_letters"]
