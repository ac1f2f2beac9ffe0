"""Reading rendered Kubernetes manifests the way the cluster would, for tests/test_k8s.py.

The tests must judge what ``kubectl apply -k`` would create, not the files as written, so
everything here works on ``kubectl kustomize`` output: selectors are matched, env is resolved
from ConfigMaps and Secrets, and a container's argv is built from its image's defaults by the
kubelet's rules.
"""

from __future__ import annotations

import base64
import functools
import json
import math
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml

from tests.support import ROOT

Obj = dict[str, Any]

K8S = ROOT / "k8s"
TREES = {
    "base": K8S / "base",
    "local": K8S / "overlays" / "local",
    "production": K8S / "overlays" / "production",
}
# Components an operator may add to a tree; ``render("base+ranking-coinmarketcap")`` renders
# the base as an overlay adding that component would.
COMPONENTS = {
    "monitoring": K8S / "components" / "monitoring",
    "ranking-coinmarketcap": K8S / "components" / "ranking-coinmarketcap",
}
KUBERNETES_VERSION = kubernetes_validate.latest_version()
# Every object must validate against the oldest Kubernetes k8s/README.md claims ("Kubernetes 1.32
# or newer") and the newest kubernetes-validate knows: API servers differ (those of 1.32 to 1.34
# require fields later ones default). Read from the README so that the claim and the tests cannot
# drift apart. kubernetes-validate 1.37 ships 1.25 to 1.37, so 1.32 itself is checked; were the
# claim outside what it ships, the closest version it has would stand in.
_CLAIMED = re.search(r"Kubernetes 1\.(\d+) or newer", (K8S / "README.md").read_text())
assert _CLAIMED, "k8s/README.md no longer says which Kubernetes it needs"
OLDEST_SUPPORTED_VERSION = min(
    kubernetes_validate.utils.all_versions(),
    key=lambda version: abs(int(version.split(".")[1]) - int(_CLAIMED[1])),
)
KUBERNETES_VERSIONS = (OLDEST_SUPPORTED_VERSION, KUBERNETES_VERSION)

# JSON schemas for custom resources, keyed "group/version/Kind": our own descriptions of the
# fields this project uses, not the operators' CRDs (tests/schemas/README.md). kubernetes-validate
# knows only the built-in kinds; a custom kind without an entry here is skipped with a reason
# rather than passed silently or failed for want of a schema.
SCHEMAS = ROOT / "tests" / "schemas"
CUSTOM_SCHEMAS: dict[str, Path] = {
    "monitoring.coreos.com/v1/ServiceMonitor": SCHEMAS / "servicemonitor.v1.json",
    "monitoring.coreos.com/v1/PrometheusRule": SCHEMAS / "prometheusrule.v1.json",
}


def kubectl() -> str | None:
    return shutil.which("kubectl")


@functools.cache
def render(tree: str) -> tuple[Obj, ...]:
    """``kubectl kustomize`` output; cached because every test reads the same few trees.

    ``tree`` is a name from TREES, optionally followed by ``+component`` names from COMPONENTS:
    those render through a throwaway overlay that names the tree as its resource and adds the
    components, as an operator's overlay would.
    """
    name, *components = tree.split("+")
    if not components:
        return _kustomize(TREES[name])
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        # kustomize refuses absolute paths to other kustomizations; relative ones may climb.
        overlay = {
            "apiVersion": "kustomize.config.k8s.io/v1beta1",
            "kind": "Kustomization",
            "resources": [os.path.relpath(TREES[name], root)],
            "components": [os.path.relpath(COMPONENTS[c], root) for c in components],
        }
        (root / "kustomization.yaml").write_text(yaml.safe_dump(overlay))
        return _kustomize(root)


def _kustomize(directory: Path) -> tuple[Obj, ...]:
    command = [kubectl() or "kubectl", "kustomize", str(directory)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    if result.returncode != 0:
        raise AssertionError(f"kubectl kustomize {directory} failed:\n{result.stderr}")
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def ident(obj: Obj) -> str:
    return f"{obj['kind']}/{obj['metadata']['name']}"


def find(objects: tuple[Obj, ...], kind: str, name: str) -> Obj:
    found = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]


def of_kind(objects: tuple[Obj, ...], kind: str) -> list[Obj]:
    return [o for o in objects if o["kind"] == kind]


# --- schema validation ---------------------------------------------------------------------


def is_custom(api_version: str) -> bool:
    """A CRD's group has a dot and is not one of Kubernetes' own ``*.k8s.io`` groups."""
    group = api_version.rpartition("/")[0]
    return "." in group and not group.endswith(".k8s.io")


# Keywords under which a schema describes a value (rather than adding a condition to one
# already described, as if/then/else, not and allOf do here).
_DESCRIBING = ("properties", "patternProperties", "$defs")
_DESCRIBING_ONE = ("items", "additionalProperties")
_DESCRIBING_MANY = ("prefixItems", "anyOf", "oneOf")


def open_objects(schema: Any, at: str = "#") -> list[str]:
    """JSON pointers of the objects in ``schema`` that name ``properties`` but accept others.

    A JSON schema allows unknown fields unless told otherwise, while the API server rejects
    them under ``kubectl apply --validate=strict``; a described object left open would let a
    misspelled field through, so the loader refuses such a schema rather than fixing it up.
    """
    if not isinstance(schema, dict):
        return []
    closed = any(schema.get(k) is False for k in ("additionalProperties", "unevaluatedProperties"))
    found = [at] if "properties" in schema and not closed else []
    for key in _DESCRIBING:
        for name, sub in schema.get(key, {}).items():
            found += open_objects(sub, f"{at}/{key}/{name}")
    for key in _DESCRIBING_ONE:
        found += open_objects(schema.get(key), f"{at}/{key}")
    for key in _DESCRIBING_MANY:
        for i, sub in enumerate(schema.get(key, [])):
            found += open_objects(sub, f"{at}/{key}/{i}")
    return found


@functools.cache
def custom_schema(path: Path) -> Obj:
    """A schema from tests/schemas, checked once against its metaschema and for strictness."""
    schema = json.loads(path.read_text())
    jsonschema.validators.validator_for(schema).check_schema(schema)
    if unclosed := open_objects(schema):
        raise ValueError(f"{path.name}: additionalProperties is not false at {unclosed}")
    return schema


def validate(obj: Obj, version: str = KUBERNETES_VERSION) -> str | None:
    """Raise if ``obj`` is invalid; return a skip reason for a custom kind without a schema.

    Built-in kinds go through kubernetes-validate in strict mode (unknown fields are errors, as
    with ``kubectl apply --validate=strict``); an unknown built-in kind raises too.
    """
    api_version, kind = obj["apiVersion"], obj["kind"]
    if is_custom(api_version):
        schema_path = CUSTOM_SCHEMAS.get(f"{api_version}/{kind}")
        if schema_path is None:
            return (
                f"{kind} ({api_version}) is a custom resource: kubernetes-validate has no schema "
                "for it; add one to tests/manifests.py CUSTOM_SCHEMAS to validate it"
            )
        jsonschema.validate(obj, custom_schema(schema_path))
        return None
    kubernetes_validate.validate(obj, version, strict=True)
    return None


# --- pod templates and containers ----------------------------------------------------------

WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob")


def pod_template(obj: Obj) -> Obj | None:
    """The pod template of a workload (a CronJob's is two levels down), else None."""
    if obj["kind"] == "CronJob":
        return obj["spec"]["jobTemplate"]["spec"]["template"]
    if obj["kind"] in WORKLOAD_KINDS:
        return obj["spec"]["template"]
    if obj["kind"] == "Pod":
        return obj
    return None


def workloads(objects: tuple[Obj, ...]) -> list[tuple[Obj, Obj]]:
    """(object, pod template) for every object that makes pods."""
    return [(o, t) for o in objects if (t := pod_template(o)) is not None]


def all_containers(pod_spec: Obj) -> list[Obj]:
    return [*pod_spec.get("initContainers", []), *pod_spec.get("containers", [])]


def security_context(pod_spec: Obj, container: Obj) -> Obj:
    """The settings the kubelet applies to a container: its own, else the pod's."""
    return {**pod_spec.get("securityContext", {}), **container.get("securityContext", {})}


def image_repository(image: str) -> str:
    """``host:5000/path/top-coins-api:dev@sha256:…`` → ``top-coins-api``."""
    name = image.split("@", 1)[0].rsplit("/", 1)[-1]
    return name.split(":", 1)[0]


def image_reference(image: str) -> tuple[str | None, str | None]:
    """(tag, digest) of an image reference; either may be None."""
    name, _, digest = image.partition("@")
    last = name.rsplit("/", 1)[-1]
    tag = last.split(":", 1)[1] if ":" in last else None
    return tag, digest or None


def container_port(pod_spec: Obj, port: int | str) -> int:
    """A numeric port, or the number behind a port name in any of the pod's containers."""
    if isinstance(port, int):
        return port
    for container in all_containers(pod_spec):
        for declared in container.get("ports", []):
            if declared.get("name") == port:
                return declared["containerPort"]
    raise AssertionError(f"no container declares a port named {port!r}")


def cpu_cores(quantity: str | int | float) -> float:
    text = str(quantity)
    return int(text[:-1]) / 1000 if text.endswith("m") else float(text)


def cpu_quota_cores(quantity: str | int | float) -> int:
    """Whole CPUs of a limit, rounded up, as gunicorn.conf.py reads the cgroup quota."""
    return max(1, math.ceil(cpu_cores(quantity)))


# --- what a container runs -----------------------------------------------------------------


@dataclass(frozen=True)
class ImageDefaults:
    """What an image's Dockerfile declares; a pod spec's command/args override these."""

    entrypoint: tuple[str, ...]
    cmd: tuple[str, ...]
    workdir: str


def expand(text: str, env: Mapping[str, str]) -> str:
    """The kubelet's expansion of command, args and env values: ``$$`` is ``$``, ``$(NAME)`` is
    NAME's value, or stays as written when NAME is not set."""
    return re.sub(
        r"\$(?:\$|\(([^)]*)\))",
        lambda m: "$" if m[1] is None else env.get(m[1], m[0]),
        text,
    )


def argv(container: Obj, image: ImageDefaults, env: Mapping[str, str]) -> list[str]:
    """The process the kubelet starts: ``command`` replaces ENTRYPOINT (and drops CMD),
    ``args`` replaces CMD."""
    if "command" in container:
        words = [*container["command"], *container.get("args", [])]
    elif "args" in container:
        words = [*image.entrypoint, *container["args"]]
    else:
        words = [*image.entrypoint, *image.cmd]
    return [expand(word, env) for word in words]


class ContainerWouldNotStart(AssertionError):
    """The kubelet would refuse this container (CreateContainerConfigError)."""


def secret_data(secret: Obj) -> dict[str, str]:
    data = {k: base64.b64decode(v).decode() for k, v in secret.get("data", {}).items()}
    return {**data, **secret.get("stringData", {})}


def resolve_env(
    container: Obj, objects: tuple[Obj, ...], secrets: Mapping[str, Mapping[str, str]]
) -> dict[str, str]:
    """The container's environment: ``envFrom`` first, then ``env`` on top, in order.

    ConfigMaps come from ``objects``; Secrets from ``secrets`` (name → data), because the
    values a test runs with are never the ones in the manifests.
    """
    configmaps = {o["metadata"]["name"]: o.get("data", {}) for o in of_kind(objects, "ConfigMap")}
    sources = {"configMap": configmaps, "secret": secrets}
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        ((kind, ref),) = ((k[: -len("Ref")], v) for k, v in source.items() if k.endswith("Ref"))
        data = sources[kind].get(ref["name"])
        if data is None:
            if ref.get("optional"):
                continue
            raise ContainerWouldNotStart(f"{kind} {ref['name']} does not exist")
        env.update({source.get("prefix", "") + k: v for k, v in data.items()})
    for var in container.get("env", []):
        if "value" in var or "valueFrom" not in var:
            env[var["name"]] = expand(var.get("value", ""), env)
            continue
        ((field, ref),) = var["valueFrom"].items()
        if field not in ("configMapKeyRef", "secretKeyRef"):
            raise NotImplementedError(f"env {var['name']}: valueFrom.{field} is not emulated")
        data = sources["configMap" if field == "configMapKeyRef" else "secret"].get(ref["name"])
        if data is None or ref["key"] not in data:
            if ref.get("optional"):
                continue
            raise ContainerWouldNotStart(f"env {var['name']}: {ref['name']}/{ref['key']} missing")
        env[var["name"]] = data[ref["key"]]
    return env


def secret_refs(pod_spec: Obj) -> set[tuple[str, str, bool]]:
    """(secret, key, optional) for every secretKeyRef of every container."""
    return {
        (ref["name"], ref["key"], bool(ref.get("optional")))
        for container in all_containers(pod_spec)
        for var in container.get("env", [])
        if (ref := var.get("valueFrom", {}).get("secretKeyRef"))
    }


# --- selectors and network policies --------------------------------------------------------


def selects(selector: Obj | None, labels: Mapping[str, str]) -> bool:
    """A Kubernetes label selector; ``{}`` selects everything."""
    selector = selector or {}
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        key, operator, values = expression["key"], expression["operator"], expression.get("values")
        present = key in labels
        if operator == "In" and not (present and labels[key] in values):
            return False
        if operator == "NotIn" and present and labels[key] in values:
            return False
        if operator == "Exists" and not present:
            return False
        if operator == "DoesNotExist" and present:
            return False
    return True


Port = tuple[int | str, str]  # (number, or "*" for any, protocol)


Rules = list[tuple[set[Port], list[Obj]]]


def allowed_ports(
    policies: list[Obj], pod_spec: Obj, labels: Mapping[str, str], direction: str
) -> Rules | None:
    """Ports a pod may use in ``direction`` ("Ingress"/"Egress") and the peers of each rule.

    Returns None when no policy isolates the pod in that direction (everything allowed), else
    a list of (ports, peers) per rule, ports as (number, protocol) with named ingress ports
    resolved against the pod's own containers.
    """
    rules: Rules = []
    isolated = False
    for policy in policies:
        spec = policy["spec"]
        if not selects(spec["podSelector"], labels):
            continue
        if direction not in spec.get("policyTypes", ["Ingress"]):
            continue
        isolated = True
        for rule in spec.get(direction.lower(), []):
            ports: set[Port] = set()
            for port in rule.get("ports", [{"port": "*", "protocol": "*"}]):
                number = port.get("port", "*")
                if direction == "Ingress" and isinstance(number, str) and number != "*":
                    number = container_port(pod_spec, number)
                ports.add((number, port.get("protocol", "TCP")))
            rules.append((ports, rule.get("from" if direction == "Ingress" else "to", [])))
    return rules if isolated else None


def peer_admits(peers: list[Obj], labels: Mapping[str, str]) -> bool:
    """Whether a rule's peers include a pod of this namespace with ``labels``."""
    if not peers:
        return True
    return any(
        "ipBlock" not in peer
        and "namespaceSelector" not in peer
        and selects(peer.get("podSelector"), labels)
        for peer in peers
    )


# --- CronJob schedules ---------------------------------------------------------------------


def _cron_field(text: str, low: int, high: int) -> set[int]:
    """One cron field: ``*``, ``n``, ``a-b``, each optionally ``/step``, comma-separated."""
    values: set[int] = set()
    for part in text.split(","):
        spread, _, step_text = part.partition("/")
        step = int(step_text) if step_text else 1
        if spread == "*":
            first, last = low, high
        elif "-" in spread:
            first, last = (int(v) for v in spread.split("-"))
        else:
            first = int(spread)
            last = high if step_text else first
        if not (low <= first <= last <= high and step >= 1):
            raise ValueError(f"cron field {text!r} is outside {low}-{high}")
        values |= set(range(first, last + 1, step))
    return values


def cron_minutes(schedule: str) -> list[int]:
    """Minutes of the hour a CronJob starts, for schedules that run every hour of every day
    (the only kind the manifests use); anything else raises rather than being misread."""
    fields = schedule.split()
    if len(fields) != 5 or fields[1:] != ["*"] * 4:
        raise ValueError(f"not an every-hour schedule: {schedule!r}")
    return sorted(_cron_field(fields[0], 0, 59))


def cron_gaps(schedule: str) -> list[int]:
    """Seconds between consecutive starts over one hour, wrapping into the next."""
    minutes = cron_minutes(schedule)
    following = [*minutes[1:], minutes[0] + 60]
    return [60 * (b - a) for a, b in zip(minutes, following, strict=True)]


def runs_per_month(schedule: str, days: int = 31) -> int:
    return len(cron_minutes(schedule)) * 24 * days
