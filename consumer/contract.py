"""Enums and limits of the Vision Events wire contract (``vision-events-api.md``).

Both the client-side validation and the local API stand-in read these, so a limit changes in one
place. Where the contract says NOT FOUND, the value here is the safe reading and says so.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Final


class EventType(StrEnum):
    """The five event types (contract §2.3)."""

    QUALITY_CHECK = "quality_check"
    INVENTORY_COUNT = "inventory_count"
    SAFETY_ALERT = "safety_alert"
    CUSTOM = "custom"
    OPERATOR_FEEDBACK = "operator_feedback"


QC_RESULTS: Final = frozenset({"pass", "fail"})
SEVERITIES: Final = frozenset({"low", "medium", "high"})
FEEDBACK_VALUES: Final = frozenset({"correct", "incorrect", "inconclusive"})

MAX_USE_CASE_CHARS: Final = 256
MAX_DEVICE_ID_CHARS: Final = 256
# streamId / workflowId limits are NOT FOUND in the contract; the local API caps its snake_case
# twins at 256, so 256 is the safe reading for the cloud too.
MAX_STREAM_ID_CHARS: Final = 256
MAX_WORKFLOW_ID_CHARS: Final = 256
MAX_EXTERNAL_ID_CHARS: Final = 1000
MAX_DESCRIPTION_CHARS: Final = 10_000
MAX_CUSTOM_VALUE_CHARS: Final = 10_000
# alertType: "alphanumeric, underscores, hyphens" (EW:220); no length is given, 256 is the safe cap.
ALERT_TYPE_PATTERN: Final = re.compile(r"[A-Za-z0-9_-]+")
MAX_ALERT_TYPE_CHARS: Final = 256
MAX_ITEM_TYPE_CHARS: Final = 256
MAX_LOCATION_CHARS: Final = 256
MAX_RELATED_EVENT_ID_CHARS: Final = 256

MAX_CUSTOM_METADATA_KEYS: Final = 100
MAX_CUSTOM_METADATA_KEY_CHARS: Final = 100
MAX_CUSTOM_METADATA_STRING_CHARS: Final = 1000
CUSTOM_METADATA_KEY_PATTERN: Final = re.compile(r"[a-zA-Z0-9_ -]+")

MAX_BATCH_EVENTS: Final = 100
# Annotation lists: the cloud cap is NOT FOUND; the bundle consumer silently drops all images past
# 1000 entries per list (VB:67-70), so the safe reading is to refuse more than that.
MAX_ANNOTATIONS_PER_LIST: Final = 1000

# timestamp: "Must be between one year ago and tomorrow".
TIMESTAMP_MAX_AGE_SECONDS: Final = 365 * 24 * 3600
TIMESTAMP_MAX_AHEAD_SECONDS: Final = 24 * 3600

ANNOTATION_KEYS: Final = ("objectDetections", "classifications", "instanceSegmentations", "keypoints")

# Image formats the upload endpoint accepts (DOCS upload page), by magic bytes.
IMAGE_CONTENT_TYPES: Final = {
    "jpeg": "image/jpeg",
    "png": "image/png",
    "webp": "image/webp",
    "gif": "image/gif",
    "tiff": "image/tiff",
    "bmp": "image/bmp",
    "heic": "image/heic",
    "avif": "image/avif",
}


# (offset, magic bytes, format), tried in order.
_MAGIC: Final = (
    (0, b"\xff\xd8\xff", "jpeg"),
    (0, b"\x89PNG\r\n\x1a\n", "png"),
    (0, b"GIF87a", "gif"),
    (0, b"GIF89a", "gif"),
    (0, b"II*\x00", "tiff"),
    (0, b"MM\x00*", "tiff"),
    (0, b"BM", "bmp"),
)
# ISO base media files (HEIC, AVIF) name their brand after 'ftyp' at offset 4.
_FTYP_BRANDS: Final = {
    b"avif": "avif",
    b"avis": "avif",
    b"heic": "heic",
    b"heix": "heic",
    b"hevc": "heic",
    b"hevx": "heic",
    b"mif1": "heic",
    b"msf1": "heic",
}


def sniff_image_format(data: bytes) -> str | None:
    """Return the image format named by ``data``'s magic bytes, or None when it is no accepted image."""
    for offset, magic, name in _MAGIC:
        if data.startswith(magic, offset):
            return name
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if data[4:8] == b"ftyp":
        return _FTYP_BRANDS.get(data[8:12])
    return None
