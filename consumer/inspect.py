"""``inspect``: what one message converts to (format, annotations, fields), before any image decision.

It answers "what will this publisher's message become?" without an account, a broker or a routes
file: the format is detected (or named), the annotations are shown in their wire form and the
fields the message states are read. The timestamp window is not applied, so old captures can be
inspected too; every other check is the consumer's own, so a message refused here is refused
(dead-lettered with the same reason and path) when it arrives.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any

import orjson

from consumer import contract
from consumer.config import ImagesConfig, LimitsConfig
from consumer.errors import MessageError, Reason, RouteError
from consumer.formats.common import MAX_IMAGE_SIDE
from consumer.model import Annotations
from consumer.normalize import Normalizer
from consumer.routing import MessageFormat, Route, Router, RoutingTable, UnroutedPolicy, load_routes
from consumer.routing.spec import RouteSpec, compile_route
from consumer.validation import check_custom_metadata, read_timestamp, require_str

# The command line's exit codes (as in consumer/cli.py): converted, refused, bad usage.
_EXIT_OK = 0
_EXIT_REFUSED = 1
_EXIT_USAGE = 2
# The wire order of the annotation lists (docs/formats.md).
_LISTS = ("objectDetections", "instanceSegmentations", "keypoints", "classifications")


def inspect_message(
    payload: bytes,
    *,
    topic: str = "",
    table: RoutingTable | None = None,
    fmt: MessageFormat | None = None,
    image_size: tuple[int, int] | None = None,
    limits: LimitsConfig | None = None,
) -> dict[str, Any]:
    """The ``inspect`` result for one message; raises MessageError (reason and path) when it is refused.

    With ``table``, the route matching ``topic`` supplies the format, ``class_map``,
    ``default_confidence``, ``image_size`` and its field values; ``fmt`` and ``image_size`` override
    the route's. The route's ``when`` and rules are not applied: they decide about events, not
    about what a message says.
    """
    limits = limits or LimitsConfig()
    route, captures = _route_for(table, topic)
    changes: dict[str, Any] = {}
    if fmt is not None:
        changes["format"] = fmt
    if image_size is not None:
        changes["options"] = dataclasses.replace(
            route.options, image_width=image_size[0], image_height=image_size[1]
        )
    if changes:
        route = dataclasses.replace(route, **changes)
    normalizer = Normalizer(RoutingTable([route], UnroutedPolicy.DEAD_LETTER), limits, ImagesConfig())
    document = normalizer.decode(route, payload)
    if route.format is MessageFormat.AUTO:
        route = dataclasses.replace(route, format=Normalizer.detect(document))
    output, values, metadata = normalizer.preview(route, document, {"topic": topic, **captures})
    annotations: Annotations = output.annotations if output is not None else {}
    # An envelope is named as such; a raw output by the shape that was read.
    name = output.format.value if output is not None and route.format is not MessageFormat.ENVELOPE else None
    return {
        "format": name or route.format.value,
        "annotations": {key: annotations[key] for key in _LISTS if annotations.get(key)},
        "fields": _fields(values, metadata),
    }


def _route_for(table: RoutingTable | None, topic: str) -> tuple[Route, dict[str, str]]:
    if table is None:
        return _ANY_TOPIC, {}
    found = Router(table.routes).match(topic)
    if found is None:
        raise RouteError(Reason.NO_ROUTE, f"no route matches topic {topic!r}")
    return found


def _fields(values: dict[str, Any], metadata: dict[str, Any]) -> dict[str, Any]:
    """The event fields a message states, checked as the consumer checks them (no time window)."""
    stamp = values.get("timestamp")
    stream = values.get("stream_id")
    external = values.get("external_id")
    return {
        "timestamp": None if stamp is None else read_timestamp(stamp, "timestamp").isoformat(),
        "streamId": None
        if stream is None
        else require_str(stream, "stream_id", contract.MAX_STREAM_ID_CHARS),
        "externalId": None
        if external is None
        else require_str(external, "external_id", contract.MAX_EXTERNAL_ID_CHARS),
        "customMetadata": check_custom_metadata(metadata, "custom_metadata"),
    }


def add_inspect_parser(commands: Any) -> None:
    """Add ``inspect MESSAGE_FILE [--topic] [--routes] [--format] [--image-size WxH]`` to the CLI."""
    parser = commands.add_parser(
        "inspect", help="show what a message converts to (format, annotations, fields), or why not"
    )
    parser.add_argument("message_file", help="file holding the message bytes ('-' for stdin)")
    parser.add_argument("--topic", help="the message's topic (needed with --routes)")
    parser.add_argument("--routes", type=Path, help="routes file: the topic's route gives format and options")
    parser.add_argument(
        "--format", choices=[f.value for f in MessageFormat], help="read the message as this format"
    )
    parser.add_argument(
        "--image-size", type=parse_image_size, metavar="WxH", help="frame size for normalized coordinates"
    )
    parser.set_defaults(handler=run_inspect)


def run_inspect(args: argparse.Namespace) -> int:
    """The ``inspect`` command: one JSON object on stdout, or the reason code and path on stderr."""
    if args.routes is not None and args.topic is None:
        sys.stderr.write("error: --routes needs --topic (the route is chosen by topic)\n")
        return _EXIT_USAGE
    table = load_routes(args.routes) if args.routes is not None else None
    try:
        payload = (
            sys.stdin.buffer.read() if args.message_file == "-" else Path(args.message_file).read_bytes()
        )
    except OSError as exc:
        sys.stderr.write(f"error: cannot read the message file {args.message_file}: {exc.strerror}\n")
        return _EXIT_USAGE
    try:
        result = inspect_message(
            payload,
            topic=args.topic or "",
            table=table,
            fmt=None if args.format is None else MessageFormat(args.format),
            image_size=args.image_size,
        )
    except MessageError as exc:
        where = f" at {exc.path}" if exc.path else ""
        sys.stderr.write(f"invalid: {exc.reason.value}{where}: {exc.detail}\n")
        return _EXIT_REFUSED
    sys.stdout.write(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode() + "\n")
    return _EXIT_OK


def parse_image_size(text: str) -> tuple[int, int]:
    """``WxH`` (e.g. ``1920x1080``) as two positive integers; argparse's type error otherwise."""
    width, sep, height = text.lower().partition("x")
    if not (sep and width.isdigit() and height.isdigit()) or not (
        0 < int(width) <= MAX_IMAGE_SIDE and 0 < int(height) <= MAX_IMAGE_SIDE
    ):
        raise argparse.ArgumentTypeError(
            f"--image-size must be WIDTHxHEIGHT in pixels, e.g. 1920x1080, not {text!r}"
        )
    return int(width), int(height)


_ANY_TOPIC: Route = compile_route(RouteSpec(name="inspect", match="#"), 0)
