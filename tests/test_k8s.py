"""The Kubernetes manifests (k8s/): they render and validate, they keep the pod security and
operability rules, and what they tell each container to run really works.

There is no cluster here, so the last part runs each container's command and environment, as
rendered, as a local process from the repository root (standing in for the image's /app) with
.venv's executables on PATH (standing in for the image's venv).
"""

from __future__ import annotations

import copy
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote, urlsplit, urlunsplit

import jsonschema
import kubernetes_validate
import pytest
import requests
import yaml
from sqlalchemy import create_engine, text

from fakeproviders import FakeProviders
from tests import frontend, manifests
from tests.dockerfile import Dockerfile
from tests.frontend import free_ports, listening
from tests.manifests import ImageDefaults, Obj, find, ident, of_kind, render, workloads
from tests.support import (
    CMC_KEY,
    COINDESK_KEY,
    CRYPTOCOMPARE_KEY,
    ROOT,
    gunicorn_setting,
    wait_for,
)
from topcoins.buildinfo import schema_head
from topcoins.settings import database_url

if manifests.kubectl() is None:
    pytest.skip(
        "kubectl is not on PATH: the manifests are rendered with `kubectl kustomize`",
        allow_module_level=True,
    )

# The three trees, and the base as an overlay adding components/ranking-coinmarketcap renders it.
WITH_CMC_RANKING = "base+ranking-coinmarketcap"
TREES = (*manifests.TREES, WITH_CMC_RANKING)
NAMESPACE = "top-coins"
PART_OF = {"app.kubernetes.io/part-of": "top-coins"}

# What the Dockerfile's targets declare (ENTRYPOINT, CMD, WORKDIR). A container
# without `command`/`args` runs these; test_image_defaults_match_the_dockerfiles keeps them true.
IMAGE_DEFAULTS = {
    "top-coins-api": ImageDefaults(
        entrypoint=(), cmd=("gunicorn", "-c", "gunicorn.conf.py"), workdir="/app"
    ),
    "top-coins-scraper": ImageDefaults(
        entrypoint=("python", "-m", "scrapers"), cmd=("--help",), workdir="/app"
    ),
    "top-coins-fakeproviders": ImageDefaults(
        entrypoint=("python", "-m", "fakeproviders"), cmd=("--host", "0.0.0.0"), workdir="/app"
    ),
}
TARGETS = {
    "top-coins-api": "api",
    "top-coins-scraper": "scraper",
    "top-coins-fakeproviders": "fakeproviders",
}
IMAGE_USER = 10001

# The volume types the restricted Pod Security Standard allows (beside each volume's name).
RESTRICTED_VOLUMES = {
    *("name", "configMap", "csi", "downwardAPI", "emptyDir", "ephemeral"),
    *("persistentVolumeClaim", "projected", "secret"),
}
# Containers allowed a writable root filesystem, and why.
WRITABLE_ROOT = {
    "StatefulSet/top-coins-postgres": (
        "local overlay only: the official postgres image writes its socket and lock files "
        "under /var/run/postgresql, outside the data volume"
    ),
}

# The ports each component may use, per the NetworkPolicies: (port, protocol).
DNS = {(53, "UDP"), (53, "TCP")}
POSTGRES = {(5432, "TCP")}
HTTPS = {(443, "TCP")}
FAKES = {(9101, "TCP"), (9102, "TCP"), (9103, "TCP")}
OTLP = {(4317, "TCP"), (4318, "TCP")}
PUSHGATEWAY = {(9091, "TCP")}
EGRESS = {
    "top-coins-api": DNS | POSTGRES | OTLP,
    "top-coins-ranks": DNS | POSTGRES | HTTPS | OTLP | PUSHGATEWAY,
    "top-coins-prices": DNS | POSTGRES | HTTPS | OTLP | PUSHGATEWAY,
    "top-coins-migrate": DNS | POSTGRES,
    "top-coins-postgres": set(),
    "fake-providers": set(),
}
LOCAL_EGRESS = {"top-coins-ranks": FAKES, "top-coins-prices": FAKES}
METRICS = {(9090, "TCP")}
INGRESS = {
    "top-coins-api": {(8080, "TCP")} | METRICS,
    "top-coins-postgres": POSTGRES,
    "fake-providers": FAKES,
}
# Who may connect to the in-cluster stand-ins of the local overlay.
INGRESS_PEERS = {
    "top-coins-postgres": {
        "top-coins-api",
        "top-coins-ranks",
        "top-coins-prices",
        "top-coins-migrate",
    },
    "fake-providers": {"top-coins-ranks", "top-coins-prices"},
}

# (schedule, seconds between runs). The default prices schedule is what CoinMarketCap's free
# plan pays for; ranking by CoinMarketCap costs credits too, so its component slows both.
CRONJOBS = {"top-coins-ranks": ("* * * * *", 60), "top-coins-prices": ("*/10 * * * *", 600)}
CMC_RANKING_CRONJOBS = {
    "top-coins-ranks": ("*/10 * * * *", 600),
    "top-coins-prices": ("1-59/10 * * * *", 600),
}
# CoinMarketCap's free plan, and what a month of the ranks job's daily id map costs at most
# (a credit per page of 5 000 assets, up to 3 pages a day; README "Credits").
FREE_PLAN_CREDITS = 10_000
ID_MAP_CREDITS_PER_MONTH = 3 * 31

# Per ranking provider: the Secret key and the variable the ranks container reads it as.
RANKING_KEYS = {
    "coindesk": ("coindesk-api-key", "COINDESK_API_KEY"),
    "cryptocompare": ("cryptocompare-api-key", "CRYPTOCOMPARE_API_KEY"),
    "coinmarketcap": ("coinmarketcap-api-key", "COINMARKETCAP_API_KEY"),
}
# Each fake provider's key flag, by the Secret key that must hold the same value.
FAKE_KEY_FLAGS = {
    "coindesk-api-key": "--coindesk-key",
    "cryptocompare-api-key": "--cryptocompare-key",
    "coinmarketcap-api-key": "--coinmarketcap-key",
}


def name_of(template: Obj) -> str:
    return template["metadata"]["labels"]["app.kubernetes.io/name"]


def api_pod(objects: tuple[Obj, ...]) -> tuple[Obj, Obj, Obj]:
    """(Deployment, pod spec, gunicorn's container) of the API."""
    deployment = find(objects, "Deployment", "top-coins-api")
    spec = deployment["spec"]["template"]["spec"]
    return deployment, spec, container_named(spec, "api")


def container_named(spec: Obj, name: str) -> Obj:
    (container,) = [c for c in spec["containers"] if c["name"] == name]
    return container


def job_pod(objects: tuple[Obj, ...], kind: str, name: str) -> tuple[Obj, Obj]:
    """(pod spec, its single container) of a CronJob or Job."""
    template = manifests.pod_template(find(objects, kind, name))
    assert template is not None
    (container,) = template["spec"]["containers"]
    return template["spec"], container


# --- 1. render and validate ----------------------------------------------------------------


@pytest.mark.parametrize("tree", TREES)
def test_renders_into_one_namespace_with_common_labels(tree):
    objects = render(tree)
    idents = [ident(o) for o in objects]
    assert len(idents) == len(set(idents)), "duplicate objects"
    find(objects, "Namespace", NAMESPACE)
    for obj in objects:
        if obj["kind"] != "Namespace":
            assert obj["metadata"].get("namespace") == NAMESPACE, ident(obj)
        assert PART_OF.items() <= obj["metadata"].get("labels", {}).items(), ident(obj)
    for obj, template in workloads(objects):
        labels = template["metadata"]["labels"]
        assert PART_OF.items() <= labels.items(), ident(obj)
        assert "app.kubernetes.io/name" in labels, ident(obj)


def validation_cases() -> Iterator[Any]:
    """(tree, object, version) for every object of every tree, on each of KUBERNETES_VERSIONS
    (our custom resource schemas know no versions); a tree that does not render is one case."""
    for tree in TREES:
        try:
            objects = render(tree)
        except AssertionError:
            yield pytest.param(tree, None, None, id=f"{tree}:render")
            continue
        for obj in objects:
            custom = manifests.is_custom(obj["apiVersion"])
            for version in (
                manifests.KUBERNETES_VERSIONS[-1:] if custom else manifests.KUBERNETES_VERSIONS
            ):
                yield pytest.param(tree, obj, version, id=f"{tree}:{ident(obj)}:{version}")


@pytest.mark.parametrize(("tree", "obj", "version"), list(validation_cases()))
def test_every_object_validates_strictly(tree, obj, version):
    """Strictly (an unknown field is an error, as with `kubectl apply --validate=strict`), against
    the oldest Kubernetes k8s/README.md supports and the newest kubernetes-validate knows."""
    if obj is None:
        render(tree)  # raises with kubectl's message
    try:
        reason = manifests.validate(obj, version)
    except (jsonschema.ValidationError, kubernetes_validate.SchemaNotFoundError) as exc:
        at = ".".join(str(part) for part in getattr(exc, "path", ())) or "(top)"
        pytest.fail(f"{tree}:{ident(obj)} on Kubernetes {version}: {at}: {exc.message}", False)
    if reason is not None:
        pytest.skip(reason)


def test_validation_is_strict_per_version_and_skips_only_custom_resources():
    deployment = find(render("base"), "Deployment", "top-coins-api")
    typo = {**deployment, "spec": {**deployment["spec"], "replica": 2}}
    misspelled_kind = {**deployment, "kind": "Deploymnet"}
    for version in manifests.KUBERNETES_VERSIONS:
        with pytest.raises(kubernetes_validate.ValidationError):
            manifests.validate(typo, version)
        with pytest.raises(kubernetes_validate.SchemaNotFoundError):
            manifests.validate(misspelled_kind, version)
    # kubernetes#131512: the API servers of 1.32 to 1.34 require `status` in a Job's
    # podFailurePolicy.onPodConditions, later ones default it; the newest schema alone passes it.
    cronjob = copy.deepcopy(find(render("base"), "CronJob", "top-coins-ranks"))
    for rule in cronjob["spec"]["jobTemplate"]["spec"]["podFailurePolicy"]["rules"]:
        for condition in rule.get("onPodConditions", []):
            del condition["status"]
    assert manifests.validate(cronjob, manifests.KUBERNETES_VERSION) is None
    with pytest.raises(kubernetes_validate.ValidationError, match="status"):
        manifests.validate(cronjob, manifests.OLDEST_SUPPORTED_VERSION)
    # A custom kind with no schema in CUSTOM_SCHEMAS is skipped, saying how to validate it.
    pod_monitor = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PodMonitor",
        "metadata": {"name": "x"},
    }
    assert "CUSTOM_SCHEMAS" in (manifests.validate(pod_monitor) or "")


# --- 2. policy -----------------------------------------------------------------------------


@pytest.mark.parametrize("tree", TREES)
def test_every_pod_is_locked_down_and_sized(tree):
    """First the restricted Pod Security Standard: the namespace's label has the API server
    refuse a pod that breaks it, at rollout, long after `kubectl apply` took its Deployment, and
    admission runs only in an API server, so no tool checks it here. Stricter where we are:
    seccomp RuntimeDefault only, no capability added back. Then our own rules."""
    objects = render(tree)
    accounts = {a["metadata"]["name"]: a for a in of_kind(objects, "ServiceAccount")}
    problems = [
        f"{tree}:{ident(a)}: automountServiceAccountToken is not false"
        for a in accounts.values()
        if a.get("automountServiceAccountToken") is not False
    ]
    for obj, template in workloads(objects):
        spec, where = template["spec"], f"{tree}:{ident(obj)}"
        containers = manifests.all_containers(spec)
        # restricted, for the pod
        if any(spec.get(f) for f in ("hostNetwork", "hostPID", "hostIPC")):
            problems.append(f"{where}: uses a host namespace")
        if any(p.get("hostPort") for c in containers for p in c.get("ports", [])):
            problems.append(f"{where}: binds a host port")
        if forbidden := {k for v in spec.get("volumes", []) for k in v} - RESTRICTED_VOLUMES:
            problems.append(f"{where}: volumes of type {sorted(forbidden)}")
        # ...which a container's own settings do not make up for
        pod = spec.get("securityContext", {})
        if (
            pod.get("runAsNonRoot") is False
            or pod.get("runAsUser") == 0
            or (pod.get("seccompProfile") or {}).get("type", "RuntimeDefault") != "RuntimeDefault"
        ):
            problems.append(f"{where}: the pod's securityContext is not restricted: {pod}")
        # ours
        if spec.get("automountServiceAccountToken") is not False:
            problems.append(f"{where}: automountServiceAccountToken is not false")
        if spec.get("serviceAccountName") not in (None, *accounts):
            problems.append(f"{where}: ServiceAccount {spec['serviceAccountName']} is missing")
        if pod.get("fsGroup") is None:
            problems.append(f"{where}: no fsGroup")
        scratch = {v["name"] for v in spec.get("volumes", []) if "emptyDir" in v}
        for container in containers:
            at = f"{where} container {container['name']}"
            context = manifests.security_context(spec, container)
            capabilities = context.get("capabilities", {})
            # restricted, for each container (its securityContext over the pod's)
            if not (
                context.get("runAsNonRoot") is True
                and context.get("allowPrivilegeEscalation") is False
                and not context.get("privileged")
                and "ALL" in capabilities.get("drop", [])
                and not capabilities.get("add")
                and (context.get("seccompProfile") or {}).get("type") == "RuntimeDefault"
            ):
                problems.append(f"{at}: not restricted: {context}")
            # ours
            user = (context.get("runAsUser"), context.get("runAsGroup"))
            if not user[0]:
                problems.append(f"{at}: no non-zero runAsUser")
            if (
                context.get("readOnlyRootFilesystem") is not True
                and ident(obj) not in WRITABLE_ROOT
            ):
                problems.append(f"{at}: root filesystem is writable")
            if manifests.image_repository(container["image"]) in IMAGE_DEFAULTS:
                if user != (IMAGE_USER, IMAGE_USER):
                    problems.append(f"{at}: not the image's user and group {IMAGE_USER}")
                mounts = container.get("volumeMounts", [])
                if not any(m["mountPath"] == "/tmp" and m["name"] in scratch for m in mounts):
                    problems.append(f"{at}: no emptyDir at /tmp, where our images write")
            resources = container.get("resources", {})
            for kind in ("requests", "limits"):
                if missing := {"cpu", "memory"} - set(resources.get(kind, {})):
                    problems.append(f"{at}: no {sorted(missing)} {kind}")
            tag, digest = manifests.image_reference(container["image"])
            if digest is None and tag in (None, "latest"):
                problems.append(f"{at}: image {container['image']} is latest or untagged")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("tree", TREES)
def test_api_rolls_out_safely_and_probes_the_right_paths(tree, monkeypatch):
    objects = render(tree)
    deployment, spec, container = api_pod(objects)
    nginx = container_named(spec, "nginx")
    assert deployment["spec"]["replicas"] >= 2
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    # gunicorn listens on loopback only; nginx declares the pod's ports and passes to it.
    assert "ports" not in container
    env = manifests.resolve_env(container, objects, {"top-coins": {"api-database-url": "x"}})
    assert env["BIND"] == "127.0.0.1:8000"
    assert env["DATABASE_URL"] == "x", "the API reads api-database-url, not database-url"
    ports = {p["name"]: p["containerPort"] for p in nginx["ports"]}
    assert ports == {"http": 8080, "metrics": 9090}
    nginx_env = manifests.resolve_env(nginx, objects, {})
    assert nginx_env["NGINX_PORT"] == str(ports["http"])
    assert nginx_env["NGINX_METRICS_PORT"] == str(ports["metrics"])
    assert nginx_env["NGINX_UPSTREAM"] == env["BIND"]
    # The kubelet reaches gunicorn through nginx's public port, by number: a probe's port name
    # would be looked up in the api container, which declares none.
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": 8080}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": 8080}
    assert container["startupProbe"]["httpGet"] == {"path": "/healthz", "port": 8080}
    for probe in ("readinessProbe", "livenessProbe"):
        assert nginx[probe]["tcpSocket"]["port"] in ("http", 8080)
    # Stopping: nginx stops passing requests on (preStop, then SIGQUIT) before gunicorn gets
    # SIGTERM, and gunicorn's graceful timeout still fits the grace period.
    monkeypatch.delenv("GUNICORN_GRACEFUL_TIMEOUT", raising=False)
    assert "GUNICORN_GRACEFUL_TIMEOUT" not in env
    graceful = gunicorn_setting("graceful_timeout")
    pre_stop = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    nginx_pre_stop = nginx["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert 0 < nginx_pre_stop < pre_stop
    assert spec["terminationGracePeriodSeconds"] > graceful + pre_stop
    # Each container writes to a scratch volume of its own.
    volumes = {v["name"]: v for v in spec["volumes"]}
    ((tmp, mount),) = [(m["name"], m["mountPath"]) for m in container["volumeMounts"]]
    assert mount == "/tmp"
    assert "emptyDir" in volumes[tmp]
    nginx_mounts = {m["mountPath"]: m for m in nginx["volumeMounts"]}
    nginx_tmp = nginx_mounts[nginx_env["NGINX_TEMP"]]
    assert "emptyDir" in volumes[nginx_tmp["name"]]
    assert nginx_tmp["name"] != tmp
    (spread,) = spec["topologySpreadConstraints"]
    assert spread["topologyKey"] == "kubernetes.io/hostname"
    assert manifests.selects(
        spread["labelSelector"], deployment["spec"]["template"]["metadata"]["labels"]
    )

    service = find(objects, "Service", "top-coins-api")
    assert service["spec"]["type"] == "ClusterIP"
    service_ports = {p["name"]: (p["port"], p["targetPort"]) for p in service["spec"]["ports"]}
    assert service_ports == {"http": (80, "http"), "metrics": (9090, "metrics")}
    hpa = find(objects, "HorizontalPodAutoscaler", "top-coins-api")
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "top-coins-api",
    }
    assert 2 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    assert hpa["spec"]["minReplicas"] <= deployment["spec"]["replicas"]
    (metric,) = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu"
    assert metric["resource"]["target"]["type"] == "Utilization"
    pdb = find(objects, "PodDisruptionBudget", "top-coins-api")
    assert manifests.selects(
        pdb["spec"]["selector"], deployment["spec"]["template"]["metadata"]["labels"]
    )


def nginx_template_mount(spec: Obj, nginx: Obj, objects: tuple[Obj, ...]) -> tuple[str, Obj]:
    """(the template's path as NGINX_TEMPLATE names it, the ConfigMap mounted there)."""
    path = manifests.resolve_env(nginx, objects, {})["NGINX_TEMPLATE"]
    directory, _, key = path.rpartition("/")
    (mount,) = [m for m in nginx["volumeMounts"] if m["mountPath"] == directory]
    (volume,) = [v for v in spec["volumes"] if v["name"] == mount["name"]]
    configmap = find(objects, "ConfigMap", volume["configMap"]["name"])
    assert key in configmap["data"], f"{path}: no such key in the ConfigMap"
    return path, configmap


@pytest.mark.parametrize("tree", TREES)
def test_api_pod_runs_nginx_with_the_projects_one_template(tree):
    objects = render(tree)
    _, spec, _ = api_pod(objects)
    nginx = container_named(spec, "nginx")
    path, configmap = nginx_template_mount(spec, nginx, objects)
    # The file bin/local and tests/test_nginx.py run, byte for byte, through kustomize's
    # configMapGenerator (a hashed name: a change rolls the pods).
    assert configmap["data"][path.rpartition("/")[2]] == frontend.TEMPLATE.read_text()
    assert configmap["metadata"]["name"].startswith("top-coins-api-nginx-")
    # Rendered with exactly the template's variables, each of which the container sets.
    shell, flag, script = nginx["command"]
    assert (shell, flag) == ("/bin/sh", "-c")
    assert f"envsubst '{frontend.envsubst_list()}'" in script
    assert script.rstrip().endswith(
        'exec nginx -c "$NGINX_TEMP/nginx.conf" '
        + " ".join(frontend.RUN_FLAGS[:2])
        + " -g 'daemon off;'"
    )
    env = manifests.resolve_env(nginx, objects, {})
    assert set(frontend.variables()) <= set(env)
    assert manifests.image_repository(nginx["image"]) == "nginx-unprivileged"
    base_tag, _ = manifests.image_reference(
        container_named(api_pod(render("base"))[1], "nginx")["image"]
    )
    tag, digest = manifests.image_reference(nginx["image"])
    assert tag == base_tag, "overlays pin the tag the base names"
    assert tree != "production" or digest is not None


def test_production_runs_more_api_pods_behind_a_tls_ingress():
    objects = render("production")
    deployment, _, _ = api_pod(objects)
    hpa = find(objects, "HorizontalPodAutoscaler", "top-coins-api")
    assert deployment["spec"]["replicas"] == 4
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (4, 12)
    ingress = find(objects, "Ingress", "top-coins-api")
    assert ingress["spec"]["ingressClassName"] == "nginx"
    (tls,) = ingress["spec"]["tls"]
    (rule,) = ingress["spec"]["rules"]
    assert tls["hosts"] == [rule["host"]]
    assert tls["secretName"]
    (path,) = rule["http"]["paths"]
    assert path["backend"]["service"] == {"name": "top-coins-api", "port": {"name": "http"}}


def schedules(tree: str) -> dict[str, tuple[str, int]]:
    return CMC_RANKING_CRONJOBS if tree == WITH_CMC_RANKING else CRONJOBS


@pytest.mark.parametrize("tree", TREES)
def test_scraper_cronjobs_never_overlap_and_clean_up(tree):
    objects = render(tree)
    config = find(objects, "ConfigMap", "top-coins-config")["data"]
    scrape_deadline = float(config["SCRAPE_DEADLINE_SECONDS"])
    assert {c["metadata"]["name"] for c in of_kind(objects, "CronJob")} == set(CRONJOBS)
    for name, (schedule, interval) in schedules(tree).items():
        cronjob = find(objects, "CronJob", name)
        spec = cronjob["spec"]
        assert spec["schedule"] == schedule
        assert spec["timeZone"] == "Etc/UTC"
        assert spec["concurrencyPolicy"] == "Forbid"
        assert 0 < spec["startingDeadlineSeconds"] < interval
        assert spec["successfulJobsHistoryLimit"] >= 1
        assert spec["failedJobsHistoryLimit"] >= 1
        job = spec["jobTemplate"]["spec"]
        assert job["activeDeadlineSeconds"] >= 2 * scrape_deadline, "comfortably above"
        assert job["backoffLimit"] >= 0
        assert job["ttlSecondsAfterFinished"] > 0
        pod, container = job_pod(objects, "CronJob", name)
        assert pod["restartPolicy"] == "Never"
        assert manifests.image_repository(container["image"]) == "top-coins-scraper"
        assert "command" not in container, "the image's ENTRYPOINT runs the scrapers"
        assert container["args"] == [name.removeprefix("top-coins-")]
        assert {"configMapRef": {"name": "top-coins-config"}} in container["envFrom"]
        assert ("top-coins", "database-url", False) in manifests.secret_refs(pod)
        assert set(manifests.cron_gaps(schedule)) == {interval}, "evenly spaced runs"
        # Exit 2 is a bad setting (a missing key, say): retrying cannot help, so the Job fails
        # at once. A drained node is nobody's failure.
        rules = job["podFailurePolicy"]["rules"]
        assert rules[0] == {
            "action": "FailJob",
            "onExitCodes": {"containerName": container["name"], "operator": "In", "values": [2]},
        }
        disruption = {"type": "DisruptionTarget", "status": "True"}
        assert {"action": "Ignore", "onPodConditions": [disruption]} in rules


def monthly_credits(config: dict[str, str], runs: dict[str, int]) -> int:
    """CoinMarketCap credits of a 31-day month, as prices-cronjob.yaml and the component
    ranking-coinmarketcap reckon them, from the runs each CronJob makes."""
    size = int(config["RANKING_SIZE"])
    if config["RANKING_PROVIDER"] == "coinmarketcap":
        # 1 credit per 200 coins ranked, prices included; the price runs only copy them.
        return runs["top-coins-ranks"] * -(-size // 200)
    # 1 credit per 100 coins priced by id, plus the ranks job's daily id map.
    return runs["top-coins-prices"] * -(-size // 100) + ID_MAP_CREDITS_PER_MONTH


@pytest.mark.parametrize(("tree", "expected"), [("production", 9021), (WITH_CMC_RANKING, 4464)])
def test_default_schedules_fit_coinmarketcaps_free_plan(tree, expected):
    objects = render(tree)
    config = find(objects, "ConfigMap", "top-coins-config")["data"]
    budget = FREE_PLAN_CREDITS - int(config["COINMARKETCAP_CREDIT_FLOOR"])
    runs = {
        name: manifests.runs_per_month(find(objects, "CronJob", name)["spec"]["schedule"])
        for name in CRONJOBS
    }
    assert monthly_credits(config, runs) == expected
    assert expected <= budget
    if tree == "production":
        # Prices twice as often (every 5 minutes) would run out mid-month.
        faster = {**runs, "top-coins-prices": 2 * runs["top-coins-prices"]}
        assert monthly_credits(config, faster) > FREE_PLAN_CREDITS


def test_ranking_coinmarketcap_component_changes_only_the_provider_and_schedules():
    component = yaml.safe_load(
        (manifests.COMPONENTS["ranking-coinmarketcap"] / "kustomization.yaml").read_text()
    )
    assert component["kind"] == "Component"
    base, changed = render("base"), render(WITH_CMC_RANKING)
    assert [ident(o) for o in base] == [ident(o) for o in changed]
    config = find(changed, "ConfigMap", "top-coins-config")["data"]
    assert config["RANKING_PROVIDER"] == "coinmarketcap"
    assert find(base, "ConfigMap", "top-coins-config")["data"]["RANKING_PROVIDER"] == "coindesk"
    for name, (schedule, _) in CMC_RANKING_CRONJOBS.items():
        assert find(changed, "CronJob", name)["spec"]["schedule"] == schedule
    # Prices one minute after each ranking, to copy the quotes that ranking stored.
    ranks = manifests.cron_minutes(CMC_RANKING_CRONJOBS["top-coins-ranks"][0])
    prices = manifests.cron_minutes(CMC_RANKING_CRONJOBS["top-coins-prices"][0])
    assert prices == [minute + 1 for minute in ranks]
    # Nothing else differs.
    for before, after in zip(base, changed, strict=True):
        after = copy.deepcopy(after)
        if after["kind"] == "ConfigMap" and after["metadata"]["name"] == "top-coins-config":
            after["data"]["RANKING_PROVIDER"] = before["data"]["RANKING_PROVIDER"]
        if after["kind"] == "CronJob":
            after["spec"]["schedule"] = before["spec"]["schedule"]
        assert after == before, ident(before)
    # The operator opts in; no overlay does by default.
    for tree in manifests.TREES:
        kustomization = yaml.safe_load((manifests.TREES[tree] / "kustomization.yaml").read_text())
        assert not any("ranking-coinmarketcap" in c for c in kustomization.get("components", []))


@pytest.mark.parametrize("tree", TREES)
def test_scrapers_get_the_provider_keys_they_may_need(tree):
    """The ranks job may read every ranking provider's key, each optional so that the Secret
    needs only the chosen one; prices always need CoinMarketCap's."""
    objects = render(tree)
    ranks, ranks_container = job_pod(objects, "CronJob", "top-coins-ranks")
    prices, _ = job_pod(objects, "CronJob", "top-coins-prices")
    assert manifests.secret_refs(ranks) == {
        ("top-coins", "database-url", False),
        *(("top-coins", key, True) for key, _ in RANKING_KEYS.values()),
    }
    assert manifests.secret_refs(prices) == {
        ("top-coins", "database-url", False),
        ("top-coins", "coinmarketcap-api-key", False),
    }
    for provider, (key, variable) in RANKING_KEYS.items():
        # The container starts with only the chosen provider's key in the Secret.
        secret = {"top-coins": {"database-url": "x", key: f"{provider}-key"}}
        env = manifests.resolve_env(ranks_container, objects, secret)
        assert env[variable] == f"{provider}-key"
        others = {v for _, v in RANKING_KEYS.values()} - {variable}
        assert not others & set(env), provider


@pytest.mark.parametrize("tree", TREES)
def test_migration_job_runs_alembic_and_stays_inspectable(tree):
    objects = render(tree)
    job = find(objects, "Job", "top-coins-migrate")
    assert job["spec"]["backoffLimit"] >= 1
    assert job["spec"].get("ttlSecondsAfterFinished", 86400) >= 86400
    pod, container = job_pod(objects, "Job", "top-coins-migrate")
    assert pod["restartPolicy"] == "Never"
    assert manifests.image_repository(container["image"]) == "top-coins-scraper"
    assert container["command"] == ["alembic", "upgrade", "head"]
    assert manifests.secret_refs(pod) == {("top-coins", "database-url", False)}


@pytest.mark.parametrize("tree", TREES)
def test_only_the_local_overlay_carries_a_secret_and_it_has_every_key(tree):
    objects = render(tree)
    secrets = of_kind(objects, "Secret")
    refs = {ref for _, t in workloads(objects) for ref in manifests.secret_refs(t["spec"])}
    assert {name for name, _, _ in refs} == {"top-coins"}
    if tree != "local":
        assert secrets == [], "real secrets are created out of band, never committed"
        return
    (secret,) = secrets
    assert secret["metadata"]["name"] == "top-coins"
    data = manifests.secret_data(secret)
    missing = {key for _, key, optional in refs if not optional and key not in data}
    assert not missing
    fakes = find(objects, "Deployment", "fake-providers")["spec"]["template"]["spec"]
    (command,) = (c["command"] for c in fakes["containers"])
    # Every provider's key, so that any RANKING_PROVIDER works locally, each the one its fake
    # accepts.
    for key, flag in FAKE_KEY_FLAGS.items():
        assert data[key] == command[command.index(flag) + 1], f"{key}: the fake's {flag}"


def test_production_images_are_pinned_by_digest_and_local_ones_are_dev():
    for _, template in workloads(render("production")):
        for container in manifests.all_containers(template["spec"]):
            _, digest = manifests.image_reference(container["image"])
            assert digest is not None, container["image"]
            assert digest.startswith("sha256:")
            assert len(digest) == len("sha256:") + 64
    for _, template in workloads(render("local")):
        for container in manifests.all_containers(template["spec"]):
            if manifests.image_repository(container["image"]) in IMAGE_DEFAULTS:
                assert manifests.image_reference(container["image"]) == ("dev", None)


@pytest.mark.parametrize("tree", TREES)
def test_services_reach_declared_container_ports(tree):
    objects = render(tree)
    for service in of_kind(objects, "Service"):
        pods = [
            t["spec"]
            for _, t in workloads(objects)
            if manifests.selects(
                {"matchLabels": service["spec"]["selector"]}, t["metadata"]["labels"]
            )
        ]
        assert pods, f"{ident(service)} selects no pods"
        for port in service["spec"]["ports"]:
            for pod in pods:
                manifests.container_port(pod, port["targetPort"])


@pytest.mark.parametrize("tree", TREES)
def test_network_policies_allow_only_what_each_component_needs(tree):
    objects = render(tree)
    policies = of_kind(objects, "NetworkPolicy")
    deny = find(objects, "NetworkPolicy", "default-deny")["spec"]
    assert deny["podSelector"] == {}
    assert set(deny["policyTypes"]) == {"Ingress", "Egress"}
    assert "ingress" not in deny
    assert "egress" not in deny
    pods = {name_of(t): t for _, t in workloads(objects)}
    for name, template in pods.items():
        labels, spec = template["metadata"]["labels"], template["spec"]
        egress = manifests.allowed_ports(policies, spec, labels, "Egress")
        ingress = manifests.allowed_ports(policies, spec, labels, "Ingress")
        assert egress is not None
        assert ingress is not None
        extra = LOCAL_EGRESS.get(name, set()) if tree == "local" else set()
        assert set().union(*(ports for ports, _ in egress)) == EGRESS[name] | extra, name
        assert set().union(*(ports for ports, _ in ingress)) == INGRESS.get(name, set()), name
        for ports, peers in egress:
            if ports & POSTGRES and tree == "production":
                assert peers, f"{name}: PostgreSQL egress must be narrowed to the database"
                assert all("ipBlock" in p for p in peers)
        if name == "top-coins-api":
            # The public port from anywhere, /metrics only from Prometheus' namespace.
            peers = {frozenset(ports): rule_peers for ports, rule_peers in ingress}
            assert peers[frozenset({(8080, "TCP")})] == []
            assert peers[frozenset(METRICS)] == [
                {
                    "namespaceSelector": {
                        "matchLabels": {"kubernetes.io/metadata.name": "monitoring"}
                    }
                }
            ]
            assert not any(
                manifests.peer_admits(peers[frozenset(METRICS)], t["metadata"]["labels"])
                for t in pods.values()
            ), "no pod of the namespace reaches /metrics"
        if name in INGRESS_PEERS:
            callers = {
                caller
                for caller, t in pods.items()
                if caller != name
                and any(
                    manifests.peer_admits(peers, t["metadata"]["labels"]) for _, peers in ingress
                )
            }
            assert callers == INGRESS_PEERS[name]


def dockerfile_defaults(target: str) -> ImageDefaults:
    """ENTRYPOINT, CMD and WORKDIR of a Dockerfile target, as its image declares them."""
    final = Dockerfile.load(ROOT / "Dockerfile").stage(target)
    workdir = final.last("WORKDIR")
    assert workdir is not None, f"Dockerfile: no WORKDIR in the {target} target"
    return ImageDefaults(
        entrypoint=tuple(final.entrypoint), cmd=tuple(final.cmd), workdir=workdir.arguments.strip()
    )


@pytest.mark.parametrize("image", sorted(IMAGE_DEFAULTS))
def test_image_defaults_match_the_dockerfiles(image):
    assert dockerfile_defaults(TARGETS[image]) == IMAGE_DEFAULTS[image]


# --- 3. what the manifests say is what runs --------------------------------------------------

VENV_BIN = Path(sys.executable).parent


def local_process(
    container: Obj, objects: tuple[Obj, ...], secrets: dict[str, dict[str, str]], **overrides: str
) -> tuple[list[str], dict[str, str]]:
    """(argv, env) to run a rendered container here: its env resolved, then ``overrides``.

    The image's executables are .venv's (its PATH), the working directory is the repository
    (its /app).
    """
    image = IMAGE_DEFAULTS[manifests.image_repository(container["image"])]
    assert container.get("workingDir", image.workdir) == "/app", "the code lives in /app"
    env = container_env(container, objects, secrets, VENV_BIN, overrides)
    command = manifests.argv(container, image, env)
    executable = shutil.which(command[0], path=env["PATH"])
    assert executable is not None
    assert Path(executable).parent == VENV_BIN, f"{command[0]} must come from .venv: {executable}"
    return [executable, *command[1:]], env


def container_env(
    container: Obj, objects: tuple[Obj, ...], secrets: Any, path: Path, overrides: dict[str, str]
) -> dict[str, str]:
    """The container's environment, then ``overrides`` of variables it gets, ``path`` first on
    PATH (the image's executables)."""
    env = manifests.resolve_env(container, objects, secrets)
    assert set(overrides) <= set(env), f"overrides of {set(overrides) - set(env)}, not in env"
    return {**env, **overrides, "PATH": f"{path}{os.pathsep}{os.environ.get('PATH', '')}"}


def run(command: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=90, check=False
    )


class Container:
    """A long-running container process; its output is kept for failure messages."""

    def __init__(self, process: subprocess.Popen[bytes], log: IO[bytes]) -> None:
        self.process = process
        self.log = log
        self.exit_code: int | None = None
        self.final_output = ""

    def output(self) -> str:
        if self.log.closed:
            return self.final_output
        self.log.seek(0)
        return self.log.read().decode(errors="replace")[-4000:]


@contextmanager
def running(
    command: list[str], env: dict[str, str], grace: float, stop_signal: int = signal.SIGTERM
) -> Iterator[Container]:
    """Start ``command``; at the end send the image's stop signal (SIGTERM unless it names
    another) as the kubelet does and give it ``grace`` seconds, recording the exit code (None:
    it had to be killed)."""
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        container = Container(process, log)
        try:
            yield container
        finally:
            process.send_signal(stop_signal)
            try:
                container.exit_code = process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            container.final_output = container.output()


def query(db_url: str, sql: str) -> list[tuple[Any, ...]]:
    engine = create_engine(database_url({"DATABASE_URL": db_url}))
    try:
        with engine.connect() as connection:
            return [tuple(row) for row in connection.execute(text(sql))]
    finally:
        engine.dispose()


def runs(db_url: str) -> list[tuple[Any, ...]]:
    """(kind, source, status, item_count, credit_count) of every run, oldest first."""
    columns = "kind, source, status, item_count, credit_count"
    return query(db_url, f"SELECT {columns} FROM scrape_runs ORDER BY id")


def served(db_url: str) -> tuple[Any, ...]:
    """(coins, priced coins) in the merged list the API serves."""
    return query(db_url, "SELECT count(*), count(price_usd) FROM top_coins")[0]


# How a tree picks each ranking provider: the base's ConfigMap says coindesk, the component says
# coinmarketcap, and cryptocompare takes an operator's edit of the ConfigMap (here an override).
RANKING_TREES = {
    "coindesk": ("base", {}),
    "cryptocompare": ("base", {"RANKING_PROVIDER": "cryptocompare"}),
    "coinmarketcap": (WITH_CMC_RANKING, {}),
}


def fake_secrets(db_url: str) -> dict[str, dict[str, str]]:
    """The Secret `top-coins` with every key, values the loopback fakes accept."""
    return {
        "top-coins": {
            "database-url": db_url,
            "api-database-url": db_url,
            "coindesk-api-key": COINDESK_KEY,
            "cryptocompare-api-key": CRYPTOCOMPARE_KEY,
            "coinmarketcap-api-key": CMC_KEY,
        }
    }


def sent_keys(providers: FakeProviders) -> set[tuple[str, str | None]]:
    """(provider, key) of every request the fakes got: each provider's own header."""
    header = {"coinmarketcap": "x-cmc_pro_api_key"}
    return {
        (r.provider, r.headers.get(header.get(r.provider, "authorization")))
        for r in providers.requests
    }


@pytest.mark.parametrize("provider", sorted(RANKING_TREES))
def test_scraper_cronjob_containers_store_snapshots(provider, db, db_url, providers):
    tree, edits = RANKING_TREES[provider]
    objects = render(tree)
    config = find(objects, "ConfigMap", "top-coins-config")["data"]
    assert edits.get("RANKING_PROVIDER", config["RANKING_PROVIDER"]) == provider
    # The ConfigMap's real provider hosts do not resolve here: point them, and only them,
    # at the loopback fakes.
    fakes = {
        "COINDESK_BASE_URL": providers.coindesk_url,
        "CRYPTOCOMPARE_BASE_URL": providers.cryptocompare_url,
        "COINMARKETCAP_BASE_URL": providers.coinmarketcap_url,
    }
    ranking_size = int(config["RANKING_SIZE"])
    for name in ("top-coins-ranks", "top-coins-prices"):
        _, container = job_pod(objects, "CronJob", name)
        command, container_env = local_process(
            container, objects, fake_secrets(db_url), **fakes, **edits
        )
        assert command[1:] == ["-m", "scrapers", name.removeprefix("top-coins-")]
        result = run(command, container_env)
        assert result.returncode == 0, result.stdout + result.stderr
    (ranking, prices) = runs(db_url)
    assert ranking[:4] == ("ranking", provider, "succeeded", ranking_size)
    assert prices[:3] == ("prices", "coinmarketcap", "succeeded")
    ranked, priced = served(db_url)
    assert ranked == ranking_size
    assert priced >= ranking_size - 5, "nearly every ranked coin has a price"
    if provider == "coinmarketcap":
        # One listing call ranked and priced; the price run copied its quotes for nothing.
        assert (ranking[4], prices[4]) == (-(-ranking_size // 200), 0)
    else:
        # Priced by id, a credit per 100 coins (prices-cronjob.yaml's arithmetic).
        assert prices[4] == -(-ranking_size // 100)
    # Every provider asked got its own key, and only the chosen ranking provider was asked.
    expected = {("coinmarketcap", CMC_KEY)}
    if provider == "coindesk":
        expected.add(("coindesk", f"Apikey {COINDESK_KEY}"))
    if provider == "cryptocompare":
        expected.add(("cryptocompare", f"Apikey {CRYPTOCOMPARE_KEY}"))
    assert sent_keys(providers) == expected


@pytest.mark.parametrize("provider", sorted(RANKING_TREES))
def test_ranks_container_without_its_providers_key_fails_the_job_at_once(provider):
    tree, edits = RANKING_TREES[provider]
    objects = render(tree)
    key, variable = RANKING_KEYS[provider]
    # No database is reached: the settings are checked first.
    secrets = fake_secrets("postgresql://nobody@127.0.0.1:9/none")
    del secrets["top-coins"][key]
    _, container = job_pod(objects, "CronJob", "top-coins-ranks")
    command, env = local_process(container, objects, secrets, **edits)
    result = run(command, env)
    assert result.returncode == 2, result.stdout + result.stderr
    assert variable in result.stderr, "the one line names the missing variable"
    for other in set(secrets["top-coins"]) & set(FAKE_KEY_FLAGS):
        assert secrets["top-coins"][other] not in result.stdout + result.stderr, "a key leaked"
    job = find(objects, "CronJob", "top-coins-ranks")["spec"]["jobTemplate"]["spec"]
    fail_job = [
        rule["onExitCodes"]
        for rule in job["podFailurePolicy"]["rules"]
        if rule["action"] == "FailJob" and "onExitCodes" in rule
    ]
    assert any(
        codes["containerName"] == container["name"]
        and codes["operator"] == "In"
        and result.returncode in codes["values"]
        for codes in fail_job
    )


def test_migration_job_container_migrates_an_empty_database(fresh_database):
    objects = render("base")
    url = fresh_database()
    _, container = job_pod(objects, "Job", "top-coins-migrate")
    command, env = local_process(container, objects, {"top-coins": {"database-url": url}})
    result = run(command, env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert query(url, "SELECT version_num FROM alembic_version") == [(schema_head(),)]


@pytest.fixture
def reader_url(db, db_url) -> Iterator[str]:
    """A LOGIN role in the migrations' SELECT-only group, as production's api-database-url."""
    role = f"topcoins_api_{uuid.uuid4().hex[:8]}"
    password = uuid.uuid4().hex
    with db.begin() as connection:
        connection.execute(
            text(f"CREATE ROLE {role} LOGIN PASSWORD '{password}' IN ROLE topcoins_reader")
        )
    parts = urlsplit(db_url)
    host = (parts.hostname or "") + (f":{parts.port}" if parts.port else "")
    netloc = f"{role}:{quote(password)}@{host}"
    yield urlunsplit(parts._replace(netloc=netloc))
    with db.begin() as connection:
        connection.execute(text(f"DROP ROLE {role}"))


def local_nginx_process(
    container: Obj, objects: tuple[Obj, ...], spec: Obj, scratch: Path, **overrides: str
) -> tuple[list[str], dict[str, str]]:
    """(argv, env) to run the rendered nginx container here, its mounts under ``scratch``.

    Debian's nginx and envsubst stand in for the image's. The ConfigMap's file is written where
    NGINX_TEMPLATE finds it, and NGINX_TEMP points into ``scratch`` for the emptyDir.
    """
    template_path, configmap = nginx_template_mount(spec, container, objects)
    key = template_path.rpartition("/")[2]
    (scratch / "config").mkdir()
    (scratch / "config" / key).write_text(configmap["data"][key])
    mounts = {"NGINX_TEMPLATE": str(scratch / "config" / key), "NGINX_TEMP": str(scratch / "tmp")}
    nginx = frontend.nginx_binary()
    assert nginx is not None
    env = container_env(container, objects, {}, Path(nginx).parent, {**mounts, **overrides})
    return manifests.argv(container, ImageDefaults((), (), "/"), env), env


@pytest.mark.skipif(frontend.MISSING is not None, reason=frontend.MISSING or "")
def test_api_pod_answers_its_probes_through_nginx(reader_url, db_url, scraped):
    """Both containers as rendered: gunicorn on its loopback BIND, nginx's own command in front
    of it; the kubelet's probes and Prometheus reach the ports the pod declares."""
    objects = render("base")
    _, spec, container = api_pod(objects)
    nginx = container_named(spec, "nginx")
    service = find(objects, "Service", "top-coins-api")
    declared = {
        p["name"]: manifests.container_port(spec, p["targetPort"]) for p in service["spec"]["ports"]
    }
    assert declared == {"http": 8080, "metrics": 9090}
    # Each process listens on a free port instead of the one the manifests declare.
    upstream, public, metrics = free_ports(3)
    local = {declared["http"]: public, declared["metrics"]: metrics}
    secrets = {"top-coins": {"api-database-url": reader_url, "database-url": db_url}}
    command, env = local_process(container, objects, secrets, BIND=f"127.0.0.1:{upstream}")
    assert command[1:] == ["-c", "gunicorn.conf.py"]
    # gunicorn.conf.py sizes the workers from the cgroup CPU quota, which here is the machine's,
    # not the container's: give it the count the container's CPU limit would.
    cpus = manifests.cpu_quota_cores(container["resources"]["limits"]["cpu"])
    env["WEB_CONCURRENCY"] = str(max(2, 2 * cpus))
    scratch = frontend.scratch_directory()
    proxy_command, proxy_env = local_nginx_process(
        nginx,
        objects,
        spec,
        scratch,
        NGINX_PORT=str(public),
        NGINX_METRICS_PORT=str(metrics),
        NGINX_UPSTREAM=f"127.0.0.1:{upstream}",
    )
    grace = spec["terminationGracePeriodSeconds"]
    pre_stop = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    nginx_pre_stop = nginx["lifecycle"]["preStop"]["sleep"]["seconds"]
    try:
        # Stopped in the pod's order: nginx (SIGQUIT, its image's STOPSIGNAL), then gunicorn.
        with (
            running(command, env, grace=grace - pre_stop) as api,
            running(
                proxy_command, proxy_env, grace=grace - nginx_pre_stop, stop_signal=signal.SIGQUIT
            ) as proxy,
        ):

            def answers(port: int, path: str) -> int | None:
                for process in (api, proxy):
                    code = process.process.poll()
                    assert code is None, f"exited {code}:\n{process.output()}"
                try:
                    return requests.get(f"http://127.0.0.1:{port}{path}", timeout=2).status_code
                except requests.ConnectionError:
                    return None

            readiness = container["readinessProbe"]["httpGet"]
            ready = wait_for(
                lambda: answers(local[readiness["port"]], readiness["path"]) == 200, 30
            )
            assert ready, api.output() + proxy.output()
            for probe in ("livenessProbe", "startupProbe"):
                get = container[probe]["httpGet"]
                assert answers(local[get["port"]], get["path"]) == 200, probe
            for probe in ("readinessProbe", "livenessProbe"):
                port = manifests.container_port(spec, nginx[probe]["tcpSocket"]["port"])
                assert listening(local[port]), probe
            # /metrics on the metrics port only.
            assert answers(local[declared["metrics"]], "/metrics") == 200
            assert answers(local[declared["http"]], "/metrics") == 404
            assert answers(local[declared["metrics"]], "/readyz") == 404
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    assert proxy.exit_code == 0, f"nginx did not stop cleanly:\n{proxy.output()}"
    assert api.exit_code == 0, f"gunicorn did not stop cleanly in the grace period:\n{api.output()}"


def test_local_fake_providers_serve_the_local_scrapers(db, db_url):
    objects = render("local")
    fakes = find(objects, "Deployment", "fake-providers")["spec"]["template"]["spec"]
    (fake,) = fakes["containers"]
    ports = {p["name"]: p["containerPort"] for p in fake["ports"]}
    assert sorted(ports.values()) == [9101, 9102, 9103]
    command = list(fake["command"])
    # The Service reaches the fakes on the pod's address, not on its loopback.
    assert command[command.index("--host") + 1] == "0.0.0.0"
    # Each fake listens on the port its container declares; here each gets a free one instead.
    local = dict(zip(ports.values(), free_ports(len(ports)), strict=True))
    for name, port in ports.items():
        flag = command.index(f"--{name}-port")
        assert command[flag + 1] == str(port), name
        command[flag + 1] = str(local[port])
    secret = manifests.secret_data(find(objects, "Secret", "top-coins"))
    secrets = {"top-coins": {**secret, "database-url": db_url, "api-database-url": db_url}}
    command, env = local_process({**fake, "command": command}, objects, secrets)
    with running(command, env, grace=10) as providers:
        up = wait_for(lambda: all(listening(p) for p in local.values()), timeout=15)
        assert up, providers.output()
        config = find(objects, "ConfigMap", "top-coins-config")["data"]
        service = find(objects, "Service", "fake-providers")
        # The Service name does not resolve here; the process it fronts listens on loopback.
        loopback = {}
        for key in ("COINDESK_BASE_URL", "CRYPTOCOMPARE_BASE_URL", "COINMARKETCAP_BASE_URL"):
            url = urlsplit(config[key])
            assert url.hostname == service["metadata"]["name"]
            (target,) = [p for p in service["spec"]["ports"] if p["port"] == url.port]
            port = manifests.container_port(fakes, target["targetPort"])
            assert port == url.port
            loopback[key] = urlunsplit(url._replace(netloc=f"127.0.0.1:{local[port]}"))
        # The Secret holds every fake's key, so each ranking provider works locally; the
        # ConfigMap's choice first.
        choices = [config["RANKING_PROVIDER"], *sorted(set(RANKING_KEYS) - {"coindesk"})]
        assert choices[0] == "coindesk"
        for provider in choices:
            for name in ("top-coins-ranks", "top-coins-prices"):
                _, container = job_pod(objects, "CronJob", name)
                scraper, scraper_env = local_process(
                    container, objects, secrets, RANKING_PROVIDER=provider, **loopback
                )
                result = run(scraper, scraper_env)
                assert result.returncode == 0, result.stdout + result.stderr
        assert [row[:3] for row in runs(db_url)] == [
            step
            for provider in choices
            for step in (
                ("ranking", provider, "succeeded"),
                ("prices", "coinmarketcap", "succeeded"),
            )
        ]
    assert providers.exit_code == 0, providers.output()
