"""Envoy Gateway's Kubernetes provider, the one users run (tests/kubeprovider.py): Envoy Gateway v1.9.1 watches
the real kube-apiserver, where homelab-github is installed with kubectl as the README says; it resolves the
controller's Service through an EndpointSlice, renders its proxy Deployment, and Envoy runs that Deployment's
own container (bootstrap, arguments, volumes) as a process, connected to Envoy Gateway's xDS over its TLS.
A signed delivery through that Envoy reaches the controller, which annotates the targets in the API server;
Envoy Gateway's statuses are read where users read them, from the API server.

Starts Envoy Gateway (fixed ports): run under `flock /tmp/hookgate-eg.lock`. Costs about 20 s warm (most of it
the API server taking Gateway API's and Envoy Gateway's CRDs)."""

from __future__ import annotations

import json
import re

import pytest

from cluster import ApiError
from deploy import MANIFESTS, receiver_key
from gateway import wait
from kubeprovider import KubernetesExample

EXAMPLE = MANIFESTS / "examples/homelab-github"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    installed = KubernetesExample(EXAMPLE, tmp_path_factory.mktemp("kubernetes-provider"))
    try:
        yield installed
    finally:
        installed.close()


def test_a_signed_delivery_through_the_proxy_annotates_the_targets_and_a_forged_one_nothing(cluster):
    example = cluster.example
    (receiver,) = example.receivers
    before = example.annotations(receiver)
    status, body = example.send(example.delivery(receiver, forged=True))
    assert status == 401, body
    assert example.annotations(receiver) == before
    status, body = example.send(example.delivery(receiver))
    assert status == 200, body
    assert json.loads(body)["annotated"] == 2
    after = example.annotations(receiver)
    for target in example.targets[receiver_key(receiver)]:
        key = (target.kind, target.namespace, target.name)
        assert (after[key] != before[key]) == target.selected, key


def test_a_delivery_over_https_with_the_secrets_certificate_is_accepted(cluster):
    """hookgate's Gateway's https listener, with the certificate of the Secret hookgate-webhook-tls."""
    example = cluster.example
    (receiver,) = example.receivers
    status, body = example.send_https(example.delivery(receiver))
    assert status == 200, body
    assert json.loads(body)["annotated"] == 2


# What Envoy Gateway reports for the example's objects, as the API server holds it:
# (kind, namespace, name, condition, status, reason).
STATUSES = {
    "the hold-headers patch, by the v1.9 listener name": (
        "EnvoyPatchPolicy", "envoy-gateway-system", "hookgate-hold-headers", "Programmed", "True", "Programmed"),
    "the hold-headers patch, by the XDSNameSchemeV2 listener name": (
        "EnvoyPatchPolicy", "envoy-gateway-system", "hookgate-hold-headers-xds-v2", "Programmed", "False",
        "ResourceNotFound"),
    "the IPv6 /64 rate limit patch, by the v1.9 route configuration name": (
        "EnvoyPatchPolicy", "envoy-gateway-system", "hookgate-rate-limit-ipv6", "Programmed", "True", "Programmed"),
    "the IPv6 /64 rate limit patch, by the XDSNameSchemeV2 route configuration name": (
        "EnvoyPatchPolicy", "envoy-gateway-system", "hookgate-rate-limit-ipv6-xds-v2", "Programmed", "False",
        "ResourceNotFound"),
    "the filter's policy": ("EnvoyExtensionPolicy", "flux-system", "hookgate", "Accepted", "True", "Accepted"),
    "the rate limit and retry": (
        "BackendTrafficPolicy", "flux-system", "hookgate-rate-limit", "Accepted", "True", "Accepted"),
    "the buffer limit": (
        "ClientTrafficPolicy", "envoy-gateway-system", "hookgate-buffer", "Accepted", "True", "Accepted"),
    "the webhook route": ("HTTPRoute", "flux-system", "hookgate-webhooks", "Accepted", "True", "Accepted"),
    "the webhook route's backend": (
        "HTTPRoute", "flux-system", "hookgate-webhooks", "ResolvedRefs", "True", "ResolvedRefs"),
}


@pytest.mark.parametrize("case", STATUSES)
def test_envoy_gateway_writes_each_status_to_the_api_server(cluster, case):
    kind, namespace, name, condition, status, reason = STATUSES[case]
    found = wait(lambda: cluster.status_conditions(kind, namespace, name).get(condition), 30,
                 f"{kind} {namespace}/{name}: {condition}")
    assert (found["status"], found["reason"]) == (status, reason), found


def stat(stats: str, name: str, **labels: str) -> float:
    """A series' value in Prometheus text (0 when absent)."""
    selector = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    pattern = rf"^{re.escape(name)}\{{{re.escape(selector)}\}} (\S+)$"
    return sum(float(v) for v in re.findall(pattern, stats, re.M))


def test_the_proxy_runs_on_envoy_gateways_xds_and_reaches_the_controller_through_its_endpointslice(cluster):
    stats = cluster.proxy_stats()
    assert stat(stats, "envoy_control_plane_connected_state") == 1
    assert stat(stats, "envoy_cluster_upstream_cx_active", envoy_cluster_name="xds_cluster") >= 1
    route_cluster = "httproute/flux-system/hookgate-webhooks/rule/0"
    assert stat(stats, "envoy_cluster_membership_healthy", envoy_cluster_name=route_cluster) == 1
    assert stat(stats, "envoy_cluster_upstream_rq_completed", envoy_cluster_name=route_cluster) >= 1


def test_the_api_server_refuses_loopback_endpoints_so_pods_have_addresses_of_their_own(cluster):
    service = "hookgate-controller"
    loopback = {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                "metadata": {"name": f"{service}-loopback", "namespace": "flux-system",
                             "labels": {"kubernetes.io/service-name": service}},
                "addressType": "IPv4", "ports": [{"name": "http", "protocol": "TCP", "port": 8080}],
                "endpoints": [{"addresses": ["127.0.0.1"]}]}
    with pytest.raises(ApiError) as refused:
        cluster.cp.apply(loopback, dry_run=True)
    assert refused.value.status == 422 and "loopback" in json.dumps(refused.value.body)
