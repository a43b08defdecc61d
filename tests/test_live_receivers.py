"""Receivers as Kubernetes objects, live at the edge (docs/live-configuration.md), on the real parts: the
Receiver CRD in the real kube-apiserver, the controller run from the manifests' Deployment under its own
ServiceAccount, and the real Envoy Gateway (standalone) translating the manifests' base, whose Envoy's
filter takes its receivers from the controller over the sealed channel.

A tenant with rights only in its own namespace adds a receiver and its Secret; a rotated Secret is live
within seconds; a deleted Secret refuses only its receiver; the controller restarts without the proxy
restarting; Flux's own Receivers are served as they are (`--serve-flux-receivers`) and never written. Envoy's
process id is read before and after: no test here restarts it."""

from __future__ import annotations

import http.client
import http.server
import json
import os
import secrets
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

import signers
from cluster import ApiError, crd_documents
from deploy import MANIFESTS, Delivery, deploy, send
from gateway import EnvoyGateway, ModuleServer, http_code, wait
from gitops import FLUX, git_repository
from harness import WASM, Controller, free_port

PROBE = WASM.parent / "hookgate_probe.wasm"
PROBE_HOST = "probe.live.test"
# What the proxies' environment held before receivers were objects: a probe names them all.
OLD_VARIABLES = ["HOOKGATE_ATTESTATION_KEY", "GITHUB_WEBHOOK_TOKEN", "TEAM_A_GITHUB_TOKEN", "TEAM_A_GITLAB_TOKEN",
                 "TEAM_B_GITHUB_TOKEN", "TEAM_B_GITLAB_TOKEN", "HARBOR_WEBHOOK_AUTH", "GHCR_WEBHOOK_TOKEN",
                 "GITOPS_REPO_WEBHOOK_TOKEN", "ARGOCD_NOTIFICATIONS_TOKEN"]

API = "hookgate.io/v1alpha1"
FLUX_API = "notification.toolkit.fluxcd.io/v1"
# Flux's notification-controller, whose Receiver CRD the controller watches with --serve-flux-receivers.
FLUX_NOTIFICATION_CRDS = [("github.com/fluxcd/notification-controller", "v1.9.3", "config/crd/bases/")]
# Namespaces of this module's tenants (other modules use team-a and team-b in the shared control plane).
TENANT, NEIGHBOUR = "tenant-red", "tenant-blue"
HOST = "hooks.live.test"
CONTROLLER_NAMESPACE = "hookgate-live"
PUSH = json.dumps({"ref": "refs/heads/main", "after": "3f786850e387550fdab836ed7e6dc881de23001b",
                   "repository": {"full_name": "example/app"}}).encode()


def live_example(workdir: Path) -> Path:
    """The platform side as a user composes it from the base: the controller (with the CRD), the route side
    and the proxy side in their namespaces, the bootstrap's cluster filled in from the route's namespace, the
    user's host name, and the reconcilable kinds bound in every namespace (tenants come and go here).
    tests/deploy.py sets controllerKeys as a user does."""
    def write(directory: Path, document: dict) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "kustomization.yaml").write_text(yaml.safe_dump(document, sort_keys=False))
        return directory

    def rel(directory: Path, target: Path) -> str:
        return os.path.relpath(target, directory)

    example = workdir / "live-example"
    app = example / "app"
    app.mkdir(parents=True, exist_ok=True)
    (app / "reconcile-everywhere.yaml").write_text(yaml.safe_dump({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": "hookgate-controller-reconcile-live"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "hookgate-controller"},
        "subjects": [{"kind": "ServiceAccount", "name": "hookgate-controller", "namespace": "default"}]}))
    write(app, {"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
                # A namespace of its own: its cluster-wide bindings name this ServiceAccount, which no other
                # test of the shared control plane uses.
                "namespace": CONTROLLER_NAMESPACE,
                "resources": [rel(app, MANIFESTS / "base/controller"), rel(app, MANIFESTS / "base/gateway/route"),
                              "reconcile-everywhere.yaml"],
                "patches": [{"target": {"kind": "HTTPRoute", "name": "hookgate-webhooks"}, "patch": json.dumps(
                    [{"op": "add", "path": "/spec/hostnames", "value": [HOST]}])}],
                "replacements": [{
                    "source": {"kind": "HTTPRoute", "name": "hookgate-webhooks", "fieldPath": "metadata.namespace"},
                    "targets": [{"select": {"kind": "EnvoyExtensionPolicy", "name": "hookgate"},
                                 "fieldPaths": ["spec.wasm.0.config.controller.cluster"],
                                 "options": {"delimiter": "/", "index": 1}}]}]})
    return write(example, {"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
                           "resources": ["app", rel(example, MANIFESTS / "base/gateway/proxy")],
                           # The controller reads hookgate's proxy pods from its namespace.
                           "patches": [{"target": {"kind": "RoleBinding", "name": "hookgate-proxy-pods"},
                                        "patch": json.dumps([{"op": "replace", "path": "/subjects/0/namespace",
                                                              "value": CONTROLLER_NAMESPACE}])}]})


@dataclass
class Live:
    cp: object
    gateway: EnvoyGateway
    port: int
    controller: Controller
    gateway_docs: list[dict]
    modules: ModuleServer
    keys: dict[str, str]  # the channel and attestation keys
    tokens: dict[str, str] = field(default_factory=dict)  # a tenant identity's API token, by namespace

    def bootstrap(self) -> dict:
        """hookgate's plugin configuration as Envoy Gateway is given it: the bootstrap."""
        (config,) = [w["config"] for d in self.gateway_docs if d["kind"] == "EnvoyExtensionPolicy"
                     for w in d["spec"]["wasm"]]
        return config

    def envoy_pid(self) -> int:
        return self.gateway.envoy_pid()

    def post(self, path: str, secret: str, delivery: str = "live-1") -> int:
        headers = signers.github(secret, PUSH, "push", delivery=delivery)
        return send(self.port, HOST, Delivery(path, headers, PUSH), "127.0.0.1")[0]

    def receiver(self, namespace: str, name: str) -> dict:
        return self.cp.get(API, "Receiver", namespace, name)

    def ready(self, namespace: str, name: str) -> dict:
        """The Ready condition of a receiver's status (empty before the controller wrote one)."""
        conditions = self.receiver(namespace, name).get("status", {}).get("conditions", [])
        return next((c for c in conditions if c["type"] == "Ready"), {})


def tenant_identity(cp, namespace: str) -> str:
    """The token of a ServiceAccount that may manage Receivers (hookgate's and Flux's) and Secrets in
    `namespace` and nothing else."""
    cp.namespace(namespace)
    cp.apply({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
              "metadata": {"name": "receiver-owner", "namespace": namespace},
              "rules": [{"apiGroups": ["hookgate.io", "notification.toolkit.fluxcd.io"],
                         "resources": ["receivers"], "verbs": ["*"]},
                        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["*"]}]})
    cp.apply({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
              "metadata": {"name": "receiver-owner", "namespace": namespace},
              "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "receiver-owner"},
              "subjects": [{"kind": "ServiceAccount", "name": "tenant", "namespace": namespace}]})
    return cp.service_account_token(namespace, "tenant")


def start_live(cp, workdir: Path, controller_args: list[str] = (), tokens: dict | None = None) -> Live:
    """The platform side deployed from the base (CRDs installed), the controller running, and the filter
    configured by it (fail closed before: 503; then unknown paths answer 404)."""
    modules = ModuleServer(WASM.parent)
    gateway = EnvoyGateway({})
    port = free_port()
    try:
        # The controller confirms each proxy VM on the listener the test gives the Gateway.
        deployed = deploy(live_example(workdir), cp, gateway, workdir=workdir, gateway_port=port,
                          wasm_code=http_code(modules.url(WASM.name), WASM), controller_args=list(controller_args))
    except Exception:
        gateway.cleanup()
        modules.close()
        raise
    namespace = CONTROLLER_NAMESPACE
    keys = {"channel": deployed.secret_values[(namespace, "hookgate-channel", "key")],
            "attestation": deployed.secret_values[(namespace, "hookgate-attestation", "key")]}
    live = Live(cp, gateway, port, deployed.controller, deployed.gateway_docs, modules, keys, tokens or {})
    try:
        wait(lambda: live.post("/hook/nothing-here", "x") == 404, 60, "the filter configured by the controller",
             lambda: gateway.log()[-3000:] + live.controller.log()[-3000:])
    except Exception:
        stop_live(live)
        raise
    return live


def stop_live(live: Live) -> None:
    live.controller.stop()
    live.gateway.cleanup()
    live.modules.close()


@pytest.fixture(scope="module")
def live(cp, tmp_path_factory):
    cp.install_crds(crd_documents(FLUX_NOTIFICATION_CRDS))
    tokens = {ns: tenant_identity(cp, ns) for ns in (TENANT, NEIGHBOUR)}
    for ns in (TENANT, NEIGHBOUR):
        cp.apply(git_repository("app", ns))
    state = start_live(cp, tmp_path_factory.mktemp("live"), ["--serve-flux-receivers"], tokens)
    try:
        yield state
    finally:
        stop_live(state)


def receiver(name: str, namespace: str, secret: str, *, keys: list[str] | None = None, path: str | None = None,
             target_namespace: str | None = None) -> dict:
    spec = {"type": "github", "events": ["push"], "secretRef": {"name": secret, **({"keys": keys} if keys else {})},
            "targets": [{"kind": "GitRepository", "name": "app",
                         **({"namespace": target_namespace} if target_namespace else {})}]}
    if path:
        spec["path"] = path
    return {"apiVersion": API, "kind": "Receiver", "metadata": {"name": name, "namespace": namespace}, "spec": spec}


def secret_object(name: str, namespace: str, data: dict[str, str]) -> dict:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": namespace},
            "stringData": data}


def replace_secret(cp, name: str, namespace: str, data: dict[str, str], token: str) -> None:
    """The whole Secret replaced (a key left out is removed, as `kubectl apply` of a new Secret does)."""
    path = cp.resource_path("v1", "Secret", namespace, name)
    current = cp.ok("GET", path, token=token)
    cp.ok("PUT", path, {**secret_object(name, namespace, data),
                        "metadata": {"name": name, "namespace": namespace,
                                     "resourceVersion": current["metadata"]["resourceVersion"]}}, token=token)


def annotation(cp, namespace: str) -> str | None:
    return cp.get("source.toolkit.fluxcd.io/v1", "GitRepository", namespace, "app")["metadata"] \
        .get("annotations", {}).get(FLUX)


def until_accepted(live: Live, path: str, secret: str, timeout: float = 30) -> float:
    """Seconds until a delivery signed with `secret` on `path` is accepted (200)."""
    start = time.monotonic()
    wait(lambda: live.post(path, secret) == 200, timeout, f"a delivery on {path} accepted",
         lambda: live.controller.log()[-3000:])
    return time.monotonic() - start


def test_a_tenant_adds_a_receiver_and_it_is_live_at_the_same_envoy(live):
    envoy = live.envoy_pid()
    token = secrets.token_hex(20)
    tenant = live.tokens[TENANT]
    before = annotation(live.cp, TENANT)
    start = time.monotonic()
    live.cp.apply(secret_object("webhook-token", TENANT, {"token": token}), token=tenant)
    live.cp.apply(receiver("app", TENANT, "webhook-token"), token=tenant)
    path = signers.flux_path(token, "app", TENANT)
    wait(lambda: live.receiver(TENANT, "app").get("status", {}).get("webhookPath") == path, 30,
         "status.webhookPath", lambda: json.dumps(live.receiver(TENANT, "app").get("status")))
    until_accepted(live, path, token)
    elapsed = time.monotonic() - start
    print(f"receiver applied -> first delivery accepted at the edge: {elapsed:.2f} s")
    assert annotation(live.cp, TENANT) != before
    wait(lambda: live.ready(TENANT, "app").get("status") == "True", 30, "Ready",
         lambda: json.dumps(live.receiver(TENANT, "app").get("status")))
    assert live.receiver(TENANT, "app")["status"]["observedGeneration"] == \
        live.receiver(TENANT, "app")["metadata"]["generation"]
    assert live.post(path, "forged-" + token) == 401
    assert live.envoy_pid() == envoy


def test_a_tenant_cannot_reach_another_namespace(live):
    tenant = live.tokens[TENANT]
    token = secrets.token_hex(20)
    live.cp.apply(secret_object("sneaky-token", TENANT, {"token": token}), token=tenant)
    live.cp.apply(receiver("sneaky", TENANT, "sneaky-token", target_namespace=NEIGHBOUR), token=tenant)
    wait(lambda: live.ready(TENANT, "sneaky").get("reason") == "CrossNamespaceTarget", 30,
         "the receiver refused for its target", lambda: json.dumps(live.receiver(TENANT, "sneaky").get("status")))
    assert live.ready(TENANT, "sneaky")["status"] == "False"
    before = annotation(live.cp, NEIGHBOUR)
    assert live.post(signers.flux_path(token, "sneaky", TENANT), token) == 404
    assert annotation(live.cp, NEIGHBOUR) == before
    # Nor can the tenant write in the neighbour's namespace itself.
    with pytest.raises(ApiError) as refused:
        live.cp.apply(receiver("app", NEIGHBOUR, "webhook-token"), token=tenant)
    assert refused.value.status == 403


def test_rotation_under_continuous_deliveries_refuses_none(live):
    """A pinned path serves every key of the receiver: the new key is added, the sender switches, the old
    key is removed. One signed delivery every 100 ms throughout."""
    tenant = live.tokens[NEIGHBOUR]
    old, new = secrets.token_hex(20), secrets.token_hex(20)
    path = "/hook/tenant-blue-rotating"
    live.cp.apply(secret_object("rotating-token", NEIGHBOUR, {"token": old}), token=tenant)
    live.cp.apply(receiver("rotating", NEIGHBOUR, "rotating-token", keys=["token", "next"], path=path),
                  token=tenant)
    until_accepted(live, path, old)
    signing = {"secret": old}
    answers: list[tuple[str, int]] = []
    stop = threading.Event()

    def deliver() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            secret = signing["secret"]
            answers.append(("old" if secret == old else "new", live.post(path, secret, delivery=f"rot-{n}")))
            time.sleep(0.1)

    sender = threading.Thread(target=deliver)
    sender.start()
    try:
        time.sleep(1)
        replace_secret(live.cp, "rotating-token", NEIGHBOUR, {"token": old, "next": new}, tenant)
        live_after = wait_live(live, path, new)
        signing["secret"] = new
        time.sleep(1)
        replace_secret(live.cp, "rotating-token", NEIGHBOUR, {"next": new}, tenant)
        removed_after = wait_refused(live, path, old)
        time.sleep(1)
    finally:
        stop.set()
        sender.join()
    refused = [a for a in answers if a[1] != 200]
    print(f"rotation: {len(answers)} deliveries, {len(refused)} refused; new key live after {live_after:.2f} s, "
          f"old key refused after {removed_after:.2f} s")
    # Deliveries went on throughout, signed with each key (how many depends on the machine's load).
    signed_with = {key: sum(1 for k, _ in answers if k == key) for key in ("old", "new")}
    assert min(signed_with.values()) >= 3 and not refused, (signed_with, refused)
    assert live.post(path, old) == 401


def wait_live(live: Live, path: str, secret: str) -> float:
    start = time.monotonic()
    wait(lambda: live.post(path, secret, delivery=f"probe-{time.monotonic()}") == 200, 30,
         "the new key live at the edge")
    return time.monotonic() - start


def wait_refused(live: Live, path: str, secret: str) -> float:
    start = time.monotonic()
    wait(lambda: live.post(path, secret, delivery=f"probe-{time.monotonic()}") == 401, 30,
         "the old key refused at the edge")
    return time.monotonic() - start


def test_a_deleted_secret_refuses_only_its_receiver(live):
    tenant = live.tokens[TENANT]
    doomed, kept = secrets.token_hex(20), secrets.token_hex(20)
    live.cp.apply(secret_object("doomed-token", TENANT, {"token": doomed}), token=tenant)
    live.cp.apply(receiver("doomed", TENANT, "doomed-token"), token=tenant)
    live.cp.apply(secret_object("kept-token", TENANT, {"token": kept}), token=tenant)
    live.cp.apply(receiver("kept", TENANT, "kept-token"), token=tenant)
    doomed_path, kept_path = signers.flux_path(doomed, "doomed", TENANT), signers.flux_path(kept, "kept", TENANT)
    until_accepted(live, doomed_path, doomed)
    until_accepted(live, kept_path, kept)
    live.cp.ok("DELETE", live.cp.resource_path("v1", "Secret", TENANT, "doomed-token"), token=tenant)
    wait(lambda: live.post(doomed_path, doomed) == 404, 30, "the receiver without its Secret refused")
    wait(lambda: live.ready(TENANT, "doomed").get("reason") == "SecretNotFound", 30, "status says why",
         lambda: json.dumps(live.receiver(TENANT, "doomed").get("status")))
    assert doomed not in json.dumps(live.receiver(TENANT, "doomed")["status"])
    assert live.post(kept_path, kept) == 200


def test_the_controller_restarts_and_the_proxy_does_not(live):
    envoy = live.envoy_pid()
    tenant = live.tokens[NEIGHBOUR]
    token = secrets.token_hex(20)
    live.cp.apply(secret_object("restart-token", NEIGHBOUR, {"token": token}), token=tenant)
    live.cp.apply(receiver("restart", NEIGHBOUR, "restart-token"), token=tenant)
    path = signers.flux_path(token, "restart", NEIGHBOUR)
    until_accepted(live, path, token)
    live.controller.restart()
    until_accepted(live, path, token)
    assert live.envoy_pid() == envoy


def test_the_configuration_endpoint_answers_only_the_channel_key(live):
    """Whoever reaches the controller without the channel key gets nothing: no headers, wrong key."""
    url = f"http://127.0.0.1:{live.controller.port}/hookgate/v1/configuration"
    for headers in ({}, {"x-hookgate-channel-key": "0123456789abcdef", "x-hookgate-timestamp": str(int(time.time())),
                         "x-hookgate-nonce": "00" * 16, "x-hookgate-known": "0.-", "x-hookgate-proxy": "probe",
                         "x-hookgate-signature": "v1=" + "00" * 32}):
        try:
            with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10) as r:
                status, body = r.status, r.read()
        except urllib.error.HTTPError as e:
            status, body = e.code, e.read()
        assert status == 401 and b"receivers" not in body, (status, body[:200])


def probe_documents(live: Live) -> list[dict]:
    """Another tenant's route on the same Gateway with its own Wasm extension: the probe names every old
    variable in its hostKeys, calls the cluster of hookgate's route (forging, and enrolling with a key of
    its own and the controller's public key from hookgate's bootstrap, which it can read), and calls Envoy's
    admin interface through Envoy Gateway's Prometheus cluster."""
    config = live.bootstrap()
    meta = {"namespace": TENANT}
    return [
        {"apiVersion": "gateway.envoyproxy.io/v1alpha1", "kind": "Backend", "metadata": {"name": "probe", **meta},
         "spec": {"endpoints": [{"ip": {"address": "127.0.0.1", "port": free_port()}}]}},
        {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute", "metadata": {"name": "probe", **meta},
         "spec": {"parentRefs": [{"name": "hookgate", "namespace": "envoy-gateway-system"}], "hostnames": [PROBE_HOST],
                  "rules": [{"backendRefs": [{"group": "gateway.envoyproxy.io", "kind": "Backend",
                                              "name": "probe"}]}]}},
        {"apiVersion": "gateway.envoyproxy.io/v1alpha1", "kind": "EnvoyExtensionPolicy",
         "metadata": {"name": "probe", **meta},
         "spec": {"targetRefs": [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "name": "probe"}],
                  "wasm": [{"name": "probe", "rootID": "probe", "code": http_code(live.modules.url(PROBE.name), PROBE),
                            "env": {"hostKeys": OLD_VARIABLES},
                            "config": {"variables": OLD_VARIABLES, "cluster": config["controller"]["cluster"],
                                       "controllerKey": config["controllerKeys"][0],
                                       "calls": [["admin", "prometheus_stats", "/config_dump"]]}}]}},
    ]


def confirmations_received(live: Live) -> int:
    """Confirmation posts hookgate's filter took on its route, from Envoy's counters."""
    return sum(int(float(line.rsplit(" ", 1)[1])) for line in live.gateway.stats().splitlines()
               if "hookgate_confirmations_received" in line and not line.startswith("#"))


def probe_report(live: Live) -> dict:
    conn = http.client.HTTPConnection("127.0.0.1", live.port, timeout=30)
    try:
        conn.request("GET", "/", headers={"Host": PROBE_HOST})
        response = conn.getresponse()
        body = response.read()
        if response.status != 200 or response.getheader("content-type") != "application/json":
            return {}
        return json.loads(body)
    finally:
        conn.close()


def test_another_extension_on_the_proxies_learns_nothing_and_forges_nothing(live):
    """Everything another extension can reach: its hostKeys, Envoy's whole configuration through the admin
    interface (where hookgate's bootstrap holds only the controller's public key), and the controller's
    cluster, where it forges requests and enrolls as a filter VM would: it is never confirmed (the
    confirmation goes to hookgate's route and shared data), so it never gets the configuration."""
    tenant = live.tokens[TENANT]
    token = secrets.token_hex(20)
    live.cp.apply(secret_object("probed-token", TENANT, {"token": token}), token=tenant)
    live.cp.apply(receiver("probed", TENANT, "probed-token"), token=tenant)
    until_accepted(live, signers.flux_path(token, "probed", TENANT), token)
    live.gateway.apply(live.gateway_docs + probe_documents(live))
    try:
        first = wait(lambda: probe_report(live), 60, "the probe extension answering", live.gateway.log)
        before = confirmations_received(live)
        second = probe_report(live)
        # The controller posted the probe's confirmation to the proxy, and hookgate's filter took it (the
        # test's own VMs are confirmed already: nothing else is posted now); the probe still gets 202.
        wait(lambda: confirmations_received(live) > before, 30, "the probe's confirmation posted to hookgate")
        third = probe_report(live)
    finally:
        live.gateway.apply(live.gateway_docs)
    for report in (first, second, third):
        assert report["env"] == {name: None for name in OLD_VARIABLES}, report["env"]
        assert {k: report["calls"][k] for k in ("configuration", "reconcile", "enrollment")} == {
            "configuration": 401, "reconcile": 401, "enrollment": 202}, report["calls"]
        assert not report["confirmation_found"]
        shown = json.dumps(report)
        for value in [*live.keys.values(), token]:
            assert value not in shown
    # Whatever reaches Envoy's admin interface (on Kubernetes, Envoy Gateway's `prometheus_stats` cluster
    # leads there; the probe tried it) sees all of Envoy's configuration: hookgate's part of it holds the
    # controller's public key and no secret.
    config = live.bootstrap()
    dump = json.dumps(live.gateway.config_dump())
    assert config["controllerKeys"][0] in dump
    for value in [*live.keys.values(), token]:
        assert value not in dump


class Relay:
    """Between Envoy and the controller, as someone on that network would be: forwards every request, keeps
    the sealed configuration answers it sees, and when armed puts a kept (older) one in place of the
    controller's next answers."""

    def __init__(self, controller_port: int) -> None:
        self.captured: list[bytes] = []
        self.polls = 0  # configuration requests that came through the relay
        self.replace: bytes | None = None
        self.replaced = 0
        relay = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def forward(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                if self.path.startswith("/hookgate/v1/configuration"):
                    relay.polls += 1
                upstream = http.client.HTTPConnection("127.0.0.1", controller_port, timeout=60)
                try:
                    upstream.request(self.command, self.path, body=body or None,
                                     headers={k: v for k, v in self.headers.items() if k.lower() != "host"})
                    answer = upstream.getresponse()
                    status, headers, data = answer.status, answer.getheaders(), answer.read()
                finally:
                    upstream.close()
                if self.path.startswith("/hookgate/v1/configuration") and status == 200:
                    if relay.replace is not None:
                        data, relay.replaced = relay.replace, relay.replaced + 1
                    else:
                        relay.captured.append(data)
                self.send_response(status)
                for name, value in headers:
                    if name.lower() not in ("content-length", "transfer-encoding", "connection"):
                        self.send_header(name, value)
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = forward

            def log_message(self, *args) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def through(docs: list[dict], port: int) -> list[dict]:
    """The gateway documents with the controller's Backend on `port`."""
    docs = json.loads(json.dumps(docs))
    for doc in docs:
        if doc["kind"] == "Backend" and doc["metadata"]["name"] == "hookgate-controller":
            doc["spec"]["endpoints"][0]["ip"]["port"] = port
    return docs


def refused_configurations(live: Live) -> int:
    return sum(int(float(line.rsplit(" ", 1)[1])) for line in live.gateway.stats().splitlines()
               if "hookgate_configuration_refused" in line and not line.startswith("#"))


def test_an_older_configuration_replayed_to_the_filter_is_refused(live):
    """A configuration that once included a receiver, replayed after the receiver was deleted, does not
    bring it back: the answer was sealed for another request."""
    tenant = live.tokens[TENANT]
    relay = Relay(live.controller.port)
    live.gateway.apply(through(live.gateway_docs, relay.port))
    try:
        # A proxy's long poll through the relay, which the change below answers.
        wait(lambda: relay.polls, 60, "a configuration request through the relay")
        token = secrets.token_hex(20)
        path = signers.flux_path(token, "revoked", TENANT)
        live.cp.apply(secret_object("revoked-token", TENANT, {"token": token}), token=tenant)
        live.cp.apply(receiver("revoked", TENANT, "revoked-token"), token=tenant)
        until_accepted(live, path, token)
        wait(lambda: relay.captured, 30, "the configuration that includes the receiver, through the relay")
        live.cp.ok("DELETE", live.cp.resource_path(API, "Receiver", TENANT, "revoked"), token=tenant)
        wait(lambda: live.post(path, token) == 404, 30, "the deleted receiver refused")
        # That was one VM (one worker): every VM gets the deletion within a round trip and its pause of 1 s
        # between calls. One that had not yet would keep serving the receiver once its answers are replaced.
        time.sleep(3)
        before = refused_configurations(live)
        relay.replace = relay.captured[-1]
        # Any change ends the long polls in flight; their answers are replaced by the captured one.
        live.cp.apply(secret_object("trigger-token", TENANT, {"token": token}), token=tenant)
        live.cp.apply(receiver("trigger", TENANT, "trigger-token"), token=tenant)
        wait(lambda: relay.replaced and refused_configurations(live) > before, 60,
             "the replayed configuration refused", lambda: live.gateway.log()[-3000:])
        assert live.post(path, token) == 404
    finally:
        relay.replace = None
        live.gateway.apply(live.gateway_docs)
        relay.close()
    until_accepted(live, signers.flux_path(token, "trigger", TENANT), token)
    assert live.post(path, token) == 404


def flux_receiver(name: str, namespace: str, secret: str, flux_type: str = "github", **spec) -> dict:
    """A Flux Receiver as Flux's own documentation writes one."""
    return {"apiVersion": FLUX_API, "kind": "Receiver", "metadata": {"name": name, "namespace": namespace},
            "spec": {"type": flux_type, "events": ["push"], "secretRef": {"name": secret},
                     "resources": [{"kind": "GitRepository", "name": "app"}], **spec}}


def receivers_gauge(live: Live) -> dict[str, float]:
    """The controller's hookgate_receivers series, by their labels."""
    status, text = live.controller.get("/metrics")
    assert status == 200
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
            if line.startswith("hookgate_receivers{")}


def flux_events(live: Live, namespace: str) -> list[dict]:
    """The Events of `namespace` about Flux's Receivers, whoever recorded them."""
    events = live.cp.ok("GET", f"/apis/events.k8s.io/v1/namespaces/{namespace}/events")["items"]
    return [e for e in events if (e.get("regarding") or {}).get("apiVersion") == FLUX_API]


def test_flux_receivers_are_served_as_they_are_and_never_written(live):
    """With --serve-flux-receivers, a tenant's Flux Receiver answers on Flux's own path (sha256 of token, name
    and namespace, computed here) and reconciles its resource; hookgate writes nothing on Flux's objects
    (no status but the CRD's default, no Events, the resourceVersion the tenant's apply gave); one it cannot
    serve is in the controller's log, once, and in its receivers gauge, with the reason."""
    tenant = live.tokens[TENANT]
    token = secrets.token_hex(20)
    live.cp.apply(secret_object("flux-token", TENANT, {"token": token}), token=tenant)
    # gcr senders prove with a Google ID token, which hookgate verifies only with a route's SecurityPolicy.
    unservable = live.cp.apply(flux_receiver("flux-gcr", TENANT, "flux-token", flux_type="gcr", events=[]),
                               token=tenant)
    unsupported = 'hookgate_receivers{kind="flux",ready="false",reason="UnsupportedType"}'
    wait(lambda: receivers_gauge(live).get(unsupported) == 1, 30, "the unservable Flux Receiver counted",
         lambda: live.controller.log()[-3000:])

    served = live.cp.apply(flux_receiver("flux-app", TENANT, "flux-token"), token=tenant)
    path = signers.flux_path(token, "flux-app", TENANT)
    before = annotation(live.cp, TENANT)
    elapsed = until_accepted(live, path, token)
    print(f"Flux Receiver applied -> first delivery accepted at the edge: {elapsed:.2f} s")
    assert annotation(live.cp, TENANT) != before, "the delivery reconciled the Flux Receiver's resource"
    assert live.post(path, "forged-" + token) == 401
    wait(lambda: receivers_gauge(live).get('hookgate_receivers{kind="flux",ready="true",reason="Served"}') == 1,
         30, "the Flux Receiver counted as served", lambda: json.dumps(receivers_gauge(live)))
    gauge = receivers_gauge(live)
    assert gauge[unsupported] == 1, gauge
    assert gauge.get('hookgate_receivers{kind="hookgate",ready="true",reason="Served"}', 0) >= 1, gauge

    # More than two rounds of the status writer (every 2 s), which writes hookgate's Receivers only.
    time.sleep(5)
    for created in (unservable, served):
        name = created["metadata"]["name"]
        now = live.cp.get(FLUX_API, "Receiver", TENANT, name)
        # As the API server created it: Flux's CRD defaults status.observedGeneration to -1, nothing more.
        assert now.get("status") == created.get("status") == {"observedGeneration": -1}, (name, now.get("status"))
        assert now["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"], name
        assert {f["manager"] for f in now["metadata"].get("managedFields", [])} == {"hookgate-tests"}, name
    assert flux_events(live, TENANT) == []

    warnings = [line for line in live.controller.log().splitlines()
                if "WARN" in line and f"{TENANT}/flux-gcr" in line]
    assert len(warnings) == 1, warnings  # once, though the configuration was compiled again since
    assert "UnsupportedType" in warnings[0] and "proves with an ID token" in warnings[0], warnings
    assert token not in live.controller.log()
