"""The session's control plane (tests/cluster/control_plane.py), with the CRDs of the optional objects.

Its programs come from ``scripts/install-kube.sh`` (via ``scripts/install-tools.sh``); without them
the cluster tests are skipped, except under ``CI=true``, where they fail (tests/chart/tools.py).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.chart.tools import require, tools_bin
from tests.cluster.control_plane import Binaries, ControlPlane, running
from tests.support.ci import missing


def _openssl() -> str:
    path = shutil.which("openssl")
    if path is None:
        missing("openssl is not installed (it makes the control plane's throwaway certificates)")
    return path


def _crds() -> Path:
    crds = tools_bin() / "crds"
    if not crds.is_dir():
        require("crds")  # fails under CI, skips elsewhere, with the install hint
    return crds


@pytest.fixture(scope="session")
def helm_binary() -> str:
    """helm (the same build the chart tests use)."""
    return require("helm")


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """etcd, kube-apiserver, kube-controller-manager on loopback; Prometheus-operator and KEDA CRDs.

    Also the ``monitoring`` namespace, where the chart puts the Grafana dashboard when told to.
    """
    binaries = Binaries(
        etcd=require("etcd"),
        apiserver=require("kube-apiserver"),
        controller_manager=require("kube-controller-manager"),
        openssl=_openssl(),
    )
    crds = _crds()
    with running(tmp_path_factory.mktemp("control-plane"), binaries) as plane:
        plane.apply_crds(crds)
        plane.apply(
            "/api/v1/namespaces/monitoring",
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "monitoring"}},
        )
        yield plane
