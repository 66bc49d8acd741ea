"""Route additions for every format: ``when``, ``class_map``, converter options, context names, image URLs."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import aiohttp
import pytest
import yaml
from prometheus_client import CollectorRegistry

from consumer.app import App
from consumer.cli import main
from consumer.config import BatchConfig, ImagesConfig, RetryConfig, load_settings
from consumer.delivery import DeadLetterGate
from consumer.errors import ConfigError, ImageRejectedError, MessageError, Reason
from consumer.formats import ConvertOptions, ModelOutput, PredictionFormat, convert_predictions
from consumer.metrics import Metrics
from consumer.model import InboundMessage, VisionEvent
from consumer.normalize import Skipped, SkipReason
from consumer.pipeline import Pipeline
from consumer.sinks.images import UrlFetcher
from consumer.sinks.retry import RetryPolicy
from tests.support.doubles import MemoryDeadLetters, MemorySink
from tests.support.images import jpeg_bytes
from tests.support.messages import message, normalizer, routes

EDGE = Path(__file__).parent / "fixtures" / "edge"

# Only the messages of a tracked object's end (the DeepStream full schema says "entry", "moving", "exit"...).
EXIT_ROUTES = """
routes:
  - name: exits
    match: "deepstream/{sensor}"
    when: "event.type == 'exit'"
    event_type: custom
    use_case: traffic
    fields: {custom_value: {select: object.id}}
"""


def _deepstream(kind: str = "exit", **changes: Any) -> dict[str, Any]:
    """The spec's test4 vehicle, captured now (the timestamp window holds outside ``inspect``)."""
    document: dict[str, Any] = json.loads((EDGE / "deepstream_full_test4_vehicle.json").read_text())
    document["@timestamp"] = datetime.now(UTC).isoformat()
    document["event"]["type"] = kind
    document.update(changes)
    return document


def _event(result: VisionEvent | Skipped) -> VisionEvent:
    assert isinstance(result, VisionEvent), result
    return result


# -- when ------------------------------------------------------------------------------------------


def test_when_false_settles_the_message_as_filtered_and_true_lets_it_through() -> None:
    n = normalizer(EXIT_ROUTES)
    assert n.normalize(message("deepstream/cam", _deepstream("entry"))) == Skipped(SkipReason.WHEN, "exits")
    assert n.normalize(message("deepstream/cam", _deepstream("moving"))) == Skipped(SkipReason.WHEN, "exits")
    event = _event(n.normalize(message("deepstream/cam", _deepstream("exit"))))
    assert event.event_data["value"] == "18446744073709551615"


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ("missing", False),  # null
        ("empty_list", False),
        ("empty_text", False),
        ("empty_object", False),
        ("zero", True),  # JMESPath: 0 is true
        ("items", True),
        ("flag", False),
    ],
)
def test_when_follows_jmespath_truth(condition: str, expected: bool) -> None:
    n = normalizer(
        "routes: [{name: r, match: 'a', when: 'meta." + condition + "', event_type: custom, use_case: u,"
        " fields: {custom_value: x}}]"
    )
    meta = {"empty_list": [], "empty_text": "", "empty_object": {}, "zero": 0, "items": [1], "flag": False}
    result = n.normalize(message("a", {"predictions": [], "image": {"width": 4, "height": 4}, "meta": meta}))
    assert isinstance(result, VisionEvent) is expected


def test_when_is_checked_before_the_message_is_converted() -> None:
    # An unknown shape would be dead-lettered; a false condition settles it first, without converting.
    n = normalizer("routes: [{name: r, match: 'a', when: 'ok', event_type: custom, use_case: u}]")
    assert n.normalize(message("a", {"something": "else"})) == Skipped(SkipReason.WHEN, "r")


def test_when_that_cannot_be_evaluated_dead_letters_with_a_reason() -> None:
    n = normalizer("routes: [{name: r, match: a, when: 'length(n) > `1`', event_type: custom, use_case: u}]")
    with pytest.raises(MessageError) as caught:
        n.normalize(message("a", {"n": 5}))
    assert caught.value.reason is Reason.INVALID_VALUE
    assert "'r'" in caught.value.detail and "when" in caught.value.detail


@pytest.mark.parametrize("bad", ["type ==", "", "[?"])
def test_when_syntax_error_is_a_config_error_naming_the_route(bad: str) -> None:
    with pytest.raises(ConfigError, match=r"routes\[0\] \(exits\)\.when: invalid JMESPath"):
        routes(f'routes: [{{name: exits, match: a, when: "{bad}"}}]')


def test_when_false_is_acknowledged_counted_as_filtered_when_and_not_dead_lettered() -> None:
    async def scenario() -> None:
        sink, dead = MemorySink(), MemoryDeadLetters()
        metrics = Metrics(CollectorRegistry())
        pipeline = Pipeline(
            normalizer(EXIT_ROUTES), sink, DeadLetterGate(dead, metrics), metrics, BatchConfig(linger_ms=0)
        )
        acked: list[int] = []
        messages: list[InboundMessage] = [
            message("deepstream/cam", _deepstream(kind)) for kind in ("entry", "moving", "exit")
        ]
        for index, msg in enumerate(messages):
            msg.ack = lambda index=index: acked.append(index)  # type: ignore[misc]
        await pipeline.submit(messages)
        await pipeline.flush()
        assert sorted(acked) == [0, 1, 2]
        assert dead.records == []
        assert [len(batch) for batch in sink.batches] == [1]
        labels = {"route": "exits", "outcome": "filtered_when"}
        assert metrics.registry.get_sample_value("vision_events_messages_normalized_total", labels) == 2
        labels = {"route": "exits", "outcome": "event"}
        assert metrics.registry.get_sample_value("vision_events_messages_normalized_total", labels) == 1

    asyncio.run(scenario())


# -- class_map, default_confidence, image_size -------------------------------------------------------

COUNT_ROUTES = """
routes:
  - name: cars
    match: "deepstream/{sensor}"
    event_type: inventory_count
    use_case: parking
    class_map: {vehicle: car, sedan: saloon}
    inventory_count: {item_classes: [car], min_confidence: 0.5}
    default_confidence: 0.75
    image_size: {width: 1920, height: 1080}
    fields: {input_image: "http://cams.local/frame.jpg"}
  - name: envelope
    match: "events/#"
    class_map: {defect: scratch}
    quality_check: {fail_classes: [scratch], min_confidence: 0.5}
"""


CAMS = ImagesConfig(url_allowed_hosts=["cams.local"])


def test_class_map_renames_every_list_before_the_rules_count() -> None:
    event = _event(normalizer(COUNT_ROUTES, images=CAMS).normalize(message("deepstream/cam", _deepstream())))
    assert [d["class"] for d in event.annotations["objectDetections"]] == ["car"]
    assert [c["class"] for c in event.annotations["classifications"]] == ["saloon", "Bugatti", "M", "blue"]
    assert event.event_data["itemCount"] == 1  # the rule saw "car", not "vehicle"


def test_class_map_applies_to_envelope_predictions_too() -> None:
    envelope = {
        "event_type": "quality_check",
        "use_case": "qc",
        "input_image": {"url": "http://cams.local/frame-2.jpg"},
        "predictions": {
            "image": {"width": 64, "height": 48},
            "predictions": [
                {"x": 5, "y": 5, "width": 2, "height": 2, "confidence": 0.9, "class": "defect", "class_id": 0}
            ],
        },
    }
    event = _event(normalizer(COUNT_ROUTES, images=CAMS).normalize(message("events/a", envelope)))
    assert event.annotations["objectDetections"][0]["class"] == "scratch"
    assert event.event_data["result"] == "fail"


def test_default_confidence_fills_only_a_missing_score() -> None:
    n = normalizer(COUNT_ROUTES, images=CAMS)
    unscored = _deepstream()
    del unscored["object"]["vehicle"]["confidence"]
    event = _event(n.normalize(message("deepstream/cam", unscored)))
    assert event.annotations["objectDetections"][0]["confidence"] == 0.75
    scored = _event(n.normalize(message("deepstream/cam", _deepstream())))
    assert scored.annotations["objectDetections"][0]["confidence"] == 0.6904296875
    # Without the route's default the project rule applies: 0.0, which the count rule leaves out.
    plain = normalizer(COUNT_ROUTES.replace("default_confidence: 0.75", ""), images=CAMS)
    assert _event(plain.normalize(message("deepstream/cam", unscored))).event_data["itemCount"] == 0


def test_route_options_reach_the_converter(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[ConvertOptions] = []

    def spy(value: Any, fmt: Any, *, path: str, options: ConvertOptions) -> Any:
        seen.append(options)
        return convert_predictions(value, fmt, path=path, options=options)

    monkeypatch.setattr("consumer.normalize.convert_predictions", spy)
    normalizer(COUNT_ROUTES, images=CAMS).normalize(message("deepstream/cam", _deepstream()))
    assert seen == [ConvertOptions(image_width=1920, image_height=1080, default_confidence=0.75)]
    output = convert_predictions(_deepstream(), PredictionFormat.DEEPSTREAM, path="", options=seen[0])
    assert (output.image_width, output.image_height) == (1920, 1080)


@pytest.mark.parametrize(
    ("extra", "complaint"),
    [
        ("default_confidence: 1.5", "default_confidence"),
        ("default_confidence: -0.1", "default_confidence"),
        ("image_size: {width: 0, height: 10}", "image_size.width"),
        ("image_size: {width: 10}", "image_size.height"),
        ("image_size: {width: 10, height: 10, depth: 3}", "image_size.depth"),
        (
            "class_map: {vehicle: ''}",
            r"routes\[0\] \(r\)\.class_map: \['vehicle'\] map to an empty class name",
        ),
        ("class_map: {vehicle: [car]}", "class_map.vehicle"),
    ],
)
def test_route_options_are_checked_at_load(extra: str, complaint: str) -> None:
    with pytest.raises(ConfigError, match=complaint):
        routes(f"routes:\n  - name: r\n    match: a\n    {extra}\n")


# -- names the message states, in templates and cooldown keys; a count from the message --------------

TRACKING_ROUTES = """
routes:
  - name: by-label
    match: "labelled/{label}"
    event_type: custom
    use_case: u
    custom_metadata: {label: "{label}"}
  - name: per-object
    match: "deepstream/{site}"
    event_type: safety_alert
    use_case: "traffic-{site}"
    fields:
      device_id: "{sensor_id}"
    custom_metadata: {object: "{type}:{tracking_id}", missing: "[{camera}]"}
    safety_alert: {classes: {vehicle: {alert_type: vehicle_seen, severity: low}}}
    cooldown: {seconds: 60, key: "{sensor_id}:{tracking_id}"}
"""


def _tracked_vehicle(tracking_id: str, messageid: str) -> dict[str, Any]:
    document = _deepstream("moving", messageid=messageid)
    document["object"]["id"] = tracking_id
    return document


def test_context_names_fill_templates_of_fields_metadata_and_use_case() -> None:
    event = _event(
        normalizer(TRACKING_ROUTES).normalize(message("deepstream/north", _tracked_vehicle("42", "m1")))
    )
    assert event.device_id == "CAMERA_ID"
    assert event.use_case_id == "traffic-north"
    assert event.custom_metadata["object"] == "moving:42"
    assert event.custom_metadata["missing"] == "[]"  # DeepStream states no camera name


def test_a_topic_capture_wins_over_a_context_name_of_the_same_name() -> None:
    event = _event(normalizer(TRACKING_ROUTES).normalize(message("labelled/truck", _deepstream())))
    assert event.custom_metadata["label"] == "truck"


def test_cooldown_keyed_by_tracking_id_sends_one_alert_per_tracked_object() -> None:
    n = normalizer(TRACKING_ROUTES)
    first = n.normalize(message("deepstream/north", _tracked_vehicle("42", "m1")))
    again = n.normalize(message("deepstream/north", _tracked_vehicle("42", "m2")))
    other = n.normalize(message("deepstream/north", _tracked_vehicle("43", "m3")))
    assert isinstance(first, VisionEvent)
    assert again == Skipped(SkipReason.COOLDOWN, "per-object")
    assert isinstance(other, VisionEvent)


def test_an_unknown_context_name_is_still_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"unknown placeholder \{trackingid\}"):
        routes("routes: [{match: a, cooldown: {seconds: 5, key: '{trackingid}'}}]")


COUNT_FROM_MESSAGE_ROUTES = """
routes:
  - name: people
    match: "counts/{camera}/{object}"
    format: deepstream
    event_type: inventory_count
    use_case: occupancy
    inventory_count: {item_classes: [person]}
    custom_metadata: {seen: "{item_count} on {camera}"}
"""


def test_a_count_the_message_states_is_the_inventory_count(monkeypatch: pytest.MonkeyPatch) -> None:
    # A count topic (e.g. Frigate's frigate/<camera>/<object>): no annotations, the count in values.
    def counted(_value: Any, _fmt: Any, *, path: str, options: ConvertOptions) -> ModelOutput:
        return ModelOutput(
            annotations={},
            format=PredictionFormat.DEEPSTREAM,
            values={"item_count": 3, "item_type": "person"},
            context={"item_count": 3, "camera": "ignored", "label": "person"},
        )

    monkeypatch.setattr("consumer.normalize.convert_predictions", counted)
    event = _event(normalizer(COUNT_FROM_MESSAGE_ROUTES).normalize(message("counts/front_door/person", {})))
    assert event.event_data["itemCount"] == 3  # the rule counts 0 annotations; the message's count wins
    assert event.event_data["itemType"] == "person"
    assert event.custom_metadata["seen"] == "3 on front_door"


def test_a_count_the_message_states_is_still_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    def counted(_value: Any, _fmt: Any, *, path: str, options: ConvertOptions) -> ModelOutput:
        return ModelOutput(annotations={}, format=PredictionFormat.DEEPSTREAM, values={"item_count": -1})

    monkeypatch.setattr("consumer.normalize.convert_predictions", counted)
    with pytest.raises(MessageError) as caught:
        normalizer(COUNT_FROM_MESSAGE_ROUTES).normalize(message("counts/front_door/person", {}))
    assert caught.value.path == "item_count"


# -- an image by URL template -------------------------------------------------------------------------

SNAPSHOT_ROUTES = """
routes:
  - name: snapshots
    match: "deepstream/{site}"
    event_type: custom
    use_case: traffic
    image_url: "http://snapshots.local:5000/api/{site}/events/{tracking_id}/snapshot.jpg"
    predictions_without_image: dead_letter
  - name: envelope
    match: "events/#"
    image_url: "http://snapshots.local:5000/fallback.jpg"
"""
SNAPSHOTS = ImagesConfig(url_allowed_hosts=["snapshots.local"])


def _url(result: VisionEvent | Skipped) -> str | None:
    image = _event(result).input_image
    return None if image is None else image.url


def test_image_url_is_built_from_captures_and_the_tracking_id() -> None:
    n = normalizer(SNAPSHOT_ROUTES, images=SNAPSHOTS)
    event = _event(n.normalize(message("deepstream/north", _tracked_vehicle("42", "m1"))))
    assert (
        event.input_image is not None
        and event.input_image.url == "http://snapshots.local:5000/api/north/events/42/snapshot.jpg"
    )
    assert event.annotations["objectDetections"][0]["class"] == "vehicle"  # kept: there is an image


def test_image_url_values_are_escaped_so_they_cannot_leave_their_path_segment() -> None:
    n = normalizer(SNAPSHOT_ROUTES, images=SNAPSHOTS)
    event = _event(n.normalize(message("deepstream/north", _tracked_vehicle("../x?y=1#@evil.example", "m1"))))
    assert event.input_image is not None
    assert event.input_image.url == (
        "http://snapshots.local:5000/api/north/events/..%2Fx%3Fy%3D1%23%40evil.example/snapshot.jpg"
    )


def test_image_url_needing_a_name_the_message_lacks_is_dead_lettered() -> None:
    n = normalizer(SNAPSHOT_ROUTES, images=SNAPSHOTS)
    with pytest.raises(MessageError) as caught:
        n.normalize(message("deepstream/north", _deepstream()))  # an untracked object: no tracking id
    assert (caught.value.reason, caught.value.path) == (Reason.MISSING_FIELD, "input_image")
    assert "{tracking_id}" in caught.value.detail


def test_image_url_is_under_the_allow_list() -> None:
    n = normalizer(SNAPSHOT_ROUTES, images=ImagesConfig(url_allowed_hosts=["elsewhere.local"]))
    with pytest.raises(MessageError) as caught:
        n.normalize(message("deepstream/north", _tracked_vehicle("42", "m1")))
    assert (caught.value.reason, caught.value.path) == (Reason.IMAGE_URL_NOT_ALLOWED, "input_image")


def test_the_message_own_image_wins_over_the_route_image_url() -> None:
    own = {"event_type": "custom", "use_case": "u", "input_image": {"url": "http://snapshots.local/own.jpg"}}
    fallback = {"event_type": "custom", "use_case": "u"}
    n = normalizer(SNAPSHOT_ROUTES, images=SNAPSHOTS)
    assert _url(n.normalize(message("events/a", own))) == "http://snapshots.local/own.jpg"
    assert _url(n.normalize(message("events/a", fallback))) == "http://snapshots.local:5000/fallback.jpg"


@pytest.mark.parametrize(
    ("template", "complaint"),
    [
        ("ftp://snapshots.local/{id}.jpg", "an http:// or https:// URL template is required"),
        ("{camera}/snapshot.jpg", "an http:// or https:// URL template is required"),
        ("http://snapshots.local/{nope}.jpg", r"image_url: unknown placeholder \{nope\}"),
    ],
)
def test_image_url_templates_are_checked_at_load(template: str, complaint: str) -> None:
    with pytest.raises(ConfigError, match=complaint):
        routes(f"routes: [{{name: r, match: a, image_url: '{template}'}}]")


class _Snapshots(BaseHTTPRequestHandler):
    """Frigate's ``/api/events/<id>/snapshot.jpg``, for the ids it knows."""

    known: ClassVar[dict[str, bytes]] = {}

    def do_GET(self) -> None:
        body = self.known.get(self.path)
        self.send_response(200 if body is not None else 404)
        self.send_header("Content-Length", str(len(body or b"")))
        self.end_headers()
        self.wfile.write(body or b"")

    def log_message(self, *_args: Any) -> None:
        pass


@pytest.fixture
def snapshot_server() -> Iterator[tuple[int, dict[str, bytes]]]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Snapshots)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], _Snapshots.known
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
        _Snapshots.known.clear()


def test_image_url_is_fetched_by_the_image_fetcher_under_its_size_cap(
    snapshot_server: tuple[int, dict[str, bytes]],
) -> None:
    port, known = snapshot_server
    small, large = jpeg_bytes(), jpeg_bytes(256, 256)
    known["/api/north/events/42/snapshot.jpg"] = small
    known["/api/north/events/43/snapshot.jpg"] = large
    text = SNAPSHOT_ROUTES.replace("snapshots.local:5000", f"127.0.0.1:{port}")
    n = normalizer(text, images=ImagesConfig(url_allowed_hosts=["127.0.0.1"]))
    urls = []
    for tracking_id in ("42", "43"):
        event = _event(n.normalize(message("deepstream/north", _tracked_vehicle(tracking_id, tracking_id))))
        assert event.input_image is not None and event.input_image.url is not None
        urls.append(event.input_image.url)
    cap = len(small) + 100
    assert len(large) > cap

    async def fetch_both() -> tuple[bytes, BaseException]:
        config = ImagesConfig(url_allowed_hosts=["127.0.0.1"], url_max_bytes=max(cap, 1024))
        metrics = Metrics(CollectorRegistry())
        async with aiohttp.ClientSession() as session:
            fetcher = UrlFetcher(
                config, lambda: session, RetryPolicy(RetryConfig(), metrics, "local"), metrics
            )
            got = await fetcher.fetch(urls[0])
            try:
                await fetcher.fetch(urls[1])
            except ImageRejectedError as exc:
                return got, exc
        raise AssertionError("the oversized snapshot was accepted")

    got, refused = asyncio.run(fetch_both())
    assert got == small
    assert isinstance(refused, ImageRejectedError) and refused.reason is Reason.IMAGE_FETCH_FAILED
    assert "cap" in str(refused)


@pytest.mark.parametrize(
    ("template", "allowed", "code"),
    [
        ("http://frigate:5000/api/events/{id}/snapshot.jpg", ["frigate"], 0),
        ("http://frigate:5000/api/events/{id}/snapshot.jpg", ["other"], 2),
        ("http://{camera}.cams.local/snapshot.jpg", [], 0),  # the host comes from the message
    ],
)
def test_check_config_refuses_an_image_url_host_off_the_allow_list(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], template: str, allowed: list[str], code: int
) -> None:
    routes_file = tmp_path / "routes.yaml"
    routes_file.write_text(f"routes: [{{name: frigate, match: 'frigate/events', image_url: '{template}'}}]")
    settings = tmp_path / "settings.yaml"
    settings.write_text(
        yaml.safe_dump(
            {"routes": str(routes_file), "sink": {"type": "jsonl"}, "images": {"url_allowed_hosts": allowed}}
        )
    )
    assert main(["check-config", "--config", str(settings)]) == code
    if code:
        assert "route frigate: image_url host 'frigate:5000' is not in images.url_allowed_hosts" in (
            capsys.readouterr().err
        )


def test_run_refuses_an_image_url_host_off_the_allow_list_too(tmp_path: Path) -> None:
    routes_file = tmp_path / "routes.yaml"
    routes_file.write_text(
        "routes: [{name: frigate, match: 'frigate/events', image_url: 'http://viewer:s3cret@frigate/x.jpg'}]"
    )
    settings = load_settings(None, {"routes": str(routes_file), "sink.type": "jsonl"})
    with pytest.raises(
        ConfigError, match=r"image_url host 'frigate' is not in images\.url_allowed_hosts"
    ) as caught:
        App(settings, serve_ops=False)
    assert "s3cret" not in str(caught.value)
