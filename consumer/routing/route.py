"""A compiled route: how messages on matching topics become events."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from jmespath.parser import ParsedResult

from consumer.contract import EventType
from consumer.formats.common import DEFAULT_OPTIONS, ConvertOptions
from consumer.routing.rules import AlertRule, Cooldown, CountRule, QualityRule
from consumer.routing.topics import TopicPattern
from consumer.routing.values import Template, ValueSpec

# Envelope fields a route may set in ``fields:`` (use_case and event_type have their own keys).
EVENT_FIELDS: Final = frozenset(
    {
        "event_id",
        "timestamp",
        "device_id",
        "stream_id",
        "workflow_id",
        "external_id",
        "qc_result",
        "location",
        "item_count",
        "item_type",
        "alert_type",
        "severity",
        "alert_description",
        "custom_value",
        "related_event_id",
        "feedback",
        "input_image",
        "output_image",
    }
)

# Names a converter may state about a message (ModelOutput.context) for templates and cooldown keys:
# a tracking id, the camera, the object's label, the publisher's event type, a count... Which format
# states which is listed in docs/formats.md; a name the message does not state renders empty.
CONTEXT_NAMES: Final = frozenset(
    {
        "id",
        "tracking_id",
        "tracking_ids",
        "camera",
        "label",
        "type",
        "sensor_id",
        "frame_id",
        "item_count",
        "active",
        "channel_id",
        "source",
        "img_handle",
    }
)


class MessageFormat(StrEnum):
    """What a route's messages are: our envelope, or raw output of a model server."""

    AUTO = "auto"
    ENVELOPE = "envelope"
    ROBOFLOW = "roboflow"
    WORKFLOW = "workflow"
    ULTRALYTICS = "ultralytics"
    DEEPSTREAM = "deepstream"
    FRIGATE = "frigate"
    AXIS = "axis"
    DEEPSTREAM_MINIMAL = "deepstream_minimal"
    DLSTREAMER = "dlstreamer"


class NoImagePolicy(StrEnum):
    """What happens when a message has predictions but no image to attach them to.

    The API carries annotations only inside an image entry, so they cannot be sent alone.
    ``deliver_without_annotations`` (default) sends the event with its fields (qc result, count,
    alert...) and counts the dropped predictions in ``vision_events_annotations_dropped_total``;
    ``dead_letter`` keeps the whole message for a replay once images are published.
    """

    DELIVER_WITHOUT_ANNOTATIONS = "deliver_without_annotations"
    DEAD_LETTER = "dead_letter"


class ImageUnavailablePolicy(StrEnum):
    """What happens to an event whose image URL cannot be fetched within the image's bound.

    ``dead_letter`` (default) keeps the whole message, reason ``image_unavailable``, for a replay
    once the image host is back; ``deliver_without_image`` sends the event without that image
    (its predictions too when no image is left to carry them, as ``predictions_without_image``
    does, counted in ``vision_events_annotations_dropped_total{reason="image_unavailable"}``).
    """

    DEAD_LETTER = "dead_letter"
    DELIVER_WITHOUT_IMAGE = "deliver_without_image"


@dataclass(frozen=True, slots=True)
class Route:
    """One compiled route. Precedence of a field's value: the message's own, a rule's, the route's."""

    name: str
    pattern: TopicPattern
    format: MessageFormat
    event_type: EventType | None
    use_case: ValueSpec | None
    fields: Mapping[str, ValueSpec]
    custom_metadata: Mapping[str, ValueSpec]
    quality: QualityRule | None
    count: CountRule | None
    alert: AlertRule | None
    cooldown: Cooldown | None
    no_image_policy: NoImagePolicy
    # ``when:``: a JMESPath condition over the decoded message; a false result settles it as filtered.
    when: ParsedResult | None = None
    # ``class_map:``: class names renamed in every annotation list, before the rules read them.
    class_map: Mapping[str, str] | None = None
    # ``default_confidence:`` and ``image_size:``, for the converters.
    options: ConvertOptions = DEFAULT_OPTIONS
    # ``image_url:``: the input image's URL built from the captures and the names the message states,
    # for messages that carry no image of their own (e.g. Frigate's event snapshot).
    image_url: Template | None = None
    image_unavailable: ImageUnavailablePolicy = ImageUnavailablePolicy.DEAD_LETTER
