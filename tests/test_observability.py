"""hookgate's metrics, dashboard and alerts, checked by the real tools.

- The alerts of manifests/observability/prometheusrule.yaml pass `promtool check rules`, and each fires
  (and a fine neighbour does not) in `promtool test rules` (alerts.test.yaml).
- The Kustomization renders the dashboard as a ConfigMap Grafana's sidecar loads, and the PrometheusRule.
- On the real Envoy Gateway (tools/observed_run.py): the filter's counters reach /stats/prometheus as
  `hookgate_deliveries_total{namespace,receiver,outcome,reason}` through the EnvoyProxy's tag extractors,
  parsed by a Prometheus client library, one series per receiver for two receivers whose names differ only
  in `-` versus `.`; a real Prometheus scrapes Envoy and the controller, and every query of the dashboard
  evaluates there with promtool to series with numbers."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from cluster import build_binaries
from gateway import render
from harness import ROOT

sys.path.insert(0, str(ROOT / "tools"))
import observability  # noqa: E402
from observed_run import TWIN, observed_run, send_deliveries, settle  # noqa: E402


def promtool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([build_binaries()["PROMTOOL"], *args], capture_output=True, text=True, timeout=120)


def test_alerts_pass_promtool_check_and_fire_in_its_unit_tests(tmp_path):
    rules = tmp_path / observability.RULES_FILE_NAME
    rules.write_text(json.dumps(observability.rules()))
    tests = tmp_path / observability.ALERTS_TEST.name
    tests.write_text(observability.ALERTS_TEST.read_text())
    checked = promtool("check", "rules", str(rules))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    alerts = {rule["alert"] for group in observability.rules()["groups"] for rule in group["rules"]}
    assert checked.stdout.count("SUCCESS") == 1 and f"{len(alerts)} rules found" in checked.stdout, checked.stdout
    tested = promtool("test", "rules", str(tests))
    assert tested.returncode == 0, tested.stdout + tested.stderr
    # Every alert has a case where it fires and one where it does not.
    cases = [case for test in yaml.safe_load(observability.ALERTS_TEST.read_text())["tests"]
             for case in test["alert_rule_test"]]
    assert {c["alertname"] for c in cases if c["exp_alerts"]} == alerts
    assert {c["alertname"] for c in cases if not c["exp_alerts"]} == alerts


def test_the_kustomization_ships_the_dashboard_for_grafanas_sidecar_and_the_alerts():
    docs = {(d["kind"], d["metadata"]["name"]): d for d in render(ROOT / "manifests/observability")}
    dashboard = docs[("ConfigMap", "hookgate-dashboard")]
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(dashboard["data"]["hookgate-dashboard.json"]) == observability.dashboard()
    assert docs[("PrometheusRule", "hookgate")]["spec"]["groups"] == observability.rules()["groups"]
    envoy = docs[("PodMonitor", "hookgate-envoy")]["spec"]["podMetricsEndpoints"][0]
    assert (envoy["path"], envoy["honorLabels"]) == ("/stats/prometheus", True)


@pytest.fixture(scope="module")
def run(cp):
    """Two rounds of every kind of delivery, a few scrapes apart, so that each counter has grown between
    two scrapes (GitHub refuses both dispatches: one outcome twice)."""
    with observed_run(cp) as run:
        rounds = []
        for index in range(2):
            rounds.append(send_deliveries(run, flood=130 if index == 0 else 10, refuse_dispatch=True))
            settle(3)
        yield run, rounds


def deliveries(text: str) -> dict[tuple[str, str, str, str], float]:
    """hookgate_deliveries_total's samples by (namespace, receiver, outcome, reason), as a Prometheus client
    library parses Envoy's text."""
    (family,) = [f for f in text_string_to_metric_families(text) if f.name == "hookgate_deliveries"]
    assert family.type == "counter"
    return {(s.labels["namespace"], s.labels["receiver"], s.labels["outcome"], s.labels["reason"]): s.value
            for s in family.samples if s.name == "hookgate_deliveries_total"}


def test_envoy_gateway_labels_the_filter_counters_even_for_names_differing_in_dash_and_dot(run):
    run, rounds = run
    samples = deliveries(run.envoy_metrics())
    signed = len(rounds)
    for receiver in ("gitops-repo", TWIN):
        assert samples[("argocd", receiver, "accepted", "")] == signed, samples
        assert samples[("argocd", receiver, "rejected", "signature_mismatch")] >= signed, samples
    assert samples[("argocd", "rollback", "accepted", "")] == signed, samples
    assert samples[("argocd", "rollback", "rejected", "token_mismatch")] == signed, samples
    assert samples[("", "", "rejected", "unknown_path")] == signed, samples
    # No other name the filter's counters could have leaked under.
    text = run.envoy_metrics()
    assert not [line for line in text.splitlines() if "hookgate" in line and "deliveries_total_" in line]


QUERIES = observability.queries(rate_interval="1m")


@pytest.mark.parametrize("query", QUERIES, ids=[f"{q['panel']}: {q['legend']}" for q in QUERIES])
def test_each_dashboard_query_evaluates_to_numbers_on_the_scraped_run(run, query):
    run, rounds = run
    assert 429 in rounds[0]["flood"], rounds
    out = promtool("query", "instant", "-o", "json", run.prometheus.url, query["expr"])
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result, f"{query['expr']} returned nothing"
    values = [float(series["value"][1]) for series in result]
    assert all(math.isfinite(v) for v in values) and any(v > 0 for v in values), result


def test_prometheus_scraped_the_labels_as_envoy_shows_them(run):
    run, _ = run
    out = promtool("query", "instant", "-o", "json", run.prometheus.url,
                   'hookgate_deliveries_total{outcome="accepted", namespace="argocd"}')
    assert out.returncode == 0, out.stderr
    receivers = {s["metric"]["receiver"] for s in json.loads(out.stdout)}
    assert receivers == {"gitops-repo", TWIN, "rollback"}, out.stdout
