"""Render a VisionEvent as the JSON body each API expects (contract §2, §3.3, §3.4)."""

from __future__ import annotations

from typing import Any

from consumer.model import VisionEvent

IMAGE_LABEL = "workflow"


def timestamp_text(event: VisionEvent) -> str:
    """ISO 8601 with offset, as the blocks send it (``2026-08-21T18:33:52.123456+00:00``)."""
    return event.timestamp.isoformat()


def cloud_event(event: VisionEvent, source_id: str | None, input_source_id: str | None) -> dict[str, Any]:
    """The cloud ``POST /vision-events`` (and batch element) body for ``event``.

    ``source_id`` / ``input_source_id`` are the upload ids of the output and input images. Whether
    an entry with only ``inputSourceId`` is valid is NOT FOUND in the contract (§3.3); the safe
    reading is to show the input frame as the display image too.
    """
    source_id = source_id if source_id is not None else input_source_id
    body: dict[str, Any] = {
        "eventId": event.event_id,
        "eventType": event.event_type.value,
        "useCaseId": event.use_case_id,
        "timestamp": timestamp_text(event),
    }
    images: list[dict[str, Any]] = []
    if source_id is not None or input_source_id is not None:
        entry: dict[str, Any] = {}
        if source_id is not None:
            entry["sourceId"] = source_id
        if input_source_id is not None:
            entry["inputSourceId"] = input_source_id
        entry["label"] = IMAGE_LABEL
        entry.update(event.annotations)
        images.append(entry)
    body["images"] = images
    if event.event_data:
        body["eventData"] = event.event_data
    if event.custom_metadata:
        body["customMetadata"] = event.custom_metadata
    if images:
        body["displayImagePosition"] = 0
    if event.device_id is not None:
        body["deviceId"] = event.device_id
    if event.stream_id is not None:
        body["streamId"] = event.stream_id
    if event.workflow_id is not None:
        body["workflowId"] = event.workflow_id
    return body


def local_event(
    event: VisionEvent, base64_image: str | None, input_base64_image: str | None
) -> dict[str, Any]:
    """The on-device ``POST /v2/events`` body for ``event`` (contract §2.2, §3.4).

    The local API assigns its own id, so ``eventId`` is not sent; ``event_data`` is always sent,
    even when empty. As for the cloud, an input frame alone is also sent as the display image
    (the Event Writer block requires ``base64Image``, EW:643-677).
    """
    base64_image = base64_image if base64_image is not None else input_base64_image
    body: dict[str, Any] = {
        "inference_timestamp": timestamp_text(event),
        "solution": event.use_case_id,
        "event_schema": event.event_type.value,
        "event_data": event.event_data,
    }
    images: list[dict[str, Any]] = []
    if base64_image is not None or input_base64_image is not None:
        entry: dict[str, Any] = {}
        if base64_image is not None:
            entry["base64Image"] = base64_image
        if input_base64_image is not None:
            entry["inputBase64Image"] = input_base64_image
        entry["label"] = IMAGE_LABEL
        entry.update(event.annotations)
        images.append(entry)
    body["images"] = images
    if event.custom_metadata:
        body["custom_metadata"] = event.custom_metadata
    if images:
        body["displayImagePosition"] = 0
    if event.device_id is not None:
        body["device_id"] = event.device_id
    if event.stream_id is not None:
        body["stream_id"] = event.stream_id
    if event.workflow_id is not None:
        body["workflow_id"] = event.workflow_id
    return body
