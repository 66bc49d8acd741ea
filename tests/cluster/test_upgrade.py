"""One release through the scenarios a site goes through, on a real API server, then rolled back twice.

defaults -> monitoring -> spool -> KEDA -> MQTT: every step ``deployed``, admitted under Pod Security
``restricted`` and as rendered. Three of these steps turn the data volume's claims on or off
(``persistence.enabled`` or ``config.spool.enabled``), which Kubernetes cannot do to a StatefulSet
(its ``volumeClaimTemplates`` are immutable): the chart refuses them at render time with what to do
(``kubectl delete statefulset --cascade=foreground``, then the same upgrade), and the test does exactly
that. ``helm rollback`` does not render the chart, so a rollback across such a change needs the same
step first; the second rollback shows it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.chart.tools import CHART
from tests.cluster.control_plane import START_TIMEOUT, ControlPlane, wait_for
from tests.cluster.release import (
    HelmResult,
    admission_problems,
    helm,
    missing_or_different,
    restricted_namespace,
    status,
    template,
)

RELEASE = "vec-up"
NAMESPACE = "upgrade"
STATEFULSET = f"{RELEASE}-vision-events-consumer"
CI = CHART / "ci"
PATH: list[tuple[str, Path | None, bool]] = [
    # (step, values file, whether the upgrade to it switches the claims on or off)
    ("defaults", None, False),
    ("monitoring", CI / "monitoring-values.yaml", False),
    ("spool", CI / "spool-values.yaml", True),
    ("keda", CI / "keda-values.yaml", True),
    ("mqtt", CI / "mqtt-values.yaml", True),
]


def _args(values: Path | None) -> list[str]:
    return [] if values is None else ["-f", str(values)]


def _delete_statefulset(cluster: ControlPlane) -> None:
    """What the refusal says to do: ``kubectl delete statefulset --cascade=foreground``.

    Foreground: the StatefulSet is gone only once its Pods are (its claims stay). Orphaning the Pods
    instead does not work: the new StatefulSet adopts them and cannot change their volumes in place
    (``FailedUpdate``), and stalls before creating the other replicas.
    """
    path = f"/apis/apps/v1/namespaces/{NAMESPACE}/statefulsets/{STATEFULSET}"
    cluster.delete(path, propagationPolicy="Foreground")
    wait_for(f"StatefulSet {STATEFULSET} deleted", lambda: cluster.get(path) is None, START_TIMEOUT)


def _check_step(cluster: ControlPlane, helm_binary: str, result: HelmResult, values: Path | None) -> None:
    manifests = template(helm_binary, RELEASE, NAMESPACE, _args(values))
    assert status(cluster, helm_binary, RELEASE, NAMESPACE) == "deployed"
    assert admission_problems(cluster, result, manifests, NAMESPACE) == []
    assert missing_or_different(cluster, manifests, NAMESPACE) == []


@pytest.mark.integration
def test_upgrade_path_and_rollbacks(cluster: ControlPlane, helm_binary: str) -> None:
    restricted_namespace(cluster, NAMESPACE)
    chart = str(CHART)
    result = helm(cluster, helm_binary, "install", RELEASE, chart, "-n", NAMESPACE).check()
    _check_step(cluster, helm_binary, result, None)

    for step, values, switches_claims in PATH[1:]:
        result = helm(cluster, helm_binary, "upgrade", RELEASE, chart, "-n", NAMESPACE, *_args(values))
        if switches_claims:
            assert result.returncode != 0, f"{step}: an upgrade switching the claims went through"
            assert "cannot change the volumeClaimTemplates" in result.stderr, result.stderr
            assert (
                f"kubectl -n {NAMESPACE} delete statefulset {STATEFULSET} --cascade=foreground"
                in result.stderr
            ), result.stderr
            # Refused before anything was sent: the release is still the previous revision, deployed.
            assert status(cluster, helm_binary, RELEASE, NAMESPACE) == "deployed"
            _delete_statefulset(cluster)
            result = helm(cluster, helm_binary, "upgrade", RELEASE, chart, "-n", NAMESPACE, *_args(values))
        _check_step(cluster, helm_binary, result.check(), values)

    # Revisions: 1 defaults, 2 monitoring, 3 spool, 4 keda, 5 mqtt. helm rollback does not render the
    # chart (no refusal): back to KEDA (no claims) needs the documented deletion first.
    _delete_statefulset(cluster)
    result = helm(cluster, helm_binary, "rollback", RELEASE, "4", "-n", NAMESPACE).check()
    _check_step(cluster, helm_binary, result, CI / "keda-values.yaml")
    # Back to monitoring: no claims either side, a plain rollback.
    result = helm(cluster, helm_binary, "rollback", RELEASE, "2", "-n", NAMESPACE).check()
    _check_step(cluster, helm_binary, result, CI / "monitoring-values.yaml")

    history = helm(cluster, helm_binary, "history", RELEASE, "-n", NAMESPACE, "-o", "json").check().stdout
    assert history.count('"status":"deployed"') == 1  # the current revision, 7; the others superseded
    assert '"revision":7' in history
