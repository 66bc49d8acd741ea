"""Stable event ids: the same message always becomes the same eventId.

The cloud API overwrites an event whose eventId it has seen, so a redelivered message (after a
crash, a rebalance, a replay) updates its event instead of duplicating it.
"""

from __future__ import annotations

import hashlib
import uuid
from typing import Final

# Fixed forever: changing it would give every message a new id and duplicate replayed events.
EVENT_ID_NAMESPACE: Final = uuid.UUID("6f1d4c1e-8a57-5a0e-9d53-0c6b6f7e2a41")
_NAMESPACE_BYTES: Final = EVENT_ID_NAMESPACE.bytes


def event_id_for(*, publisher_id: str | None, topic: str, payload: bytes) -> str:
    """UUIDv5 of the publisher's own id when it sent one, else of the topic and a payload hash."""
    if publisher_id:
        key = "id:" + publisher_id
    else:
        key = "topic:" + topic + "\x00sha256:" + hashlib.sha256(payload).hexdigest()
    return uuid5_text(key)


def uuid5_text(name: str) -> str:
    """``str(uuid.uuid5(EVENT_ID_NAMESPACE, name))``, without building UUID objects (a hot path).

    RFC 4122 §4.3: SHA-1 of namespace + name, truncated to 16 bytes, version and variant set. Both
    are set on the hex text: the version nibble (hex digit 12) becomes ``5``, and the variant's two
    high bits (of hex digit 16) become ``10``.
    """
    text = hashlib.sha1(_NAMESPACE_BYTES + name.encode()).hexdigest()  # noqa: S324 - UUIDv5 is SHA-1 by definition
    return f"{text[:8]}-{text[8:12]}-5{text[13:16]}-{_VARIANT_DIGIT[text[16]]}{text[17:20]}-{text[20:32]}"


# Hex digit -> the same digit with its two high bits set to the RFC 4122 variant (binary 10xx).
_VARIANT_DIGIT: Final = {f"{n:x}": f"{(n & 0x3) | 0x8:x}" for n in range(16)}
