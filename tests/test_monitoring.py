"""The monitoring component (k8s/components/monitoring) as written: what the manifests,
the rules and the dashboard promise that no tool checks.

There is no Prometheus Operator here, so the custom resources are judged against our own JSON
schemas of the fields we use (tests/schemas, closed to unknown fields, so a typo fails as
strict apply would; they are not the operator's CRDs), by promtool (syntax of the rules and
unit tests with made-up series in k8s/components/monitoring/tests/alerts-test.yaml), and by
the cross-checks below. Whether it all works is tests/test_live_monitoring.py's: the real
Prometheus scrapes the API as the ServiceMonitor says, evaluates the rules, answers every
dashboard query and turns the alerts on, and the real Pushgateway takes the scrapers' pushes.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import statistics
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tests import manifests
from tests.manifests import Obj, find, of_kind, render
from tests.support import ROOT

if manifests.kubectl() is None:
    pytest.skip(
        "kubectl is not on PATH: the manifests are rendered with `kubectl kustomize`",
        allow_module_level=True,
    )

COMPONENT = ROOT / "k8s" / "components" / "monitoring"
DASHBOARD = COMPONENT / "dashboards" / "top-coins.json"
ALERT_TESTS = COMPONENT / "tests" / "alerts-test.yaml"
K8S_README = ROOT / "k8s" / "README.md"
NAMESPACE = "top-coins"

# The API's gauges per kind of run, whatever provider made it.
PER_KIND = frozenset(
    {
        "top_coins_last_success_timestamp_seconds",
        "top_coins_data_age_seconds",
        "top_coins_snapshot_items",
        "top_coins_scrape_failed_runs",
        "top_coins_scrape_consecutive_failures",
        "top_coins_scrape_interval_seconds",
        "top_coins_snapshot_info",
    }
)
KINDS = frozenset({"ranking", "prices"})

ALERTS = frozenset(
    {
        "TopCoinsDataStale",
        "TopCoinsScrapesFailing",
        "TopCoinsNoFreshnessData",
        "TopCoinsApiErrorRatio",
        "TopCoinsApiLatencyP99",
        "TopCoinsUnpricedCoins",
        "TopCoinsCreditsProjectedOverPlan",
    }
)
SEVERITIES = frozenset({"critical", "warning"})
RUNBOOKS = "https://github.com/top-coins/top-coins/blob/main/k8s/README.md#"
# Stale means older than three times the interval the runs keep, and never under 180 s: the
# right side of TopCoinsDataStale, which the dashboard draws too.
STALE_LIMIT = "3 * clamp_min(top_coins:scrape_interval_seconds:max, 60)"
STALE_FOR = "2m"
# The trees whose schedules the alerts must suit: the default, and ranking by CoinMarketCap.
SCHEDULED_TREES = ("production", "production+ranking-coinmarketcap")

# Values Grafana substitutes before a query reaches Prometheus.
GRAFANA_VARIABLES = {"$namespace": NAMESPACE, "$__rate_interval": "2m", "${datasource}": ""}


# --- reading PromQL ------------------------------------------------------------------------


def mentions(expr: str, name: str) -> bool:
    """Whether a PromQL expression names a metric: a search for one known name, not a parser
    (Prometheus and promtool judge the syntax)."""
    return re.search(rf"(?<![\w:]){re.escape(name)}(?![\w:])", expr) is not None


# --- the rendered objects ------------------------------------------------------------------


def production() -> tuple[Obj, ...]:
    return render("production")


def prometheus_rule() -> Obj:
    return find(production(), "PrometheusRule", "top-coins")


def rules() -> list[Obj]:
    return [rule for group in prometheus_rule()["spec"]["groups"] for rule in group["rules"]]


def alerts() -> dict[str, Obj]:
    return {rule["alert"]: rule for rule in rules() if "alert" in rule}


def recorded() -> dict[str, str]:
    """Recording rule name → its expression."""
    return {rule["record"]: rule["expr"] for rule in rules() if "record" in rule}


def dashboard() -> Obj:
    return json.loads(DASHBOARD.read_text())


def panels() -> Iterator[Obj]:
    for panel in dashboard()["panels"]:
        yield panel
        yield from panel.get("panels", [])


def test_component_is_in_production_only() -> None:
    component = yaml.safe_load((COMPONENT / "kustomization.yaml").read_text())
    assert component["apiVersion"] == "kustomize.config.k8s.io/v1alpha1"
    assert component["kind"] == "Component"
    overlay = yaml.safe_load((manifests.TREES["production"] / "kustomization.yaml").read_text())
    assert "../../components/monitoring" in overlay["components"]
    objects = production()
    find(objects, "ServiceMonitor", "top-coins-api")
    find(objects, "PrometheusRule", "top-coins")
    find(objects, "ConfigMap", "top-coins-dashboard")
    # Without the operator's CRDs a ServiceMonitor would fail the whole apply.
    for tree in ("base", "local"):
        for obj in render(tree):
            assert not obj["apiVersion"].startswith("monitoring.coreos.com/"), tree
            assert "grafana_dashboard" not in obj["metadata"].get("labels", {}), tree


def test_service_monitor_selects_the_api_service() -> None:
    objects = production()
    monitor = find(objects, "ServiceMonitor", "top-coins-api")
    service = find(objects, "Service", "top-coins-api")
    spec = monitor["spec"]
    assert monitor["metadata"]["namespace"] == service["metadata"]["namespace"] == NAMESPACE
    assert "namespaceSelector" not in spec, "the Service is in the ServiceMonitor's namespace"
    assert spec["selector"] == {"matchLabels": {"app.kubernetes.io/name": "top-coins-api"}}
    selected = [
        s
        for s in of_kind(objects, "Service")
        if manifests.selects(spec["selector"], s["metadata"].get("labels", {}))
    ]
    assert selected == [service]
    # Which port and path reach /metrics, and that the relabelings keep the Flask `endpoint`
    # label, tests/test_live_monitoring.py finds out by scraping as the operator would.
    (endpoint,) = spec["endpoints"]
    assert endpoint["interval"] == "30s"


# --- custom resource schemas --------------------------------------------------------------


def _parent(obj: Obj, path: str) -> tuple[Any, str]:
    """The container of a dotted path's last step (numbers, also negative, index lists)."""
    *parents, last = path.split(".")
    node: Any = obj
    for part in parents:
        node = node[int(part)] if part.lstrip("-").isdigit() else node[part]
    return node, last


def _set(path: str, value: Any) -> Callable[[Obj], None]:
    def mutate(obj: Obj) -> None:
        node, last = _parent(obj, path)
        node[last] = value

    return mutate


def _drop(path: str) -> Callable[[Obj], None]:
    def mutate(obj: Obj) -> None:
        node, last = _parent(obj, path)
        del node[last]

    return mutate


# Mistakes each schema must catch. Rule 0 of the PrometheusRule is a recording rule and rule -1
# an alert (test_schema_fixtures_point_at_the_right_rules keeps it so).
BROKEN = {
    "ServiceMonitor/top-coins-api": {
        "misspelled endpoint field": _set("spec.endpoints.0.intervall", "30s"),
        "misspelled spec field": _set("spec.endpoint", []),
        "misspelled metadata field": _set("metadata.label", {}),
        "bad duration": _set("spec.endpoints.0.interval", "30 seconds"),
        "empty duration": _set("spec.endpoints.0.scrapeTimeout", ""),
        "bad scheme": _set("spec.endpoints.0.scheme", "ftp"),
        "bad relabel action": _set("spec.endpoints.0.relabelings.0.action", "drop_label"),
        "replace without targetLabel": _set("spec.endpoints.0.relabelings.0.action", "replace"),
        "non-string selector label": _set("spec.selector.matchLabels.tier", 1),
        "no selector": _drop("spec.selector"),
        "no endpoints": _drop("spec.endpoints"),
        "empty endpoints": _set("spec.endpoints", []),
    },
    "PrometheusRule/top-coins": {
        "misspelled group field": _set("spec.groups.0.rulez", []),
        "misspelled rule field": _set("spec.groups.0.rules.-1.annotation", {}),
        "bad duration": _set("spec.groups.0.rules.-1.for", "2 minutes"),
        "record and alert": _set("spec.groups.0.rules.0.alert", "TopCoinsBoth"),
        "neither record nor alert": _drop("spec.groups.0.rules.0.record"),
        "recording rule with for": _set("spec.groups.0.rules.0.for", "5m"),
        "rule without expr": _drop("spec.groups.0.rules.-1.expr"),
        "group without name": _drop("spec.groups.0.name"),
        "non-string label": _set("spec.groups.0.rules.-1.labels.severity", 3),
        "no groups": _drop("spec.groups"),
    },
}


def test_schema_fixtures_point_at_the_right_rules() -> None:
    group = prometheus_rule()["spec"]["groups"][0]
    assert "record" in group["rules"][0]
    assert "alert" in group["rules"][-1]
    (endpoint,) = find(production(), "ServiceMonitor", "top-coins-api")["spec"]["endpoints"]
    assert "targetLabel" not in endpoint["relabelings"][0]


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_custom_resources_match_our_schemas_and_mistakes_do_not(name: str) -> None:
    kind, _, obj_name = name.partition("/")
    obj = find(production(), kind, obj_name)
    assert manifests.validate(obj) is None, "validated, not skipped"
    passed = []
    for what, mutate in BROKEN[name].items():
        broken = copy.deepcopy(obj)
        mutate(broken)
        try:
            manifests.validate(broken)
        except jsonschema.ValidationError:
            continue
        passed.append(what)
    assert not passed, f"{name}: passed the schema: {passed}"


def test_schemas_are_ours_closed_and_documented() -> None:
    notes = (manifests.SCHEMAS / "README.md").read_text()
    assert "promtool" in notes
    files = {p.name for p in manifests.SCHEMAS.iterdir()} - {"README.md"}
    assert files == {p.name for p in manifests.CUSTOM_SCHEMAS.values()}, "a schema nobody uses"
    defs = []
    for key, path in manifests.CUSTOM_SCHEMAS.items():
        assert f"`{path.name}`" in notes
        schema = manifests.custom_schema(path)  # metaschema and closedness checked on load
        group_version, _, kind = key.rpartition("/")
        assert schema["properties"]["apiVersion"] == {"const": group_version}
        assert schema["properties"]["kind"] == {"const": kind}
        defs.append(schema["$defs"])
    # Each file stands alone, so the parts they share are written twice; keep them the same.
    shared = set.intersection(*(set(d) for d in defs))
    assert shared >= {"metadata", "duration", "stringMap", "dnsLabel"}
    for name in shared:
        assert all(d[name] == defs[0][name] for d in defs), f"$defs/{name} differs"


@pytest.mark.parametrize(
    ("duration", "valid"),
    [
        *((d, True) for d in ("0", "30s", "1m30s", "2h", "1y2w3d4h5m6s7ms", "500ms", "90m")),
        *((d, False) for d in ("", "30", "1.5m", "30 s", "s", "1s1m", "5M", "-1m", "0s ")),
    ],
)
def test_duration_pattern_follows_prometheus(duration: str, valid: bool) -> None:
    for path in manifests.CUSTOM_SCHEMAS.values():
        duration_schema = manifests.custom_schema(path)["$defs"]["duration"]
        assert jsonschema.Draft202012Validator(duration_schema).is_valid(duration) is valid


# --- rules ---------------------------------------------------------------------------------


def github_anchor(heading: str) -> str:
    """The id GitHub gives a Markdown heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_every_alert_has_severity_summary_and_a_runbook() -> None:
    found = alerts()
    assert set(found) == ALERTS
    headings = {
        github_anchor(line.lstrip("#"))
        for line in K8S_README.read_text().splitlines()
        if line.startswith("#")
    }
    for name, rule in found.items():
        assert rule["labels"]["severity"] in SEVERITIES, name
        annotations = rule["annotations"]
        assert set(annotations) >= {"summary", "description", "runbook_url"}, name
        assert annotations["runbook_url"] == RUNBOOKS + f"runbook-{name.lower()}", name
        assert f"runbook-{name.lower()}" in headings, f"{name}: no runbook in k8s/README.md"


def test_recording_rules_are_named_level_metric_operations() -> None:
    for name in recorded():
        assert re.fullmatch(r"top_coins:[a-z0-9_]+:[a-z0-9_]+", name), name


def normalized(expr: str) -> str:
    """PromQL with its whitespace evened out, for comparing expressions as written."""
    return re.sub(r"\s*([(),*/+>-])\s*", r"\1", " ".join(expr.split()))


def without_namespace(expr: str) -> str:
    """A dashboard query with Grafana's namespace selector taken out, as a rule reads."""
    return expr.replace('{namespace="$namespace"}', "")


def test_freshness_is_per_kind_never_per_provider() -> None:
    """The per-kind gauges are aggregated by namespace and kind, so the rules hold whichever
    RANKING_PROVIDER runs; `source` belongs to the Pushgateway's gauges and to snapshot_info."""
    records = recorded()
    for name, metric in (
        ("top_coins:data_age_seconds:max", "top_coins_data_age_seconds"),
        ("top_coins:scrape_interval_seconds:max", "top_coins_scrape_interval_seconds"),
        ("top_coins:scrape_consecutive_failures:max", "top_coins_scrape_consecutive_failures"),
    ):
        assert normalized(records[name]) == normalized(f"max by (namespace, kind) ({metric})")
    for rule in rules():
        text = json.dumps(rule)
        assert "source" not in text, rule.get("alert") or rule.get("record")
        assert not re.search(r"cryptocompare|coindesk", text), "a provider named in the rules"
    for panel in panels():
        for target in panel.get("targets", []):
            if any(mentions(target["expr"], m) for m in PER_KIND - {"top_coins_snapshot_info"}):
                assert "source" not in target["expr"] + target["legendFormat"], panel["title"]
    # A kind without a data age is looked for in each namespace with API pods, never with a
    # global absent(), which another namespace's data would silence.
    expr = alerts()["TopCoinsNoFreshnessData"]["expr"]
    kinds = re.findall(r'label_replace\([^"]*"kind",\s*"(\w+)"', expr)
    assert sorted(kinds) == sorted(KINDS)
    assert "absent(top_coins_data_age_seconds" not in expr


def test_stale_limit_is_three_measured_intervals() -> None:
    rule = alerts()["TopCoinsDataStale"]
    assert normalized(rule["expr"]) == normalized(f"top_coins:data_age_seconds:max > {STALE_LIMIT}")
    assert rule["for"] == STALE_FOR


def stale_limit(interval: float) -> float:
    """STALE_LIMIT for one measured interval."""
    return 3 * max(interval, 60)


@pytest.mark.parametrize("tree", SCHEDULED_TREES)
def test_stale_limit_suits_the_schedules(tree: str) -> None:
    """The API reports the median gap between a kind's last seven successful runs. With each
    CronJob's schedule, a healthy run never looks stale and three missed runs always do."""
    objects = render(tree)
    config = find(objects, "ConfigMap", "top-coins-config")["data"]
    slowest_run = float(config["SCRAPE_DEADLINE_SECONDS"])
    cronjobs = {"ranking": "top-coins-ranks", "prices": "top-coins-prices"}
    assert set(cronjobs) == KINDS
    for kind, cronjob in cronjobs.items():
        schedule = find(objects, "CronJob", cronjob)["spec"]["schedule"]
        gaps = manifests.cron_gaps(schedule) * 24  # a day of runs
        medians = [statistics.median(gaps[i : i + 6]) for i in range(len(gaps) - 5)]
        limits = {stale_limit(median) for median in medians}
        # The data of a healthy schedule is at most one gap and one slow run old.
        assert max(gaps) + slowest_run < min(limits), (kind, schedule)
        # Three gaps without a success are always noticed.
        assert max(limits) <= 3 * max(max(gaps), 60), (kind, schedule)


def test_alert_unit_tests_cover_every_alert_both_ways() -> None:
    """Every alert fires in some case and stays silent in some case (checked without promtool,
    so a new alert cannot land without tests)."""
    tests = yaml.safe_load(ALERT_TESTS.read_text())
    assert tests["rule_files"] == ["rules.yaml"]
    fires, silent = set(), set()
    for case in tests["tests"]:
        for check in case.get("alert_rule_test", []):
            (fires if check.get("exp_alerts") else silent).add(check["alertname"])
    assert fires == ALERTS
    assert silent == ALERTS


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.skip(
            "promtool is not on PATH: bin/setup installs it (Debian package `prometheus`) when "
            "run as root on a system with apt-get; elsewhere install promtool to run this check"
        )
    return path


def run_promtool(*args: str, cwd: Path) -> None:
    result = subprocess.run(
        [promtool(), *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )
    if result.returncode != 0:
        pytest.fail(f"promtool {' '.join(args)}:\n{result.stdout}{result.stderr}", pytrace=False)


def test_promtool_checks_the_rendered_rules(tmp_path: Path) -> None:
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(prometheus_rule()["spec"]))
    run_promtool("check", "rules", "rules.yaml", cwd=tmp_path)


def test_promtool_unit_tests_of_the_alerts(tmp_path: Path) -> None:
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(prometheus_rule()["spec"]))
    shutil.copy(ALERT_TESTS, tmp_path / "alerts-test.yaml")
    run_promtool("test", "rules", "alerts-test.yaml", cwd=tmp_path)


# --- the Grafana dashboard -----------------------------------------------------------------

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}


def test_dashboard_uses_a_prometheus_datasource_variable() -> None:
    board = dashboard()
    assert board["uid"] == "top-coins"
    assert board["schemaVersion"] == 39
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for variable in variables.values():
        if variable["type"] == "query":
            assert variable["datasource"] == DATASOURCE
    ids = [p["id"] for p in panels()]
    assert len(ids) == len(set(ids)), "duplicate panel ids"
    for panel in panels():
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert panel["targets"], f"{panel['title']}: no targets"
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE, panel["title"]


def filled_in(expr: str) -> str:
    """A dashboard query as Grafana sends it to Prometheus."""
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    return expr


def test_error_panel_reads_zero_not_no_data_on_a_healthy_api(tmp_path: Path) -> None:
    """On an API without errors the 5xx panel draws 0. The exception counter only appears with
    the first exception, so a query of it alone would show "no data", also while another
    namespace has exceptions."""
    (panel,) = [p for p in panels() if p["title"] == "5xx error ratio"]
    queries = {t["refId"]: filled_in(t["expr"]) for t in panel["targets"]}
    expected = {"A": 'top_coins:http_request_errors:ratio_rate5m{namespace="top-coins"}', "B": "{}"}
    assert set(queries) == set(expected)
    flask = "flask_http_request_total"
    exceptions = "flask_http_request_exceptions_total"
    healthy = f'namespace="{NAMESPACE}", pod="api-a", method="GET"'
    failing = 'namespace="staging", pod="api-a", method="GET"'
    case = {
        "interval": "1m",
        "input_series": [
            {"series": f'{flask}{{{healthy}, status="200"}}', "values": "0+600x20"},
            {"series": f'{flask}{{{failing}, status="200"}}', "values": "0+540x20"},
            {"series": f'{flask}{{{failing}, status="500"}}', "values": "0+60x20"},
            {"series": f'{exceptions}{{{failing}, status="500"}}', "values": "0+60x20"},
        ],
        "promql_expr_test": [
            {
                "expr": queries[ref],
                "eval_time": "10m",
                "exp_samples": [{"labels": expected[ref], "value": 0}],
            }
            for ref in sorted(queries)
        ],
    }
    tests = {"rule_files": ["rules.yaml"], "evaluation_interval": "1m", "tests": [case]}
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(prometheus_rule()["spec"]))
    (tmp_path / "panel-test.yaml").write_text(yaml.safe_dump(tests, sort_keys=False))
    run_promtool("test", "rules", "panel-test.yaml", cwd=tmp_path)


def test_data_age_panel_draws_the_stale_limits() -> None:
    (panel,) = [
        p
        for p in panels()
        if any("top_coins:data_age_seconds:max" in t["expr"] for t in p.get("targets", []))
    ]
    targets = {normalized(without_namespace(t["expr"])): t for t in panel["targets"]}
    limit = targets.get(normalized(STALE_LIMIT))
    assert limit is not None, "the data age panel must draw TopCoinsDataStale's limit"
    assert "{{kind}}" in limit["legendFormat"]
    (override,) = panel["fieldConfig"]["overrides"]
    assert override["matcher"]["id"] == "byRegexp"
    shown = limit["legendFormat"].replace("{{kind}}", "prices")
    assert re.fullmatch(override["matcher"]["options"], shown), "the limit is drawn dashed"


def test_credit_panel_draws_the_projection_against_the_limit() -> None:
    alert = alerts()["TopCoinsCreditsProjectedOverPlan"]
    projection, _, limit = alert["expr"].partition(">")
    assert normalized(projection) == "top_coins:coinmarketcap_credits:projected_month"
    assert normalized(limit) == normalized(
        "max by (namespace) (top_coins_coinmarketcap_credit_limit_monthly)"
    )
    assert alert["for"] == "30m"
    (panel,) = [
        p
        for p in panels()
        if any(normalized(projection) in t["expr"] for t in p.get("targets", []))
    ]
    # Both sides of the alert, and what is left, as one pod reports them.
    charted = {normalized(without_namespace(t["expr"])) for t in panel["targets"]}
    assert charted == {
        normalized(projection),
        "max(top_coins_coinmarketcap_credit_limit_monthly)",
        "max(top_coins_coinmarketcap_credits_left_monthly)",
    }


def test_credit_projection_reads_each_gauge_once_per_namespace() -> None:
    expr = recorded()["top_coins:coinmarketcap_credits:projected_month"]
    gauges = {
        "top_coins_coinmarketcap_credit_limit_monthly",
        "top_coins_coinmarketcap_credits_left_monthly",
        "top_coins_coinmarketcap_credits_24h",
        "top_coins_coinmarketcap_credits_reset_timestamp_seconds",
    }
    for gauge in gauges:
        # Every pod reports the same value: the worst one counts, never a sum over pods.
        assert len(re.findall(rf"\b{gauge}\b", expr)) == 1, gauge
        assert re.search(rf"max by \(namespace\) \(\s*{gauge}\s*\)", expr), gauge
    assert "time()" in expr
    assert "/ 86400" in expr


def test_dashboard_configmap_is_found_by_the_grafana_sidecar() -> None:
    configmap = find(production(), "ConfigMap", "top-coins-dashboard")
    assert configmap["metadata"]["namespace"] == NAMESPACE
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert list(configmap["data"]) == ["top-coins.json"]
    assert json.loads(configmap["data"]["top-coins.json"]) == dashboard()
    # kubectl apply keeps the whole object in an annotation, which may hold 256 KiB.
    assert len(configmap["data"]["top-coins.json"].encode()) < 200 * 1024
