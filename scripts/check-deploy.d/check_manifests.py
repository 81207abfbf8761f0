"""Checks manifests rendered from the task-api chart: Kubernetes schemas, chart policy, env names.

Run by scripts/check-deploy inside its virtualenv (kubernetes-validate, PyYAML, jsonschema):

    python check_manifests.py --env-sample .env.sample --chart deploy/helm/task-api \
        --kube-versions 1.30.0,1.37.0 --schemas scripts/check-deploy.d/schemas NAME=RENDERED.yaml ...

Prints one line per check, `ok <check>` or `FAIL <check>: <why>` (details indented below), and
exits 1 when a check failed.
"""

from __future__ import annotations

import argparse
import functools
import json
import pathlib
import re
import sys

import jsonschema
import kubernetes_validate
import kubernetes_validate.utils
import yaml

# kubernetes-validate reads and parses the (large) shared definitions file on every call; the
# schemas never change during a run, so read each file once.
kubernetes_validate.utils.schema_contents = functools.lru_cache(maxsize=None)(kubernetes_validate.utils.schema_contents)

ENV_LINE = re.compile(r"^\s*#?\s*(?:export\s+)?([A-Z][A-Z0-9_]*)=")

# Kinds that are not part of Kubernetes itself, validated against a schema of ours instead.
CRD_SCHEMAS = {("monitoring.coreos.com/v1", "ServiceMonitor"): "servicemonitor-monitoring-v1.json"}


class Report:
    """Collects check results and prints them in the format scripts/check-deploy counts."""

    def __init__(self) -> None:
        self.failed = 0

    def check(self, name: str, problems: list[str]) -> None:
        if problems:
            self.failed += 1
            print(f"FAIL {name}: {len(problems)} problem(s)")
            for problem in problems:
                print(f"    {problem}")
        else:
            print(f"ok {name}")


def env_sample_names(path: pathlib.Path) -> list[str]:
    """The variable names of .env.sample, in file order (set or commented out)."""
    names = []
    for line in path.read_text().splitlines():
        match = ENV_LINE.match(line)
        if match:
            names.append(match.group(1))
    return names


def load_docs(path: pathlib.Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def resource_id(doc: dict) -> str:
    return f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"


def pod_templates(docs: list[dict]) -> list[tuple[dict, dict]]:
    """(workload, pod template) of every Deployment and Job."""
    found = []
    for doc in docs:
        if doc.get("kind") in ("Deployment", "Job"):
            found.append((doc, doc["spec"]["template"]))
    return found


def schema_problems(docs: list[dict], version: str, schema_dir: pathlib.Path) -> list[str]:
    problems = []
    for doc in docs:
        crd = CRD_SCHEMAS.get((doc.get("apiVersion"), doc.get("kind")))
        try:
            if crd:
                schema = json.loads((schema_dir / crd).read_text())
                jsonschema.validate(doc, schema)
            else:
                kubernetes_validate.validate(doc, version, strict=True)
        except jsonschema.ValidationError as err:
            path = ".".join(str(part) for part in err.absolute_path)
            problems.append(f"{resource_id(doc)}: {path}: {err.message}")
        except kubernetes_validate.SchemaNotFoundError as err:
            problems.append(f"{resource_id(doc)}: {err.message}")
    return problems


def env_of(container: dict) -> dict[str, dict]:
    return {entry["name"]: entry for entry in container.get("env", [])}


def policy_problems(docs: list[dict], sample: set[str], app_version: str, default_render: bool) -> list[str]:
    """What the chart promises operators, checked on one rendering."""
    problems = []
    templates = pod_templates(docs)
    deployments = [workload for workload, _ in templates if workload["kind"] == "Deployment"]
    if len(deployments) != 1:
        problems.append(f"expected one Deployment, found {len(deployments)}")
        return problems
    deployment = deployments[0]

    for workload, template in templates:
        where = resource_id(workload)
        spec = template["spec"]
        pod_security = spec.get("securityContext", {})
        if pod_security.get("runAsNonRoot") is not True:
            problems.append(f"{where}: pod securityContext.runAsNonRoot is not true")
        if pod_security.get("seccompProfile", {}).get("type") != "RuntimeDefault":
            problems.append(f"{where}: pod seccompProfile is not RuntimeDefault")
        for container in spec["containers"]:
            security = container.get("securityContext", {})
            name = f"{where} container {container['name']}"
            if security.get("allowPrivilegeEscalation") is not False:
                problems.append(f"{name}: allowPrivilegeEscalation is not false")
            if security.get("readOnlyRootFilesystem") is not True:
                problems.append(f"{name}: readOnlyRootFilesystem is not true")
            if "ALL" not in security.get("capabilities", {}).get("drop", []):
                problems.append(f"{name}: capabilities do not drop ALL")
            if not container.get("resources", {}).get("requests"):
                problems.append(f"{name}: no resource requests")
            env = env_of(container)
            names = [entry["name"] for entry in container.get("env", [])]
            duplicates = sorted({n for n in names if names.count(n) > 1})
            if duplicates:
                problems.append(f"{name}: env names set twice: {', '.join(duplicates)}")
            unknown = sorted(set(env) - sample)
            if unknown:
                problems.append(f"{name}: env names the binary does not read (.env.sample): {', '.join(unknown)}")
            for secret_name in ("DATABASE_URL", "JWT_SECRET", "DAPR_API_TOKEN"):
                if secret_name in env and "secretKeyRef" not in env[secret_name].get("valueFrom", {}):
                    problems.append(f"{name}: {secret_name} is not taken from a Secret")
            if "DATABASE_URL" not in env:
                problems.append(f"{name}: DATABASE_URL is not set")

    pod = deployment["spec"]["template"]
    container = pod["spec"]["containers"][0]
    env = env_of(container)
    annotations = pod["metadata"].get("annotations", {})
    dapr_on = env.get("DAPR_ENABLED", {}).get("value") == "true"
    if dapr_on:
        expected = {"dapr.io/enabled": "true", "dapr.io/app-id": "pakaura-api", "dapr.io/app-port": env["PORT"]["value"]}
        for key, value in expected.items():
            if annotations.get(key) != value:
                problems.append(f"annotation {key} is {annotations.get(key)!r}, expected {value!r}")
        if "dapr.io/log-level" not in annotations:
            problems.append("annotation dapr.io/log-level is missing")
        if "JWT_SECRET" not in env:
            problems.append("JWT_SECRET is not set on the API container")
        if ("DAPR_API_TOKEN" in env) != ("dapr.io/api-token-secret" in annotations):
            problems.append("DAPR_API_TOKEN and dapr.io/api-token-secret must come together")
    elif annotations.get("dapr.io/enabled") != "false":
        problems.append("DAPR_ENABLED is not true but the sidecar is not disabled")

    probes = {"livenessProbe": "/healthz", "readinessProbe": "/readyz"}
    for probe, path in probes.items():
        actual = container.get(probe, {}).get("httpGet", {}).get("path")
        if actual != path:
            problems.append(f"{probe} path is {actual!r}, expected {path!r}")

    grace = pod["spec"].get("terminationGracePeriodSeconds", 30)
    shutdown = int(env.get("SHUTDOWN_TIMEOUT_SECONDS", {}).get("value", "0"))
    pre_stop = container.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
    if grace <= shutdown + pre_stop:
        problems.append(f"terminationGracePeriodSeconds {grace} <= preStop {pre_stop} + shutdown {shutdown}")
    if dapr_on:
        block = annotations.get("dapr.io/block-shutdown-duration")
        if block is not None and block != f"{shutdown + pre_stop}s":
            problems.append(f"dapr.io/block-shutdown-duration {block} does not cover preStop + shutdown")
        graceful = int(annotations.get("dapr.io/graceful-shutdown-seconds", "5"))
        if grace <= shutdown + pre_stop + graceful:
            problems.append(f"terminationGracePeriodSeconds {grace} leaves the sidecar no time to stop")

    if default_render and not container["image"].endswith(f":{app_version}"):
        problems.append(f"image {container['image']} does not default to appVersion {app_version}")

    jobs = [workload for workload, _ in templates if workload["kind"] == "Job"]
    for job in jobs:
        hook = job["metadata"].get("annotations", {})
        if set(hook.get("helm.sh/hook", "").split(",")) != {"pre-install", "pre-upgrade"}:
            problems.append(f"{resource_id(job)}: not a pre-install,pre-upgrade hook")
        if "helm.sh/hook-delete-policy" not in hook or "helm.sh/hook-weight" not in hook:
            problems.append(f"{resource_id(job)}: hook weight or delete policy missing")
        job_container = job["spec"]["template"]["spec"]["containers"][0]
        if job_container.get("args") != ["migrate"]:
            problems.append(f"{resource_id(job)}: does not run `task-api migrate`")
        if job_container["image"] != container["image"]:
            problems.append(f"{resource_id(job)}: image differs from the Deployment's")
        secret_ref = env_of(job_container)["DATABASE_URL"]["valueFrom"]["secretKeyRef"]["name"]
        hook_secrets = {
            doc["metadata"]["name"]
            for doc in docs
            if doc.get("kind") == "Secret" and "helm.sh/hook" in doc["metadata"].get("annotations", {})
        }
        release_secrets = {doc["metadata"]["name"] for doc in docs if doc.get("kind") == "Secret"}
        if secret_ref in release_secrets and secret_ref not in hook_secrets:
            problems.append(f"{resource_id(job)}: reads {secret_ref}, which does not exist yet when pre-install hooks run")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env-sample", type=pathlib.Path, required=True)
    parser.add_argument("--chart", type=pathlib.Path, required=True)
    parser.add_argument("--kube-versions", required=True)
    parser.add_argument("--schemas", type=pathlib.Path, required=True)
    parser.add_argument("renders", nargs="+", help="NAME=PATH of a `helm template` output")
    args = parser.parse_args()

    report = Report()
    sample_names = env_sample_names(args.env_sample)
    sample = set(sample_names)
    duplicates = sorted({n for n in sample_names if sample_names.count(n) > 1})
    report.check(".env.sample lists each name once", [f"listed twice: {n}" for n in duplicates])
    app_version = str(yaml.safe_load((args.chart / "Chart.yaml").read_text())["appVersion"])

    set_by_chart: set[str] = set()
    for item in args.renders:
        label, _, path = item.partition("=")
        docs = load_docs(pathlib.Path(path))
        if not docs:
            report.check(f"rendering {label} has resources", [f"{path} holds no resource"])
            continue
        for version in args.kube_versions.split(","):
            report.check(
                f"kubernetes {version} schemas (strict): {label} ({len(docs)} resources)",
                schema_problems(docs, version, args.schemas),
            )
        report.check(f"chart policy: {label}", policy_problems(docs, sample, app_version, label == "default"))
        for _, template in pod_templates(docs):
            for container in template["spec"]["containers"]:
                set_by_chart.update(env_of(container))

    problems = []
    if set_by_chart - sample:
        problems.append(f"set by the chart, missing in .env.sample: {', '.join(sorted(set_by_chart - sample))}")
    if sample - set_by_chart:
        problems.append(f"in .env.sample, never set by the chart: {', '.join(sorted(sample - set_by_chart))}")
    report.check("env names the chart sets == names in .env.sample", problems)
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
