"""`hookgate import` on the Receivers of Flux's documentation and common setups (GitHub push+ping with a
GitRepository and `*` Kustomizations by label; GitLab; Harbor; Docker Hub) and their Secrets: the
components it writes, applied to the base manifests by the real Kustomize, configure the compiled filter
so that it accepts a delivery at the path Flux computed for the original Receiver and refuses a forged one:
in the real Envoy (forwarded with the Receiver's targets), and through the real Envoy Gateway in front of
the controller and the real kube-apiserver (the targets annotated). The Envoy Gateway tests take its fixed
ports: run them under `flock /tmp/hookgate-eg.lock`."""

from __future__ import annotations

import base64
import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

import signers
from deploy import DELIVERIES, MANIFESTS, Delivery, deploy, envoy_environment, policy_keys, wait_translated
from gateway import EnvoyGateway, ModuleServer, http_code, render
from harness import CONTROLLER, WASM, Envoy, RecordingUpstream, envoy_bootstrap, free_port
from test_edge_filter import ATTESTATION_KEY, assert_attested_forward, assert_nothing_upstream, send

NS = "flux-system"
TOKENS = {"github-token": "gh-8f3a1c0d2b", "gitlab-token": "gl-51e9aa0c7d", "harbor-token": "hb-0c2d77e1f4",
          "dockerhub-token": "dh-9b6e14a3c8"}


def receiver(name: str, flux_type: str, secret: str, resources: list[dict], events: list[str] | None = None,
             namespace: str = NS) -> dict:
    spec = {"type": flux_type, "secretRef": {"name": secret}, "resources": resources}
    if events is not None:
        spec["events"] = events
    return {"apiVersion": "notification.toolkit.fluxcd.io/v1", "kind": "Receiver",
            "metadata": {"name": name, "namespace": namespace}, "spec": spec}


def secret_data(name: str) -> dict:
    """A Secret as the API server returns it: base64 `data`."""
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": NS}, "type": "Opaque",
            "data": {"token": base64.b64encode(TOKENS[name].encode()).decode()}}


def secret_string_data(name: str) -> dict:
    """A Secret as users write it: `stringData`."""
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": NS},
            "stringData": {"token": TOKENS[name]}}


GITHUB_RESOURCES = [
    {"apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "GitRepository", "name": "flux-system"},
    {"apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization", "name": "*",
     "matchLabels": {"app.kubernetes.io/part-of": "webapp"}},
]
GITLAB_RESOURCES = [{"kind": "GitRepository", "name": "webapp"},
                    {"kind": "Kustomization", "name": "webapp", "namespace": "apps"}]
IMAGE_RESOURCES = [{"apiVersion": "image.toolkit.fluxcd.io/v1", "kind": "ImageRepository", "name": "webapp"}]

# A file of Receivers, as kept in a Git repository, with the GitHub Secret as `kubectl get -o yaml` prints it.
FILE_DOCUMENTS = [
    receiver("github-receiver", "github", "github-token", GITHUB_RESOURCES, events=["ping", "push"]),
    receiver("gitlab-receiver", "gitlab", "gitlab-token", GITLAB_RESOURCES, events=["Push Hook", "Tag Push Hook"]),
    receiver("gcr-receiver", "gcr", "github-token", IMAGE_RESOURCES),
    secret_data("github-token"),
]
# A `kubectl get receivers,secrets -o yaml` stream: one List.
LIST_STREAM = {"apiVersion": "v1", "kind": "List", "items": [
    receiver("harbor-receiver", "harbor", "harbor-token", IMAGE_RESOURCES),
    receiver("dockerhub-receiver", "dockerhub", "dockerhub-token", IMAGE_RESOURCES),
    secret_string_data("gitlab-token"), secret_data("harbor-token"), secret_string_data("dockerhub-token"),
]}

DOCKERHUB_PUSH = {"push_data": {"tag": "1.2.3"}, "repository": {"repo_url": "https://hub.docker.com/r/org/webapp"}}


@dataclass(frozen=True)
class Case:
    receiver: str
    secret: str
    headers: object  # (secret, body) -> headers
    payload: dict
    targets: list[dict]  # as forwarded: each with its namespace
    signed: bool = True  # False: the provider proves nothing in the request, the secret path is the proof

    def delivery(self, forged: bool = False) -> tuple[Delivery, int]:
        """The provider's delivery at Flux's path, or a forged one (made with another token), and the status
        hookgate answers: a forged signature at Flux's path is refused (401); where the path is the proof,
        the forger's path is no receiver's (404)."""
        token = TOKENS[self.secret]
        used = "forged-" + token if forged else token
        body = json.dumps(self.payload).encode()
        path = signers.flux_path(token if self.signed else used, self.receiver, NS)
        return Delivery(path, self.headers(used, body), body), (200 if not forged else 401 if self.signed else 404)


def forwarded_targets(resources: list[dict]) -> list[dict]:
    return [{**r, "namespace": r.get("namespace", NS)} for r in resources]


CASES = [
    Case("github-receiver", "github-token", *DELIVERIES[("github", "push")], forwarded_targets(GITHUB_RESOURCES)),
    Case("gitlab-receiver", "gitlab-token", *DELIVERIES[("gitlab", "push hook")], forwarded_targets(GITLAB_RESOURCES)),
    Case("harbor-receiver", "harbor-token", *DELIVERIES[("harbor", "push_artifact")],
         forwarded_targets(IMAGE_RESOURCES)),
    # Docker Hub signs nothing: the secret path is the proof.
    Case("dockerhub-receiver", "dockerhub-token", lambda _s, _b: {"Content-Type": "application/json"},
         DOCKERHUB_PUSH, forwarded_targets(IMAGE_RESOURCES), signed=False),
]


@pytest.fixture(scope="module")
def imported(tmp_path_factory) -> tuple[Path, str]:
    """`hookgate import` of the file and of the List on standard input: (output directory, stderr)."""
    work = tmp_path_factory.mktemp("import")
    receivers_file = work / "receivers.yaml"
    receivers_file.write_text(yaml.safe_dump_all(FILE_DOCUMENTS))
    out = work / "out"
    result = subprocess.run([str(CONTROLLER), "import", str(receivers_file), "-", "--out", str(out)],
                            input=yaml.safe_dump(LIST_STREAM), capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    return out, result.stderr


def test_the_summary_gives_each_receiver_its_flux_path_and_says_why_one_is_skipped(imported):
    _, summary = imported
    for case in CASES:
        path = signers.flux_path(TOKENS[case.secret], case.receiver, NS)
        assert f"imported {NS}/{case.receiver} " in summary and path in summary, summary
    assert f"skipped {NS}/gcr-receiver: type `gcr` proves with an ID token" in summary, summary
    assert "Secret(s) dockerhub-token, github-token, gitlab-token, harbor-token (key `token`)" in summary, summary
    assert (f"note: {NS}/gitlab-receiver: spec.resources[1] is in namespace apps: run the controller with "
            "--allow-cross-namespace") in summary, summary


def test_no_token_is_written_or_printed(imported):
    out, summary = imported
    written = "".join(p.read_text() for p in out.rglob("*") if p.is_file())
    for token in TOKENS.values():
        assert token not in written and token not in summary


@pytest.mark.parametrize("documents, error", [
    ([FILE_DOCUMENTS[1]], "its Secret flux-system/gitlab-token is not in the input"),
    ([FILE_DOCUMENTS[2], FILE_DOCUMENTS[3]], "no Receiver could be imported; nothing written"),
], ids=["missing Secret", "only a type hookgate lacks"])
def test_an_import_that_cannot_work_writes_nothing(tmp_path, documents, error):
    source = tmp_path / "receivers.yaml"
    source.write_text(yaml.safe_dump_all(documents))
    result = subprocess.run([str(CONTROLLER), "import", str(source), "--out", str(tmp_path / "out")],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode != 0
    assert error in result.stderr, result.stderr
    assert not (tmp_path / "out").exists()


def overlay(out: Path, workdir: Path) -> Path:
    """An example overlay: the base controller and route side in flux-system and the proxy side, each with
    the component `hookgate import` wrote. The GitLab Receiver targets a Kustomization in `apps`: as the
    import's summary says, the controller runs with --allow-cross-namespace and its ClusterRole is bound
    there too."""
    root = workdir / "overlay"
    sides = {"app": (NS, [MANIFESTS / "base/controller", MANIFESTS / "base/gateway/route"]),
             "proxy": ("envoy-gateway-system", [MANIFESTS / "base/gateway/proxy"])}
    for side, (namespace, resources) in sides.items():
        (root / side).mkdir(parents=True)
        (root / side / "kustomization.yaml").write_text(yaml.safe_dump({
            "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization", "namespace": namespace,
            # Kustomize takes only relative paths to other kustomizations.
            "resources": [os.path.relpath(r, root / side) for r in resources],
            "components": [os.path.relpath(out / side, root / side)],
            "patches": [{"target": {"kind": "Deployment", "name": "hookgate-controller"}, "patch": json.dumps([
                {"op": "add", "path": "/spec/template/spec/containers/0/args/-", "value": "--allow-cross-namespace"},
            ])}] if side == "app" else []}))
    (root / "rolebinding-apps.yaml").write_text(yaml.safe_dump({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": "hookgate-controller", "namespace": "apps"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "hookgate-controller"},
        "subjects": [{"kind": "ServiceAccount", "name": "hookgate-controller", "namespace": NS}]}))
    (root / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        "resources": ["app", "proxy", "rolebinding-apps.yaml"]}))
    return root


def secret_values() -> dict[tuple[str, str], str]:
    """What the Secrets the overlay reads hold, by (name, key): the Flux tokens and an attestation key."""
    values = {(name, "token"): token for name, token in TOKENS.items()}
    values[("hookgate-attestation", "key")] = ATTESTATION_KEY
    return values


@pytest.fixture(scope="module")
def edge(imported, tmp_path_factory):
    """The real Envoy with the compiled filter, configured from the overlay as Kustomize renders it: the
    EnvoyExtensionPolicy's config and hostKeys, the EnvoyProxy's environment with each secretKeyRef resolved
    to the Flux Secret's token (as Kubernetes gives it to the Envoy pods)."""
    out, _ = imported
    docs = render(overlay(out, tmp_path_factory.mktemp("overlay")))
    (policy,) = [d for d in docs if d["kind"] == "EnvoyExtensionPolicy"]
    wasm = policy["spec"]["wasm"][0]
    assert wasm["config"] == json.loads((out / "hookgate-config.json").read_text())
    environment = envoy_environment(docs, secret_values())
    upstream = RecordingUpstream()
    bootstrap = envoy_bootstrap(listen_port=free_port(), admin_port=free_port(), upstream_port=upstream.port,
                                filter_config=wasm["config"], host_env_keys=wasm["env"]["hostKeys"])
    with Envoy(bootstrap, environment) as envoy:
        yield envoy, upstream
    upstream.close()


@pytest.mark.parametrize("case", CASES, ids=[c.receiver for c in CASES])
def test_a_delivery_at_flux_path_is_forwarded_with_the_receivers_targets(edge, case):
    envoy, upstream = edge
    upstream.reset()
    delivery, _ = case.delivery()
    status, reply = send(envoy.port, delivery.path, delivery.headers, delivery.body)
    assert status == 200, reply
    request = assert_attested_forward(upstream, delivery.headers)
    assert request["receiver"] == {"name": case.receiver, "namespace": NS}
    assert request["targets"] == case.targets


@pytest.mark.parametrize("case", CASES, ids=[c.receiver for c in CASES])
def test_a_forged_delivery_is_refused(edge, case):
    envoy, upstream = edge
    upstream.reset()
    delivery, expected = case.delivery(forged=True)
    status, reply = send(envoy.port, delivery.path, delivery.headers, delivery.body)
    assert status == expected, reply
    assert_nothing_upstream(upstream)


@pytest.fixture(scope="module")
def on_gateway(imported, cp, tmp_path_factory):
    """The overlay deployed as on a cluster (tests/deploy.py): the controller as a process against the real
    kube-apiserver under the overlay's RBAC, the gateway side translated by the real Envoy Gateway, the Envoy
    pods' environment from the EnvoyProxy's secretKeyRefs to the Flux Secrets."""
    out, _ = imported
    workdir = tmp_path_factory.mktemp("gateway")
    root = overlay(out, workdir)
    values = secret_values()
    gateway = EnvoyGateway(envoy_environment(render(root), values))
    modules = ModuleServer(WASM.parent)
    try:
        deployed = deploy(root, cp, gateway, values=values, workdir=workdir, gateway_port=free_port(),
                          wasm_code=http_code(modules.url(WASM.name), WASM))
        try:
            wait_translated(deployed)
            yield deployed
        finally:
            deployed.controller.stop()
    finally:
        gateway.cleanup()
        modules.close()


def imported_receiver(example, name: str) -> dict:
    (receiver,) = [r for r in example.receivers if r["name"] == name]
    return receiver


def test_envoy_gateway_accepts_the_imported_policies(on_gateway):
    for kind, name in policy_keys(on_gateway):
        conditions = on_gateway.gateway.conditions(kind, name)
        assert conditions["Accepted"]["status"] == "True", (kind, name, conditions)


@pytest.mark.parametrize("case", CASES, ids=[c.receiver for c in CASES])
def test_on_envoy_gateway_a_delivery_at_flux_path_reconciles_the_receivers_targets(on_gateway, case):
    receiver = imported_receiver(on_gateway, case.receiver)
    before = on_gateway.annotations(receiver)
    status, reply = on_gateway.send(case.delivery()[0])
    assert status == 200, f"{status} {reply}\n{on_gateway.controller.log()[-2000:]}"
    targets = on_gateway.targets[f"{NS}/{case.receiver}"]
    assert json.loads(reply)["annotated"] == sum(t.selected for t in targets) > 0, reply
    after = on_gateway.annotations(receiver)
    for target in targets:
        where = (target.kind, target.namespace, target.name)
        assert (after[where] != before[where]) is target.selected, (target, before, after)


@pytest.mark.parametrize("case", CASES, ids=[c.receiver for c in CASES])
def test_on_envoy_gateway_a_forged_delivery_changes_nothing(on_gateway, case):
    receiver = imported_receiver(on_gateway, case.receiver)
    before = on_gateway.annotations(receiver)
    delivery, expected = case.delivery(forged=True)
    status, reply = on_gateway.send(delivery)
    assert status == expected, reply
    assert on_gateway.annotations(receiver) == before
