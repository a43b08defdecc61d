"""hookgate's metrics, dashboard and alerts, checked by the real tools.

- The alerts of manifests/observability/prometheusrule.yaml pass `promtool check rules`, and each fires
  (and a fine neighbour does not) in `promtool test rules` (alerts.test.yaml).
- The Kustomization renders the dashboard as a ConfigMap Grafana's sidecar loads, and the PrometheusRule.
- On the real Envoy Gateway (tools/observed_run.py): the filter's counters reach /stats/prometheus as
  `hookgate_deliveries_total{namespace,receiver,outcome,reason}` through the EnvoyProxy's tag extractors,
  parsed by a Prometheus client library, one series per receiver for two receivers whose names differ only
  in `-` versus `.`; a real Prometheus scrapes Envoy and the controller, and every query of the dashboard
  evaluates there with promtool to series with numbers. The alerts on the controller's refusals, on Envoy
  failing to reach it and on unknown-path spikes are silent there, and find each fault once it is made."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import urllib.error
import urllib.request

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from cluster import build_binaries
from deploy import Delivery
from gateway import render, wait
from harness import FORWARD_PATH, ROOT, stop_process

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


def alert_expression(name: str) -> str:
    (expr,) = [rule["expr"] for group in observability.rules()["groups"] for rule in group["rules"]
               if rule.get("alert") == name]
    return expr


def firing(run, name: str) -> list[dict]:
    """The series the alert's expression finds on the run's Prometheus now (its `for` aside)."""
    out = promtool("query", "instant", "-o", "json", run.prometheus.url, alert_expression(name))
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def post_unattested(run) -> None:
    """A reconcile request without attestation, straight to the controller: refused as `unauthorized`."""
    request = urllib.request.Request(f"http://127.0.0.1:{run.example.controller.port}{FORWARD_PATH}",
                                     data=b"{}", method="POST")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 401


def deliveries_to_a_moved_path(run) -> None:
    for _ in range(8):
        run.example.send(Delivery("/hook/moved-by-a-token-change", {}, b"{}"))


def deliveries_with_the_controller_stopped(run) -> None:
    controller = run.example.controller
    stop_process(controller.proc)
    try:
        receiver = next(r for r in run.example.receivers if r.get("action") != "dispatch")
        statuses = []
        for _ in range(3):
            settle(1.1)
            statuses.append(run.example.send(run.example.delivery(receiver))[0])
        assert set(statuses) <= {503, 504}, statuses
        # Before the controller is back (its restart makes the failures stop growing, not vanish).
        wait(lambda: firing(run, "HookgateControllerUnreachable"), 30, "HookgateControllerUnreachable firing")
    finally:
        controller.restart()


# (alert, what makes it fire, the labels it fires with). In this order: the last stops the controller.
REAL_RUN_ALERTS = [
    ("HookgateControllerRefusesEnvoy", post_unattested, {"outcome": "unauthorized", "request": "attested"}),
    ("HookgateUnknownPathSpike", deliveries_to_a_moved_path, {}),
    ("HookgateControllerUnreachable", deliveries_with_the_controller_stopped, {}),
]


def test_alerts_find_the_series_of_envoy_and_the_controller_on_the_real_run(run):
    """Each alert's expression, on the real scrape of Envoy Gateway's proxy and the controller (no `pod` or
    `namespace` target labels here: a static scrape), is silent on the run and finds the fault once made."""
    run, _ = run
    for name, make_fault, labels in REAL_RUN_ALERTS:
        assert firing(run, name) == [], name
        make_fault(run)
        found = wait(lambda: firing(run, name), 30, f"{name} firing")
        assert [series["metric"] for series in found] == [labels], (name, found)
