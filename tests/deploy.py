"""An example of manifests/ deployed on this machine as a user deploys it on a cluster: its RBAC and the
objects its receivers target in the real kube-apiserver, its controller Deployment run as a process (the
Deployment's own args, with its Secret volumes as files), and its gateway side translated by the real Envoy
Gateway. Deliveries are signed as each provider signs them (signers.py) and sent to the Envoy it programs."""

from __future__ import annotations

import copy
import http.client
import json
import subprocess
import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path

import signers
import yaml

from cluster import ROOT, ControlPlane, build_binaries
from gateway import STANDALONE, EnvoyGateway, render, standalone_overlay, wait
from harness import Controller

MANIFESTS = ROOT / "manifests"
EXAMPLES = sorted(p.parent.name for p in (MANIFESTS / "examples").glob("*/kustomization.yaml"))
FLUX = "reconcile.fluxcd.io/requestedAt"
ARGO_REFRESH = "argocd.argoproj.io/refresh"
# Kinds the standalone Envoy Gateway reads; the rest of a rendered example is Kubernetes' business.
GATEWAY_KINDS = {"GatewayClass", "Gateway", "HTTPRoute", "Backend", "EnvoyProxy", "EnvoyExtensionPolicy",
                 "EnvoyPatchPolicy", "ClientTrafficPolicy", "BackendTrafficPolicy", "SecurityPolicy", "Secret"}
CLUSTER_KINDS = ("ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding")
# What Envoy Gateway's installation creates (its certgen job): the client certificate Envoy uses towards the
# Wasm cache. Its content takes no part in the translation.
ENVOY_CLIENT_TLS = {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
                    "metadata": {"name": "envoy", "namespace": "envoy-gateway-system"},
                    "data": {"tls.crt": "Y2VydA==", "tls.key": "a2V5", "ca.crt": "Y2E="}}


def kubernetes_translation(docs: list[dict], workdir: Path) -> dict:
    """Envoy Gateway's own translation of rendered manifests `docs` as on Kubernetes (tests/eg-translate), with
    the cluster's GatewayClass and Gateway: EnvoyPatchPolicy statuses, listeners and route configurations
    (protobuf JSON), and errors."""
    cluster = [d for d in yaml.safe_load_all((STANDALONE / "gateway.yaml").read_text()) if d] + [ENVOY_CLIENT_TLS]
    # What Envoy Gateway watches on a cluster (the Secret operators' kinds are not in its scheme), with the
    # cluster IP the API server gives a Service.
    watched = copy.deepcopy([d for d in docs if d["kind"] in GATEWAY_KINDS | {"Service"}])
    for service in (d for d in watched if d["kind"] == "Service"):
        service["spec"]["clusterIP"] = "10.96.0.10"
    source = workdir / "eg-translate-input.yaml"
    source.write_text(yaml.safe_dump_all(cluster + watched))
    out = subprocess.run([build_binaries()["EG_TRANSLATE"], str(source)], capture_output=True, text=True, timeout=120)
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


@dataclass
class Example:
    name: str
    docs: list[dict]           # the example as rendered for a cluster
    gateway_docs: list[dict]   # the same through the standalone component, as Envoy Gateway reads it
    secret_values: dict[tuple[str, str], str]
    cp: ControlPlane
    gateway: EnvoyGateway | None  # None: only the cluster side is deployed
    port: int                  # the Gateway listener's port
    source: str                # the client address this example's deliveries come from
    controller: Controller | None = None
    targets: dict[str, list[Target]] = field(default_factory=dict)  # by receiver namespace/name

    @property
    def receivers(self) -> list[dict]:
        return [r for d in self.docs if d["kind"] == "EnvoyExtensionPolicy" for w in d["spec"]["wasm"]
                for r in w["config"].get("receivers", [])]

    @property
    def host(self) -> str:
        route = next(d for d in self.docs if d["kind"] == "HTTPRoute")
        return (route["spec"].get("hostnames") or ["hooks.example.test"])[0]

    def of_kind(self, kind: str) -> list[dict]:
        return [d for d in self.docs if d["kind"] == kind]

    def secret(self, env: str) -> str:
        """The value the Envoy side reads from variable `env` (through the EnvoyProxy's secretKeyRef)."""
        return envoy_environment(self.docs, self.secret_values)[env]

    def send(self, delivery: Delivery, source: str | None = None) -> tuple[int, str]:
        """POSTs a delivery to the Gateway's listener with the route's host name."""
        return send(self.port, self.host, delivery, source or self.source)

    def annotations(self, receiver: dict) -> dict[tuple[str, str, str], str | None]:
        """The reconcile annotation of every object seeded for a receiver's targets."""
        return {(t.kind, t.namespace, t.name): self.cp.get(t.api_version, t.kind, t.namespace, t.name)["metadata"]
                .get("annotations", {}).get(t.annotation) for t in self.targets[receiver_key(receiver)]}

    def delivery(self, receiver: dict, forged: bool = False) -> Delivery:
        """What the receiver's provider sends for its first event that is not a ping, signed with the
        receiver's first secret, or with another one when `forged`."""
        secret = self.secret(receiver["secrets"][0]["env"])
        path = receiver.get("path") or signers.flux_path(secret, receiver["name"], receiver["namespace"])
        events = [e for e in receiver.get("events", []) if e.lower() not in PING_EVENTS] or [None]
        sign, payload = DELIVERIES[(receiver["type"], events[0] and events[0].lower())]
        body = json.dumps(payload).encode()
        headers = sign("forged-" + secret if forged else secret, body)
        return Delivery(path, headers, body)


def receiver_key(receiver: dict) -> str:
    return f"{receiver['namespace']}/{receiver['name']}"


def proxy_env(docs: list[dict]) -> list[dict]:
    """The Envoy container's `env` entries of the rendered EnvoyProxy."""
    return [var for doc in docs if doc["kind"] == "EnvoyProxy"
            for var in doc["spec"]["provider"]["kubernetes"]["envoyDeployment"]["container"].get("env", [])]


def envoy_environment(docs: list[dict], values: dict[tuple[str, str], str]) -> dict[str, str]:
    """The Envoy container's environment of the rendered EnvoyProxy, each `secretKeyRef` resolved from
    `values[(secret name, key)]`: what Kubernetes would give the proxy pods."""
    env = {}
    for var in proxy_env(docs):
        ref = var.get("valueFrom", {}).get("secretKeyRef")
        env[var["name"]] = values[(ref["name"], ref["key"])] if ref else var["value"]
    return env


def secret_refs(docs: list[dict]) -> set[tuple[str, str]]:
    """Every (Secret name, key) the rendered proxy and controller read."""
    refs = {(ref["name"], ref["key"]) for var in proxy_env(docs)
            if (ref := var.get("valueFrom", {}).get("secretKeyRef"))}
    for doc in docs:
        if doc["kind"] == "Deployment":
            for volume in doc["spec"]["template"]["spec"].get("volumes", []):
                if "secret" in volume:
                    refs |= {(volume["secret"]["secretName"], i["key"]) for i in volume["secret"].get("items", [])}
    return refs


def example_secrets(examples: list[str]) -> tuple[dict[tuple[str, str], str], dict[str, str]]:
    """A random value for every Secret key any example reads, and the environment of envoy-gateway that
    gives each example's proxy variables those values (one Envoy Gateway serves every example)."""
    values: dict[tuple[str, str], str] = {}
    env: dict[str, str] = {}
    for example in examples:
        docs = render(MANIFESTS / "examples" / example)
        for ref in sorted(secret_refs(docs)):
            values.setdefault(ref, secrets.token_hex(24))
        for name, value in envoy_environment(docs, values).items():
            assert env.setdefault(name, value) == value, f"{example}: variable {name} means another Secret elsewhere"
    return values, env


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


def controller_from_deployment(deployment: dict, values: dict[tuple[str, str], str], workdir: Path,
                               env: dict[str, str], extra_args: list[str]) -> Controller:
    """Runs the rendered controller Deployment's container as a process: its args, its plain env and the
    namespace the downward API gives it, its Secret volumes written as files (the paths in its args
    rewritten to them), listening on loopback."""
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    mounts = {}
    for mount in container.get("volumeMounts", []):
        secret = volumes[mount["name"]]["secret"]
        directory = workdir / mount["name"]
        directory.mkdir(parents=True, exist_ok=True)
        # A volume without items holds every key of its Secret.
        items = secret.get("items") or [{"key": key, "path": key} for name, key in values
                                         if name == secret["secretName"]]
        for item in items:
            (directory / item["path"]).write_text(values[(secret["secretName"], item["key"])])
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
    plain_env |= {e["name"]: deployment["metadata"]["namespace"] for e in container.get("env", [])
                  if e.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "metadata.namespace"}
    return Controller({**plain_env, **env}, local_args + extra_args)


def deploy_cluster_side(deployed: Example, workdir: Path, controller_args: list[str] = ()) -> None:
    """The cluster side of an example: its namespaces, ServiceAccount, ClusterRole and RoleBindings in the
    real kube-apiserver, the objects its receivers target, and its controller Deployment run as a process
    under that ServiceAccount's token (`deployed.controller`; the caller stops it)."""
    cp = deployed.cp
    for doc in deployed.docs:
        if doc["metadata"].get("namespace"):
            cp.namespace(doc["metadata"]["namespace"])
    for doc in deployed.docs:
        if doc["kind"] in CLUSTER_KINDS:
            cp.apply(doc)
    for receiver in deployed.receivers:
        deployed.targets[receiver_key(receiver)] = seed_targets(cp, receiver)
    (deployment,) = deployed.of_kind("Deployment")
    (account,) = deployed.of_kind("ServiceAccount")
    token = cp.service_account_token(account["metadata"]["namespace"], account["metadata"]["name"])
    kubeconfig = cp.kubeconfig(token, workdir / "kubeconfig")
    deployed.controller = controller_from_deployment(deployment, deployed.secret_values, workdir,
                                                     {"KUBECONFIG": str(kubeconfig)}, list(controller_args))


def deploy(example: str | Path, cp: ControlPlane, gateway: EnvoyGateway, *, values: dict[tuple[str, str], str],
           workdir: Path, gateway_port: int, wasm_code: dict, source: str = "127.0.0.1",
           controller_args: list[str] = ()) -> Example:
    """Deploys one example (a name under manifests/examples, or an overlay's directory): cluster side into
    `cp`, the controller as a process, the gateway side into `gateway`. The caller stops
    `example.controller`."""
    directory = example if isinstance(example, Path) else MANIFESTS / "examples" / example
    example = str(example)
    deployed = Example(example, render(directory), [], values, cp, gateway, gateway_port, source)
    deploy_cluster_side(deployed, workdir, controller_args)
    try:
        overlay = standalone_overlay(directory, workdir, controller_port=deployed.controller.port,
                                     gateway_port=gateway_port, wasm_code=wasm_code)
        deployed.gateway_docs = [d for d in render(overlay) if d["kind"] in GATEWAY_KINDS]
        gateway.apply(deployed.gateway_docs)
    except Exception:
        deployed.controller.stop()
        raise
    return deployed


def send(port: int, host: str, delivery: Delivery, source: str) -> tuple[int, str]:
    """POSTs a delivery to the Gateway's listener on loopback from client address `source`."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30, source_address=(source, 0))
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
    """Until Envoy Gateway has reported on this example's policies and its Envoy routes to this example's
    controller with the module loaded. Probes come from `probe_source` (so that they do not use up the
    rate limit budget of the example's own address)."""
    gateway = example.gateway
    # Envoy routing to this example's controller shows this example was translated; Envoy Gateway logs the
    # statuses of that translation before its Envoy has the new configuration.
    wait(lambda: f'"port_value": {example.controller.port}' in json.dumps(gateway.config_dump()), 60,
         f"{example.name}: Envoy routing to the example's controller", gateway.log)
    wait(lambda: all(gateway.conditions(*key).get("Accepted") for key in policy_keys(example)), 60,
         f"{example.name}: a status for every policy", gateway.log)
    receiver = example.receivers[0]
    wait(lambda: example.send(example.delivery(receiver, forged=True), probe_source)[0] == 401, 60,
         f"{example.name}: the filter answering", gateway.log)
