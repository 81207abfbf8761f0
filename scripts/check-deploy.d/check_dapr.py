"""Checks the Dapr resources of deploy/dapr/ for the fields Dapr requires and against our own settings.

Run by scripts/check-deploy inside its virtualenv (PyYAML):

    python check_dapr.py --dapr-dir deploy/dapr --env-sample .env.sample --values deploy/helm/task-api/values.yaml

No Dapr control plane is available here, so this checks what daprd and the operator would reject
or silently mis-wire: required fields and their formats (Component, Resiliency, Subscription,
Configuration), references between them (subscription -> component, resiliency target -> component
and policy names, scopes), and agreement with the app's defaults (pubsub name, topics, app id,
Configuration name) and the app's publish deadline. Files under local/ (the standalone local stack)
get the generic checks only. Prints `ok <check>` / `FAIL <check>: <why>` lines like
check_manifests.py and exits 1 when a check failed.
"""

from __future__ import annotations

import argparse
import pathlib
import re
import sys

import yaml

DURATION = re.compile(r"^(0|([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+)$")
APP_ID = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
TOPIC = re.compile(r"^[a-zA-Z0-9._-]{1,249}$")
COMPONENT_TYPE = re.compile(r"^(pubsub|state|bindings|secretstores|configuration|lock|middleware\.http|crypto|conversation|nameresolution|workflow)\.[a-z0-9][a-z0-9.-]*$")
KAFKA_AUTH_TYPES = {"none", "password", "mtls", "oidc", "certificate", "awsiam"}
ENV_LINE = re.compile(r"^\s*#?\s*([A-Z][A-Z0-9_]*)=(.*)$")
# The backoff Dapr's exponential retry policy uses: intervals grow up to maxInterval and are then
# randomised by up to 50 % either way.
EXPONENTIAL_JITTER = 1.5


def seconds(duration: str) -> float:
    """A Go duration string in seconds."""
    units = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
    total = 0.0
    for number, unit in re.findall(r"([0-9]+(?:\.[0-9]+)?)(ns|us|µs|ms|s|m|h)", duration):
        total += float(number) * units[unit]
    return total


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


def env_defaults(path: pathlib.Path) -> dict[str, str]:
    defaults = {}
    for line in path.read_text().splitlines():
        match = ENV_LINE.match(line)
        if match:
            defaults[match.group(1)] = match.group(2).strip()
    return defaults


def check_scopes(doc: dict, where: str, problems: list[str], required: bool) -> None:
    scopes = doc.get("scopes")
    if scopes is None:
        if required:
            problems.append(f"{where}: no scopes (every app in the namespace would load it)")
        return
    if not isinstance(scopes, list) or not scopes:
        problems.append(f"{where}: scopes must be a non-empty list")
        return
    for scope in scopes:
        if not isinstance(scope, str) or not APP_ID.match(scope):
            problems.append(f"{where}: scope {scope!r} is not a valid app id")


def check_component(doc: dict, where: str, kubernetes: bool) -> list[str]:
    problems = []
    spec = doc.get("spec") or {}
    kind_type = spec.get("type", "")
    if not COMPONENT_TYPE.match(str(kind_type)):
        problems.append(f"{where}: spec.type {kind_type!r} is not <building block>.<name>")
    if not re.match(r"^v[0-9]+$", str(spec.get("version", ""))):
        problems.append(f"{where}: spec.version {spec.get('version')!r} is not like v1")
    items = spec.get("metadata") or []
    if not isinstance(items, list):
        problems.append(f"{where}: spec.metadata must be a list of name/value items")
        items = []
    fields: dict[str, dict] = {}
    uses_secret = False
    for item in items:
        name = item.get("name") if isinstance(item, dict) else None
        if not name:
            problems.append(f"{where}: a metadata item has no name")
            continue
        if name in fields:
            problems.append(f"{where}: metadata {name} is set twice")
        fields[name] = item
        has_value, has_ref = "value" in item, "secretKeyRef" in item
        if has_value == has_ref:
            problems.append(f"{where}: metadata {name} needs exactly one of value and secretKeyRef")
        if has_ref:
            uses_secret = True
            ref = item["secretKeyRef"] or {}
            if not ref.get("name") or not ref.get("key"):
                problems.append(f"{where}: metadata {name}: secretKeyRef needs name and key")
        extra = set(item) - {"name", "value", "secretKeyRef"}
        if extra:
            problems.append(f"{where}: metadata {name}: unknown fields {sorted(extra)}")
    if uses_secret and not (doc.get("auth") or {}).get("secretStore"):
        problems.append(f"{where}: secretKeyRef used but auth.secretStore is not set")

    if kind_type == "pubsub.kafka":
        def value(name: str) -> str | None:
            item = fields.get(name)
            return None if item is None or "value" not in item else str(item["value"])

        if "brokers" not in fields or not (value("brokers") or "secretKeyRef" in fields["brokers"]):
            problems.append(f"{where}: pubsub.kafka needs brokers")
        auth = value("authType")
        if auth is None:
            problems.append(f"{where}: pubsub.kafka needs authType")
        elif auth not in KAFKA_AUTH_TYPES:
            problems.append(f"{where}: authType {auth!r} is not one of {sorted(KAFKA_AUTH_TYPES)}")
        if auth == "password":
            for name in ("saslUsername", "saslPassword"):
                if name not in fields:
                    problems.append(f"{where}: authType password needs {name}")
            if "saslPassword" in fields and "secretKeyRef" not in fields["saslPassword"] and kubernetes:
                problems.append(f"{where}: saslPassword must come from a secret (secretKeyRef), not a literal")
        if auth == "mtls":
            for name in ("clientCert", "clientKey"):
                if name not in fields:
                    problems.append(f"{where}: authType mtls needs {name}")
        initial = value("initialOffset")
        if initial is not None and initial not in ("newest", "oldest"):
            problems.append(f"{where}: initialOffset {initial!r} is not newest or oldest")
        version = value("version")
        if version is not None and not re.match(r"^[0-9]+\.[0-9]+\.[0-9]+(\.[0-9]+)?$", version):
            problems.append(f"{where}: version {version!r} is not a Kafka version like 3.9.0")
        group = value("consumerGroup")
        if kubernetes and group is not None and "{appID}" not in group:
            problems.append(
                f"{where}: consumerGroup {group!r} is shared by every app: each app would get only part of the events"
            )
    check_scopes(doc, where, problems, required=kubernetes)
    return problems


def check_resiliency(doc: dict, where: str, components: dict[str, dict], publish_deadline: float | None,
                     pubsub_name: str | None) -> list[str]:
    problems = []
    spec = doc.get("spec") or {}
    policies = spec.get("policies")
    if not isinstance(policies, dict):
        return [f"{where}: spec.policies is required"]
    timeouts = policies.get("timeouts") or {}
    retries = policies.get("retries") or {}
    breakers = policies.get("circuitBreakers") or {}
    for name, duration in timeouts.items():
        if not DURATION.match(str(duration)):
            problems.append(f"{where}: timeout {name}: {duration!r} is not a duration")
    for name, retry in retries.items():
        policy = retry.get("policy")
        if policy not in ("constant", "exponential"):
            problems.append(f"{where}: retry {name}: policy {policy!r} is not constant or exponential")
        for key in ("duration", "maxInterval"):
            if key in retry and not DURATION.match(str(retry[key])):
                problems.append(f"{where}: retry {name}: {key} {retry[key]!r} is not a duration")
        if "maxRetries" in retry and (not isinstance(retry["maxRetries"], int) or retry["maxRetries"] < -1):
            problems.append(f"{where}: retry {name}: maxRetries must be an integer >= -1")
        extra = set(retry) - {"policy", "duration", "maxInterval", "maxRetries", "matching"}
        if extra:
            problems.append(f"{where}: retry {name}: unknown fields {sorted(extra)}")
    for name, breaker in breakers.items():
        if not isinstance(breaker.get("trip"), str) or not breaker["trip"].strip():
            problems.append(f"{where}: circuit breaker {name}: trip expression is required")
        elif not re.search(r"\b(consecutiveFailures|requests|totalSuccesses|totalFailures)\b", breaker["trip"]):
            problems.append(f"{where}: circuit breaker {name}: trip {breaker['trip']!r} uses no known counter")
        for key in ("interval", "timeout"):
            if key in breaker and not DURATION.match(str(breaker[key])):
                problems.append(f"{where}: circuit breaker {name}: {key} {breaker[key]!r} is not a duration")
        if "maxRequests" in breaker and (not isinstance(breaker["maxRequests"], int) or breaker["maxRequests"] < 0):
            problems.append(f"{where}: circuit breaker {name}: maxRequests must be a non-negative integer")

    targets = spec.get("targets")
    if not isinstance(targets, dict) or not targets:
        problems.append(f"{where}: spec.targets is required")
        targets = {}
    for component, directions in (targets.get("components") or {}).items():
        if component not in components:
            problems.append(f"{where}: target component {component!r} is not defined in deploy/dapr")
        for direction, refs in (directions or {}).items():
            if direction not in ("inbound", "outbound"):
                problems.append(f"{where}: {component}: direction {direction!r} is not inbound or outbound")
                continue
            for kind, table in (("timeout", timeouts), ("retry", retries), ("circuitBreaker", breakers)):
                ref = (refs or {}).get(kind)
                if ref is not None and ref not in table:
                    problems.append(f"{where}: {component}.{direction}.{kind} names undefined policy {ref!r}")

    # The app abandons a publish call after DAPR_PUBLISH_TIMEOUT; the sidecar's retries must fit in it.
    outbound = ((targets.get("components") or {}).get(pubsub_name) or {}).get("outbound")
    if publish_deadline is not None and pubsub_name is not None:
        if not outbound:
            problems.append(f"{where}: no outbound policy for {pubsub_name} (the publish path)")
        else:
            attempt = seconds(str(timeouts.get(outbound.get("timeout"), "0")))
            retry = retries.get(outbound.get("retry")) or {}
            count = retry.get("maxRetries", -1) if retry else 0
            if not attempt or count < 0:
                problems.append(f"{where}: {pubsub_name} outbound needs a timeout and a bounded retry count")
            else:
                if retry.get("policy") == "exponential":
                    wait = seconds(str(retry.get("maxInterval", "60s"))) * EXPONENTIAL_JITTER
                else:
                    wait = seconds(str(retry.get("duration", "5s")))
                worst = (count + 1) * attempt + count * wait
                if worst >= publish_deadline:
                    problems.append(
                        f"{where}: {pubsub_name} outbound may take {worst:.2f} s, not inside the app's "
                        f"DAPR_PUBLISH_TIMEOUT of {publish_deadline} s"
                    )
            if not outbound.get("circuitBreaker"):
                problems.append(f"{where}: {pubsub_name} outbound has no circuit breaker")
    check_scopes(doc, where, problems, required=False)
    return problems


def check_subscription(doc: dict, where: str, components: dict[str, dict], topics: set[str]) -> list[str]:
    problems = []
    spec = doc.get("spec") or {}
    api = doc.get("apiVersion")
    for key in ("pubsubname", "topic"):
        if not spec.get(key):
            problems.append(f"{where}: spec.{key} is required")
    topic = spec.get("topic")
    if topic and not TOPIC.match(topic):
        problems.append(f"{where}: topic {topic!r} is not a valid Kafka topic name")
    if api == "dapr.io/v2alpha1":
        routes = spec.get("routes") or {}
        if not routes.get("default") and not routes.get("rules"):
            problems.append(f"{where}: spec.routes needs a default or rules")
        for rule in routes.get("rules") or []:
            if not rule.get("match") or not str(rule.get("path", "")).startswith("/"):
                problems.append(f"{where}: every rule needs a match expression and a path starting with /")
        if routes.get("default") and not str(routes["default"]).startswith("/"):
            problems.append(f"{where}: routes.default must start with /")
    elif api == "dapr.io/v1alpha1":
        if not str(spec.get("route", "")).startswith("/"):
            problems.append(f"{where}: spec.route must start with /")
    else:
        problems.append(f"{where}: apiVersion {api!r} is not dapr.io/v2alpha1 or dapr.io/v1alpha1")
    bulk = spec.get("bulkSubscribe")
    if bulk is not None:
        extra = set(bulk) - {"enabled", "maxMessagesCount", "maxAwaitDurationMs"}
        if extra:
            problems.append(f"{where}: bulkSubscribe: unknown fields {sorted(extra)}")
    dead_letter = spec.get("deadLetterTopic")
    if not dead_letter:
        problems.append(f"{where}: no deadLetterTopic (a poison event would be retried forever or lost)")
    elif dead_letter == topic or not TOPIC.match(dead_letter):
        problems.append(f"{where}: deadLetterTopic {dead_letter!r} must be a valid topic other than the source")
    component = components.get(spec.get("pubsubname"))
    if component is None:
        problems.append(f"{where}: pubsubname {spec.get('pubsubname')!r} is not a component in deploy/dapr")
    if topic and topics and topic not in topics:
        problems.append(f"{where}: topic {topic!r} is not one the app publishes to ({', '.join(sorted(topics))})")
    check_scopes(doc, where, problems, required=True)
    if component is not None and component.get("scopes"):
        missing = set(doc.get("scopes") or []) - set(component["scopes"])
        if missing:
            problems.append(f"{where}: apps {sorted(missing)} are not in the scopes of component {spec['pubsubname']}")
    return problems


def check_configuration(doc: dict, where: str) -> list[str]:
    problems = []
    spec = doc.get("spec")
    if not isinstance(spec, dict):
        return [f"{where}: spec is required"]
    tracing = spec.get("tracing")
    if tracing is not None:
        rate = tracing.get("samplingRate")
        try:
            if not isinstance(rate, str) or not 0.0 <= float(rate) <= 1.0:
                raise ValueError
        except ValueError:
            problems.append(f"{where}: tracing.samplingRate {rate!r} must be a quoted number between 0 and 1")
        for exporter in ("otel", "zipkin"):
            if exporter in tracing and not (tracing[exporter] or {}).get("endpointAddress"):
                problems.append(f"{where}: tracing.{exporter}.endpointAddress is required")
        otel = tracing.get("otel") or {}
        if otel and otel.get("protocol") not in ("grpc", "http"):
            problems.append(f"{where}: tracing.otel.protocol must be grpc or http")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dapr-dir", type=pathlib.Path, required=True)
    parser.add_argument("--env-sample", type=pathlib.Path, required=True)
    parser.add_argument("--values", type=pathlib.Path, required=True)
    args = parser.parse_args()

    report = Report()
    defaults = env_defaults(args.env_sample)
    values = yaml.safe_load(args.values.read_text())
    pubsub_name = defaults.get("DAPR_PUBSUB_NAME")
    topics = {defaults[name] for name in ("TOPIC_TASK_EVENTS", "TOPIC_TASK_UPDATES", "TOPIC_REMINDERS") if name in defaults}
    deadline = float(defaults["DAPR_PUBLISH_TIMEOUT"]) if "DAPR_PUBLISH_TIMEOUT" in defaults else None

    # (file, local?, document) for every resource.
    resources = []
    parse_problems = []
    for path in sorted(args.dapr_dir.rglob("*.yaml")):
        local = "local" in path.relative_to(args.dapr_dir).parts[:-1]
        try:
            docs = [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
        except yaml.YAMLError as err:
            parse_problems.append(f"{path}: {err}")
            continue
        for doc in docs:
            where = f"{path.relative_to(args.dapr_dir)}: {doc.get('kind')}/{(doc.get('metadata') or {}).get('name')}"
            missing = [key for key in ("apiVersion", "kind") if not doc.get(key)]
            if not (doc.get("metadata") or {}).get("name"):
                missing.append("metadata.name")
            if missing:
                parse_problems.append(f"{where}: missing {', '.join(missing)}")
                continue
            resources.append((where, local, doc))
    report.check(f"dapr resources parse and are named ({len(resources)} in {args.dapr_dir})", parse_problems)

    def of_kind(kind: str, local: bool) -> list[tuple[str, dict]]:
        return [(where, doc) for where, is_local, doc in resources if doc["kind"] == kind and is_local == local]

    for local in (False, True):
        place = "local" if local else "kubernetes"
        components = {doc["metadata"]["name"]: doc for _, doc in of_kind("Component", local)}
        for where, doc in of_kind("Component", local):
            report.check(f"component {where}", check_component(doc, where, kubernetes=not local))
        for where, doc in of_kind("Configuration", local):
            report.check(f"configuration {where}", check_configuration(doc, where))
        for where, doc in of_kind("Resiliency", local):
            report.check(
                f"resiliency {where}",
                check_resiliency(doc, where, components, None if local else deadline, None if local else pubsub_name),
            )
        subscriptions = of_kind("Subscription", local)
        for where, doc in subscriptions:
            report.check(f"subscription {where}", check_subscription(doc, where, components, topics))
        names = [doc["metadata"]["name"] for _, doc in subscriptions]
        report.check(
            f"{place} subscription names are unique",
            [f"{name} is used twice" for name in sorted({n for n in names if names.count(n) > 1})],
        )
        known = {"Component", "Configuration", "Resiliency", "Subscription"}
        report.check(
            f"{place} resources are of known kinds",
            [f"{where}: kind {doc['kind']} is not checked" for where, is_local, doc in resources
             if is_local == local and doc["kind"] not in known],
        )
        if pubsub_name:
            report.check(
                f"{place} pubsub component is named DAPR_PUBSUB_NAME ({pubsub_name})",
                [] if components.get(pubsub_name, {}).get("spec", {}).get("type", "").startswith("pubsub.")
                else [f"no pubsub component named {pubsub_name} in {place} resources"],
            )

    # The chart's defaults must name what deploy/dapr defines.
    problems = []
    dapr_values = values.get("dapr", {})
    kube_components = {doc["metadata"]["name"]: doc for _, doc in of_kind("Component", False)}
    if dapr_values.get("pubsubName") != pubsub_name:
        problems.append(f"chart dapr.pubsubName {dapr_values.get('pubsubName')!r} != DAPR_PUBSUB_NAME {pubsub_name!r}")
    configurations = {doc["metadata"]["name"] for _, doc in of_kind("Configuration", False)}
    if dapr_values.get("config") and dapr_values["config"] not in configurations:
        problems.append(f"chart dapr.config {dapr_values['config']!r} is not a Configuration in deploy/dapr")
    app_id = dapr_values.get("appId")
    component = kube_components.get(pubsub_name or "", {})
    if component.get("scopes") and app_id not in component["scopes"]:
        problems.append(f"chart app id {app_id!r} is not in the scopes of {pubsub_name}")
    for where, doc in of_kind("Resiliency", False):
        if doc.get("scopes") and app_id not in doc["scopes"]:
            problems.append(f"{where}: chart app id {app_id!r} is not in its scopes")
    config_values = values.get("config", {}).get("topics", {})
    chart_topics = {config_values.get(key) for key in ("taskEvents", "taskUpdates", "reminders")}
    if chart_topics != topics:
        problems.append(f"chart topics {sorted(map(str, chart_topics))} != .env.sample topics {sorted(topics)}")
    report.check("chart defaults match deploy/dapr and .env.sample", problems)
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
