"""A throwaway Kubernetes control plane on loopback: etcd, kube-apiserver, kube-controller-manager.

The binaries come from ``scripts/install-kube.sh`` (built from the Go module proxy, cached like
helm). Everything listens on 127.0.0.1 on free ports, with certificates made by openssl for this run
only, and state in a temporary directory; :meth:`ControlPlane.stop` stops each process by its PID.
There is no scheduler and no kubelet: Pods are created (so Pod Security admission judges them) but
stay Pending.
"""

from __future__ import annotations

import contextlib
import functools
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

# Bounds on every wait: generous, because the machine's 2 cores are shared (the API server alone
# takes 2-4 s to become ready when idle).
START_TIMEOUT = 90.0
STOP_TIMEOUT = 20.0
CALL_TIMEOUT = 30.0
POLL = 0.2


class _CrdLoader(yaml.SafeLoader):
    """PyYAML's safe loader, reading a lone ``=`` (YAML 1.1's "value" tag, found in the CRDs) as text."""


def _value_as_text(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    return loader.construct_scalar(node)  # type: ignore[arg-type]


_CrdLoader.add_constructor("tag:yaml.org,2002:value", _value_as_text)


class ControlPlaneError(Exception):
    """A control-plane process failed to start or a wait ran out; the message has its log."""


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for(what: str, check: Callable[[], bool], timeout: float, log: Path | None = None) -> None:
    """Poll ``check`` until it is true; raise with ``what`` (and the log's tail) after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(POLL)
    tail = log.read_text(errors="replace")[-4000:] if log is not None and log.exists() else ""
    raise ControlPlaneError(f"timed out after {timeout:.0f} s waiting for {what}\n{tail}")


def _openssl(openssl: str, *args: str) -> None:
    subprocess.run([openssl, *args], check=True, capture_output=True, timeout=60)


def make_certificates(openssl: str, directory: Path) -> None:
    """A CA, the API server's certificate for 127.0.0.1, an admin client (system:masters), SA keys."""
    d = directory
    _openssl(openssl, "genrsa", "-out", str(d / "ca.key"), "2048")
    _openssl(
        openssl, "req", "-x509", "-new", "-key", str(d / "ca.key"), "-days", "2", "-subj", "/CN=vec-test-ca",
        "-out", str(d / "ca.crt"),
    )  # fmt: skip
    (d / "server.ext").write_text(
        "subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes.default.svc\nextendedKeyUsage=serverAuth\n"
    )
    (d / "client.ext").write_text("extendedKeyUsage=clientAuth\n")
    for name, subject, ext in (
        ("server", "/CN=kube-apiserver", "server.ext"),
        ("admin", "/O=system:masters/CN=vec-test-admin", "client.ext"),
    ):
        _openssl(openssl, "genrsa", "-out", str(d / f"{name}.key"), "2048")
        _openssl(
            openssl,
            "req",
            "-new",
            "-key",
            str(d / f"{name}.key"),
            "-subj",
            subject,
            "-out",
            str(d / f"{name}.csr"),
        )
        _openssl(
            openssl, "x509", "-req", "-in", str(d / f"{name}.csr"), "-CA", str(d / "ca.crt"),
            "-CAkey", str(d / "ca.key"), "-CAcreateserial", "-days", "2", "-extfile", str(d / ext),
            "-out", str(d / f"{name}.crt"),
        )  # fmt: skip
    _openssl(openssl, "genrsa", "-out", str(d / "sa.key"), "2048")
    _openssl(openssl, "rsa", "-in", str(d / "sa.key"), "-pubout", "-out", str(d / "sa.pub"))


@dataclass
class Binaries:
    """Where the control plane's programs are."""

    etcd: str
    apiserver: str
    controller_manager: str
    openssl: str


@dataclass
class ControlPlane:
    """The running processes, the API server's address and a client with the admin certificate."""

    directory: Path
    binaries: Binaries
    url: str = ""
    kubeconfig: Path = field(init=False)
    processes: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)
    _client: httpx.Client | None = None

    def __post_init__(self) -> None:
        self.kubeconfig = self.directory / "kubeconfig"

    # -- lifecycle ----------------------------------------------------------------------------

    def _spawn(self, name: str, args: list[str]) -> Path:
        log = self.directory / f"{name}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.processes.append((name, process))
        return log

    def _alive(self, name: str, log: Path) -> None:
        process = dict(self.processes)[name]
        if process.poll() is not None:
            raise ControlPlaneError(
                f"{name} exited with {process.returncode}\n{log.read_text(errors='replace')[-4000:]}"
            )

    def start(self) -> None:
        """Certificates, etcd, the API server (ready), the controller manager (service accounts made)."""
        d = self.directory
        make_certificates(self.binaries.openssl, d)
        etcd_port, peer_port, api_port, kcm_port = free_port(), free_port(), free_port(), free_port()
        etcd_url = f"http://127.0.0.1:{etcd_port}"
        etcd_log = self._spawn(
            "etcd",
            [
                self.binaries.etcd,
                "--name=vec-test",
                f"--data-dir={d / 'etcd'}",
                f"--listen-client-urls={etcd_url}",
                f"--advertise-client-urls={etcd_url}",
                f"--listen-peer-urls=http://127.0.0.1:{peer_port}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}",
                f"--initial-cluster=vec-test=http://127.0.0.1:{peer_port}",
                # Test data: durability is not worth the fsyncs on a shared disk.
                "--unsafe-no-fsync",
                "--log-level=warn",
            ],
        )
        wait_for("etcd", lambda: self._etcd_healthy(etcd_url, etcd_log), START_TIMEOUT, etcd_log)
        self.url = f"https://127.0.0.1:{api_port}"
        api_log = self._spawn(
            "kube-apiserver",
            [
                self.binaries.apiserver,
                f"--etcd-servers={etcd_url}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={api_port}",
                f"--tls-cert-file={d / 'server.crt'}",
                f"--tls-private-key-file={d / 'server.key'}",
                f"--client-ca-file={d / 'ca.crt'}",
                "--service-account-issuer=https://kubernetes.default.svc",
                f"--service-account-key-file={d / 'sa.pub'}",
                f"--service-account-signing-key-file={d / 'sa.key'}",
                "--service-cluster-ip-range=10.96.0.0/16",
                "--authorization-mode=RBAC",
                "--enable-admission-plugins=NamespaceLifecycle,LimitRanger,ServiceAccount,"
                "DefaultStorageClass,ResourceQuota,PodSecurity",
                # The default reconciler refuses a loopback advertise address.
                "--endpoint-reconciler-type=none",
                f"--cert-dir={d / 'apiserver-certs'}",
            ],
        )
        self._write_kubeconfig()
        wait_for("kube-apiserver /readyz", lambda: self._api_ready(api_log), START_TIMEOUT, api_log)
        kcm_log = self._spawn(
            "kube-controller-manager",
            [
                self.binaries.controller_manager,
                f"--kubeconfig={self.kubeconfig}",
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                f"--secure-port={kcm_port}",
                f"--cert-dir={d / 'kcm-certs'}",
                f"--service-account-private-key-file={d / 'sa.key'}",
                f"--root-ca-file={d / 'ca.crt'}",
                # No nodes, no pod network: the controllers for them would only log errors.
                "--controllers=*,-node-ipam-controller,-node-lifecycle-controller",
            ],
        )
        # The controller manager is working once it has made the default namespace's ServiceAccount.
        wait_for(
            "kube-controller-manager (the default ServiceAccount)",
            lambda: self._kcm_working(kcm_log),
            START_TIMEOUT,
            kcm_log,
        )

    def _kcm_working(self, log: Path) -> bool:
        self._alive("kube-controller-manager", log)
        return self.get("/api/v1/namespaces/default/serviceaccounts/default") is not None

    def _etcd_healthy(self, url: str, log: Path) -> bool:
        self._alive("etcd", log)
        try:
            return httpx.get(f"{url}/health", timeout=2.0).status_code == 200
        except httpx.HTTPError:
            return False

    def _api_ready(self, log: Path) -> bool:
        self._alive("kube-apiserver", log)
        try:
            return self.client.get("/readyz", timeout=2.0).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self) -> None:
        """SIGTERM each process by its PID (newest first), SIGKILL after STOP_TIMEOUT; close the client."""
        if self._client is not None:
            self._client.close()
            self._client = None
        for _, process in reversed(self.processes):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=STOP_TIMEOUT)
        self.processes.clear()

    def _write_kubeconfig(self) -> None:
        d = self.directory
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "vec-test",
                    "cluster": {"server": self.url, "certificate-authority": str(d / "ca.crt")},
                }
            ],
            "users": [
                {
                    "name": "admin",
                    "user": {"client-certificate": str(d / "admin.crt"), "client-key": str(d / "admin.key")},
                }
            ],
            "contexts": [{"name": "vec-test", "context": {"cluster": "vec-test", "user": "admin"}}],
            "current-context": "vec-test",
        }
        self.kubeconfig.write_text(yaml.safe_dump(config))
        self.kubeconfig.chmod(0o600)

    # -- API ----------------------------------------------------------------------------------

    @property
    def client(self) -> httpx.Client:
        """An HTTPS client to the API server with the admin certificate."""
        if self._client is None:
            d = self.directory
            context = ssl.create_default_context(cafile=str(d / "ca.crt"))
            context.load_cert_chain(str(d / "admin.crt"), str(d / "admin.key"))
            self._client = httpx.Client(base_url=self.url, verify=context, timeout=CALL_TIMEOUT)
        return self._client

    def get(self, path: str) -> dict[str, Any] | None:
        """The object at ``path``, or None when it does not exist."""
        response = self.client.get(path)
        if response.status_code == 404:
            return None
        response.raise_for_status()
        body: dict[str, Any] = response.json()
        return body

    def items(self, path: str, **params: str) -> list[dict[str, Any]]:
        """The items of the list at ``path``."""
        response = self.client.get(path, params=params)
        response.raise_for_status()
        found: list[dict[str, Any]] = response.json()["items"]
        return found

    def apply(self, path: str, manifest: dict[str, Any]) -> dict[str, Any]:
        """Server-side apply of ``manifest`` at ``path`` (the object's own URL)."""
        response = self.client.patch(
            path,
            params={"fieldManager": "vec-tests", "force": "true"},
            content=yaml.safe_dump(manifest).encode(),
            headers={"Content-Type": "application/apply-patch+yaml"},
        )
        if response.status_code >= 400:
            raise ControlPlaneError(f"apply {path}: {response.status_code} {response.text[:2000]}")
        body: dict[str, Any] = response.json()
        return body

    def delete(self, path: str, **params: str) -> None:
        """Delete the object at ``path`` (a missing object is fine)."""
        response = self.client.delete(path, params=params)
        if response.status_code not in (200, 202, 404):
            raise ControlPlaneError(f"delete {path}: {response.status_code} {response.text[:2000]}")

    def apply_crds(self, directory: Path) -> list[str]:
        """Apply every CRD in ``directory`` and wait until each is Established; their names."""
        names: list[str] = []
        for path in sorted(directory.glob("*.yaml")):
            for crd in yaml.load_all(path.read_text(), Loader=_CrdLoader):
                if not crd or crd.get("kind") != "CustomResourceDefinition":
                    continue
                name = crd["metadata"]["name"]
                self.apply(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}", crd)
                names.append(name)
        for name in names:
            wait_for(f"CRD {name} Established", functools.partial(self._established, name), START_TIMEOUT)
        return names

    def _established(self, name: str) -> bool:
        crd = self.get(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}") or {}
        conditions = crd.get("status", {}).get("conditions", [])
        return any(c["type"] == "Established" and c["status"] == "True" for c in conditions)


@contextlib.contextmanager
def running(directory: Path, binaries: Binaries) -> Iterator[ControlPlane]:
    """A started control plane, stopped (every process, by PID) on exit, even when starting fails."""
    plane = ControlPlane(directory=directory, binaries=binaries)
    try:
        plane.start()
        yield plane
    finally:
        plane.stop()
