"""The chart installed on a real API server, in a Pod Security ``restricted`` namespace, per scenario.

For the defaults and every ``ci/*-values.yaml``: ``helm install`` (no ``--wait``: no kubelet runs the
Pods) must end ``deployed`` without a ``would violate PodSecurity`` warning; the StatefulSet controller
must create the Pods without a ``FailedCreate`` event (Pod Security admission judging the Pods
themselves); every object ``helm template`` renders for the same values must exist as rendered
(StatefulSet, Service, ConfigMap, Secret, ServiceMonitor, PrometheusRule, ScaledObject, PDB,
NetworkPolicy, ...), and the secrets must be wired to the chart's Secret or to ``existingSecret``.
What only a server finds: the CRD-backed kinds validated against their CRDs, admission, defaults.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.chart.render import SCENARIOS
from tests.chart.tools import CHART
from tests.cluster.control_plane import ControlPlane
from tests.cluster.release import (
    VIOLATION,
    admission_problems,
    helm,
    missing_or_different,
    restricted_namespace,
    secret_wiring_problems,
    status,
    template,
)

RELEASE = "vec"


def _namespace(scenario: Path | None) -> str:
    return "default-values" if scenario is None else scenario.name.removesuffix("-values.yaml")


def _prerequisites(cluster: ControlPlane, namespace: str, values: dict[str, object]) -> None:
    """What a scenario says exists already: a ServiceAccount it names without creating it.

    (Without it the ServiceAccount admission plugin refuses the Pods; the existingSecret and other
    referenced Secrets/ConfigMaps are read by the kubelet only, which does not run here.)
    """
    account = values.get("serviceAccount")
    if isinstance(account, dict) and account.get("create") is False and account.get("name"):
        cluster.apply(
            f"/api/v1/namespaces/{namespace}/serviceaccounts/{account['name']}",
            {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": account["name"]}},
        )


@pytest.mark.integration
@pytest.mark.parametrize("scenario", [None, *SCENARIOS], ids=["defaults", *(s.stem for s in SCENARIOS)])
def test_scenario_installs_as_rendered_under_restricted(
    cluster: ControlPlane, helm_binary: str, scenario: Path | None
) -> None:
    namespace = _namespace(scenario)
    value_args = [] if scenario is None else ["-f", str(scenario)]
    values = {} if scenario is None else yaml.safe_load(scenario.read_text())
    restricted_namespace(cluster, namespace)
    _prerequisites(cluster, namespace, values)
    manifests = template(helm_binary, RELEASE, namespace, value_args)

    result = helm(cluster, helm_binary, "install", RELEASE, str(CHART), "-n", namespace, *value_args).check()

    assert status(cluster, helm_binary, RELEASE, namespace) == "deployed"
    assert admission_problems(cluster, result, manifests, namespace) == []
    assert missing_or_different(cluster, manifests, namespace) == []
    existing = str((values.get("secrets") or {}).get("existingSecret", ""))
    assert secret_wiring_problems(cluster, manifests, namespace, existing) == []
    kinds = {m["kind"] for m in manifests}
    assert {"StatefulSet", "Service", "ConfigMap"} <= kinds


@pytest.mark.integration
def test_a_pod_security_violation_is_caught(cluster: ControlPlane, helm_binary: str) -> None:
    """The checks above can fail: a container allowed to escalate privileges still ends ``deployed``
    (helm only warns), and the controller's Pods are refused; both are reported."""
    namespace = "violation"
    value_args = ["--set", "securityContext.allowPrivilegeEscalation=true"]
    restricted_namespace(cluster, namespace)
    manifests = template(helm_binary, RELEASE, namespace, value_args)

    result = helm(cluster, helm_binary, "install", RELEASE, str(CHART), "-n", namespace, *value_args).check()

    assert status(cluster, helm_binary, RELEASE, namespace) == "deployed"
    problems = admission_problems(cluster, result, manifests, namespace)
    assert any(VIOLATION in p for p in problems), problems
    assert any("allowPrivilegeEscalation" in p and "forbidden" in p for p in problems), problems


@pytest.mark.integration
def test_a_missing_object_is_reported(cluster: ControlPlane, helm_binary: str) -> None:
    """The rendered-versus-live comparison sees an object that is not there or not as rendered."""
    namespace = "tampered"
    restricted_namespace(cluster, namespace)
    manifests = template(helm_binary, RELEASE, namespace, [])
    helm(cluster, helm_binary, "install", RELEASE, str(CHART), "-n", namespace).check()
    configmap = next(m for m in manifests if m["kind"] == "ConfigMap")
    cluster.delete(f"/api/v1/namespaces/{namespace}/configmaps/{configmap['metadata']['name']}")
    service = next(m for m in manifests if m["kind"] == "Service")
    cluster.apply(
        f"/api/v1/namespaces/{namespace}/services/{service['metadata']['name']}",
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": service["metadata"]["name"], "labels": {"app.kubernetes.io/name": "other"}},
        },
    )

    problems = missing_or_different(cluster, manifests, namespace)

    assert any("ConfigMap" in p and "not found" in p for p in problems), problems
    assert any("Service" in p and "app.kubernetes.io/name" in p for p in problems), problems
