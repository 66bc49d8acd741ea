"""helm against the test control plane, and the checks the cluster tests make of a release.

- :func:`restricted_namespace`: a namespace whose Pod Security level is ``restricted`` (enforced on
  Pods, warned about on workloads, as helm's stderr shows).
- :func:`helm` runs helm with the plane's kubeconfig; :func:`template` renders the same values.
- :func:`admission_problems`: what a successful ``helm install`` can still hide: helm's
  ``would violate PodSecurity`` warnings (exit code 0, release ``deployed``) and the StatefulSet
  controller's ``FailedCreate`` events when Pod Security then refuses the Pods.
- :func:`missing_or_different`: every rendered object must exist with what was rendered (a subset
  comparison: the server adds defaults, never changes what was given).
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from tests.chart.tools import CHART
from tests.cluster.control_plane import POLL, START_TIMEOUT, ControlPlane

Manifest = dict[str, Any]

PSA_LABELS = {
    "pod-security.kubernetes.io/enforce": "restricted",
    "pod-security.kubernetes.io/enforce-version": "latest",
    "pod-security.kubernetes.io/warn": "restricted",
    "pod-security.kubernetes.io/warn-version": "latest",
}
VIOLATION = "would violate PodSecurity"

# (apiVersion, kind) -> the collection's path under a namespace: every kind the chart renders.
COLLECTIONS = {
    ("v1", "ConfigMap"): "/api/v1/namespaces/{ns}/configmaps",
    ("v1", "Secret"): "/api/v1/namespaces/{ns}/secrets",
    ("v1", "Service"): "/api/v1/namespaces/{ns}/services",
    ("v1", "ServiceAccount"): "/api/v1/namespaces/{ns}/serviceaccounts",
    ("v1", "Pod"): "/api/v1/namespaces/{ns}/pods",
    ("apps/v1", "StatefulSet"): "/apis/apps/v1/namespaces/{ns}/statefulsets",
    (
        "autoscaling/v2",
        "HorizontalPodAutoscaler",
    ): "/apis/autoscaling/v2/namespaces/{ns}/horizontalpodautoscalers",
    ("policy/v1", "PodDisruptionBudget"): "/apis/policy/v1/namespaces/{ns}/poddisruptionbudgets",
    ("networking.k8s.io/v1", "NetworkPolicy"): "/apis/networking.k8s.io/v1/namespaces/{ns}/networkpolicies",
    (
        "monitoring.coreos.com/v1",
        "ServiceMonitor",
    ): "/apis/monitoring.coreos.com/v1/namespaces/{ns}/servicemonitors",
    ("monitoring.coreos.com/v1", "PodMonitor"): "/apis/monitoring.coreos.com/v1/namespaces/{ns}/podmonitors",
    (
        "monitoring.coreos.com/v1",
        "PrometheusRule",
    ): "/apis/monitoring.coreos.com/v1/namespaces/{ns}/prometheusrules",
    ("keda.sh/v1alpha1", "ScaledObject"): "/apis/keda.sh/v1alpha1/namespaces/{ns}/scaledobjects",
}


@dataclass(frozen=True)
class HelmResult:
    """One helm run."""

    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    def check(self) -> HelmResult:
        """Self, or an AssertionError with helm's output when it failed."""
        assert self.returncode == 0, f"helm {' '.join(self.args)} failed:\n{self.stderr}\n{self.stdout}"
        return self


def helm(plane: ControlPlane, binary: str, *args: str, timeout: float = 180.0) -> HelmResult:
    """helm with the plane's kubeconfig and a private helm home (nothing of the user's is read)."""
    home = plane.directory / "helm-home"
    env = {
        **os.environ,
        "KUBECONFIG": str(plane.kubeconfig),
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_DATA_HOME": str(home / "data"),
    }
    result = subprocess.run(
        [binary, *args], capture_output=True, text=True, env=env, timeout=timeout, check=False
    )
    return HelmResult(tuple(args), result.returncode, result.stdout, result.stderr)


def template(binary: str, release: str, namespace: str, value_args: Sequence[str]) -> list[Manifest]:
    """``helm template`` of the same release, namespace and values (Kubernetes 1.37), parsed."""
    result = subprocess.run(
        [
            binary,
            "template",
            release,
            str(CHART),
            "--namespace",
            namespace,
            "--kube-version",
            "1.37.2",
            *value_args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def restricted_namespace(plane: ControlPlane, name: str) -> None:
    """Create ``name`` with Pod Security ``restricted`` enforced and warned about."""
    manifest = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": PSA_LABELS}}
    plane.apply(f"/api/v1/namespaces/{name}", manifest)


def status(plane: ControlPlane, binary: str, release: str, namespace: str) -> str:
    """The release's status (``deployed``, ``failed``, ...)."""
    out = helm(plane, binary, "status", release, "-n", namespace, "-o", "json").check().stdout
    info: dict[str, Any] = json.loads(out)["info"]
    return str(info["status"])


def object_path(manifest: Manifest, namespace: str) -> str:
    """The API path of a rendered object."""
    key = (manifest["apiVersion"], manifest["kind"])
    assert key in COLLECTIONS, f"the chart renders {key}: add it to COLLECTIONS"
    meta = manifest["metadata"]
    return f"{COLLECTIONS[key].format(ns=meta.get('namespace') or namespace)}/{meta['name']}"


def installed_objects(manifests: Sequence[Manifest]) -> list[Manifest]:
    """The rendered objects ``helm install`` creates (hooks, i.e. the ``helm test`` Pod, are not)."""
    return [m for m in manifests if "helm.sh/hook" not in (m["metadata"].get("annotations") or {})]


def _is_empty(value: Any) -> bool:
    return value is None or value in ({}, [], "", 0)  # 0 and False too: omitempty fields


def subset_differences(rendered: Any, live: Any, path: str = "") -> list[str]:
    """Where ``rendered`` is not part of ``live`` (fields the server omits when empty are allowed)."""
    if isinstance(rendered, dict):
        if not isinstance(live, dict):
            return [f"{path}: rendered a mapping, live has {live!r}"]
        problems: list[str] = []
        for key, value in rendered.items():
            if key not in live:
                if not _is_empty(value):
                    problems.append(f"{path}.{key}: missing (rendered {value!r})")
                continue
            problems += subset_differences(value, live[key], f"{path}.{key}")
        return problems
    if isinstance(rendered, list):
        if not isinstance(live, list) or len(live) != len(rendered):
            return [f"{path}: rendered {rendered!r}, live has {live!r}"]
        return [
            p
            for i, (r, v) in enumerate(zip(rendered, live, strict=True))
            for p in subset_differences(r, v, f"{path}[{i}]")
        ]
    # The server keeps numbers given as strings in int-or-string fields and vice versa; compare text.
    if rendered != live and str(rendered) != str(live):
        return [f"{path}: rendered {rendered!r}, live has {live!r}"]
    return []


def _comparable(manifest: Manifest) -> Manifest:
    """What of a manifest the server must keep as given: metadata name/labels/annotations, the rest."""
    meta = manifest["metadata"]
    body = {k: v for k, v in manifest.items() if k not in {"metadata", "status"}}
    body["metadata"] = {k: meta[k] for k in ("name", "labels", "annotations") if k in meta}
    if manifest["kind"] == "Secret" and "stringData" in body:
        # stringData is write-only: the server stores it base64-encoded in data.
        data = dict(body.get("data") or {})
        for key, value in body.pop("stringData").items():
            data[key] = base64.b64encode(str(value).encode()).decode()
        body["data"] = data
    return body


def missing_or_different(plane: ControlPlane, manifests: Sequence[Manifest], namespace: str) -> list[str]:
    """Every installed object must exist and contain what was rendered; the problems found."""
    problems: list[str] = []
    for manifest in installed_objects(manifests):
        where = object_path(manifest, namespace)
        live = plane.get(where)
        if live is None:
            problems.append(f"{manifest['kind']} {where}: not found")
            continue
        problems += [
            f"{manifest['kind']} {where}{p}" for p in subset_differences(_comparable(manifest), live)
        ]
    return problems


def secret_wiring_problems(
    plane: ControlPlane, manifests: Sequence[Manifest], namespace: str, existing_secret: str
) -> list[str]:
    """Each secretKeyRef of the live StatefulSet: a chart Secret that has the key, or existingSecret."""
    rendered_secrets = {m["metadata"]["name"] for m in manifests if m["kind"] == "Secret"}
    problems: list[str] = []
    for sts in (m for m in manifests if m["kind"] == "StatefulSet"):
        live = plane.get(object_path(sts, namespace)) or {}
        for container in live["spec"]["template"]["spec"]["containers"]:
            for env in container.get("env", []):
                ref = (env.get("valueFrom") or {}).get("secretKeyRef")
                if ref is None:
                    continue
                if ref["name"] in rendered_secrets:
                    secret = plane.get(f"/api/v1/namespaces/{namespace}/secrets/{ref['name']}") or {}
                    if ref["key"] not in (secret.get("data") or {}):
                        problems.append(f"{env['name']}: Secret {ref['name']} has no key {ref['key']}")
                elif ref["name"] != existing_secret:
                    problems.append(
                        f"{env['name']}: Secret {ref['name']} is neither the chart's nor existingSecret"
                    )
    return problems


def failed_creates(plane: ControlPlane, namespace: str) -> list[str]:
    """The ``FailedCreate`` events of the namespace (a controller refused by admission)."""
    events = plane.items(f"/api/v1/namespaces/{namespace}/events")
    return [
        f"{e['involvedObject']['kind']}/{e['involvedObject']['name']}: {e['message']}"
        for e in events
        if e.get("reason") == "FailedCreate"
    ]


def wait_for_pods(plane: ControlPlane, manifests: Sequence[Manifest], namespace: str) -> list[str]:
    """Wait until every StatefulSet has its Pods created, or a ``FailedCreate``; those events.

    The controller manager creates the Pods (admission judges them), nobody runs them: they stay
    Pending, so "created" is the most there is to wait for.
    """
    wanted = {
        m["metadata"]["name"]: int(m["spec"].get("replicas", 1))
        for m in manifests
        if m["kind"] == "StatefulSet"
    }
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        failed = failed_creates(plane, namespace)
        if failed:
            return failed
        created = {
            name: int(
                (
                    (plane.get(f"/apis/apps/v1/namespaces/{namespace}/statefulsets/{name}") or {}).get(
                        "status"
                    )
                    or {}
                ).get("replicas", 0)
            )
            for name in wanted
        }
        if all(created[name] >= count for name, count in wanted.items()):
            return []
        if time.monotonic() > deadline:
            pods = [p["metadata"]["name"] for p in plane.items(f"/api/v1/namespaces/{namespace}/pods")]
            events = [
                f"{e['reason']}: {e['message']}"
                for e in plane.items(f"/api/v1/namespaces/{namespace}/events")
            ]
            raise AssertionError(
                f"the StatefulSet controller made {created} of {wanted} Pods in time: {pods} {events}"
            )
        time.sleep(POLL)


def admission_problems(
    plane: ControlPlane, result: HelmResult, manifests: Sequence[Manifest], namespace: str
) -> list[str]:
    """helm's Pod Security warnings, then the ``FailedCreate`` events once the Pods are made."""
    warnings = [line for line in result.stderr.splitlines() if VIOLATION in line]
    return warnings + wait_for_pods(plane, manifests, namespace)
