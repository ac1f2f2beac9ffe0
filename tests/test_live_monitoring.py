"""The monitoring component run for real: the real Prometheus scrapes the API (gunicorn behind
the pod's nginx, on a database the real scrapers filled) the way the ServiceMonitor says, loads
the rendered PrometheusRule's rules unchanged, and scrapes the real Pushgateway the scrapers
push to. Its HTTP API then says whether every rule evaluates, every dashboard query has data,
and whether the alerts turn on when the data really gets old or the scrapes really fail.

Everything is shortened to seconds (scrape and evaluation every second), nothing else is
changed: the rules' thresholds and `for:` durations are the production ones, so the alerts
with a `for:` are checked up to pending.
"""

from __future__ import annotations

import contextlib
import math
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from alembic import command
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text

from api.metrics import RequestMetrics
from fakeproviders import FakeProviders, Fault
from scrapers.cli import main as scrapers_main
from tests import frontend, manifests
from tests.conftest import environment
from tests.frontend import Nginx, free_ports
from tests.support import Gunicorn, Store, alembic_config, wait_for
from tests.test_monitoring import (
    ALERT_TESTS,
    NAMESPACE,
    dashboard,
    mentions,
    panels,
    prometheus_rule,
    recorded,
)
from topcoins.db import make_engine
from topcoins.models import SNAPSHOT_CHANNEL
from topcoins.settings import database_url

PROMETHEUS = shutil.which("prometheus")
PUSHGATEWAY = shutil.which("prometheus-pushgateway")


def _missing() -> str | None:
    if PROMETHEUS is None or PUSHGATEWAY is None:
        return (
            "the Prometheus server or the Pushgateway is not installed: bin/setup installs them "
            "(Debian packages prometheus and prometheus-pushgateway) when run as root on a "
            "system with apt-get; elsewhere put `prometheus` and `prometheus-pushgateway` on "
            "PATH to run these tests"
        )
    return frontend.MISSING


pytestmark = pytest.mark.skipif(_missing() is not None, reason=_missing() or "")

# Production scrapes every 30 s and evaluates every 30 s or a minute; here every second.
INTERVAL = "1s"
# What Grafana makes of $__rate_interval: four scrape intervals at least.
RATE_INTERVAL = "4s"
# The pod Prometheus finds behind the Service; the operator names the target after it.
POD = "top-coins-api-live-0"
# What the Pushgateway's scrape job is called: any name, honor_labels keeps the pushed job.
PUSHGATEWAY_JOB = "pushgateway"
# Synthetic series Prometheus adds to every target; the API does not expose them.
PROMETHEUS_OWN = frozenset(
    {
        "up",
        "scrape_duration_seconds",
        "scrape_samples_scraped",
        "scrape_samples_post_metric_relabeling",
        "scrape_series_added",
    }
)
# Exposed but deliberately not charted: the histogram's sum adds nothing to the percentiles.
NOT_CHARTED = frozenset({"flask_http_request_duration_seconds_sum"})
# The fields of a ServiceMonitor endpoint that scrape_config() translates; another field would
# be ignored here while the operator honours it, so the test refuses it.
TRANSLATED = frozenset({"port", "path", "interval", "scrapeTimeout", "relabelings", "honorLabels"})


# --- the real processes ------------------------------------------------------------------------


class PrometheusError(Exception):
    """Prometheus refused a request (a query that is not PromQL, an unknown endpoint): not a
    wait for data, so it ends the test at once, with Prometheus' own message."""


class Prometheus:
    """The real Prometheus with a config of ours, on a free loopback port, its TSDB in tmp."""

    def __init__(self, directory: Path, config: dict[str, Any], rules: dict[str, Any]) -> None:
        assert PROMETHEUS is not None
        (port,) = free_ports(1)
        self.base = f"http://127.0.0.1:{port}"
        self.rule_file = directory / "rules.yaml"
        self.rule_file.write_text(yaml.safe_dump(rules, sort_keys=False))
        config_file = directory / "prometheus.yml"
        config_file.write_text(
            yaml.safe_dump({**config, "rule_files": [str(self.rule_file)]}, sort_keys=False)
        )
        self.log_path = directory / "prometheus.log"
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [
                PROMETHEUS,
                f"--config.file={config_file}",
                f"--storage.tsdb.path={directory / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                f"--web.console.templates={directory / 'consoles'}",
                f"--web.console.libraries={directory / 'console_libraries'}",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def wait_until_ready(self) -> None:
        def ready() -> bool:
            assert self.process.poll() is None, f"prometheus exited:\n{self.output()}"
            try:
                return requests.get(self.base + "/-/ready", timeout=1).status_code == 200
            except requests.RequestException:
                return False

        assert wait_for(ready, timeout=20), self.output()

    def api(self, path: str, **params: str) -> Any:
        answer = requests.get(f"{self.base}/api/v1/{path}", params=params, timeout=10)
        body = answer.json()
        if body.get("status") != "success":
            raise PrometheusError(f"/api/v1/{path} {params}: {body}")
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        data = self.api("query", query=expr)
        assert data["resultType"] == "vector", (expr, data["resultType"])
        return data["result"]

    def value(self, expr: str) -> float | None:
        """The single value of a query, or None while it has none."""
        result = self.query(expr)
        assert len(result) <= 1, (expr, result)
        return float(result[0]["value"][1]) if result else None

    def alerts(self, name: str) -> list[dict[str, Any]]:
        return [a for a in self.api("alerts")["alerts"] if a["labels"]["alertname"] == name]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()

    def output(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")


class Pushgateway:
    """The real Pushgateway, keeping what is pushed in memory only."""

    def __init__(self, directory: Path) -> None:
        assert PUSHGATEWAY is not None
        (port,) = free_ports(1)
        self.address = f"127.0.0.1:{port}"
        self.url = f"http://{self.address}"
        self.log_path = directory / "pushgateway.log"
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            # Debian's default persists to /var/lib/prometheus; an empty file name turns it off.
            [PUSHGATEWAY, f"--web.listen-address={self.address}", "--persistence.file="],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def wait_until_ready(self) -> None:
        def ready() -> bool:
            assert self.process.poll() is None, f"pushgateway exited:\n{self.output()}"
            try:
                return requests.get(self.url + "/-/ready", timeout=1).status_code == 200
            except requests.RequestException:
                return False

        assert wait_for(ready, timeout=10), self.output()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
        self._log.close()

    def output(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")


class Traffic:
    """Clients of the public port and the probes, a few requests a second, as on a healthy
    system: the request rates and latencies are then never empty, nor 0/0."""

    def __init__(self, base: str) -> None:
        self._stop = threading.Event()

        def run() -> None:
            with requests.Session() as session:
                while not self._stop.wait(0.1):
                    for path in ("/", "/readyz"):
                        with contextlib.suppress(requests.RequestException):
                            session.get(base + path, timeout=2)

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


# --- from the manifests to a Prometheus config -------------------------------------------------


def snake(name: str) -> str:
    return re.sub(r"[A-Z]", lambda m: "_" + m.group().lower(), name)


def relabel_configs(relabelings: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A ServiceMonitor's relabelings as Prometheus' relabel_configs (the operator's mapping:
    the same fields in snake_case, actions in lower case)."""
    out = []
    for relabeling in relabelings:
        config = {snake(key): value for key, value in relabeling.items()}
        if "action" in config:
            config["action"] = config["action"].lower()
        out.append(config)
    return out


def api_scrape_config(metrics_ports: dict[int, int]) -> dict[str, Any]:
    """The scrape config the Prometheus Operator makes of the ServiceMonitor, for one API pod.

    The target is the local port standing for the container port the ServiceMonitor's port name
    leads to (Service port → targetPort → the container declaring it); ``metrics_ports`` maps
    each container port of nginx to the port the test's nginx listens on. The operator's target
    labels come first (namespace, service, pod, container, endpoint = the port's name,
    job = the Service's name), then the ServiceMonitor's relabelings, as the operator orders them.
    """
    objects = manifests.render("production")
    monitor = manifests.find(objects, "ServiceMonitor", "top-coins-api")
    (service,) = [
        s
        for s in manifests.of_kind(objects, "Service")
        if manifests.selects(monitor["spec"]["selector"], s["metadata"].get("labels", {}))
    ]
    (endpoint,) = monitor["spec"]["endpoints"]
    untranslated = set(endpoint) - TRANSLATED
    assert not untranslated, f"teach scrape_config() the endpoint fields {sorted(untranslated)}"
    (service_port,) = [p for p in service["spec"]["ports"] if p["name"] == endpoint["port"]]
    deployment = manifests.find(objects, "Deployment", service["metadata"]["name"])
    pod_spec = deployment["spec"]["template"]["spec"]
    container_port = manifests.container_port(pod_spec, service_port["targetPort"])
    (container,) = [
        c
        for c in manifests.all_containers(pod_spec)
        if any(p["containerPort"] == container_port for p in c.get("ports", []))
    ]
    return {
        "job_name": f"serviceMonitor/{NAMESPACE}/{monitor['metadata']['name']}/0",
        "metrics_path": endpoint.get("path", "/metrics"),
        "honor_labels": endpoint.get("honorLabels", False),
        "scrape_interval": INTERVAL,
        "scrape_timeout": INTERVAL,
        "static_configs": [
            {
                "targets": [f"127.0.0.1:{metrics_ports[container_port]}"],
                "labels": {
                    "namespace": monitor["metadata"]["namespace"],
                    "service": service["metadata"]["name"],
                    "pod": POD,
                    "container": container["name"],
                    "endpoint": endpoint["port"],
                    "job": service["metadata"]["name"],
                },
            }
        ],
        "relabel_configs": relabel_configs(endpoint.get("relabelings", [])),
    }


def nginx_ports(nginx: Nginx) -> dict[int, int]:
    """The pod's nginx container ports → where the test's nginx listens for each."""
    objects = manifests.render("production")
    pod_spec = manifests.find(objects, "Deployment", "top-coins-api")["spec"]["template"]["spec"]
    (container,) = [c for c in pod_spec["containers"] if c["name"] == "nginx"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    return {
        int(env["NGINX_PORT"]): nginx.port,
        int(env["NGINX_METRICS_PORT"]): nginx.metrics_port,
    }


# --- the live system ---------------------------------------------------------------------------


@dataclass
class Live:
    prometheus: Prometheus
    pushgateway: Pushgateway
    gunicorn: Gunicorn
    nginx: Nginx
    store: Store
    providers: FakeProviders
    env: dict[str, str]
    # When Prometheus first had the API's and the Pushgateway's series.
    scraped_at: float = 0.0

    def scrape(self, *argv: str, **overrides: str) -> int:
        """A scraper run in-process, exactly as ``python -m scrapers`` would."""
        return scrapers_main(list(argv), {**self.env, **overrides})

    def output(self) -> str:
        try:
            targets = [
                (t["scrapeUrl"], t["health"], t["lastError"])
                for t in self.prometheus.api("targets")["activeTargets"]
            ]
            alerts = [
                (a["labels"], a["state"], a["value"])
                for a in self.prometheus.api("alerts")["alerts"]
            ]
        except (requests.RequestException, PrometheusError) as exc:
            targets, alerts = [("?", "?", repr(exc))], []
        return f"--- targets: {targets}\n--- alerts: {alerts}\n" + "\n".join(
            f"--- {name}:\n{process.output()[-4000:]}"
            for name, process in (
                ("prometheus", self.prometheus),
                ("pushgateway", self.pushgateway),
                ("gunicorn", self.gunicorn),
                ("nginx", self.nginx),
            )
        )


@pytest.fixture(scope="module")
def live(
    fresh_database: Callable[[], str],
    provider_server: FakeProviders,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Live]:
    """Prometheus, the Pushgateway, and the API pod (nginx and gunicorn) on a database of its
    own, where the real scrapers stored two rankings and two price lists: the interval
    between runs, which staleness is judged against, needs two successful runs of a kind."""
    directory = tmp_path_factory.mktemp("live-monitoring")
    url = fresh_database()
    command.upgrade(alembic_config(url), "head")
    provider_server.reset()
    engine = make_engine(database_url({"DATABASE_URL": url}), application_name="tests")
    stack: list[Callable[[], None]] = [engine.dispose]
    try:
        pushgateway = Pushgateway(directory)
        stack.append(pushgateway.stop)
        env = {
            **environment(url, provider_server),
            "PUSHGATEWAY_URL": pushgateway.url,
            # The refresher's safety-net poll; a scraper's NOTIFY is seen at once anyway.
            "API_REFRESH_SECONDS": "0.5",
        }
        # Every process starts before anything is waited for: gunicorn takes a second or two
        # to boot, and Prometheus scrapes nothing in its first 5 s.
        gunicorn = Gunicorn(env, directory / "gunicorn.log")
        stack.append(gunicorn.stop)
        nginx = Nginx(f"127.0.0.1:{gunicorn.port}")
        stack.append(nginx.stop)
        config = {
            "global": {"scrape_interval": INTERVAL, "evaluation_interval": INTERVAL},
            "scrape_configs": [
                api_scrape_config(nginx_ports(nginx)),
                {
                    "job_name": PUSHGATEWAY_JOB,
                    "honor_labels": True,
                    "scrape_interval": INTERVAL,
                    "scrape_timeout": INTERVAL,
                    "static_configs": [{"targets": [pushgateway.address]}],
                },
            ],
        }
        prometheus = Prometheus(directory, config, prometheus_rule()["spec"])
        stack.append(prometheus.stop)
        pushgateway.wait_until_ready()
        for kind in ("ranks", "prices", "ranks", "prices"):
            assert scrapers_main([kind], env) == 0, kind
        gunicorn.wait_until_ready()
        nginx.wait_until_up()
        prometheus.wait_until_ready()
        traffic = Traffic(nginx.base)
        stack.append(traffic.stop)
        live = Live(prometheus, pushgateway, gunicorn, nginx, Store(engine), provider_server, env)
        for series in ("top_coins_data_age_seconds", "top_coins_scrape_outcome"):
            # Prometheus looks at its targets 5 s after it starts (its discovery's pace).
            eventually(live, lambda s=series: prometheus.query(s), f"{series} is never scraped")
        live.scraped_at = time.time()
        yield live
    finally:
        for stop in reversed(stack):
            stop()


def eventually(live: Live, predicate: Callable[[], Any], what: str, timeout: float = 15) -> Any:
    """wait_for, but Prometheus is asked at most ten times a second; fails with the logs."""

    def slowly() -> Any:
        result = predicate()
        if not result:
            time.sleep(0.1)
        return result

    result = wait_for(slowly, timeout=timeout)
    assert result, f"{what} (after {timeout} s)\n{live.output()}"
    return result


# --- the dashboard's queries, as Grafana sends them ---------------------------------------------


def grafana_variables() -> dict[str, str]:
    """The dashboard's variables, as the live system fills them in."""
    return {"$namespace": NAMESPACE, "$__rate_interval": RATE_INTERVAL, "${datasource}": ""}


def filled_in(expr: str) -> str:
    for variable, value in grafana_variables().items():
        expr = expr.replace(variable, value)
    assert "$" not in expr, f"a dashboard variable the test does not know: {expr}"
    return expr


def panel_queries() -> list[tuple[str, str, str]]:
    """(panel title, refId, query) for every query of the dashboard."""
    return [
        (panel["title"], target["refId"], filled_in(target["expr"]))
        for panel in panels()
        if panel["type"] != "row"
        for target in panel["targets"]
    ]


# --- a healthy system -----------------------------------------------------------------------


def test_the_api_is_scraped_through_the_metrics_port_with_the_flask_endpoint_label(live):
    """The ServiceMonitor's port leads to nginx's metrics port, and its labeldrop keeps the
    Flask view in `endpoint` (the target's endpoint="metrics" would push it aside)."""

    def scraped() -> list[dict[str, Any]]:
        return live.prometheus.query('top_coins_app_info{job="top-coins-api"}')

    (series,) = eventually(live, scraped, "the API is never scraped")
    labels = series["metric"]
    assert labels["namespace"] == NAMESPACE
    assert labels["pod"] == POD
    assert labels["container"] == "nginx"
    assert labels["instance"] == f"127.0.0.1:{live.nginx.metrics_port}"
    assert "endpoint" not in labels
    targets = live.prometheus.api("targets", state="active")["activeTargets"]
    (target,) = [t for t in targets if t["labels"]["job"] == "top-coins-api"]
    assert target["health"] == "up", target
    assert target["scrapeUrl"] == f"{live.nginx.metrics_base}/metrics"
    endpoints = {
        s["metric"].get("endpoint") for s in live.prometheus.query("flask_http_request_total")
    } | {
        s["metric"].get("endpoint")
        for s in live.prometheus.query("flask_http_request_duration_seconds_count")
    }
    assert "metrics" not in endpoints
    assert "top.top_list" in endpoints
    assert not live.prometheus.query('{exported_endpoint!=""}')


def moment(timestamp: str) -> float:
    """Prometheus' RFC 3339 time (nanoseconds, Z) as a Unix time."""
    return datetime.fromisoformat(re.sub(r"(\.\d{6})\d*", r"\1", timestamp)).timestamp()


def test_every_rule_group_loads_and_every_rule_evaluates_without_error(live):
    spec = prometheus_rule()["spec"]

    def evaluated() -> list[dict[str, Any]]:
        """The groups once every rule has run on the scraped series."""
        groups = live.prometheus.api("rules")["groups"]
        rules = [rule for group in groups for rule in group["rules"]]
        if not all(moment(r["lastEvaluation"]) > live.scraped_at for r in rules):
            return []
        return groups

    groups = eventually(live, evaluated, "some rules are never evaluated")
    assert [g["name"] for g in groups] == [g["name"] for g in spec["groups"]]
    for loaded, written in zip(groups, spec["groups"], strict=True):
        assert loaded["file"] == str(live.prometheus.rule_file)
        assert [r["name"] for r in loaded["rules"]] == [
            r.get("record") or r["alert"] for r in written["rules"]
        ]
        for rule in loaded["rules"]:
            assert rule["health"] == "ok", (rule["name"], rule.get("lastError"))
            assert not rule.get("lastError"), rule["name"]


def test_every_recording_rule_has_data_on_a_healthy_system(live):
    for name in recorded():
        result = eventually(live, lambda n=name: live.prometheus.query(n), f"{name} has no data")
        assert all(s["metric"]["namespace"] == NAMESPACE for s in result), name


def test_every_dashboard_query_has_data_on_a_healthy_system(live):
    """Each query as Grafana sends it (variables filled in) parses, and answers a value that
    is a number: no panel reads "no data", or NaN, on a healthy system. A query that is bad
    PromQL is refused by Prometheus here (PrometheusError), as Grafana would show it.

    No query is excused: the 5xx and unhandled-exception ratios read 0 rather than nothing
    while there are requests and no errors (the `or 0 * …` in each), and the traffic keeps
    requests coming, as probes and clients do on a real system."""
    empty: dict[str, str] = {}
    for title, ref, query in panel_queries():

        def answered(q: str = query) -> list[dict[str, Any]]:
            result = live.prometheus.query(q)
            finite = all(math.isfinite(float(s["value"][1])) for s in result)
            return result if result and finite else []

        try:
            eventually(live, answered, f"{title} ({ref}): {query}", timeout=15)
        except AssertionError:
            empty[f"{title} ({ref})"] = query
    assert not empty, f"panels without data on a healthy system: {empty}\n{live.output()}"


def test_the_namespace_variable_lists_the_namespace(live):
    """Grafana's query variable, label_values(metric, label), lists what Prometheus has."""
    variables = [v for v in dashboard()["templating"]["list"] if v["type"] == "query"]
    assert variables
    for variable in variables:
        match = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", variable["definition"])
        assert match, variable["definition"]
        selector, label = match.groups()
        values = eventually(
            live,
            lambda s=selector, n=label: live.prometheus.api(f"label/{n}/values", **{"match[]": s}),
            f"${variable['name']} lists nothing",
        )
        assert NAMESPACE in values


def declared_counters() -> set[str]:
    """The API's request counters, as a scrape names them once they have counted: under
    gunicorn a labelled counter is not served at all before its first count, and the
    exception counter has none on a healthy system."""
    registry = CollectorRegistry()
    RequestMetrics(lambda environ, start_response: [], registry)
    return {f"{family.name}_total" for family in registry.collect() if family.type == "counter"}


def test_the_dashboard_charts_every_metric_the_api_exposes(live):
    """Every metric the live API serves (or will serve once counted) is on the dashboard,
    directly or through a recording rule it charts, NOT_CHARTED aside. The name must be the
    exposed one: a misspelt name on the dashboard leaves the real one uncharted."""
    served = eventually(
        live,
        lambda: live.prometheus.api(
            "label/__name__/values", **{"match[]": '{job="top-coins-api"}'}
        ),
        "the API exposes nothing",
    )
    exposed = (set(served) - PROMETHEUS_OWN) | declared_counters()
    assert {"top_coins_data_age_seconds", "flask_http_request_exceptions_total"} <= exposed
    queries = [target["expr"] for panel in panels() for target in panel.get("targets", [])]
    records = recorded()
    charted_records = {name for name in records if any(mentions(q, name) for q in queries)}
    while True:  # recording rules read by charted recording rules
        more = {
            name for name in records if any(mentions(records[r], name) for r in charted_records)
        } - charted_records
        if not more:
            break
        charted_records |= more
    read = queries + [records[name] for name in charted_records]
    uncharted = {m for m in exposed if not any(mentions(q, m) for q in read)}
    assert uncharted == NOT_CHARTED, sorted(uncharted)


def test_the_alerts_unit_tests_feed_series_shaped_like_the_live_ones(live):
    """promtool's unit tests (alerts-test.yaml) prove the alerts on made-up series; these must
    be the series the API really exposes, by name and label names, or the alerts are proven on
    series that never come."""
    cases = yaml.safe_load(ALERT_TESTS.read_text())["tests"]
    fed: dict[str, set[str]] = {}
    for case in cases:
        for series in case["input_series"]:
            (family,) = text_string_to_metric_families(series["series"] + " 0\n")
            (sample,) = family.samples
            fed.setdefault(sample.name, set()).update(sample.labels)
    target = {"namespace", "pod", "job", "instance", "service", "container"}
    for name, labels in sorted(fed.items()):
        live_series = eventually(
            live, lambda n=name: live.prometheus.query(n), f"{name} is not exposed"
        )
        live_labels = set().union(*(set(s["metric"]) - {"__name__"} for s in live_series))
        assert labels - target == live_labels - target, name


def test_no_alert_is_active_on_a_healthy_system(live):
    def quiet() -> bool:
        return not live.prometheus.api("alerts")["alerts"]

    eventually(live, quiet, "alerts stay active on a healthy system")


# --- the scrapers' pushes -----------------------------------------------------------------------


def test_a_scrapers_push_reaches_prometheus_through_the_pushgateway(live):
    started = time.time()
    assert live.scrape("ranks") == 0
    pushed_by_ranking = '{job="top_coins_scraper", kind="ranking"}'
    query = "top_coins_scrape_last_success_timestamp_seconds" + pushed_by_ranking

    def pushed() -> list[dict[str, Any]]:
        result = live.prometheus.query(query)
        return result if result and float(result[0]["value"][1]) >= started else []

    (series,) = eventually(live, pushed, "the push never reaches Prometheus")
    labels = series["metric"]
    # honor_labels: the job and the grouping key are the pusher's, not the scrape job's.
    assert (labels["job"], labels["kind"], labels["source"]) == (
        "top_coins_scraper",
        "ranking",
        "coindesk",
    )
    assert live.prometheus.value("top_coins_scrape_items" + pushed_by_ranking) == 200
    outcome = live.prometheus.query(f"top_coins_scrape_outcome{pushed_by_ranking} == 1")
    assert [s["metric"]["outcome"] for s in outcome] == ["succeeded"]


# --- alerts that turn on --------------------------------------------------------------------------


def announce(live: Live) -> None:
    """What a scraper's commit does: tell the API's refresher that the runs changed."""
    with live.store.engine.begin() as connection:
        connection.execute(text(f"NOTIFY {SNAPSHOT_CHANNEL}"))


def active(live: Live, name: str, **labels: str) -> list[dict[str, Any]]:
    return [
        a
        for a in live.prometheus.alerts(name)
        if all(a["labels"].get(k) == v for k, v in labels.items())
    ]


def assert_annotations_rendered(alert: dict[str, Any]) -> None:
    for key, value in alert["annotations"].items():
        # What Prometheus writes in place of a template that fails.
        assert "error expanding template" not in value, (key, value)
        assert "<no value>" not in value, (key, value)


def test_old_data_makes_the_stale_alert_pending(live):
    """Every run moved a day back, as if no scrape had succeeded since: both kinds' data is
    older than three times the interval between their runs."""
    eventually(live, lambda: not active(live, "TopCoinsDataStale"), "stale before the test")
    live.store.age(1)
    announce(live)
    try:

        def both_kinds() -> list[dict[str, Any]]:
            alerts = active(live, "TopCoinsDataStale")
            return alerts if len(alerts) == 2 else []

        stale = eventually(live, both_kinds, "TopCoinsDataStale never turns on", timeout=20)
        assert {a["labels"]["kind"] for a in stale} == {"ranking", "prices"}
        for alert in stale:
            # Pending: its `for:` is minutes; Prometheus has judged the data stale.
            assert alert["state"] == "pending", alert
            assert alert["labels"]["namespace"] == NAMESPACE
            assert alert["labels"]["severity"] == "critical"
            assert float(alert["value"]) > 86400
            assert_annotations_rendered(alert)
            assert "1d" in alert["annotations"]["description"], alert["annotations"]
    finally:
        live.store.age(-1)
        announce(live)


def test_three_failed_ranking_runs_fire_the_failing_scrapes_alert(live):
    """Real failed runs: the provider answers with an error, three times in a row."""
    eventually(live, lambda: not active(live, "TopCoinsScrapesFailing"), "failing before the test")
    live.providers.inject("coindesk", Fault.ERROR_PAYLOAD, times=-1)
    try:
        for _ in range(3):
            assert live.scrape("ranks") == 1
        (alert,) = eventually(
            live,
            lambda: [a for a in active(live, "TopCoinsScrapesFailing") if a["state"] == "firing"],
            "TopCoinsScrapesFailing never fires",
            timeout=20,
        )
        assert alert["labels"]["kind"] == "ranking"
        assert alert["labels"]["namespace"] == NAMESPACE
        assert float(alert["value"]) == 3
        assert_annotations_rendered(alert)
        assert "The last 3 ranking runs" in alert["annotations"]["description"]
    finally:
        live.providers.reset()
        assert live.scrape("ranks") == 0
