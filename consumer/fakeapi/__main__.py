"""``python -m consumer.fakeapi``: the stand-in on its own, with the benchmark's ``--fast`` mode."""

from __future__ import annotations

import argparse

from consumer.fakeapi.server import serve


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments and serve until SIGINT or SIGTERM."""
    parser = argparse.ArgumentParser(prog="python -m consumer.fakeapi", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080, help="0 picks a free port (printed)")
    parser.add_argument("--api-key", action="append", help="accepted Bearer key (repeatable)")
    parser.add_argument("--use-case", action="append", help="known use case id (repeatable)")
    parser.add_argument("--local-api-key", help="X-API-Key required on /v2/events")
    parser.add_argument(
        "--fast",
        action="store_true",
        help="keep no event bodies or image bytes (validation unchanged): for benchmarks",
    )
    parser.add_argument("--verbose", action="store_true", help="log every request")
    args = parser.parse_args(argv)
    serve(
        host=args.host,
        port=args.port,
        api_keys=args.api_key or ["local-dev-key"],
        use_cases=args.use_case or ["demo-use-case"],
        local_api_key=args.local_api_key,
        verbose=args.verbose,
        fast=args.fast,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
