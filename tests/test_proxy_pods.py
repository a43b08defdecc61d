"""Who the controller confirms, with `--proxy-selector`: only a proxy VM asking from the address of one of
hookgate's own proxy pods (picked by label in the real kube-apiserver, as Envoy Gateway labels its proxy pods
with their Gateway's name and namespace) is confirmed and served. A proxy of another Gateway (or of a
Gateway of the same name in another namespace), or any other address, asking the controller gets no
confirmation and so no configuration; once hookgate's pod has that address, the same
Envoy is confirmed and serves, with no restart."""

from __future__ import annotations

import json

import yaml

import signers
from gateway import wait
from gitops import CONTROLLER_NAMESPACE
from harness import ROOT, RecordingUpstream
from served import ServedEdge, receiver, secret

MANIFESTS = ROOT / "manifests"
NAMESPACE = "proxy-pods"
PROXIES = "proxy-pods-gateway"
TOKEN = "proxy-pods-token-0123456789"
GATEWAY_NAMESPACE = "hookgate-gateway"
SELECTOR = ("gateway.envoyproxy.io/owning-gateway-name=hookgate,"
            f"gateway.envoyproxy.io/owning-gateway-namespace={GATEWAY_NAMESPACE}")
OBJECTS = [receiver("app", NAMESPACE, {"type": "github", "secretRef": {"name": "app-token"},
                                       "targets": [{"kind": "GitRepository", "name": "app"}]}),
           secret("app-token", NAMESPACE, {"token": TOKEN})]
PUSH = json.dumps({"ref": "refs/heads/main"}).encode()


def proxy_pod(cp, name: str, gateway: str, ip: str, gateway_namespace: str = GATEWAY_NAMESPACE) -> None:
    """A pod as Envoy Gateway creates one for a Gateway's proxy, running, with the address the kubelet reports
    (the controller takes only a running pod's address for a proxy's)."""
    cp.apply({"apiVersion": "v1", "kind": "Pod",
              "metadata": {"name": name, "namespace": PROXIES,
                           "labels": {"gateway.envoyproxy.io/owning-gateway-name": gateway,
                                      "gateway.envoyproxy.io/owning-gateway-namespace": gateway_namespace}},
              "spec": {"containers": [{"name": "envoy", "image": "envoyproxy/envoy"}]}})
    cp.ok("PATCH", cp.resource_path("v1", "Pod", PROXIES, name) + "/status",
          {"status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]}},
          content_type="application/merge-patch+json")


def deliver(port: int) -> int:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("POST", signers.flux_path(TOKEN, "app", NAMESPACE), body=PUSH,
                     headers=signers.github(TOKEN, PUSH))
        return conn.getresponse().status
    finally:
        conn.close()


def allow_reading_proxy_pods(cp) -> None:
    """The manifests' Role for the controller to read the proxies' pods, bound in PROXIES."""
    for doc in yaml.safe_load_all((MANIFESTS / "base/gateway/proxy/proxy-pods-rbac.yaml").read_text()):
        doc["metadata"]["namespace"] = PROXIES
        for subject in doc.get("subjects", []):
            subject["namespace"] = CONTROLLER_NAMESPACE
        cp.apply(doc)


def test_only_hookgate_s_own_proxy_pods_are_confirmed(cp, tmp_path):
    cp.namespace(PROXIES)
    allow_reading_proxy_pods(cp)
    # Another Gateway's proxy, and a tenant's Gateway of the same name's, have the address the test's Envoy
    # asks from.
    proxy_pod(cp, "other-gateway-proxy", "other", "127.0.0.1")
    proxy_pod(cp, "tenant-gateway-proxy", "hookgate", "127.0.0.1", gateway_namespace="tenant")
    proxy_pod(cp, "hookgate-proxy", "hookgate", "10.1.2.3")
    upstream = RecordingUpstream()
    args = ["--proxy-selector", SELECTOR, "--proxy-namespace", PROXIES]
    try:
        with ServedEdge(cp, tmp_path, OBJECTS, upstream_port=upstream.port, controller_args=args,
                        refused=len(OBJECTS) - 1) as served:
            wait(lambda: served.controller_requests("awaiting_confirmation") >= 3, 30,
                 "the filter asking the controller, unconfirmed", served.controller.log)
            assert served.stat("hookgate_confirmations_received_total") == 0
            assert served.controller_metric("hookgate_confirmations_refused_total") >= 1
            assert served.receivers_loaded() == 0
            assert deliver(served.port) == 503

            # hookgate's proxy pod now has the Envoy's address: the same Envoy is confirmed and serves.
            proxy_pod(cp, "hookgate-proxy", "hookgate", "127.0.0.1")
            wait(lambda: served.receivers_loaded() == 1, 30, "the filter confirmed and configured",
                 lambda: served.controller.log()[-2000:])
            assert served.stat("hookgate_confirmations_received_total") >= 1
            assert deliver(served.port) == 200
            assert len(upstream.requests) == 1
    finally:
        upstream.close()
        for name in ("other-gateway-proxy", "tenant-gateway-proxy", "hookgate-proxy"):
            cp.request("DELETE", cp.resource_path("v1", "Pod", PROXIES, name))
