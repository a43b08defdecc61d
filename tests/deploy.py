"""An example of manifests/ deployed on this machine as a user deploys it on a cluster: a random value for every
Secret it reads and the public half of the controller's key in its bootstrap (a Kustomize patch, as a user
sets controllerKeys); its CRD, RBAC, Receivers, their Secrets and the objects they target in the real
kube-apiserver; its controller Deployment run as a process (the Deployment's own args and env, its Secret
volumes as files); its gateway side translated by the real Envoy Gateway, whose Envoy's filter takes its
receivers from that controller. Deliveries are signed as each provider signs them (signers.py) and sent to
the Envoy it programs."""

from __future__ import annotations

import copy
import http.client
import json
import subprocess
import re
import secrets
import ssl
from dataclasses import dataclass, field
from pathlib import Path

import signers
import yaml

from cluster import ROOT, ControlPlane, build_binaries
from gateway import EnvoyGateway, overlay, render, standalone_overlay, wait, webhook_tls, webhook_tls_secret
from harness import CONTROLLER, Controller, free_port

MANIFESTS = ROOT / "manifests"
EXAMPLES = sorted(p.parent.name for p in (MANIFESTS / "examples").glob("*/kustomization.yaml"))
FLUX = "reconcile.fluxcd.io/requestedAt"
ARGO_REFRESH = "argocd.argoproj.io/refresh"
RECEIVER_API = "hookgate.io/v1alpha1"
# A Receiver's secretRef without keys names this key (controller/src/receivers/crd.rs).
DEFAULT_SECRET_KEY = "token"
# Kinds the standalone Envoy Gateway reads; the rest of a rendered example is Kubernetes' business.
GATEWAY_KINDS = {"GatewayClass", "Gateway", "HTTPRoute", "Backend", "EnvoyProxy", "EnvoyExtensionPolicy",
                 "EnvoyPatchPolicy", "ClientTrafficPolicy", "BackendTrafficPolicy", "SecurityPolicy"}
CLUSTER_KINDS = ("ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding")
# What Envoy Gateway's installation creates (its certgen job): the client certificate Envoy uses towards the
# Wasm cache. Its content takes no part in the translation.
ENVOY_CLIENT_TLS = {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
                    "metadata": {"name": "envoy", "namespace": "envoy-gateway-system"},
                    "data": {"tls.crt": "Y2VydA==", "tls.key": "a2V5", "ca.crt": "Y2E="}}


def kubernetes_translation(docs: list[dict], workdir: Path, runtime_flags: tuple[str, ...] = (),
                           without_webhook_tls: bool = False) -> dict:
    """Envoy Gateway's own translation of rendered manifests `docs` as on Kubernetes (tests/eg-translate), with
    the Secrets a cluster has beside them (the https listener's certificate) and Envoy Gateway's `runtime_flags` enabled (its configuration's
    `runtimeFlags.enabled`): EnvoyPatchPolicy statuses, listeners and route configurations (protobuf JSON),
    and errors."""
    cluster = [ENVOY_CLIENT_TLS] + ([] if without_webhook_tls else [webhook_tls_secret()])
    # What Envoy Gateway watches on a cluster (the Secret operators' kinds are not in its scheme), with the
    # cluster IP the API server gives a Service.
    watched = copy.deepcopy([d for d in docs if d["kind"] in GATEWAY_KINDS | {"Service"}])
    for service in (d for d in watched if d["kind"] == "Service"):
        service["spec"]["clusterIP"] = "10.96.0.10"
    source = workdir / "eg-translate-input.yaml"
    source.write_text(yaml.safe_dump_all(cluster + watched))
    config = workdir / "envoy-gateway.yaml"
    config.write_text(yaml.safe_dump({"apiVersion": "gateway.envoyproxy.io/v1alpha1", "kind": "EnvoyGateway",
                                      "runtimeFlags": {"enabled": list(runtime_flags)}}))
    out = subprocess.run([build_binaries()["EG_TRANSLATE"], "-config", str(config), str(source)],
                         capture_output=True, text=True, timeout=120)
    if out.returncode != 0:
        raise RuntimeError(f"eg-translate failed: {out.stderr}")
    return json.loads(out.stdout)

# The smallest valid object of each kind a receiver can target: (apiVersion, spec).
OBJECTS = {
    "GitRepository": ("source.toolkit.fluxcd.io/v1",
                      {"url": "https://github.com/example/app", "interval": "10m", "ref": {"branch": "main"}}),
    "Kustomization": ("kustomize.toolkit.fluxcd.io/v1",
                      {"interval": "10m", "path": "./deploy", "prune": True,
                       "sourceRef": {"kind": "GitRepository", "name": "app"}}),
    "HelmRelease": ("helm.toolkit.fluxcd.io/v2",
                    {"interval": "10m", "chart": {"spec": {"chart": "app",
                                                           "sourceRef": {"kind": "HelmRepository", "name": "charts"}}}}),
    "ImageRepository": ("image.toolkit.fluxcd.io/v1", {"image": "ghcr.io/example/app", "interval": "5m"}),
    "Application": ("argoproj.io/v1alpha1",
                    {"project": "default", "source": {"repoURL": "https://github.com/example/app", "path": "."}}),
}

PUSH = {"ref": "refs/heads/main", "after": "3f786850e387550fdab836ed7e6dc881de23001b",
        "repository": {"full_name": "example/app"}}
# A delivery each provider type sends for an event: (headers for (secret, body), payload). An event a
# receiver accepts that no row covers fails the test (a new example needs a row here).
DELIVERIES = {
    ("github", "push"): (lambda s, b: signers.github(s, b, "push"), PUSH),
    ("github", "package"): (lambda s, b: signers.github(s, b, "package"), {
        "action": "published", "package": {"package_version": {"container_metadata": {"tag": {"name": "1.2.3"}}}}}),
    ("gitlab", "push hook"): (lambda s, b: signers.gitlab(s, b, "Push Hook"),
                              {"object_kind": "push", "ref": "refs/heads/main"}),
    ("harbor", "push_artifact"): (signers.harbor, {"type": "PUSH_ARTIFACT",
                                                   "event_data": {"resources": [{"tag": "1.2.3"}]}}),
    ("bearer", None): (signers.bearer, {"event_type": "argo-degraded", "client_payload": {
        "application": "guestbook", "failed_revision": "3f786850e387550fdab836ed7e6dc881de23001b",
        "healthy_revision": "aaf4c61ddcc5e8a2dabede0f3b482cd9aea9434d"}}),
}
PING_EVENTS = {"ping", "diagnostics:ping"}


@dataclass
class Target:
    api_version: str
    kind: str
    namespace: str
    name: str
    selected: bool  # a wildcard target's non-matching object is seeded too, and must stay untouched

    @property
    def annotation(self) -> str:
        return ARGO_REFRESH if self.kind == "Application" else FLUX


@dataclass
class Delivery:
    path: str
    headers: dict
    body: bytes


# A Secret key's value, by (namespace, Secret name, key).
Values = dict[tuple[str, str, str], str]


@dataclass
class Example:
    name: str
    docs: list[dict]           # the example as rendered for a cluster, controllerKeys set
    gateway_docs: list[dict]   # the same through the standalone component, as Envoy Gateway reads it
    secret_values: Values      # every Secret key the example reads: its receivers' and its controller's
    cp: ControlPlane
    gateway: EnvoyGateway | None  # None: only the cluster side is deployed
    port: int                  # the Gateway listener's port
    source: str                # the client address this example's deliveries come from
    controller: Controller | None = None
    targets: dict[str, list[Target]] = field(default_factory=dict)  # by receiver namespace/name
    https_port: int | None = None  # the https listener's port, when the gateway side is deployed
    address: str = "127.0.0.1"  # where the Gateway listener is (a proxy pod's address on Kubernetes)

    @property
    def receivers(self) -> list[dict]:
        """The example's hookgate Receivers, each as its spec with its name and namespace."""
        return [receiver_of(d) for d in self.docs if is_receiver(d)]

    @property
    def host(self) -> str:
        route = next(d for d in self.docs if d["kind"] == "HTTPRoute")
        return (route["spec"].get("hostnames") or ["hooks.example.test"])[0]

    def of_kind(self, kind: str) -> list[dict]:
        return [d for d in self.docs if d["kind"] == kind]

    def secret(self, receiver: dict) -> str:
        """The value of the first key of the receiver's Secret (what its sender signs with)."""
        ref = receiver["secretRef"]
        return self.secret_values[(receiver["namespace"], ref["name"], (ref.get("keys") or [DEFAULT_SECRET_KEY])[0])]

    def send(self, delivery: Delivery, source: str | None = None) -> tuple[int, str]:
        """POSTs a delivery to the Gateway's listener with the route's host name."""
        return send(self.port, self.host, delivery, source or self.source, self.address)

    def send_https(self, delivery: Delivery) -> tuple[int, str]:
        """POSTs a delivery to the Gateway's https listener, trusting only the certificate in its Secret."""
        context = ssl.create_default_context(cadata=webhook_tls()[0].decode())
        context.check_hostname = False  # the certificate names hooks.example.com, each example its own host
        return send(self.https_port, self.host, delivery, self.source, self.address, context)

    def annotations(self, receiver: dict) -> dict[tuple[str, str, str], str | None]:
        """The reconcile annotation of every object seeded for a receiver's targets."""
        return {(t.kind, t.namespace, t.name): self.cp.get(t.api_version, t.kind, t.namespace, t.name)["metadata"]
                .get("annotations", {}).get(t.annotation) for t in self.targets[receiver_key(receiver)]}

    def delivery(self, receiver: dict, forged: bool = False) -> Delivery:
        """What the receiver's provider sends for its first event that is not a ping, signed with the
        receiver's first secret, or with another one when `forged`."""
        secret = self.secret(receiver)
        path = receiver.get("path") or signers.flux_path(secret, receiver["name"], receiver["namespace"])
        events = [e for e in receiver.get("events", []) if e.lower() not in PING_EVENTS] or [None]
        sign, payload = DELIVERIES[(receiver["type"], events[0] and events[0].lower())]
        body = json.dumps(payload).encode()
        headers = sign("forged-" + secret if forged else secret, body)
        return Delivery(path, headers, body)

    def unsigned(self, receiver: dict) -> Delivery:
        """A delivery to the receiver's path without any proof: the filter answers 401 once it serves the
        receiver (503 before it has a configuration, 404 before it has the receiver)."""
        delivery = self.delivery(receiver)
        return Delivery(delivery.path, {"Content-Type": "application/json"}, delivery.body)

    def stop(self) -> None:
        """Stops the controller and deletes the example's Receivers (the next example's controller, which
        watches every namespace, serves only its own)."""
        if self.controller:
            self.controller.stop()
        for receiver in self.receivers:
            self.cp.request("DELETE", self.cp.resource_path(RECEIVER_API, "Receiver", receiver["namespace"],
                                                            receiver["name"]))


def is_receiver(doc: dict) -> bool:
    return doc["kind"] == "Receiver" and doc["apiVersion"] == RECEIVER_API


def receiver_of(doc: dict) -> dict:
    return {"name": doc["metadata"]["name"], "namespace": doc["metadata"]["namespace"], **doc["spec"]}


def receiver_key(receiver: dict) -> str:
    return f"{receiver['namespace']}/{receiver['name']}"


def controller_deployment(docs: list[dict]) -> dict:
    (deployment,) = [d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "hookgate-controller"]
    return deployment


def secret_volumes(deployment: dict) -> dict[str, dict]:
    """The controller's Secret volumes by Secret name."""
    return {v["secret"]["secretName"]: v for v in deployment["spec"]["template"]["spec"].get("volumes", [])
            if "secret" in v}


def example_secrets(docs: list[dict]) -> Values:
    """A random value for every Secret key a rendered example reads: each key its Receivers' secretRefs name,
    in the receiver's namespace; each key the controller Deployment mounts (`key` of a whole-Secret volume:
    its `previous` stays absent, as outside a rotation), in its namespace. Keys are 64 hex characters, as
    `hookgate token` makes them (the channel key must be)."""
    values: Values = {}
    for doc in docs:
        if is_receiver(doc) and doc["spec"].get("secretRef"):
            ref = doc["spec"]["secretRef"]
            for key in ref.get("keys") or [DEFAULT_SECRET_KEY]:
                values[(doc["metadata"]["namespace"], ref["name"], key)] = secrets.token_hex(24)
    deployment = controller_deployment(docs)
    for name, volume in secret_volumes(deployment).items():
        for key in [i["key"] for i in volume["secret"].get("items", [])] or ["key"]:
            values[(deployment["metadata"]["namespace"], name, key)] = secrets.token_hex(32)
    return values


def public_key(channel_key: str) -> str:
    """The public half of the controller's channel key, as users get it: `hookgate public-key`."""
    out = subprocess.run([str(CONTROLLER), "public-key", "-"], input=channel_key, capture_output=True,
                         text=True, check=True)
    return out.stdout.strip()


def configured(directory: Path, workdir: Path, values: Values | None = None) -> tuple[Path, list[dict], Values]:
    """What a user applies: the example with controllerKeys set to the public half of the controller's key,
    through a kustomization over it. Returns its directory, its rendering and the Secrets' values (random
    unless given)."""
    unset = render(directory)
    values = {**example_secrets(unset), **(values or {})}
    deployment = controller_deployment(unset)
    channel_key = values[(deployment["metadata"]["namespace"], "hookgate-channel", "key")]
    kustomization = overlay(directory, workdir / f"configured-{directory.name}", patches=[
        {"target": {"kind": "EnvoyExtensionPolicy", "name": "hookgate"}, "patch": json.dumps(
            [{"op": "replace", "path": "/spec/wasm/0/config/controllerKeys", "value": [public_key(channel_key)]}])}])
    return kustomization, render(kustomization), values


def seed_targets(cp: ControlPlane, receiver: dict) -> list[Target]:
    """Creates what a receiver's targets name: the named object, or for `name: "*"` one object carrying the
    target's labels and one without them."""
    seeded = []
    for target in receiver.get("targets", []):  # a dispatch receiver has none
        kind, namespace = target["kind"], target.get("namespace", receiver["namespace"])
        api_version, spec = OBJECTS[kind]
        api_version = target.get("apiVersion", api_version)
        base = re.sub(r"[^a-z0-9-]", "-", f"{receiver['name']}-{kind.lower()}")
        if target["name"] == "*":
            objects = [(base, target.get("matchLabels", {}), True), (f"{base}-unlabelled", {}, False)]
        else:
            objects = [(target["name"], {}, True)]
        cp.namespace(namespace)
        for name, labels, selected in objects:
            cp.apply({"apiVersion": api_version, "kind": kind,
                      "metadata": {"name": name, "namespace": namespace, "labels": labels}, "spec": spec})
            seeded.append(Target(api_version, kind, namespace, name, selected))
    return seeded


def controller_from_deployment(deployment: dict, values: Values, workdir: Path, env: dict[str, str],
                               extra_args: list[str], **listen) -> Controller:
    """Runs the rendered controller Deployment's container as a process: its args, its plain env and the
    namespace the downward API gives it, its Secret volumes written as files (the paths in its args
    rewritten to them), listening on loopback (or on `listen`'s host and port)."""
    namespace = deployment["metadata"]["namespace"]
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    mounts = {}
    for mount in container.get("volumeMounts", []):
        secret = volumes[mount["name"]]["secret"]
        directory = workdir / mount["name"]
        directory.mkdir(parents=True, exist_ok=True)
        # A volume without items holds every key of its Secret.
        items = secret.get("items") or [{"key": key, "path": key} for ns, name, key in values
                                         if (ns, name) == (namespace, secret["secretName"])]
        for item in items:
            (directory / item["path"]).write_text(values[(namespace, secret["secretName"], item["key"])])
        mounts[mount["mountPath"]] = str(directory)
    args = container["args"]
    assert args[0] == "serve", args
    local_args = []
    # What the caller gives replaces the Deployment's own value of the same flag (this machine's ports).
    overridden = {arg.split("=", 1)[0] for arg in extra_args if arg.startswith("--")}
    for arg in args[1:]:
        if arg.startswith("--listen") or arg.split("=", 1)[0] in overridden:
            continue  # the Controller listens on a loopback port of its own
        for mount_path, directory in mounts.items():
            arg = arg.replace(mount_path, directory)
        local_args.append(arg)
    plain_env = {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}
    # The downward API's namespace, as the kubelet would fill it in.
    plain_env |= {e["name"]: namespace for e in container.get("env", [])
                  if e.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "metadata.namespace"}
    return Controller({**plain_env, **env}, local_args + extra_args, **listen)


def standalone_proxy_pod(cp: ControlPlane, deployment: dict) -> None:
    """What Envoy Gateway and the kubelet give a cluster: the running pod of hookgate's Gateway's proxy,
    labelled as the controller's --proxy-selector (HOOKGATE_PROXY_SELECTOR) picks it, at the address the
    standalone Envoy runs on. The controller confirms proxy VMs only at such an address."""
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container.get("env", [])}
    selector = env.get("HOOKGATE_PROXY_SELECTOR")
    if not selector:
        return
    labels = dict(pair.split("=", 1) for pair in selector.split(","))
    namespace = env.get("HOOKGATE_PROXY_NAMESPACE") or "envoy-gateway-system"
    cp.namespace(namespace)
    cp.apply({"apiVersion": "v1", "kind": "Pod",
              "metadata": {"name": "envoy-standalone", "namespace": namespace, "labels": labels},
              "spec": {"containers": [{"name": "envoy", "image": "envoyproxy/envoy"}]}})
    cp.ok("PATCH", cp.resource_path("v1", "Pod", namespace, "envoy-standalone") + "/status",
          {"status": {"phase": "Running", "podIP": "127.0.0.1", "podIPs": [{"ip": "127.0.0.1"}]}},
          content_type="application/merge-patch+json")


def deploy_cluster_side(deployed: Example, workdir: Path, controller_args: list[str] = ()) -> None:
    """The cluster side of an example: its namespaces, CRDs, ServiceAccount, ClusterRoles and bindings in the
    real kube-apiserver, its Receivers with their Secrets (each in the receiver's namespace, as a tenant
    creates them), the objects its receivers target, and its controller Deployment run as a process under
    that ServiceAccount's token (`deployed.controller`; the caller calls `deployed.stop()`)."""
    cp = deployed.cp
    for doc in deployed.docs:
        if doc["metadata"].get("namespace"):
            cp.namespace(doc["metadata"]["namespace"])
    cp.install_crds([d for d in deployed.docs if d["kind"] == "CustomResourceDefinition"])
    for doc in deployed.docs:
        if doc["kind"] in CLUSTER_KINDS:
            cp.apply(doc)
    receivers = deployed.receivers
    for namespace, name in sorted({(r["namespace"], r["secretRef"]["name"]) for r in receivers if r.get("secretRef")}):
        cp.apply({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": namespace},
                  "stringData": {key: value for (ns, secret, key), value in deployed.secret_values.items()
                                 if (ns, secret) == (namespace, name)}})
    for doc in deployed.docs:
        if is_receiver(doc):
            cp.apply(doc)
    for receiver in receivers:
        deployed.targets[receiver_key(receiver)] = seed_targets(cp, receiver)
    deployment = controller_deployment(deployed.docs)
    standalone_proxy_pod(cp, deployment)
    (account,) = deployed.of_kind("ServiceAccount")
    token = cp.service_account_token(account["metadata"]["namespace"], account["metadata"]["name"])
    kubeconfig = cp.kubeconfig(token, workdir / "kubeconfig")
    deployed.controller = controller_from_deployment(deployment, deployed.secret_values, workdir,
                                                     {"KUBECONFIG": str(kubeconfig)}, list(controller_args))


def deploy(example: str | Path, cp: ControlPlane, gateway: EnvoyGateway, *, workdir: Path, gateway_port: int,
           wasm_code: dict, source: str = "127.0.0.1", values: Values | None = None,
           controller_args: list[str] = ()) -> Example:
    """Deploys one example (a name under manifests/examples, or an overlay's directory) as configured(): the
    cluster side into `cp`, the controller as a process (confirming the proxies' VMs on `gateway_port`
    with the route's host name), the gateway side into `gateway`. The caller calls `example.stop()`."""
    directory = example if isinstance(example, Path) else MANIFESTS / "examples" / example
    workdir.mkdir(parents=True, exist_ok=True)
    user, docs, values = configured(directory, workdir, values)
    deployed = Example(str(example), docs, [], values, cp, gateway, gateway_port, source, https_port=free_port())
    deploy_cluster_side(deployed, workdir, ["--proxy-listener-port", str(gateway_port),
                                            "--webhook-host", deployed.host, *controller_args])
    try:
        overlay = standalone_overlay(user, workdir, controller_port=deployed.controller.port,
                                     gateway_port=gateway_port, wasm_code=wasm_code,
                                     https_port=deployed.https_port)
        deployed.gateway_docs = [d for d in render(overlay) if d["kind"] in GATEWAY_KINDS]
        gateway.apply(deployed.gateway_docs)
    except Exception:
        deployed.stop()
        raise
    return deployed


def send(port: int, host: str, delivery: Delivery, source: str, address: str = "127.0.0.1",
         tls: ssl.SSLContext | None = None) -> tuple[int, str]:
    """POSTs a delivery to the Gateway's listener at `address` (loopback) from client address `source` (over
    TLS with `tls`)."""
    conn = (http.client.HTTPSConnection(address, port, timeout=30, source_address=(source, 0), context=tls)
            if tls else http.client.HTTPConnection(address, port, timeout=30, source_address=(source, 0)))
    try:
        conn.request("POST", delivery.path, body=delivery.body, headers={**delivery.headers, "Host": host})
        response = conn.getresponse()
        return response.status, response.read().decode()
    finally:
        conn.close()


def policy_keys(example: Example) -> list[tuple[str, str]]:
    kinds = ("EnvoyExtensionPolicy", "EnvoyPatchPolicy", "ClientTrafficPolicy", "BackendTrafficPolicy")
    return [(d["kind"], f"{d['metadata']['namespace']}/{d['metadata']['name']}")
            for d in example.gateway_docs if d["kind"] in kinds]


def wait_translated(example: Example, probe_source: str | None = None) -> None:
    """Until Envoy Gateway has reported on this example's policies, its Envoy routes to this example's
    controller, and its filter serves every receiver with a secret (a delivery without proof answered 401,
    not 503 before the filter has its configuration, nor 404 before it has the receiver; it counts as a
    missing proof, not as a mismatch). Probes come from `probe_source` (so that they do not use up the rate
    limit budget of the example's own address)."""
    gateway = example.gateway
    # Envoy routing to this example's controller shows this example was translated; Envoy Gateway logs the
    # statuses of that translation before its Envoy has the new configuration.
    wait(lambda: f'"port_value": {example.controller.port}' in json.dumps(gateway.config_dump()), 60,
         f"{example.name}: Envoy routing to the example's controller", gateway.log)
    wait(lambda: all(gateway.conditions(*key).get("Accepted") for key in policy_keys(example)), 60,
         f"{example.name}: a status for every policy", gateway.log)
    for receiver in (r for r in example.receivers if r.get("secretRef")):
        wait(lambda: example.send(example.unsigned(receiver), probe_source)[0] == 401, 60,
             f"{example.name}: the filter serving {receiver_key(receiver)}",
             lambda: gateway.log()[-3000:] + example.controller.log()[-3000:])
