"""The results table (stdout), the JSON file and the PNG chart under bench/results/."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import orjson

plt: Any
try:  # a dev dependency: without it the run still prints its table and writes its JSON
    import matplotlib as mpl

    mpl.use("Agg")
    import matplotlib.pyplot as plt
except ImportError:  # pragma: no cover
    plt = None


def _fmt(value: Any, spec: str = ",.0f") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return format(value, spec)


def table(results: dict[str, Any]) -> str:
    """Markdown tables of every figure, with the targets next to them."""
    lines: list[str] = []
    standin = results.get("standin") or {}
    if standin:
        lines.append(
            "Stand-in accept rate (fast mode, own core, 4 connections): "
            + ", ".join(f"{kind} {_fmt(v['rate'])} events/s" for kind, v in standin.items())
        )
        lines.append("")
    lines.append(
        "| transport | kind | messages | consumer events/s | (10-90 %) | bare client msgs/s | % of bare "
        "| CPU s / 1000 events | peak RSS MB |"
    )
    lines.append("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for row in results.get("scenarios", []):
        of_raw = row.get("of_raw")
        lines.append(
            f"| {row['transport']} | {row['kind']} | {_fmt(row['count'])} | {_fmt(row['rate'])} "
            f"| {_fmt(row.get('rate_steady'))} | {_fmt(row.get('raw_rate'))} "
            f"| {_fmt(None if of_raw is None else 100 * of_raw)} % "
            f"| {_fmt(row['cpu_per_1000'], '.3f')} | {_fmt(row['peak_rss_mb'], '.0f')} |"
        )
    if results.get("latency"):
        lines.append("")
        lines.append(
            "| transport | kind | offered rate/s | events | p50 ms | p90 ms | p99 ms | max ms | linger ms "
            "| CPU s / 1000 events |"
        )
        lines.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for row in results["latency"]:
            lat = row["latency_ms"]
            lines.append(
                f"| {row['transport']} | {row['kind']} | {_fmt(row['target_rate'])} | {_fmt(row['count'])} "
                f"| {_fmt(lat['p50'], '.1f')} | {_fmt(lat['p90'], '.1f')} | {_fmt(lat['p99'], '.1f')} "
                f"| {_fmt(lat['max'], '.1f')} | {row['linger_ms']} | {_fmt(row['cpu_per_1000'], '.3f')} |"
            )
    if results.get("backlog"):
        lines.append("")
        lines.append("| transport | backlog | drain events/s | seconds | peak RSS MB | CPU s / 1000 events |")
        lines.append("|---|---:|---:|---:|---:|---:|")
        for row in results["backlog"]:
            lines.append(
                f"| {row['transport']} | {_fmt(row['count'])} | {_fmt(row['rate'])} "
                f"| {_fmt(row['seconds'], '.1f')} "
                f"| {_fmt(row['peak_rss_mb'], '.0f')} | {_fmt(row['cpu_per_1000'], '.3f')} |"
            )
    if results.get("peers"):
        lines.append("")
        lines.extend(peers_table(results))
    checks = targets(results)
    if checks:
        lines.append("")
        lines.append("| target | figure | met |")
        lines.append("|---|---|---|")
        for name, figure, met in checks:
            lines.append(f"| {name} | {figure} | {'yes' if met else 'NO'} |")
    return "\n".join(lines)


def peers_table(results: dict[str, Any]) -> list[str]:
    """The consumer, the bare client and each peer on the same od messages: CPU per 1000 events.

    *ours ÷ it* divides the consumer's CPU per event by the system's: below 1, the consumer is cheaper.
    """
    lines = [
        "| system | transport | events | events/s | CPU s / 1000 events | ours ÷ it (CPU) | peak RSS MB |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    ours = {r["transport"]: r for r in results.get("scenarios", []) if r["kind"] == "od"}
    for transport, row in ours.items():
        lines.append(
            f"| vision-events-consumer | {transport} | {_fmt(row['count'])} | {_fmt(row['rate'])} "
            f"| {_fmt(row['cpu_per_1000'], '.3f')} | 1.00 | {_fmt(row['peak_rss_mb'], '.0f')} |"
        )
        bare = row.get("raw_cpu_per_1000")
        lines.append(
            f"| bare client, reading only | {transport} | {_fmt(row.get('raw_count'))} "
            f"| {_fmt(row.get('raw_rate'))} | {_fmt(bare, '.3f')} "
            f"| {_fmt(row['cpu_per_1000'] / bare if bare else None, '.2f')} | - |"
        )
        for peer in results.get("peers", []):
            if peer["transport"] == transport:
                name = peer.get("label", peer["system"])
                lines.append(
                    f"| {name} | {transport} | {_fmt(peer['count'])} | {_fmt(peer['rate'])} "
                    f"| {_fmt(peer['cpu_per_1000'], '.3f')} | {_fmt(peer.get('ours_cpu_ratio'), '.2f')} "
                    f"| {_fmt(peer['peak_rss_mb'], '.0f')} |"
                )
    return lines


# Issue 14: the consumer's CPU per od event at most this fraction of each peer's.
PEER_TARGETS: dict[tuple[str, str], float] = {
    ("kafka", "naive"): 0.6,
    ("kafka", "benthos"): 0.4,
    ("mqtt", "benthos"): 0.8,
}


def targets(results: dict[str, Any]) -> list[tuple[str, str, bool]]:
    """The round's targets, each with the measured figure and whether it holds."""
    out: list[tuple[str, str, bool]] = []
    by_key = {(r["transport"], r["kind"]): r for r in results.get("scenarios", [])}
    for transport, floor in (("kafka", 20_000), ("mqtt", 10_000)):
        row = by_key.get((transport, "od"))
        if row is not None:
            out.append((f"{transport} od >= {floor:,} events/s", f"{row['rate']:,.0f}", row["rate"] >= floor))
            if row.get("of_raw") is not None:
                out.append(
                    (
                        f"{transport} od >= 50 % of bare client",
                        f"{100 * row['of_raw']:.0f} %",
                        row["of_raw"] >= 0.5,
                    )
                )
    for peer in results.get("peers", []):
        fraction = PEER_TARGETS.get((peer["transport"], peer["system"]))
        ratio = peer.get("ours_cpu_ratio")
        if fraction is not None and ratio is not None:
            out.append(
                (
                    f"{peer['transport']} od CPU/event <= {fraction} x {peer['system']}'s",
                    f"{ratio:.2f} x",
                    ratio <= fraction,
                )
            )
    for row in results.get("latency", []):
        limit = (row.get("linger_ms") or 0) + 250
        p99 = row["latency_ms"]["p99"]
        out.append(
            (
                f"{row['transport']} p99 <= linger + 250 ms at half rate",
                f"{p99:.0f} ms (<= {limit})",
                p99 <= limit,
            )
        )
    for row in results.get("backlog", []):
        out.append(
            (
                f"{row['transport']} RSS <= 300 MB draining {row['count']:,}",
                f"{row['peak_rss_mb']:.0f} MB",
                row["peak_rss_mb"] <= 300,
            )
        )
    return out


BIN_SECONDS = 0.5


def _binned(timeline: list[list[float]], width: float = BIN_SECONDS) -> tuple[list[float], list[float]]:
    """Accepted-per-slot pairs as events/s in ``width`` bins from the first slot, empty bins included."""
    t0 = timeline[0][0]
    bins: dict[int, float] = {}
    for start, count in timeline:
        index = int((start - t0) / width)
        bins[index] = bins.get(index, 0.0) + count
    last = max(bins)
    return [i * width for i in range(last + 1)], [bins.get(i, 0.0) / width for i in range(last + 1)]


def write_json(results: dict[str, Any], path: Path) -> None:
    """Every figure, timelines included."""
    path.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY))


def chart(results: dict[str, Any], path: Path) -> bool:
    """Throughput bars, accepted-events timelines, RSS during the backlog; False without matplotlib."""
    if plt is None:
        return False
    scenarios = results.get("scenarios", [])
    panels = 2 + bool(results.get("backlog"))
    fig, axes = plt.subplots(1, panels, figsize=(6 * panels, 4.5))
    ax = axes[0]
    labels = [f"{r['transport']}\n{r['kind']}" for r in scenarios]
    xs = list(range(len(scenarios)))
    ax.bar([x - 0.2 for x in xs], [r["rate"] for r in scenarios], width=0.4, label="consumer (events/s)")
    ax.bar(
        [x + 0.2 for x in xs],
        [r.get("raw_rate") or 0 for r in scenarios],
        width=0.4,
        label="bare client (msgs/s)",
    )
    for rate, style in ((20_000, "--"), (10_000, ":")):
        ax.axhline(rate, color="grey", linestyle=style, linewidth=1)
    standin = (results.get("standin") or {}).get("od")
    if standin:
        ax.axhline(standin["rate"], color="red", linewidth=1, label="stand-in accept rate (od)")
    ax.set_xticks(xs, labels)
    ax.set_yscale("log")
    ax.set_title("Throughput, one core (log scale)")
    ax.legend(fontsize=8)
    ax = axes[1]
    for row in scenarios:
        timeline = row.get("timeline") or []
        if not timeline or row["kind"] != "od":
            continue
        xs_, ys_ = _binned(timeline)
        ax.plot(xs_, ys_, label=f"{row['transport']} od drain")
    for row in results.get("latency", []):
        timeline = row.get("timeline") or []
        if timeline:
            xs_, ys_ = _binned(timeline)
            ax.plot(
                xs_,
                ys_,
                alpha=0.6,
                label=(
                    f"{row['transport']} od at {row['target_rate']:,.0f}/s "
                    f"(p99 {row['latency_ms']['p99']:.0f} ms)"
                ),
            )
    ax.set_xlabel("seconds")
    ax.set_ylabel(f"events accepted / s ({BIN_SECONDS} s bins)")
    ax.set_title("Accepted by the stand-in over time")
    ax.legend(fontsize=8)
    if panels == 3:
        ax = axes[2]
        for row in results["backlog"]:
            samples = row["samples"]
            ax.plot(
                [s[0] for s in samples], [s[2] / 2**20 for s in samples], label=f"{row['transport']} RSS (MB)"
            )
            ax2 = ax.twinx()
            ax2.plot([s[0] for s in samples], [s[3] for s in samples], color="grey", alpha=0.5)
            ax2.set_ylabel("events accepted")
        ax.axhline(300, color="red", linestyle="--", linewidth=1, label="300 MB target")
        ax.set_xlabel("seconds since start")
        ax.set_title(f"Draining a backlog of {results['backlog'][0]['count']:,}")
        ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
