"""The stand-in's ``--fast`` accept rate, two versions of it in one run.

``python -m bench.standin_compare --base DIR [--seconds 5] [--rounds 3]`` runs
``python -m consumer.fakeapi --fast`` once from ``DIR`` (an export of another version, e.g.
``git archive main consumer | tar -x -C DIR``) and once from this tree, taking turns for
``--rounds`` rounds, and measures each with ``bench.load`` (4 keep-alive connections posting
ready-made 100-event batches, as ``python -m bench`` does). With two CPUs or more the stand-in is
pinned to one and the load to another, as in the benchmark. Prints the median events per second
of each version and kind. Nothing here asserts a speed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

import orjson

from bench.messages import jpeg_of_size
from bench.procs import Child, cpu_count, python
from bench.standin import API_KEY, USE_CASES

KINDS = ("od", "cls")


def _start(cwd: str, cpus: set[int] | None, log: Path) -> tuple[Child, str]:
    """The stand-in of the ``consumer`` package found in ``cwd``; returns it and its URL."""
    argv = python("-m", "consumer.fakeapi", "--fast", "--port", "0", "--api-key", API_KEY)
    for use_case in USE_CASES:
        argv += ["--use-case", use_case]
    child = Child(argv, cpus=cpus, log=log, stdout_pipe=True, cwd=cwd, env={"PYTHONPATH": cwd})
    stdout = child.process.stdout
    if stdout is None:
        raise RuntimeError("the stand-in has no stdout pipe")
    line = stdout.readline().decode().strip()
    if "listening on" not in line:
        child.terminate(5)
        raise RuntimeError(f"the stand-in in {cwd} did not start: {line!r}\n{child.log_tail()}")
    return child, line.rsplit(" ", 1)[-1]


def _rate(url: str, kind: str, seconds: float, cpus: set[int] | None, log: Path) -> float:
    """Events per second that ``bench.load`` got accepted."""
    import httpx  # noqa: PLC0415 - only for the one upload the batches refer to

    upload = httpx.post(
        f"{url}/vision-events/upload",
        files={"file": ("frame.jpg", jpeg_of_size(), "image/jpeg")},
        headers={"Authorization": f"Bearer {API_KEY}"},
        timeout=30,
    )
    upload.raise_for_status()
    argv = python(
        "-m", "bench.load", "--url", url, "--api-key", API_KEY, "--source-id", upload.json()["sourceId"],
        "--kind", kind, "--seconds", str(seconds), "--connections", "4",
    )  # fmt: skip
    here = str(Path(__file__).resolve().parent.parent)
    child = Child(argv, cpus=cpus, log=log, stdout_pipe=True, cwd=here, env={"PYTHONPATH": here})
    stdout, _ = child.process.communicate(timeout=seconds + 120)
    child.terminate()
    result = orjson.loads(stdout.splitlines()[-1])
    if result["errors"]:
        raise RuntimeError(f"{result['errors']} requests were not accepted: {result}")
    rate: float = result["rate"]
    return rate


def main() -> None:
    """Measure both versions, alternating, and print the medians."""
    parser = argparse.ArgumentParser(prog="python -m bench.standin_compare", description=__doc__)
    parser.add_argument("--base", required=True, help="directory holding the other version's consumer/")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    here = str(Path(__file__).resolve().parent.parent)
    versions = {"base": os.path.abspath(args.base), "this tree": here}
    cpus = sorted(os.sched_getaffinity(0))
    standin_cpus, load_cpus = ({cpus[-1]}, {cpus[0]}) if cpu_count() >= 2 else (None, None)
    rates: dict[tuple[str, str], list[float]] = {(v, k): [] for v in versions for k in KINDS}
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "standin_compare.log"
        for _ in range(args.rounds):
            for name, cwd in versions.items():
                child, url = _start(cwd, standin_cpus, log)
                try:
                    for kind in KINDS:
                        rates[(name, kind)].append(_rate(url, kind, args.seconds, load_cpus, log))
                finally:
                    child.terminate(10)
    sys.stdout.write(f"median of {args.rounds} rounds of {args.seconds:g} s, 4 connections\n")
    sys.stdout.write("| stand-in | od events/s | cls events/s |\n|---|---:|---:|\n")
    for name in versions:
        od, cls = (statistics.median(rates[(name, kind)]) for kind in KINDS)
        sys.stdout.write(f"| {name} | {od:,.0f} | {cls:,.0f} |\n")


if __name__ == "__main__":
    main()
