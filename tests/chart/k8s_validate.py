"""Validate rendered manifests offline; runs in the tools venv (scripts/install-tools.sh).

    <tools-python> tests/chart/k8s_validate.py [-k 1.25.0 -k 1.37.0] manifests.yaml

Built-in kinds are checked with kubernetes-validate (its bundled, strict schemas of each Kubernetes
version: no network); the custom resources (ServiceMonitor, PodMonitor, PrometheusRule,
ScaledObject) against the minimal schemas in crd_schemas.json. Any other kind is an error: the
chart must not render something nothing checks. Prints one JSON object per resource and version
and exits 1 when any failed.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path
from typing import Any

import yaml

CRD_SCHEMAS = Path(__file__).with_name("crd_schemas.json")
DEFAULT_VERSIONS = ("1.25.0", "1.37.0")


def validate_custom(resource: dict[str, Any], schemas: dict[str, Any]) -> list[str]:
    """Problems of a custom resource against crd_schemas.json; [] when valid."""
    jsonschema: Any = importlib.import_module("jsonschema")
    kind = f"{resource.get('apiVersion')}/{resource.get('kind')}"
    schema = {"definitions": schemas["definitions"], **schemas["kinds"][kind]}
    validator = jsonschema.Draft7Validator(schema)
    return [
        f"{'.'.join(str(p) for p in error.absolute_path) or '(root)'}: {error.message}"
        for error in sorted(validator.iter_errors(resource), key=lambda e: list(e.absolute_path))
    ]


def validate_builtin(resource: dict[str, Any], version: str) -> list[str]:
    """Problems of a built-in resource per kubernetes-validate (strict); [] when valid."""
    utils: Any = importlib.import_module("kubernetes_validate.utils")
    try:
        utils.validate(resource, version, strict=True)
    except utils.ValidationError as error:
        path = ".".join(str(p) for p in error.path) or "(root)"
        return [f"{path}: {error.message}"]
    except utils.SchemaNotFoundError as error:
        return [f"no schema: {error.message}"]
    return []


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-k", "--kube-version", action="append", help="Kubernetes version (repeatable)")
    parser.add_argument("manifests", type=Path)
    args = parser.parse_args(argv)
    versions = args.kube_version or list(DEFAULT_VERSIONS)
    schemas = json.loads(CRD_SCHEMAS.read_text())
    resources = [doc for doc in yaml.safe_load_all(args.manifests.read_text()) if doc]
    failed = False
    for resource in resources:
        kind = f"{resource.get('apiVersion')}/{resource.get('kind')}"
        name = (resource.get("metadata") or {}).get("name")
        if kind in schemas["kinds"]:
            checks = [("crd", validate_custom(resource, schemas))]
        else:
            checks = [(version, validate_builtin(resource, version)) for version in versions]
        for against, problems in checks:
            failed = failed or bool(problems)
            record = {
                "kind": kind,
                "name": name,
                "against": against,
                "ok": not problems,
                "problems": problems,
            }
            sys.stdout.write(json.dumps(record) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
