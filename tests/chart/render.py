"""``helm template`` / ``helm lint`` of the chart, parsed, for the chart tests and tests/chart/promql.py."""

from __future__ import annotations

import subprocess
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from tests.chart.tools import CHART

RELEASE = "vec"
NAMESPACE = "vision"
# The oldest Kubernetes the chart supports (Chart.yaml kubeVersion) and the newest kubernetes-validate knows.
KUBE_VERSIONS = ("1.25.0", "1.37.0")
SCENARIOS = tuple(sorted((CHART / "ci").glob("*-values.yaml")))

Manifest = dict[str, Any]


class RenderError(Exception):
    """helm refused to render; ``stderr`` says why."""

    def __init__(self, stderr: str) -> None:
        super().__init__(stderr)
        self.stderr = stderr


def helm_args(
    values_files: Iterable[Path | str] = (),
    set_values: Mapping[str, str] | None = None,
    set_strings: Mapping[str, str] | None = None,
    set_json: Mapping[str, str] | None = None,
) -> list[str]:
    """The -f/--set/--set-string/--set-json arguments."""
    args: list[str] = []
    for path in values_files:
        args += ["-f", str(path)]
    for flag, pairs in (("--set", set_values), ("--set-string", set_strings), ("--set-json", set_json)):
        for key, value in (pairs or {}).items():
            args += [flag, f"{key}={value}"]
    return args


@lru_cache(maxsize=64)
def _template(helm: str, args: tuple[str, ...]) -> str:
    result = subprocess.run(
        [
            helm,
            "template",
            RELEASE,
            str(CHART),
            "--namespace",
            NAMESPACE,
            "--kube-version",
            KUBE_VERSIONS[-1],
            *args,
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    if result.returncode != 0:
        raise RenderError(result.stderr)
    return result.stdout


def render_text(helm: str, args: Sequence[str] = ()) -> str:
    """The rendered manifests as one YAML stream (tests included: ``helm template`` renders hooks)."""
    return _template(helm, tuple(args))


def render(helm: str, args: Sequence[str] = ()) -> list[Manifest]:
    """The rendered manifests, parsed."""
    return [doc for doc in yaml.safe_load_all(render_text(helm, args)) if doc]


def of_kind(manifests: Iterable[Manifest], kind: str) -> list[Manifest]:
    """The manifests of one kind."""
    return [m for m in manifests if m.get("kind") == kind]


def one(manifests: Iterable[Manifest], kind: str) -> Manifest:
    """The single manifest of a kind (fails when there are none or several)."""
    found = of_kind(manifests, kind)
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def workload(manifests: Iterable[Manifest]) -> Manifest:
    """The consumer's StatefulSet."""
    return one(manifests, "StatefulSet")


def container(manifests: Iterable[Manifest]) -> dict[str, Any]:
    """The consumer container of the StatefulSet."""
    containers: list[dict[str, Any]] = workload(manifests)["spec"]["template"]["spec"]["containers"]
    return next(c for c in containers if c["name"] == "consumer")


def config_files(manifests: Iterable[Manifest]) -> dict[str, str]:
    """The files of the consumer's ConfigMap (settings.yaml, routes.yaml)."""
    name = f"{RELEASE}-vision-events-consumer"
    configmap = next(m for m in of_kind(manifests, "ConfigMap") if m["metadata"]["name"] == name)
    data: dict[str, str] = configmap["data"]
    return data
