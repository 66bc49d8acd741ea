"""The values table of docs/deploy.md, from values.yaml's helm-docs comments.

    python -m tests.chart.values_doc            # print the table
    python -m tests.chart.values_doc --write    # replace it in docs/deploy.md (between the markers)

A value is documented by a ``# -- text`` comment right above its key (continued by more ``#``
lines); ``# @default -- text`` replaces the shown default. Keys under a documented value (``config``,
``routes``, ``podSecurityContext``...) are covered by it. tests/chart/test_chart.py fails when a key
is undocumented or the table in docs/deploy.md is stale.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.chart.tools import CHART, ROOT

VALUES = CHART / "values.yaml"
DOC = ROOT / "docs" / "deploy.md"
BEGIN = "<!-- values-table:begin (python -m tests.chart.values_doc --write) -->"
END = "<!-- values-table:end -->"

_KEY = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z_][\w.-]*|\"[^\"]+\"):(?:\s|$)")


@dataclass(frozen=True)
class Value:
    """One documented value."""

    path: str
    description: str
    default: Any
    default_text: str | None


def _lookup(tree: Any, path: list[str]) -> Any:
    for part in path:
        tree = tree[part]
    return tree


def parse(values: Path = VALUES) -> tuple[list[Value], list[str]]:
    """The documented values and the paths of undocumented leaf keys."""
    lines = values.read_text().splitlines()
    data = yaml.safe_load(values.read_text())
    documented: list[Value] = []
    undocumented: list[str] = []
    stack: list[tuple[int, str, bool]] = []  # (indent, key, documented)
    comment: list[str] = []
    default_text: str | None = None
    in_description = False
    for line in lines:
        stripped = line.strip()
        if stripped.startswith("# @default --"):
            default_text = stripped.removeprefix("# @default --").strip()
            in_description = False
            continue
        if stripped.startswith("# --"):
            comment = [stripped.removeprefix("# --").strip()]
            in_description = True
            continue
        if stripped.startswith("#"):
            if in_description and not stripped.startswith("# yaml-language-server"):
                comment.append(stripped.lstrip("#").strip())
            continue
        match = _KEY.match(line)
        if not match or stripped.startswith("-"):
            if stripped:
                comment, default_text, in_description = [], None, False
            continue
        indent = len(match.group("indent"))
        key = match.group("key").strip('"')
        while stack and stack[-1][0] >= indent:
            stack.pop()
        if any(doc for _, _, doc in stack):
            stack.append((indent, key, True))
            comment, default_text, in_description = [], None, False
            continue
        path = [k for _, k, _ in stack] + [key]
        value = _lookup(data, path)
        has_doc = bool(comment)
        if has_doc:
            documented.append(Value(".".join(path), " ".join(comment), value, default_text))
        elif not isinstance(value, dict) or not value:
            undocumented.append(".".join(path))
        stack.append((indent, key, has_doc))
        comment, default_text, in_description = [], None, False
    return documented, undocumented


def _type(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "bool", int: "int", float: "float", str: "string", list: "list", dict: "object"}.get(
        type(value), type(value).__name__
    )


def _default(value: Value) -> str:
    if value.default_text:
        return value.default_text
    text = json.dumps(value.default, separators=(", ", ": "))
    if len(text) > 60:
        return "see values.yaml"
    return f"`{text}`".replace("|", "\\|")


def table(values: Path = VALUES) -> str:
    """The markdown table."""
    documented, _ = parse(values)
    rows = ["| Key | Type | Default | Description |", "|---|---|---|---|"]
    for value in documented:
        description = value.description.replace("|", "\\|")
        rows.append(f"| `{value.path}` | {_type(value.default)} | {_default(value)} | {description} |")
    return "\n".join(rows) + "\n"


def section(text: str) -> str | None:
    """The table currently between the markers of a document, or None without markers."""
    if BEGIN not in text or END not in text:
        return None
    return text.split(BEGIN, 1)[1].split(END, 1)[0].strip("\n") + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="values table of the chart")
    parser.add_argument("--write", action="store_true", help=f"replace the table in {DOC}")
    args = parser.parse_args(argv)
    current = table()
    if not args.write:
        sys.stdout.write(current)
        return 0
    text = DOC.read_text()
    if section(text) is None:
        sys.stderr.write(f"{DOC} has no {BEGIN} ... {END} markers\n")
        return 1
    head, rest = text.split(BEGIN, 1)
    tail = rest.split(END, 1)[1]
    DOC.write_text(f"{head}{BEGIN}\n{current}{END}{tail}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
