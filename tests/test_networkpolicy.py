"""The controller's NetworkPolicy, as rendered for every example, selects exactly the controller's pods and
admits exactly Envoy Gateway's proxy pods. Selectors are evaluated with Kubernetes' rules against the
rendered controller Deployment's pod labels and the labels Envoy Gateway gives its proxy pods (read from
Envoy Gateway's own rendered proxy Deployment in its Go module, not written here)."""

from __future__ import annotations

import pytest
import yaml

from cluster import module_files
from deploy import EXAMPLES, MANIFESTS
from gateway import render

ENVOY_GATEWAY_PROXY = ("github.com/envoyproxy/gateway", "v1.9.1",
                       "internal/infrastructure/kubernetes/proxy/testdata/deployments/default.yaml")
FLUX_SOURCE_CONTROLLER = ("github.com/fluxcd/source-controller", "v1.10.1", "config/manager/deployment.yaml")


def selects(selector: dict, labels: dict) -> bool:
    """A Kubernetes LabelSelector (matchLabels and matchExpressions) against a label set; `{}` selects all."""
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expression in selector.get("matchExpressions") or []:
        key, operator, values = expression["key"], expression["operator"], expression.get("values", [])
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


def pod_template(deployment: dict) -> tuple[str, dict]:
    return deployment["metadata"].get("namespace", "default"), deployment["spec"]["template"]["metadata"]["labels"]


@pytest.fixture(scope="module")
def proxy_pod() -> tuple[str, dict]:
    """Namespace and labels of an Envoy Gateway proxy pod, as Envoy Gateway renders them."""
    (text,) = module_files(*ENVOY_GATEWAY_PROXY)
    return pod_template(yaml.safe_load(text))


@pytest.fixture(scope="module")
def flux_pod() -> dict:
    """Labels of another pod that shares a namespace with the controller (Flux's source-controller)."""
    (text,) = module_files(*FLUX_SOURCE_CONTROLLER)
    deployment = next(d for d in yaml.safe_load_all(text) if d and d["kind"] == "Deployment")
    return pod_template(deployment)[1]


def test_selector_rules():
    cases = {
        "empty selects every pod": ({}, {"a": "b"}, True),
        "matchLabels equal": ({"matchLabels": {"a": "b"}}, {"a": "b", "c": "d"}, True),
        "matchLabels differ": ({"matchLabels": {"a": "b"}}, {"a": "x"}, False),
        "In": ({"matchExpressions": [{"key": "a", "operator": "In", "values": ["b"]}]}, {"a": "b"}, True),
        "NotIn": ({"matchExpressions": [{"key": "a", "operator": "NotIn", "values": ["b"]}]}, {"a": "b"}, False),
        "Exists missing": ({"matchExpressions": [{"key": "a", "operator": "Exists"}]}, {}, False),
        "DoesNotExist": ({"matchExpressions": [{"key": "a", "operator": "DoesNotExist"}]}, {}, True),
    }
    for name, (selector, labels, expected) in cases.items():
        assert selects(selector, labels) is expected, name


@pytest.mark.parametrize("example", EXAMPLES)
def test_network_policy_admits_exactly_envoy_gateway_proxies(example, proxy_pod, flux_pod):
    docs = render(MANIFESTS / "examples" / example)
    (policy,) = [d for d in docs if d["kind"] == "NetworkPolicy"]
    (deployment,) = [d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "hookgate-controller"]
    (service,) = [d for d in docs if d["kind"] == "Service" and d["metadata"]["name"] == "hookgate-controller"]
    namespace, controller = pod_template(deployment)
    proxy_namespace, proxy = proxy_pod
    spec = policy["spec"]

    # The policy isolates the controller's pods and no other pod of its namespace.
    assert policy["metadata"]["namespace"] == namespace
    assert spec["podSelector"], "podSelector {} isolates every pod of the namespace"
    assert selects(spec["podSelector"], controller)
    assert not selects(spec["podSelector"], flux_pod)
    assert not selects(spec["podSelector"], proxy)
    # The Deployment and the Service select the same pods.
    assert selects(deployment["spec"]["selector"], controller)
    assert selects({"matchLabels": service["spec"]["selector"]}, controller)
    assert not selects({"matchLabels": service["spec"]["selector"]}, flux_pod)

    # Ingress only from Envoy Gateway's proxies in their namespace, on the controller's port.
    assert spec["policyTypes"] == ["Ingress"]
    (rule,) = spec["ingress"]
    (peer,) = rule["from"]
    proxy_namespace_labels = {"kubernetes.io/metadata.name": proxy_namespace}
    assert selects(peer["namespaceSelector"], proxy_namespace_labels)
    assert not selects(peer["namespaceSelector"], {"kubernetes.io/metadata.name": namespace}) or namespace == proxy_namespace
    assert selects(peer["podSelector"], proxy), f"{peer['podSelector']} does not select Envoy Gateway's proxies {proxy}"
    assert not selects(peer["podSelector"], controller)
    assert not selects(peer["podSelector"], flux_pod)
    ports = {p["name"] for c in deployment["spec"]["template"]["spec"]["containers"] for p in c.get("ports", [])}
    assert {p["port"] for p in rule["ports"]} <= ports
