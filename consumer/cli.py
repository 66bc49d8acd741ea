"""Command line: ``vision-events-consumer run | check-config | validate-message | inspect | replay | ...``.

The other commands: ``fake-api`` and ``demo``.

Exit codes: 0 success; 1 a message or run failed (the reason is on stderr); 2 bad usage or
configuration; 3 ``validate-message`` found the message valid but a route settled it without an
event (cooldown, no alert class present, or unrouted with ``unrouted: drop``).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
import yaml

from consumer.app import App, check_runnable
from consumer.config import (
    ImagesConfig,
    LimitsConfig,
    Settings,
    load_settings,
    masked_settings,
    settings_secrets,
)
from consumer.demo import run_demo
from consumer.errors import ConfigError, ConsumerError, MessageError
from consumer.fakeapi import serve
from consumer.inspect import add_inspect_parser
from consumer.logs import configure_logging
from consumer.model import InboundMessage
from consumer.normalize import Normalizer, Skipped
from consumer.redaction import Redactor, mask_url_credentials
from consumer.replay import ReplayFilter, ReplaySource, dry_run
from consumer.replay_origins import open_origin
from consumer.routing import load_routes
from consumer.wire import cloud_event

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_NO_EVENT = 3


def _settings_from(args: argparse.Namespace) -> Settings:
    overrides: dict[str, Any] = {}
    if getattr(args, "routes", None):
        overrides["routes"] = str(args.routes)
    if getattr(args, "input", None):
        overrides["source.type"] = "file"
        overrides["source.file.path"] = args.input
    return load_settings(args.config, overrides)


def cmd_run(args: argparse.Namespace) -> int:
    """Consume and deliver until the input ends or SIGTERM."""
    settings = _settings_from(args)
    configure_logging(settings.log.level, settings.log.format, Redactor(settings_secrets(settings)))
    result = asyncio.run(App(settings).run())
    return EXIT_OK if result.clean else EXIT_FAILED


def cmd_check_config(args: argparse.Namespace) -> int:
    """Validate the settings and routes; print the effective settings with secrets masked."""
    settings = _settings_from(args)
    table = load_routes(settings.routes)
    check_runnable(settings, table)
    effective = masked_settings(settings)
    effective["routes_loaded"] = [route.name for route in table.routes]
    sys.stdout.write(yaml.safe_dump(effective, sort_keys=False))
    return EXIT_OK


def cmd_validate_message(args: argparse.Namespace) -> int:
    """Print the event a message becomes, exactly as the cloud sink would send it."""
    limits = LimitsConfig()
    images = ImagesConfig()
    if args.config is not None:
        settings = load_settings(args.config, {"routes": str(args.routes)})
        limits, images = settings.limits, settings.images
    normalizer = Normalizer(load_routes(args.routes), limits, images)
    try:
        payload = (
            sys.stdin.buffer.read() if args.message_file == "-" else Path(args.message_file).read_bytes()
        )
    except OSError as exc:
        sys.stderr.write(f"error: cannot read the message file {args.message_file}: {exc.strerror}\n")
        return EXIT_USAGE
    message = InboundMessage(source="cli", topic=args.topic, payload=payload, received_at=time.time())
    try:
        result = normalizer.normalize(message)
    except MessageError as exc:
        where = f" at {exc.path}" if exc.path else ""
        sys.stderr.write(f"invalid: {exc.reason.value}{where}: {exc.detail}\n")
        return EXIT_FAILED
    if isinstance(result, Skipped):
        sys.stderr.write(f"no event: {result.reason.value} by route {result.route}\n")
        return EXIT_NO_EVENT
    output_id = "placeholder-output-image" if result.output_image is not None else None
    input_id = "placeholder-input-image" if result.input_image is not None else None
    body = cloud_event(result, output_id, input_id)
    sys.stdout.write(orjson.dumps(body, option=orjson.OPT_INDENT_2).decode() + "\n")
    return EXIT_OK


def cmd_replay(args: argparse.Namespace) -> int:
    """Re-drive dead-letter records through the pipeline (or show what would happen)."""
    settings = _settings_from(args)
    configure_logging(settings.log.level, settings.log.format, Redactor(settings_secrets(settings)))
    selection = ReplayFilter(frozenset(args.reason or ()))
    origin = open_origin(args.origin, settings, idle_seconds=args.idle_seconds)
    if args.dry_run:
        try:
            normalizer = Normalizer(load_routes(settings.routes), settings.limits, settings.images)
            counts: Counter[str] = Counter()
            for outcome in dry_run(origin, selection, normalizer):
                counts[str(outcome["result"])] += 1
                sys.stdout.write(orjson.dumps(outcome).decode() + "\n")
        finally:
            origin.close()
        sys.stderr.write(f"dry run: {dict(counts)}, unreadable {origin.unreadable}\n")
        return EXIT_OK
    source = ReplaySource(origin, selection, args.rate)
    result = asyncio.run(App(settings, source=source).run())
    # With the spool on, the pipeline "delivers" into the spool; the forwarder's count is the API's.
    delivered = result.forwarded.delivered if result.forwarded is not None else result.stats.delivered
    sys.stderr.write(
        f"replayed {source.replayed} (passed over {source.passed_over}, "
        f"unreadable {origin.unreadable}, cut and not replayed {source.truncated}): delivered {delivered}, "
        f"dead-lettered again {result.stats.dead_lettered}, settled by a route {result.stats.skipped}\n"
    )
    return EXIT_OK if result.clean else EXIT_FAILED


def cmd_fake_api(args: argparse.Namespace) -> int:
    """Serve the local Vision Events API stand-in until interrupted."""
    serve(
        host=args.host,
        port=args.port,
        api_keys=args.api_key or ["local-dev-key"],
        use_cases=args.use_case or ["demo-use-case"],
        local_api_key=args.local_api_key,
        fast=args.fast,
    )
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    """Send the bundled sample messages through the pipeline into the local stand-in."""
    return run_demo(mqtt_url=args.mqtt_url, verbose=args.verbose)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="vision-events-consumer",
        description="Forward computer-vision inference results to the Vision Events API.",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="consume and deliver (settings from --config and VEC_* variables)")
    run.add_argument("--config", type=Path, help="YAML settings file")
    run.add_argument("--routes", type=Path, help="routes file (overrides the settings)")
    run.add_argument("--input", help="read messages from this JSONL file ('-' for stdin) instead of a broker")
    run.set_defaults(handler=cmd_run)

    check = commands.add_parser(
        "check-config", help="validate settings and routes; print them, secrets masked"
    )
    check.add_argument("--config", type=Path)
    check.add_argument("--routes", type=Path)
    check.set_defaults(handler=cmd_check_config)

    validate = commands.add_parser("validate-message", help="show the event a message becomes, or why not")
    validate.add_argument("--routes", type=Path, required=True)
    validate.add_argument("--topic", required=True)
    validate.add_argument("--config", type=Path, help="settings for limits and image URL hosts")
    validate.add_argument("message_file", help="file holding the message bytes ('-' for stdin)")
    validate.set_defaults(handler=cmd_validate_message)

    add_inspect_parser(commands)

    replay = commands.add_parser("replay", help="re-drive dead letters through the pipeline")
    replay.add_argument("--config", type=Path)
    replay.add_argument("--routes", type=Path)
    replay.add_argument(
        "--from",
        dest="origin",
        required=True,
        help="where the dead letters are: jsonl:PATH, kafka:TOPIC or mqtt:TOPIC",
    )
    replay.add_argument(
        "--idle-seconds", type=float, default=5.0, help="mqtt: stop after this long without a record"
    )
    replay.add_argument("--reason", action="append", help="only records with this reason (repeatable)")
    replay.add_argument("--rate", type=float, help="at most this many records per second")
    replay.add_argument("--dry-run", action="store_true", help="print what would happen; send nothing")
    replay.set_defaults(handler=cmd_replay)

    fake = commands.add_parser("fake-api", help="serve a local stand-in of the Vision Events API")
    fake.add_argument("--host", default="127.0.0.1")
    fake.add_argument("--port", type=int, default=8080)
    fake.add_argument("--api-key", action="append", help="accepted Bearer key (repeatable)")
    fake.add_argument("--use-case", action="append", help="known use case id (repeatable)")
    fake.add_argument("--local-api-key", help="X-API-Key required on /v2/events")
    fake.add_argument("--fast", action="store_true", help="keep no event bodies or image bytes (benchmarks)")
    fake.set_defaults(handler=cmd_fake_api)

    demo = commands.add_parser(
        "demo", help="run the sample messages into a local stand-in, no account needed"
    )
    demo.add_argument(
        "--mqtt-url", help="publish the samples to this broker (default: $MQTT_URL; none: from a file)"
    )
    demo.add_argument("--verbose", action="store_true", help="show the consumer's logs")
    demo.set_defaults(handler=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script."""
    args = build_parser().parse_args(argv)
    try:
        code: int = args.handler(args)
    except ConfigError as exc:
        # URL passwords are masked here too: an error may quote a setting the user wrote.
        sys.stderr.write(f"configuration error: {mask_url_credentials(str(exc))}\n")
        return EXIT_USAGE
    except ConsumerError as exc:
        sys.stderr.write(f"error: {mask_url_credentials(str(exc))}\n")
        return EXIT_FAILED
    except KeyboardInterrupt:
        return EXIT_FAILED
    return code


if __name__ == "__main__":
    sys.exit(main())
