"""Receivers as Kubernetes objects, live at the edge (docs/live-configuration.md), on the real parts: the
Receiver CRD in the real kube-apiserver, the controller run from the manifests' Deployment under its own
ServiceAccount, and the real Envoy Gateway (standalone) translating the manifests with the `live` component,
whose Envoy's filter takes its receivers from the controller over the sealed channel.

A tenant with rights only in its own namespace adds a receiver and its Secret; a rotated Secret is live
within seconds; a deleted Secret refuses only its receiver; the controller restarts without the proxy
restarting. Envoy's process id is read before and after: no test here restarts it."""

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
from cluster import ApiError
from deploy import MANIFESTS, Delivery, deploy, send
from gateway import EnvoyGateway, ModuleServer, http_code, render, wait
from gitops import FLUX, git_repository
from harness import WASM, Controller, free_port

PROBE = WASM.parent / "hookgate_probe.wasm"
PROBE_HOST = "probe.live.test"
# What the proxies' environment held before receivers were objects: a probe names them all.
OLD_VARIABLES = ["HOOKGATE_ATTESTATION_KEY", "GITHUB_WEBHOOK_TOKEN", "TEAM_A_GITHUB_TOKEN", "TEAM_A_GITLAB_TOKEN",
                 "TEAM_B_GITHUB_TOKEN", "TEAM_B_GITLAB_TOKEN", "HARBOR_TOKEN", "GHCR_WEBHOOK_TOKEN"]

API = "hookgate.io/v1alpha1"
CRDS = MANIFESTS / "base/crds"
# Namespaces of this module's tenants (other modules use team-a and team-b in the shared control plane).
TENANT, NEIGHBOUR = "tenant-red", "tenant-blue"
HOST = "hooks.live.test"
CONTROLLER_NAMESPACE = "hookgate-live"
PUSH = json.dumps({"ref": "refs/heads/main", "after": "3f786850e387550fdab836ed7e6dc881de23001b",
                   "repository": {"full_name": "example/app"}}).encode()


def live_example(workdir: Path, channel_key: str) -> Path:
    """The platform side as a user composes it: the controller with the CRD, the route side and the proxy
    side in their namespaces, the `live` component, and the user's own channel key and host name."""
    def write(directory: Path, document: dict) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "kustomization.yaml").write_text(yaml.safe_dump(document, sort_keys=False))
        return directory

    def rel(directory: Path, target: Path) -> str:
        return os.path.relpath(target, directory)

    example = workdir / "live-example"
    app = example / "app"
    write(app, {"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
                # A namespace of its own: its cluster-wide bindings name this ServiceAccount, which no other
                # test of the shared control plane uses.
                "namespace": CONTROLLER_NAMESPACE,
                "resources": [rel(app, CRDS), rel(app, MANIFESTS / "base/controller"),
                              rel(app, MANIFESTS / "base/gateway/route")]})
    return write(example, {
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        "resources": ["app", rel(example, MANIFESTS / "base/gateway/proxy")],
        "components": [rel(example, MANIFESTS / "base/gateway/live")],
        "patches": [
            {"target": {"kind": "EnvoyExtensionPolicy", "name": "hookgate"}, "patch": json.dumps(
                [{"op": "replace", "path": "/spec/wasm/0/config/channelKeys", "value": [channel_key]}])},
            {"target": {"kind": "HTTPRoute", "name": "hookgate-webhooks"}, "patch": json.dumps(
                [{"op": "add", "path": "/spec/hostnames", "value": [HOST]}])},
        ]})


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

    def envoy_pid(self) -> int:
        """The Envoy that envoy-gateway runs (its child process)."""
        children = [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()
                    and _parent(p) == self.gateway.proc.pid and "envoy" in _cmdline(p)]
        assert len(children) == 1, children
        return children[0]

    def post(self, path: str, secret: str, delivery: str = "live-1") -> int:
        headers = signers.github(secret, PUSH, "push", delivery=delivery)
        return send(self.port, HOST, Delivery(path, headers, PUSH), "127.0.0.1")[0]

    def receiver(self, namespace: str, name: str) -> dict:
        return self.cp.get(API, "Receiver", namespace, name)

    def ready(self, namespace: str, name: str) -> dict:
        """The Ready condition of a receiver's status (empty before the controller wrote one)."""
        conditions = self.receiver(namespace, name).get("status", {}).get("conditions", [])
        return next((c for c in conditions if c["type"] == "Ready"), {})


def _parent(proc: Path) -> int:
    try:
        status = (proc / "status").read_text()
    except OSError:
        return -1
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("PPid:")))


def _cmdline(proc: Path) -> str:
    try:
        return (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def tenant_identity(cp, namespace: str) -> str:
    """The token of a ServiceAccount that may manage Receivers and Secrets in `namespace` and nothing else."""
    cp.namespace(namespace)
    cp.apply({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
              "metadata": {"name": "receiver-owner", "namespace": namespace},
              "rules": [{"apiGroups": ["hookgate.io"], "resources": ["receivers"], "verbs": ["*"]},
                        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["*"]}]})
    cp.apply({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
              "metadata": {"name": "receiver-owner", "namespace": namespace},
              "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "receiver-owner"},
              "subjects": [{"kind": "ServiceAccount", "name": "tenant", "namespace": namespace}]})
    return cp.service_account_token(namespace, "tenant")


@pytest.fixture(scope="module")
def live(cp, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("live")
    channel_key, attestation_key = secrets.token_hex(32), secrets.token_hex(32)
    cp.install_crds([d for d in render(CRDS) if d["kind"] == "CustomResourceDefinition"])
    tokens = {ns: tenant_identity(cp, ns) for ns in (TENANT, NEIGHBOUR)}
    for ns in (TENANT, NEIGHBOUR):
        cp.apply(git_repository("app", ns))
    values = {("hookgate-channel", "key"): channel_key, ("hookgate-attestation", "key"): attestation_key}
    modules = ModuleServer(WASM.parent)
    gateway = EnvoyGateway({})
    port = free_port()
    deployed = None
    try:
        deployed = deploy(live_example(workdir, channel_key), cp, gateway, values=values,
                          workdir=workdir, gateway_port=port,
                          wasm_code=http_code(modules.url(WASM.name), WASM))
        state = Live(cp, gateway, port, deployed.controller, deployed.gateway_docs, modules,
                     {"channel": channel_key, "attestation": attestation_key}, tokens)
        # Fail closed until the first configuration, then the filter answers for unknown paths.
        wait(lambda: state.post("/hook/nothing-here", "x") == 404, 60, "the filter configured by the controller",
             lambda: gateway.log()[-3000:] + state.controller.log()[-3000:])
        yield state
    finally:
        if deployed is not None and deployed.controller is not None:
            deployed.controller.stop()
        gateway.cleanup()
        modules.close()


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
    assert len(answers) > 30 and not refused, refused
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
    variable in its hostKeys and calls the cluster of hookgate's route."""
    cluster = next(w["config"]["controller"]["cluster"] for d in live.gateway_docs
                   if d["kind"] == "EnvoyExtensionPolicy" for w in d["spec"]["wasm"])
    meta = {"namespace": TENANT}
    return [
        {"apiVersion": "gateway.envoyproxy.io/v1alpha1", "kind": "Backend", "metadata": {"name": "probe", **meta},
         "spec": {"endpoints": [{"ip": {"address": "127.0.0.1", "port": free_port()}}]}},
        {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute", "metadata": {"name": "probe", **meta},
         "spec": {"parentRefs": [{"name": "eg", "namespace": "envoy-gateway-system"}], "hostnames": [PROBE_HOST],
                  "rules": [{"backendRefs": [{"group": "gateway.envoyproxy.io", "kind": "Backend",
                                              "name": "probe"}]}]}},
        {"apiVersion": "gateway.envoyproxy.io/v1alpha1", "kind": "EnvoyExtensionPolicy",
         "metadata": {"name": "probe", **meta},
         "spec": {"targetRefs": [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "name": "probe"}],
                  "wasm": [{"name": "probe", "rootID": "probe", "code": http_code(live.modules.url(PROBE.name), PROBE),
                            "env": {"hostKeys": OLD_VARIABLES},
                            "config": {"variables": OLD_VARIABLES, "cluster": cluster}}]}},
    ]


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
    live.gateway.apply(live.gateway_docs + probe_documents(live))
    try:
        report = wait(lambda: probe_report(live), 60, "the probe extension answering", live.gateway.log)
    finally:
        live.gateway.apply(live.gateway_docs)
    assert report["env"] == {name: None for name in OLD_VARIABLES}, report["env"]
    assert report["calls"] == {"configuration": 401, "reconcile": 401}, report
    shown = json.dumps(report)
    for value in [*live.keys.values()]:
        assert value not in shown


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
