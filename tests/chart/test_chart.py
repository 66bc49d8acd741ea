"""The Helm chart, rendered with a real helm (scripts/install-tools.sh) and checked offline.

No cluster: manifests are validated against Kubernetes' schemas (kubernetes-validate, bundled) and
our minimal CRD schemas, alert and dashboard PromQL is parsed by promtool, and the rendered settings
and routes are loaded by the consumer's own config code.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from consumer.config import HttpConfig, Settings, load_settings
from consumer.routing.spec import RouteSpec
from consumer.routing.spec import load_routes as load_routes_file
from tests.chart import promql, values_doc
from tests.chart.render import (
    KUBE_VERSIONS,
    NAMESPACE,
    RELEASE,
    SCENARIOS,
    Manifest,
    RenderError,
    config_files,
    container,
    helm_args,
    of_kind,
    one,
    render,
    workload,
)
from tests.chart.tools import CHART, ROOT, require

FULLNAME = f"{RELEASE}-vision-events-consumer"
SELECTOR = {"app.kubernetes.io/name": "vision-events-consumer", "app.kubernetes.io/instance": RELEASE}
SECRET_ENV = {
    "roboflowApiKey": "ROBOFLOW_API_KEY",
    "eventStoreApiKey": "VEC_SINK__LOCAL__API_KEY",
    "mqttPassword": "VEC_SOURCE__MQTT__PASSWORD",
    "kafkaSaslPassword": "VEC_SOURCE__KAFKA__SASL_PASSWORD",
}
SENTINELS = {field: f"sentinel-{field}-0f9c1" for field in SECRET_ENV}
SCENARIO_IDS = [path.name for path in SCENARIOS]


@pytest.fixture(scope="module")
def helm() -> str:
    return require("helm")


@pytest.fixture(scope="module")
def default(helm: str) -> list[Manifest]:
    return render(helm)


def rendered(
    helm: str,
    *values_files: Path,
    sets: dict[str, str] | None = None,
    json_sets: dict[str, str] | None = None,
) -> list[Manifest]:
    return render(helm, helm_args(values_files, set_values=sets, set_json=json_sets))


def render_fails(
    helm: str,
    *values_files: Path,
    sets: dict[str, str] | None = None,
    json_sets: dict[str, str] | None = None,
) -> str:
    with pytest.raises(RenderError) as failure:
        render(helm, helm_args(values_files, set_values=sets, set_json=json_sets))
    return failure.value.stderr


def env_by_name(manifests: list[Manifest]) -> dict[str, dict[str, Any]]:
    return {entry["name"]: entry for entry in container(manifests).get("env", [])}


def pod_annotations(manifests: list[Manifest]) -> dict[str, str]:
    annotations: dict[str, str] = workload(manifests)["spec"]["template"]["metadata"]["annotations"]
    return annotations


# -- lint, render, validate -------------------------------------------------------------------------


@pytest.mark.parametrize("scenario", [None, *SCENARIOS], ids=["defaults", *SCENARIO_IDS])
def test_lint_strict(helm: str, scenario: Path | None) -> None:
    args = ["lint", "--strict", str(CHART), "--namespace", NAMESPACE] + (
        ["-f", str(scenario)] if scenario else []
    )
    result = subprocess.run([helm, *args], capture_output=True, text=True, check=False, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("scenario", [None, *SCENARIOS], ids=["defaults", *SCENARIO_IDS])
def test_scenario_renders_and_validates(helm: str, scenario: Path | None, tmp_path: Path) -> None:
    """Built-in kinds against Kubernetes 1.25 and 1.37 schemas (strict); CRDs against crd_schemas.json."""
    tools_python = require("tools-python")
    manifests = rendered(helm, *([scenario] if scenario else []))
    path = tmp_path / "manifests.yaml"
    path.write_text(yaml.safe_dump_all(manifests))
    versions = [arg for version in KUBE_VERSIONS for arg in ("-k", version)]
    result = subprocess.run(
        [tools_python, str(Path(__file__).with_name("k8s_validate.py")), *versions, str(path)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    records = [json.loads(line) for line in result.stdout.splitlines()]
    failures = [r for r in records if not r["ok"]]
    assert result.returncode == 0 and not failures, failures or result.stderr
    assert {r["kind"] for r in records} >= {"apps/v1/StatefulSet", "v1/ConfigMap", "v1/Service"}


def test_scenarios_cover_every_optional_kind(helm: str) -> None:
    kinds = {m["kind"] for scenario in SCENARIOS for m in rendered(helm, scenario)}
    assert kinds >= {
        "StatefulSet",
        "ConfigMap",
        "Secret",
        "Service",
        "ServiceAccount",
        "PodDisruptionBudget",
        "NetworkPolicy",
        "HorizontalPodAutoscaler",
        "ServiceMonitor",
        "PodMonitor",
        "PrometheusRule",
        "ScaledObject",
        "Pod",
    }


# -- labels and selectors ---------------------------------------------------------------------------


def selectors(manifest: Manifest) -> Iterator[dict[str, str]]:
    spec = manifest.get("spec", {})
    kind = manifest["kind"]
    if kind == "Service":
        yield spec["selector"]
    elif kind == "NetworkPolicy":
        yield spec["podSelector"]["matchLabels"]
    elif kind in {"StatefulSet", "PodDisruptionBudget", "ServiceMonitor", "PodMonitor"}:
        yield spec["selector"]["matchLabels"]
    if kind == "StatefulSet":
        for constraint in spec["template"]["spec"].get("topologySpreadConstraints", []):
            yield constraint["labelSelector"]["matchLabels"]


@pytest.mark.parametrize("scenario", SCENARIOS, ids=SCENARIO_IDS)
def test_selectors_are_the_stable_labels(helm: str, scenario: Path) -> None:
    manifests = rendered(helm, scenario)
    pod_labels = workload(manifests)["spec"]["template"]["metadata"]["labels"]
    checked = 0
    for manifest in manifests:
        for selector in selectors(manifest):
            checked += 1
            assert selector == SELECTOR, f"{manifest['kind']} selects on {selector}"
            assert "helm.sh/chart" not in selector
            assert selector.items() <= pod_labels.items()
    assert checked >= 3


@pytest.mark.parametrize("scenario", SCENARIOS, ids=SCENARIO_IDS)
def test_every_resource_has_the_standard_labels(helm: str, scenario: Path) -> None:
    for manifest in rendered(helm, scenario):
        labels = manifest["metadata"]["labels"]
        assert labels["helm.sh/chart"] == "vision-events-consumer-0.1.0", manifest["kind"]
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
        assert labels["app.kubernetes.io/instance"] == RELEASE


def test_test_pod_is_not_selected_by_the_release_selectors(default: list[Manifest]) -> None:
    pod = one(default, "Pod")
    assert not SELECTOR.items() <= pod["metadata"]["labels"].items()


# -- the workload -----------------------------------------------------------------------------------


def test_statefulset_runs_the_image_command_with_the_mounted_config(default: list[Manifest]) -> None:
    consumer = container(default)
    assert consumer["image"] == "vision-events-consumer:0.1.0"
    assert consumer["args"] == ["run", "--config", "/etc/vision-events/settings.yaml"]
    mounts = {m["name"]: m for m in consumer["volumeMounts"]}
    assert mounts["config"]["mountPath"] == "/etc/vision-events" and mounts["config"]["readOnly"]
    assert mounts["data"]["mountPath"] == "/var/lib/vision-events"
    assert mounts["tmp"]["mountPath"] == "/tmp"  # noqa: S108 - the emptyDir of a read-only root
    spec = workload(default)["spec"]
    assert spec["serviceName"] == FULLNAME
    volumes = {v["name"]: v for v in spec["template"]["spec"]["volumes"]}
    assert volumes["config"]["configMap"]["name"] == FULLNAME
    assert "emptyDir" in volumes["data"] and "emptyDir" in volumes["tmp"]
    assert "volumeClaimTemplates" not in spec


def test_persistence_gives_each_replica_a_claim(helm: str) -> None:
    manifests = rendered(helm, sets={"persistence.enabled": "true", "persistence.storageClass": "-"})
    spec = workload(manifests)["spec"]
    (claim,) = spec["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == "data"
    assert claim["spec"]["storageClassName"] == ""
    assert claim["spec"]["resources"]["requests"]["storage"] == "1Gi"
    assert "data" not in {v["name"] for v in spec["template"]["spec"]["volumes"]}


def test_probes_use_the_health_endpoints_on_the_metrics_port(default: list[Manifest]) -> None:
    consumer = container(default)
    assert consumer["ports"] == [{"name": "http-metrics", "containerPort": 9108, "protocol": "TCP"}]
    assert consumer["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http-metrics"}
    assert consumer["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http-metrics"}
    assert consumer["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "http-metrics"}
    assert HttpConfig().port == 9108


def test_the_metrics_port_follows_the_consumer_setting(helm: str) -> None:
    manifests = rendered(helm, sets={"config.http.port": "9200"})
    assert container(manifests)["ports"][0]["containerPort"] == 9200
    service = one(manifests, "Service")
    assert service["spec"]["ports"] == [
        {"name": "http-metrics", "port": 9200, "targetPort": "http-metrics", "protocol": "TCP"}
    ]
    assert one(manifests, "Pod")["spec"]["containers"][0]["command"][-1].endswith(":9200/healthz")


def test_service_is_headless_and_publishes_unready_pods(default: list[Manifest]) -> None:
    spec = one(default, "Service")["spec"]
    assert spec["clusterIP"] == "None"
    # An unready consumer (API key refused) must still be scraped, or its alerts could not fire.
    assert spec["publishNotReadyAddresses"] is True


def test_restricted_security_context(default: list[Manifest]) -> None:
    pod = workload(default)["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    context = container(default)["securityContext"]
    assert context["runAsNonRoot"] is True
    assert context["runAsUser"] == 10001
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert context["seccompProfile"] == {"type": "RuntimeDefault"}


def test_grace_period_exceeds_the_drain_deadline(helm: str, default: list[Manifest]) -> None:
    def grace(manifests: list[Manifest]) -> int:
        value: int = workload(manifests)["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        return value

    assert grace(default) == 25 + 15
    assert grace(rendered(helm, json_sets={"config.shutdown_deadline_seconds": "30.5"})) == 31 + 15
    assert grace(rendered(helm, sets={"terminationGraceMarginSeconds": "5"})) == 30
    assert grace(rendered(helm, sets={"terminationGracePeriodSeconds": "26"})) == 26
    error = render_fails(helm, sets={"terminationGracePeriodSeconds": "25"})
    assert "must be greater than config.shutdown_deadline_seconds" in error
    error = render_fails(
        helm, sets={"config.shutdown_deadline_seconds": "90", "terminationGracePeriodSeconds": "60"}
    )
    assert "terminationGracePeriodSeconds (60)" in error


@pytest.mark.parametrize("scenario", SCENARIOS, ids=SCENARIO_IDS)
def test_grace_period_in_every_scenario(helm: str, scenario: Path) -> None:
    manifests = rendered(helm, scenario)
    settings = yaml.safe_load(config_files(manifests)["settings.yaml"])
    grace = workload(manifests)["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace > settings["shutdown_deadline_seconds"]


def test_autoscaling_leaves_replicas_to_the_autoscaler(helm: str, default: list[Manifest]) -> None:
    assert workload(default)["spec"]["replicas"] == 1
    manifests = rendered(helm, sets={"autoscaling.enabled": "true"})
    assert "replicas" not in workload(manifests)["spec"]
    hpa = one(manifests, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": FULLNAME}


def test_keda_scales_on_the_consumer_group_lag(helm: str) -> None:
    manifests = rendered(helm, CHART / "ci" / "keda-values.yaml")
    assert "replicas" not in workload(manifests)["spec"]
    scaled = one(manifests, "ScaledObject")["spec"]
    assert scaled["scaleTargetRef"]["kind"] == "StatefulSet"
    (trigger,) = scaled["triggers"]
    assert trigger["type"] == "kafka"
    assert trigger["metadata"] == {
        "bootstrapServers": "kafka.kafka:9092",  # from config.source.kafka
        "consumerGroup": "vision-events",
        "topic": "vision.detections",
        "lagThreshold": "1000",
        "activationLagThreshold": "10",
    }


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (
            {"autoscaling.enabled": "true", "keda.enabled": "true", "config.source.type": "kafka"},
            "enable one",
        ),
        ({"keda.enabled": "true"}, "needs config.source.type kafka"),
        (
            {"metrics.serviceMonitor.enabled": "true", "metrics.podMonitor.enabled": "true"},
            "scrape every pod twice",
        ),
        ({"replicas": "2", "config.source.mqtt.client_id": "fixed"}, "take each other's MQTT session"),
    ],
    ids=["hpa-and-keda", "keda-without-kafka", "two-monitors", "fixed-client-id"],
)
def test_contradictory_values_fail_to_render(helm: str, sets: dict[str, str], message: str) -> None:
    assert message in render_fails(helm, sets=sets)


# -- config, routes and secrets ---------------------------------------------------------------------


def test_default_routes_are_the_sample_routes(default: list[Manifest]) -> None:
    sample = yaml.safe_load((ROOT / "consumer" / "samples" / "routes.yaml").read_text())
    assert yaml.safe_load(config_files(default)["routes.yaml"]) == sample


@pytest.mark.parametrize("scenario", [None, *SCENARIOS], ids=["defaults", *SCENARIO_IDS])
def test_rendered_settings_and_routes_load_in_the_consumer(
    helm: str, scenario: Path | None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ConfigMap plus the pod's env (secrets as dummies) is a configuration the consumer accepts."""
    manifests = rendered(helm, *([scenario] if scenario else []))
    files = config_files(manifests)
    settings_path = tmp_path / "settings.yaml"
    settings_path.write_text(files["settings.yaml"])
    routes_path = tmp_path / "routes.yaml"
    routes_path.write_text(files["routes.yaml"])
    for name in [*SECRET_ENV.values(), "VEC_SINK__CLOUD__API_KEY"]:
        monkeypatch.delenv(name, raising=False)
    for entry in container(manifests).get("env", []):
        monkeypatch.setenv(entry["name"], entry.get("value", "dummy-secret-from-the-secret"))
    if scenario is None:  # no key given by default: the operator adds one (NOTES.txt warns)
        monkeypatch.setenv("ROBOFLOW_API_KEY", "dummy")
    settings = load_settings(settings_path)
    assert str(settings.routes) == "/etc/vision-events/routes.yaml"
    table = load_routes_file(routes_path)
    assert table.routes


def test_the_image_command_accepts_the_rendered_config(default: list[Manifest], tmp_path: Path) -> None:
    """`vision-events-consumer check-config` (same entry point as the image's `run`) on the chart's files."""
    files = config_files(default)
    (tmp_path / "settings.yaml").write_text(files["settings.yaml"])
    (tmp_path / "routes.yaml").write_text(files["routes.yaml"])
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "consumer",
            "check-config",
            "--config",
            str(tmp_path / "settings.yaml"),
            "--routes",
            str(tmp_path / "routes.yaml"),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "ROBOFLOW_API_KEY": "dummy-key", "PYTHONPATH": str(ROOT)},
    )
    assert result.returncode == 0, result.stderr
    effective = yaml.safe_load(result.stdout)
    assert effective["sink"]["cloud"]["api_key"] == "**********"
    assert effective["routes_loaded"][0] == "line-quality"


def test_each_secret_is_injected_from_the_chart_secret(helm: str) -> None:
    manifests = rendered(helm, sets={f"secrets.{field}": value for field, value in SENTINELS.items()})
    secret = one(manifests, "Secret")
    assert secret["metadata"]["name"] == FULLNAME
    keys = yaml.safe_load((CHART / "values.yaml").read_text())["secrets"]["keys"]
    env = env_by_name(manifests)
    for field, variable in SECRET_ENV.items():
        reference = env[variable]["valueFrom"]["secretKeyRef"]
        assert reference == {"name": FULLNAME, "key": keys[field]}
        assert base64.b64decode(secret["data"][keys[field]]).decode() == SENTINELS[field]


def test_only_given_secrets_are_wired(helm: str, default: list[Manifest]) -> None:
    assert of_kind(default, "Secret") == []
    assert "env" not in container(default)
    manifests = rendered(helm, sets={"secrets.mqttPassword": "pw"})
    assert set(env_by_name(manifests)) == {"VEC_SOURCE__MQTT__PASSWORD"}
    assert set(one(manifests, "Secret")["data"]) == {"mqtt-password"}


def test_existing_secret_is_honoured(helm: str) -> None:
    manifests = rendered(helm, CHART / "ci" / "existing-secret-values.yaml")
    assert of_kind(manifests, "Secret") == []
    env = env_by_name(manifests)
    assert env["ROBOFLOW_API_KEY"]["valueFrom"]["secretKeyRef"] == {
        "name": "vision-events-credentials",
        "key": "ROBOFLOW_API_KEY",
        "optional": True,
    }
    assert env["VEC_SOURCE__MQTT__PASSWORD"]["valueFrom"]["secretKeyRef"]["key"] == "mqtt.password"
    # Keys named "" are not wired; extraEnv and extraEnvFrom come after the secrets.
    assert "VEC_SINK__LOCAL__API_KEY" not in env and "VEC_SOURCE__KAFKA__SASL_PASSWORD" not in env
    assert env["VEC_LOG__LEVEL"] == {"name": "VEC_LOG__LEVEL", "value": "DEBUG"}
    assert container(manifests)["envFrom"] == [{"configMapRef": {"name": "vision-events-extra"}}]
    assert workload(manifests)["spec"]["template"]["spec"]["serviceAccountName"] == "vision-events"
    # Values given next to existingSecret are ignored, not written to a second Secret.
    also = rendered(
        helm, CHART / "ci" / "existing-secret-values.yaml", sets={"secrets.roboflowApiKey": "ignored"}
    )
    assert of_kind(also, "Secret") == []


@pytest.mark.parametrize("scenario", [None, *SCENARIOS], ids=["defaults", *SCENARIO_IDS])
def test_no_secret_value_outside_the_secret(helm: str, scenario: Path | None) -> None:
    sets = {f"secrets.{field}": value for field, value in SENTINELS.items()}
    manifests = rendered(helm, *([scenario] if scenario else []), sets=sets)
    for manifest in manifests:
        if manifest["kind"] == "Secret":
            continue
        text = yaml.safe_dump(manifest)
        for value in SENTINELS.values():
            assert value not in text, (
                f"a secret value is in {manifest['kind']} {manifest['metadata']['name']}"
            )
            assert base64.b64encode(value.encode()).decode() not in text
    for configmap in of_kind(manifests, "ConfigMap"):
        settings = yaml.safe_load(configmap["data"].get("settings.yaml", "{}"))
        for section in (
            "sink.cloud.api_key",
            "sink.local.api_key",
            "source.mqtt.password",
            "source.kafka.sasl_password",
        ):
            node: Any = settings
            for part in section.split("."):
                node = node.get(part) if isinstance(node, dict) else None
            assert node is None, section


@pytest.mark.parametrize(
    "sets",
    [
        {"config.sink.cloud.api_key": "k"},
        {"config.sink.local.api_key": "k"},
        {"config.source.mqtt.password": "p"},
        {"config.source.kafka.sasl_password": "p"},
        {"config.dead_letter.kafka.sasl_password": "p"},
        {"config.source.kafka.settings.sasl\\.password": "p"},
        {"config.source.kafka.settings.sasl\\.jaas\\.config": "p"},
        {"config.dead_letter.kafka.settings.ssl\\.key\\.password": "p"},
        {"config.sink.cloud.extra_headers.Authorization": "Bearer p"},
        {"config.sink.cloud.extra_headers.X-API-KEY": "p"},
    ],
    ids=lambda sets: next(iter(sets)),
)
def test_schema_refuses_secrets_in_the_config(helm: str, sets: dict[str, str]) -> None:
    assert "values don't meet the specifications of the schema" in render_fails(helm, sets=sets)


@pytest.mark.parametrize(
    "sets",
    [
        {"replicaCount": "2"},
        {"image.pullPolicy": "Sometimes"},
        {"image.digest": "latest"},
        {"config.source.type": "amqp"},
        {"config.sink.cloud.region": "ap"},
        {"config.batch.max_events": "101"},
        {"config.log.level": "TRACE"},
        {"config.source.mqtt.url": "tcp://broker:1883"},
        {"config.routes": "/elsewhere.yaml"},
        {"config.unknown_section.x": "1"},
        {"replicas": "-1"},
        {"persistence.size": "lots"},
        {"metrics.serviceMonitor.interval": "soon"},
        {"metrics.prometheusRule.alerts.notReady.severity": "page"},
        {"networkPolicy.api.ports[0].protocol": "HTTP"},
        {"keda.kafka.lagThreshold": "0"},
    ],
    ids=lambda sets: next(iter(sets)),
)
def test_schema_rejects_bad_values(helm: str, sets: dict[str, str]) -> None:
    assert "values don't meet the specifications of the schema" in render_fails(helm, sets=sets)


def test_schema_rejects_routes_without_a_matcher(helm: str) -> None:
    error = render_fails(helm, json_sets={"routes": '{"routes": [{"name": "x", "event_type": "custom"}]}'})
    assert "values don't meet the specifications of the schema" in error


def _schema() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads((CHART / "values.schema.json").read_text())
    return schema


def _model_tree(model: type[BaseModel]) -> dict[str, Any]:
    """Field name -> subtree (nested settings sections) or None (a value)."""
    tree: dict[str, Any] = {}
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            tree[name] = _model_tree(annotation)
        else:
            tree[name] = "secret" if "SecretStr" in str(annotation) else None
    return tree


def _schema_tree(node: dict[str, Any]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for name, child in node.get("properties", {}).items():
        is_section = child.get("type") == "object" and "properties" in child
        tree[name] = _schema_tree(child) if is_section else None
    return tree


def _compare(model: dict[str, Any], schema: dict[str, Any], path: str = "") -> list[str]:
    problems = []
    for name in sorted(set(model) | set(schema)):
        where = f"{path}{name}"
        if name not in schema:
            if model[name] != "secret" and where != "routes":
                problems.append(f"config.{where} is a setting the chart schema does not offer")
        elif name not in model:
            problems.append(
                f"config.{where} is in the chart schema but not a setting (the consumer would refuse it)"
            )
        elif isinstance(model[name], dict) != isinstance(schema[name], dict):
            problems.append(f"config.{where}: a section on one side only")
        elif isinstance(model[name], dict):
            problems += _compare(model[name], schema[name], f"{where}.")
    return problems


def test_config_schema_matches_the_settings_tree() -> None:
    """The chart's `config` schema offers every setting but the secrets (and `routes`), and nothing else.

    When this fails after a change to consumer/config.py, mirror the change in values.schema.json.
    """
    problems = _compare(_model_tree(Settings), _schema_tree(_schema()["properties"]["config"]))
    assert problems == []


def test_route_schema_matches_the_routes_file_spec() -> None:
    route_item = _schema()["properties"]["routes"]["properties"]["routes"]["items"]
    assert set(route_item["properties"]) == set(RouteSpec.model_fields)


def test_every_schema_property_is_described() -> None:
    def undescribed(node: dict[str, Any], path: str) -> Iterator[str]:
        for name, child in node.get("properties", {}).items():
            if "description" not in child:
                yield f"{path}{name}"
            yield from undescribed(child, f"{path}{name}.")
            if isinstance(child.get("items"), dict):
                yield from undescribed(child["items"], f"{path}{name}[].")

    assert list(undescribed(_schema(), "")) == []


def test_values_file_is_fully_documented_and_the_docs_table_is_current() -> None:
    assert (
        (CHART / "values.yaml").read_text().startswith("# yaml-language-server: $schema=values.schema.json\n")
    )
    _, undocumented = values_doc.parse()
    assert undocumented == [], "values without a `# --` comment"
    current = values_doc.section(values_doc.DOC.read_text())
    assert current == values_doc.table(), "docs/deploy.md is stale: python -m tests.chart.values_doc --write"


def test_values_doc_reports_an_undocumented_key(tmp_path: Path) -> None:
    values = tmp_path / "values.yaml"
    values.write_text("# -- documented\na: 1\nb:\n  c: 2\n# -- whole block\nd:\n  e: 3\n")
    documented, undocumented = values_doc.parse(values)
    assert [v.path for v in documented] == ["a", "d"]
    assert undocumented == ["b.c"]


# -- checksums ---------------------------------------------------------------------------------------


def test_checksums_roll_the_pods_on_config_and_secret_changes(helm: str, default: list[Manifest]) -> None:
    base = pod_annotations(default)
    config_changed = pod_annotations(rendered(helm, sets={"config.batch.linger_ms": "500"}))
    routes_changed = pod_annotations(rendered(helm, sets={"routes.unrouted": "drop"}))
    secret_changed = pod_annotations(rendered(helm, sets={"secrets.roboflowApiKey": "new-key"}))
    secret_changed_again = pod_annotations(rendered(helm, sets={"secrets.roboflowApiKey": "newer-key"}))
    assert config_changed["checksum/config"] != base["checksum/config"]
    assert config_changed["checksum/secret"] == base["checksum/secret"]
    assert routes_changed["checksum/config"] != base["checksum/config"]
    assert secret_changed["checksum/secret"] != base["checksum/secret"]
    assert secret_changed["checksum/config"] == base["checksum/config"]
    assert secret_changed_again["checksum/secret"] != secret_changed["checksum/secret"]


# -- monitoring --------------------------------------------------------------------------------------


def test_monitors_scrape_the_metrics_port_with_the_release_job(helm: str) -> None:
    monitor = one(rendered(helm, CHART / "ci" / "monitoring-values.yaml"), "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    (endpoint,) = monitor["spec"]["endpoints"]
    assert (endpoint["port"], endpoint["path"], endpoint["interval"]) == ("http-metrics", "/metrics", "15s")
    pod_monitor = one(rendered(helm, CHART / "ci" / "keda-values.yaml"), "PodMonitor")
    (endpoint,) = pod_monitor["spec"]["podMetricsEndpoints"]
    assert endpoint["port"] == "http-metrics"
    assert {"targetLabel": "job", "replacement": FULLNAME} in endpoint["relabelings"]


def alerts(manifests: list[Manifest]) -> dict[str, dict[str, Any]]:
    return {q.rule["alert"]: q.rule for q in promql.rule_queries(manifests) if q.rule and "alert" in q.rule}


def test_default_alerts_and_their_thresholds(helm: str) -> None:
    every = {f"metrics.prometheusRule.alerts.{name}.enabled": "true" for name in promql.ALERTS}
    rules = alerts(rendered(helm, CHART / "ci" / "monitoring-values.yaml", sets=every))
    assert set(rules) == {
        "VisionEventsDeadLetters",
        "VisionEventsMessagesLost",
        "VisionEventsDeliveryFailing",
        "VisionEventsSinkAuthFailing",
        "VisionEventsApiStuck",
        "VisionEventsKafkaLagGrowing",
        "VisionEventsNothingDelivered",
        "VisionEventsNotReady",
        "VisionEventsDown",
        "VisionEventsSpoolFilling",
        "VisionEventsSpoolOldEvent",
        "VisionEventsSpoolNotDraining",
    }
    selector = f'job="{FULLNAME}",namespace="{NAMESPACE}"'
    for rule in rules.values():
        assert selector in rule["expr"], rule["alert"]
        assert rule["labels"]["team"] == "vision"
        assert rule["annotations"]["runbook_url"].endswith("#" + rule["alert"].lower())
    assert rules["VisionEventsDeadLetters"]["expr"].rstrip().endswith("> 0.1")
    assert rules["VisionEventsDeadLetters"]["for"] == "15m"
    assert "> 1800" in rules["VisionEventsNothingDelivered"]["expr"]  # 30 minutes
    assert rules["VisionEventsNotReady"]["for"] == "5m"
    assert "== 0" in rules["VisionEventsNotReady"]["expr"]
    assert "== 1" in rules["VisionEventsSinkAuthFailing"]["expr"]
    assert "deriv(vision_events_kafka_consumer_lag" in rules["VisionEventsKafkaLagGrowing"]["expr"]
    assert rules["VisionEventsApiStuck"]["expr"].rstrip().endswith("> 120")
    assert rules["VisionEventsApiStuck"]["for"] == "3m"


def test_alerts_can_be_tuned_and_turned_off(helm: str) -> None:
    rules = alerts(
        rendered(
            helm,
            CHART / "ci" / "monitoring-values.yaml",
            sets={
                "metrics.prometheusRule.alerts.nothingDelivered.minutes": "7",
                "metrics.prometheusRule.alerts.down.enabled": "false",
                "metrics.prometheusRule.selector": 'app="vec"',
            },
        )
    )
    assert "VisionEventsDown" not in rules and "VisionEventsKafkaLagGrowing" not in rules
    expr = rules["VisionEventsNothingDelivered"]["expr"]
    assert "> 420" in expr and "[7m]" in expr and '{app="vec",outcome="event"}' in expr


def test_promtool_checks_every_alert_and_dashboard_query(helm: str, tmp_path: Path) -> None:
    promtool = require("promtool")
    every = {f"metrics.prometheusRule.alerts.{name}.enabled": "true" for name in promql.ALERTS}
    groups = promql.rule_groups(rendered(helm, CHART / "ci" / "monitoring-values.yaml", sets=every))
    dashboard = promql.dashboard_queries()
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(promql.rules_file(groups, dashboard), sort_keys=False))
    result = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(promql.ALERTS) + len(dashboard)} rules found" in result.stdout


def test_promtool_catches_a_broken_expression(tmp_path: Path) -> None:
    promtool = require("promtool")
    path = tmp_path / "rules.yaml"
    broken = promql.rules_file([], [promql.Query("bad", "sum by (job (rate(x[5m]))")])
    path.write_text(yaml.safe_dump(broken))
    result = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True, check=False
    )
    assert result.returncode != 0


def test_every_metric_in_the_dashboard_and_alerts_is_exported(helm: str) -> None:
    exported = promql.exported_names() | promql.SCRAPE_SERIES
    queries = promql.all_queries(helm)
    assert len(queries) > 30
    unknown = {}
    for query in queries:
        names = promql.metric_names(query.expr)
        assert names, f"{query.origin} reads no metric: {query.expr}"
        if names - exported:
            unknown[query.origin] = sorted(names - exported)
    assert unknown == {}


def test_metric_name_parser() -> None:
    expr = (
        "histogram_quantile(0.99, sum by (le, endpoint) ("
        "rate(vision_events_api_request_duration_seconds_bucket"
        '{namespace=~"$namespace", status=~"5..|error"}[$__rate_interval]))) > 1e3 and on (job) '
        "time() - max(vision_events_last_delivery_timestamp_seconds offset 5m) unless up == 0"
    )
    assert promql.metric_names(expr) == {
        "vision_events_api_request_duration_seconds_bucket",
        "vision_events_last_delivery_timestamp_seconds",
        "up",
    }
    assert "vision_events_dead_letters_total" in promql.exported_names()
    assert "vision_events_batch_size_events_bucket" in promql.exported_names()
    assert "vision_events_dead_letters" not in promql.exported_names()


def test_dashboard_json_uses_the_datasource_variable() -> None:
    (path,) = promql.DASHBOARDS
    dashboard = json.loads(path.read_text())
    assert dashboard["uid"] == "vision-events-consumer"
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert (
        variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    )
    assert {"namespace", "job", "pod"} <= set(variables)
    panels = list(promql._panels(dashboard["panels"]))
    data_panels = [p for p in panels if p["type"] != "row"]
    assert len(data_panels) >= 12
    for panel in data_panels:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}"
            assert 'job=~"$job"' in target["expr"], panel["title"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    # Grafana fills the whole width: panels of a row never overlap nor pass 24 columns.
    for panel in panels:
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
    # Exported as JSON only: no Helm template syntax that .Files.Get would not expand.
    assert "{{ ." not in path.read_text()


def test_dashboard_covers_what_operators_ask(helm: str) -> None:
    text = " ".join(q.expr for q in promql.dashboard_queries())
    for metric in (
        "vision_events_messages_received_total",
        "vision_events_events_delivered_total",
        "vision_events_delivery_latency_seconds_bucket",
        "vision_events_end_to_end_latency_seconds_bucket",
        "vision_events_batch_size_events_bucket",
        "vision_events_api_request_duration_seconds_count",
        "vision_events_api_retries_total",
        "vision_events_dead_letters_total",
        "vision_events_kafka_consumer_lag",
        "vision_events_in_flight_events",
        "vision_events_source_connected",
        "vision_events_images_uploaded_total",
        "vision_events_image_upload_bytes_total",
        "vision_events_messages_normalized_total",
    ):
        assert metric in text, metric


def test_dashboard_configmap_for_the_grafana_sidecar(helm: str, default: list[Manifest]) -> None:
    assert [m["metadata"]["name"] for m in of_kind(default, "ConfigMap")] == [FULLNAME]
    manifests = rendered(helm, CHART / "ci" / "monitoring-values.yaml")
    configmap = next(
        m for m in of_kind(manifests, "ConfigMap") if m["metadata"]["name"] == f"{FULLNAME}-dashboards"
    )
    assert configmap["metadata"]["namespace"] == "monitoring"
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert configmap["metadata"]["annotations"]["grafana_folder"] == "Vision Events"
    (path,) = promql.DASHBOARDS
    assert json.loads(configmap["data"][path.name]) == json.loads(path.read_text())
    relabelled = rendered(
        helm,
        CHART / "ci" / "monitoring-values.yaml",
        sets={
            "metrics.grafanaDashboard.labels.grafana_dashboard": "null",
            "metrics.grafanaDashboard.labels.dash": "yes",
        },
    )
    labels = next(
        m for m in of_kind(relabelled, "ConfigMap") if m["metadata"]["name"].endswith("-dashboards")
    )["metadata"]["labels"]
    assert labels["dash"] == "yes" and "grafana_dashboard" not in labels


# -- network policy, test hook, NOTES ----------------------------------------------------------------


def test_network_policy(helm: str) -> None:
    policy = one(rendered(helm, CHART / "ci" / "mqtt-values.yaml"), "NetworkPolicy")["spec"]
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    (ingress,) = policy["ingress"]
    assert ingress["ports"] == [{"port": "http-metrics", "protocol": "TCP"}]
    assert {
        "podSelector": {
            "matchLabels": {"app.kubernetes.io/instance": RELEASE, "app.kubernetes.io/component": "test"}
        }
    } in ingress["from"]
    dns, brokers, api = policy["egress"]
    assert {p["port"] for p in dns["ports"]} == {53}
    assert brokers == {
        "ports": [{"port": 8883, "protocol": "TCP"}],
        "to": [{"ipBlock": {"cidr": "10.20.0.0/16"}}],
    }
    assert api == {"ports": [{"port": 443, "protocol": "TCP"}]}


def test_helm_test_pod_calls_healthz_with_the_app_image(default: list[Manifest]) -> None:
    pod = one(default, "Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    (test,) = pod["spec"]["containers"]
    assert test["image"] == container(default)["image"]
    assert test["command"][:2] == ["python", "-c"]
    assert test["command"][-1] == f"http://{FULLNAME}.{NAMESPACE}.svc:9108/healthz"
    assert test["securityContext"]["readOnlyRootFilesystem"] is True
    compile(test["command"][2], "<helm test>", "exec")


def test_notes_warn_about_a_missing_key_and_unshared_mqtt(helm: str, tmp_path: Path) -> None:
    """NOTES.txt, rendered through a wrapper template in a copy of the chart (`helm template` omits notes)."""
    chart = tmp_path / "chart"
    shutil.copytree(CHART, chart)
    (chart / "templates" / "zz-notes.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: notes}\n"
        'data:\n  notes: {{ include (print $.Template.BasePath "/NOTES.txt") . | quote }}\n'
    )

    def notes(*args: str) -> str:
        result = subprocess.run(
            [
                helm,
                "template",
                RELEASE,
                str(chart),
                "--namespace",
                NAMESPACE,
                "--show-only",
                "templates/zz-notes.yaml",
                *args,
            ],
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr
        text: str = yaml.safe_load(result.stdout)["data"]["notes"]
        return text

    plain = notes()
    assert "needs a Roboflow API key" in plain
    assert "kubectl -n vision rollout status statefulset/vec-vision-events-consumer" in plain
    shared = notes("-f", str(CHART / "ci" / "mqtt-values.yaml"))
    assert "needs a Roboflow API key" not in shared and "shared_group" not in shared
    assert "every replica\nreceives every message" in notes(
        "--set", "replicas=2", "--set", "secrets.roboflowApiKey=k"
    )


def _series(name: str, values: str, **labels: str) -> dict[str, str]:
    selector = ",".join(f'{k}="{v}"' for k, v in {"job": FULLNAME, "namespace": NAMESPACE, **labels}.items())
    return {"series": f"{name}{{{selector}}}", "values": values}


def _firing(alert: str, at: str, series: list[dict[str, str]], **labels: str) -> dict[str, Any]:
    expected = [{"exp_labels": {"job": FULLNAME, "namespace": NAMESPACE, **labels}}] if labels else []
    return {
        "interval": "1m",
        "input_series": series,
        "alert_rule_test": [{"eval_time": at, "alertname": alert, "exp_alerts": expected}],
    }


def test_alerts_fire_when_they_should_and_only_then(helm: str, tmp_path: Path) -> None:
    """`promtool test rules` on the rendered alerts (annotations dropped: the conditions are under test)."""
    promtool = require("promtool")
    every = {f"metrics.prometheusRule.alerts.{name}.enabled": "true" for name in promql.ALERTS}
    manifests = rendered(helm, sets={**every, "metrics.prometheusRule.enabled": "true"})
    groups = promql.rule_groups(manifests)
    for group in groups:
        for rule in group["rules"]:
            rule.pop("annotations", None)
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": groups}))
    warning, critical = {"severity": "warning"}, {"severity": "critical"}
    tests = [
        # Dead letters keep coming: fires after 10 m; a flat counter does not.
        _firing(
            "VisionEventsDeadLetters",
            "20m",
            [_series("vision_events_dead_letters_total", "0+5x30", reason="no_route")],
            reason="no_route",
            **warning,
        ),
        _firing(
            "VisionEventsDeadLetters",
            "20m",
            [_series("vision_events_dead_letters_total", "7x30", reason="x")],
        ),
        # QoS 0 messages lost: fires at once; messages left for redelivery do not count.
        _firing(
            "VisionEventsMessagesLost",
            "10m",
            [
                _series(
                    "vision_events_messages_dropped_total", "0x8 3 3", source="mqtt", reason="qos0_overflow"
                )
            ],
            source="mqtt",
            **warning,
        ),
        _firing(
            "VisionEventsMessagesLost",
            "10m",
            [
                _series("vision_events_messages_dropped_total", "0+9x10", source="mqtt", reason="redelivery"),
                _series(
                    "vision_events_messages_dropped_total", "0x10", source="mqtt", reason="qos0_overflow"
                ),
            ],
        ),
        # Retries while nothing is delivered, also before the first event ever (no delivered series).
        _firing(
            "VisionEventsDeliveryFailing",
            "20m",
            [
                _series("vision_events_api_retries_total", "0+3x30", endpoint="batch", cause="503"),
                _series("vision_events_events_delivered_total", "40x30", sink="cloud", event_type="custom"),
            ],
            **critical,
        ),
        _firing(
            "VisionEventsDeliveryFailing",
            "20m",
            [
                _series(
                    "vision_events_api_request_duration_seconds_count",
                    "0+3x30",
                    endpoint="batch",
                    status="error",
                )
            ],
            **critical,
        ),
        _firing(
            "VisionEventsDeliveryFailing",
            "20m",
            [
                _series("vision_events_api_retries_total", "0+3x30", endpoint="batch", cause="429"),
                _series("vision_events_events_delivered_total", "0+50x30", sink="cloud", event_type="custom"),
            ],
        ),
        _firing(
            "VisionEventsSinkAuthFailing",
            "10m",
            [_series("vision_events_sink_auth_failing", "1x20", sink="cloud")],
            sink="cloud",
            **critical,
        ),
        _firing(
            "VisionEventsSinkAuthFailing",
            "10m",
            [_series("vision_events_sink_auth_failing", "0x20", sink="cloud")],
        ),
        # A batch waits from t=0 (the gauge grows 60 s a minute): above 120 s from 3 m, firing 3 m later.
        _firing(
            "VisionEventsApiStuck",
            "6m",
            [_series("vision_events_sink_oldest_batch_age_seconds", "0+60x20", sink="cloud")],
            sink="cloud",
            **critical,
        ),
        _firing(
            "VisionEventsApiStuck",
            "5m",
            [_series("vision_events_sink_oldest_batch_age_seconds", "0+60x20", sink="cloud")],
        ),
        # Batches complete within a minute or two, again and again: a sawtooth under 120 s never fires.
        _firing(
            "VisionEventsApiStuck",
            "20m",
            [
                _series(
                    "vision_events_sink_oldest_batch_age_seconds",
                    "0 60 110 0 60 110 0 60 110 0 60 110 0 60 110 0 60 110 0 60 110",
                    sink="cloud",
                )
            ],
        ),
        # Nothing in flight: 0, silent.
        _firing(
            "VisionEventsApiStuck",
            "20m",
            [_series("vision_events_sink_oldest_batch_age_seconds", "0x20", sink="cloud")],
        ),
        # Events are produced but the last delivery is stuck at t=60 s: fires once 15 + 5 minutes passed.
        _firing(
            "VisionEventsNothingDelivered",
            "40m",
            [
                _series("vision_events_last_delivery_timestamp_seconds", "60x40"),
                _series("vision_events_messages_normalized_total", "0+10x40", route="r", outcome="event"),
            ],
            **critical,
        ),
        # Deliveries keep up (the timestamp follows the clock): silent. So are routes producing nothing.
        _firing(
            "VisionEventsNothingDelivered",
            "40m",
            [
                _series("vision_events_last_delivery_timestamp_seconds", "0+60x40"),
                _series("vision_events_messages_normalized_total", "0+10x40", route="r", outcome="event"),
            ],
        ),
        _firing(
            "VisionEventsNothingDelivered",
            "40m",
            [
                _series("vision_events_last_delivery_timestamp_seconds", "60x40"),
                _series(
                    "vision_events_messages_normalized_total", "0+10x40", route="r", outcome="suppressed"
                ),
            ],
        ),
        _firing(
            "VisionEventsKafkaLagGrowing",
            "40m",
            [_series("vision_events_kafka_consumer_lag", "2000+100x40", topic="t", partition="0")],
            topic="t",
            **warning,
        ),
        _firing(
            "VisionEventsKafkaLagGrowing",
            "40m",
            [_series("vision_events_kafka_consumer_lag", "5000-50x40", topic="t", partition="0")],
        ),
        _firing(
            "VisionEventsNotReady",
            "10m",
            [_series("vision_events_ready", "0x20", pod="p-0")],
            pod="p-0",
            **warning,
        ),
        _firing("VisionEventsNotReady", "10m", [_series("vision_events_ready", "1x20", pod="p-0")]),
        _firing("VisionEventsDown", "10m", [_series("up", "0x20", pod="p-0")], pod="p-0", **warning),
    ]
    (tmp_path / "tests.yaml").write_text(
        yaml.safe_dump({"rule_files": ["rules.yaml"], "evaluation_interval": "1m", "tests": tests})
    )
    result = subprocess.run(
        [promtool, "test", "rules", "tests.yaml"], capture_output=True, text=True, check=False, cwd=tmp_path
    )
    assert result.returncode == 0, result.stdout + result.stderr
