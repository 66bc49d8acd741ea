"""The Dockerfile, without a Docker engine: hadolint, and its contract with the package and the chart."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import yaml

from consumer.config import HttpConfig
from tests.chart.tools import CHART, ROOT, require

DOCKERFILE = ROOT / "Dockerfile"


def instructions(path: Path = DOCKERFILE) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    joined: list[str] = []
    current = ""
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue
        current += (
            " " + stripped.removesuffix("\\").strip() if current else stripped.removesuffix("\\").strip()
        )
        if not stripped.endswith("\\"):
            joined.append(current)
            current = ""
    result = []
    for entry in joined:
        keyword, _, rest = entry.partition(" ")
        result.append((keyword.upper(), rest.strip()))
    return result


def stages() -> dict[str, list[tuple[str, str]]]:
    """Instructions per build stage (by its AS name)."""
    found: dict[str, list[tuple[str, str]]] = {}
    name = ""
    for keyword, rest in instructions():
        if keyword == "FROM":
            name = rest.split(" AS ")[-1].strip() if " AS " in rest else rest
            found[name] = []
        elif name:
            found[name].append((keyword, rest))
    return found


def last(stage: list[tuple[str, str]], keyword: str) -> str:
    return [rest for kw, rest in stage if kw == keyword][-1]


def test_hadolint_passes() -> None:
    hadolint = require("hadolint")
    result = subprocess.run(
        [hadolint, "--config", str(ROOT / ".hadolint.yaml"), str(DOCKERFILE)],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_base_image_is_pinned_and_python_311() -> None:
    arg = next(rest for kw, rest in instructions() if kw == "ARG" and rest.startswith("PYTHON_IMAGE="))
    image = arg.split("=", 1)[1]
    assert re.fullmatch(r"python:3\.11\.\d+-slim-[a-z]+", image), image
    froms = [rest for kw, rest in instructions() if kw == "FROM"]
    assert froms == ["${PYTHON_IMAGE} AS builder", "${PYTHON_IMAGE} AS runtime"]


def test_dependency_layer_comes_before_the_source() -> None:
    builder = stages()["builder"]
    copies = [(i, rest) for i, (kw, rest) in enumerate(builder) if kw == "COPY"]
    runs = [(i, rest) for i, (kw, rest) in enumerate(builder) if kw == "RUN"]
    (meta_at, meta), (source_at, source) = copies
    assert meta == "pyproject.toml README.md ./"
    assert source == "consumer ./consumer"
    deps = next(rest for i, rest in runs if meta_at < i < source_at)
    package = next(rest for i, rest in runs if i > source_at)
    # The same `pip install .` of pyproject.toml that CI's `make install` does (there with -e and [dev]).
    assert "python -m pip install --no-cache-dir ." in deps
    assert "touch consumer/__init__.py" in deps
    assert "python -m pip install --no-cache-dir --no-deps ." in package


def test_the_stub_package_builds_from_pyproject_alone(tmp_path: Path) -> None:
    """The dependency layer's context (pyproject.toml, README.md, an empty package) builds, and its
    dependencies are exactly pyproject's (pip --dry-run: the build backend from PyPI as in the image,
    only metadata is built, nothing is installed)."""
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    shutil.copy(ROOT / "README.md", tmp_path)
    (tmp_path / "consumer").mkdir()
    (tmp_path / "consumer" / "__init__.py").touch()
    report = tmp_path / "report.json"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--dry-run",
            "--no-deps",
            "--disable-pip-version-check",
            "--quiet",
            "--report",
            str(report),
            ".",
        ],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    (item,) = json.loads(report.read_text())["install"]
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert item["metadata"]["name"] == project["name"]
    requires = [r for r in item["metadata"].get("requires_dist", []) if "extra ==" not in r]
    assert len(requires) == len(project["dependencies"])


def test_runtime_contract_with_the_package_and_the_chart() -> None:
    runtime = stages()["runtime"]
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    (script,) = pyproject["project"]["scripts"]
    entrypoint = json.loads(last(runtime, "ENTRYPOINT"))
    cmd = json.loads(last(runtime, "CMD"))
    assert entrypoint == [script] == ["vision-events-consumer"]
    assert cmd == ["run", "--config", "/etc/vision-events/settings.yaml"]
    # The chart passes the same arguments and mounts the settings there.
    statefulset = (CHART / "templates" / "statefulset.yaml").read_text()
    assert "- run\n            - --config\n            - /etc/vision-events/settings.yaml" in statefulset
    assert last(runtime, "USER") == "10001:10001"
    assert last(runtime, "EXPOSE") == str(HttpConfig().port) == "9108"
    assert last(runtime, "WORKDIR") == "/var/lib/vision-events"
    assert "mountPath: /var/lib/vision-events" in statefulset
    env = " ".join(rest for kw, rest in runtime if kw == "ENV")
    assert "PYTHONDONTWRITEBYTECODE=1" in env
    assert "PATH=/opt/venv/bin:$PATH" in env
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["securityContext"]["runAsUser"] == 10001
    assert values["podSecurityContext"]["runAsUser"] == 10001


def test_oci_labels() -> None:
    labels = " ".join(rest for kw, rest in stages()["runtime"] if kw == "LABEL")
    parsed = dict(part.split("=", 1) for part in shlex.split(labels))
    for name in ("title", "description", "version", "revision", "created", "source", "licenses", "base.name"):
        assert f"org.opencontainers.image.{name}" in parsed, name
    assert parsed["org.opencontainers.image.licenses"] == "Apache-2.0"


def test_dockerignore_sends_only_the_package() -> None:
    lines = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*"
    assert {"!pyproject.toml", "!README.md", "!consumer/"} <= set(lines)
