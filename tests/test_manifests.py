"""manifests/: every base, overlay and example builds with kustomize, every rendered object passes a
server-side dry run against the real kube-apiserver with the real CRDs (Gateway API, Envoy Gateway, Flux,
hookgate's Receiver), every example's bootstrap and Receivers pass the filter's and the controller's own
checks once controllerKeys is set (and fail closed until then), and no secret is on the proxies' side."""

from __future__ import annotations

import os
import re
import subprocess

import pytest
import yaml

from cluster import FIXTURES, ROOT, ApiError, crd_documents
from deploy import EXAMPLES, MANIFESTS, RECEIVER_API, controller_deployment, public_key
from gateway import overlay, render_text
from harness import CONTROLLER

# manifests/observability's PrometheusRule and PodMonitors (only these files: PyYAML cannot read some others).
PROMETHEUS_OPERATOR_CRDS = [("github.com/prometheus-operator/prometheus-operator", "v0.85.0",
                             f"example/prometheus-operator-crd/monitoring.coreos.com_{plural}.yaml")
                            for plural in ("prometheusrules", "podmonitors")]
# Every kustomization; a component that only patches (manifests/components/) renders nothing on its own, so it
# is built on the homelab example.
DIRECTORIES = sorted(p.parent.relative_to(MANIFESTS).as_posix() for p in MANIFESTS.rglob("kustomization.yaml"))
PATCH_ONLY_COMPONENTS = [d for d in DIRECTORIES if d.startswith("components/")]
# What makes a Secret on a cluster: the Secret itself, and the operators the examples use.
SECRET_MAKERS = {"Secret": lambda d: d["metadata"]["name"],
                 "ExternalSecret": lambda d: d["spec"]["target"]["name"],
                 "SealedSecret": lambda d: d["spec"]["template"]["metadata"]["name"]}


def render(directory: str) -> str:
    return render_text(MANIFESTS / directory)


def documents(directory: str) -> list[dict]:
    return [d for d in yaml.safe_load_all(render(directory)) if d]


@pytest.fixture(scope="module")
def schemas(cp):
    """The real CRDs of everything the manifests use."""
    cp.install_crds(crd_documents("gateway") + list(yaml.safe_load_all((FIXTURES / "secret-operators-crds.yaml").read_text()))
                    + crd_documents(PROMETHEUS_OPERATOR_CRDS) + documents("base/crds"))
    return cp


def test_every_example_is_tested():
    assert {"homelab-github", "multi-tenant", "registry", "argocd-refresh"} <= set(EXAMPLES)


@pytest.mark.parametrize("directory", DIRECTORIES)
def test_builds_and_passes_server_side_dry_run(schemas, directory, tmp_path):
    cp = schemas
    if directory in PATCH_ONLY_COMPONENTS:
        text = render_text(overlay(MANIFESTS / "examples/homelab-github", tmp_path / "with-component",
                                   components=[os.path.relpath(MANIFESTS / directory, tmp_path / "with-component")]))
    else:
        text = render(directory)
    docs = [d for d in yaml.safe_load_all(text) if d]
    assert docs, f"{directory} renders nothing"
    errors = []
    for doc in docs:
        namespace = doc["metadata"].get("namespace")
        if namespace:
            cp.namespace(namespace)  # a dry run still needs the namespace to exist
        try:
            cp.apply(doc, dry_run=True)
        except ApiError as error:
            errors.append(f"{doc['kind']} {namespace}/{doc['metadata']['name']}: {error}")
    assert not errors, "\n".join(errors)


def check(path) -> subprocess.CompletedProcess:
    return subprocess.run([str(CONTROLLER), "check", str(path)], capture_output=True, text=True)


@pytest.mark.parametrize("example", EXAMPLES)
def test_the_bootstrap_and_the_receivers_pass_the_filters_and_the_controllers_checks(tmp_path, example):
    """As rendered, the example fails closed: its bootstrap has no controller key, which `hookgate check`
    (the filter's own parser) refuses as the filter would. With the public half of a channel key in
    controllerKeys, as a user sets it, the bootstrap names the cluster of the example's own route, and
    every Receiver compiles as the controller compiles it."""
    docs = documents(f"examples/{example}")
    unset = tmp_path / "unset.yaml"
    unset.write_text(yaml.safe_dump_all(docs))
    out = check(unset)
    assert out.returncode != 0 and "field `controllerKeys`: must hold the controller's public key" in out.stderr, \
        out.stderr
    (policy,) = [d for d in docs if d["kind"] == "EnvoyExtensionPolicy"]
    (wasm,) = policy["spec"]["wasm"]
    wasm["config"]["controllerKeys"] = [public_key(subprocess.run([str(CONTROLLER), "token"], capture_output=True,
                                                                  text=True, check=True).stdout.strip())]
    rendered = tmp_path / f"{example}.yaml"
    rendered.write_text(yaml.safe_dump_all(docs))
    out = check(rendered)
    assert out.returncode == 0, out.stderr
    (route,) = [d for d in docs if d["kind"] == "HTTPRoute" and d["metadata"]["name"] == "hookgate-webhooks"]
    cluster = f"httproute/{route['metadata']['namespace']}/hookgate-webhooks/rule/0"
    assert wasm["config"]["controller"] == {"cluster": cluster}, wasm["config"]
    assert f"bootstrap: receivers from the controller through cluster {cluster} " in out.stdout, out.stdout
    receivers = [d for d in docs if d["kind"] == "Receiver" and d["apiVersion"] == RECEIVER_API]
    assert receivers and f"{len(receivers)} Receiver(s), 0 the controller would not serve" in out.stdout, out.stdout
    for receiver in receivers:
        meta = receiver["metadata"]
        assert f"Receiver {meta['namespace']}/{meta['name']} ({receiver['spec']['type']}): OK" in out.stdout
    # The patch that holds headers selects this filter by its root id (that it matches on a real Envoy
    # Gateway is test_gateway.py's job).
    selector = f"..http_filters[?(@.typed_config.config.root_id=='{wasm['rootID']}')]"
    patches = [p["operation"]["jsonPath"] for d in docs if d["kind"] == "EnvoyPatchPolicy"
               for p in d["spec"]["jsonPatches"]]
    assert selector in patches, f"no EnvoyPatchPolicy selects root id {wasm['rootID']}: {patches}"


@pytest.mark.parametrize("example", EXAMPLES)
def test_secrets_live_beside_who_reads_them_and_never_on_the_proxies(example):
    """Each Receiver's secretRef names a Secret of its own namespace and the controller mounts Secrets of its
    own; every Secret the example makes (Secret, ExternalSecret, SealedSecret) is one of those, in that
    namespace: none is in the Gateway's namespace, the EnvoyProxy sets no environment and no policy exposes
    one (`env`)."""
    docs = documents(f"examples/{example}")
    deployment = controller_deployment(docs)
    controller_ns = deployment["metadata"]["namespace"]
    read = {(controller_ns, v["secret"]["secretName"]) for v in deployment["spec"]["template"]["spec"]["volumes"]
            if "secret" in v}
    assert {"hookgate-attestation", "hookgate-channel"} <= {name for _, name in read}, read
    read |= {(d["metadata"]["namespace"], d["spec"]["secretRef"]["name"]) for d in docs
             if d["kind"] == "Receiver" and d["spec"].get("secretRef")}
    made = {(d["metadata"]["namespace"], SECRET_MAKERS[d["kind"]](d)) for d in docs if d["kind"] in SECRET_MAKERS}
    assert made <= read, made - read
    # The examples that make their Secrets make every one they read (argocd-refresh's are created with kubectl).
    assert made == read or not made, read - made
    assert not {ns for ns, _ in made} & {"envoy-gateway-system"}
    for doc in docs:
        if doc["kind"] == "EnvoyProxy":
            assert doc["spec"]["provider"] == {"type": "Kubernetes"}, doc["spec"]["provider"]
        if doc["kind"] == "EnvoyExtensionPolicy":
            assert all("env" not in wasm for wasm in doc["spec"]["wasm"]), doc["spec"]


def secrets_read(docs: list[dict]) -> dict[tuple[str, str], set[str]]:
    """(namespace, Secret) -> keys, for every Secret an example reads but the controller's two keys: its
    Receivers' (default key `token`) and the controller's other volumes."""
    read: dict[tuple[str, str], set[str]] = {}
    for doc in (d for d in docs if d["kind"] == "Receiver" and d["spec"].get("secretRef")):
        ref = doc["spec"]["secretRef"]
        read.setdefault((doc["metadata"]["namespace"], ref["name"]), set()).update(ref.get("keys") or ["token"])
    deployment = controller_deployment(docs)
    for volume in (v["secret"] for v in deployment["spec"]["template"]["spec"]["volumes"] if "secret" in v):
        if volume["secretName"] not in ("hookgate-attestation", "hookgate-channel"):
            read.setdefault((deployment["metadata"]["namespace"], volume["secretName"]), set()).update(
                item["key"] for item in volume["items"])
    return read


def readme_secret_table() -> dict[str, dict[tuple[str, str], set[str]]]:
    """The README's table of the Secrets each example reads (install step 4): example -> (namespace, Secret) ->
    keys."""
    readme = (ROOT / "README.md").read_text()
    table = readme[readme.index("| example | Secret (namespace) | keys |"):].split("\n\n")[0]
    rows: dict[str, dict[tuple[str, str], set[str]]] = {}
    for row in table.splitlines()[2:]:
        example, secret, keys, _ = [cell.strip() for cell in row.strip().strip("|").split("|")]
        name, namespaces = re.fullmatch(r"`([^`]+)` \(([^)]+)\)", secret).groups()
        for namespace in namespaces.split(", "):
            rows.setdefault(example, {})[(namespace, name)] = set(re.findall(r"`([^`]+)`", keys))
    return rows


def test_the_readme_lists_every_secret_each_example_reads():
    table = readme_secret_table()
    assert set(table) == set(EXAMPLES)
    for example in EXAMPLES:
        assert table[example] == secrets_read(documents(f"examples/{example}")), example


@pytest.mark.parametrize("example", EXAMPLES)
def test_the_controller_serves_receivers_and_confirms_proxies(example):
    """The controller Deployment of every example runs with receivers as objects: its channel key and the
    previous one, the proxies' listener port (Envoy's container port for a listener on 80), a webhook URL;
    it may watch Receivers and read Secrets, and the Receiver CRD is installed with it."""
    docs = documents(f"examples/{example}")
    deployment = controller_deployment(docs)
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    args = container["args"]
    for flag in ("--channel-key-file=/var/run/hookgate/channel/key",
                 "--previous-channel-key-file=/var/run/hookgate/channel/previous",
                 "--attestation-key-file=/var/run/hookgate/attestation/key",
                 "--previous-attestation-key-file=/var/run/hookgate/attestation/previous",
                 "--proxy-listener-port=10080"):
        assert flag in args, args
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["HOOKGATE_WEBHOOK_BASE_URL"].startswith("https://"), env
    (route,) = [d for d in docs if d["kind"] == "HTTPRoute" and d["metadata"]["name"] == "hookgate-webhooks"]
    if route["spec"].get("hostnames"):
        assert env["HOOKGATE_WEBHOOK_BASE_URL"] == f"https://{route['spec']['hostnames'][0]}", env
    assert [d["metadata"]["name"] for d in docs if d["kind"] == "CustomResourceDefinition"] == ["receivers.hookgate.io"]
    (binding,) = [d for d in docs if d["kind"] == "ClusterRoleBinding"
                  and d["roleRef"]["name"] == "hookgate-controller-receivers"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": deployment["spec"]["template"]["spec"][
        "serviceAccountName"], "namespace": deployment["metadata"]["namespace"]}], binding["subjects"]


# The controller's longest request: --deadline-ms's default (controller/src/serve.rs), in seconds.
CONTROLLER_DEADLINE = 8


def matches(selector: dict, labels: dict) -> bool:
    return selector.get("matchLabels", {}).items() <= labels.items() and not selector.get("matchExpressions")


@pytest.mark.parametrize("example", EXAMPLES)
def test_a_rollout_or_a_drain_keeps_a_controller_replica_serving(example):
    """Every example's controller: two replicas; a rollout surges instead of stopping one first; a
    PodDisruptionBudget over exactly its pods lets one go at a time; the replicas prefer different nodes;
    a stopping pod sleeps (the kubelet's own action: the image has no shell) while its endpoint leaves
    Envoy, and its grace period covers that sleep and the longest in-flight request; readiness is probed.
    (tests/test_rollout.py shows the route's retry covering what remains.)"""
    docs = documents(f"examples/{example}")
    deployment = controller_deployment(docs)
    spec, pod = deployment["spec"], deployment["spec"]["template"]["spec"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert spec["replicas"] >= 2, spec["replicas"]
    assert spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0, spec["strategy"]
    (budget,) = [d for d in docs if d["kind"] == "PodDisruptionBudget"]
    assert budget["metadata"]["namespace"] == deployment["metadata"]["namespace"]
    assert budget["spec"]["selector"] == spec["selector"] and matches(budget["spec"]["selector"], labels)
    assert budget["spec"]["maxUnavailable"] == 1, budget["spec"]
    spread = {c["topologyKey"]: c for c in pod["topologySpreadConstraints"]}
    assert "kubernetes.io/hostname" in spread and all(matches(c["labelSelector"], labels) for c in spread.values())
    (container,) = pod["containers"]
    sleep = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert 0 < sleep and sleep + CONTROLLER_DEADLINE < pod["terminationGracePeriodSeconds"], (sleep, pod)
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"


LEASE_VERBS = ["get", "list", "create", "update", "delete"]


@pytest.mark.parametrize("directory", ["base/controller", *(f"examples/{e}" for e in EXAMPLES)])
def test_the_controller_may_keep_dispatch_records_in_its_own_namespace_only(directory):
    """The controller's namespaced RBAC grows by exactly the dispatch records (a Role in the Deployment's
    namespace granting get, list, create, update and delete on Leases) and, where an example has the
    proxy side, the proxy pods' addresses (a Role in the Gateway's namespace granting list and watch on pods,
    for --proxy-selector), each bound to its ServiceAccount in its own namespace; and the namespace given to
    the controller through the downward API."""
    docs = [d for d in yaml.safe_load_all(render(directory)) if d]
    (deployment,) = [d for d in docs if d["kind"] == "Deployment"]
    namespace = deployment["metadata"].get("namespace")
    pod = deployment["spec"]["template"]["spec"]
    account = [{"kind": "ServiceAccount", "name": pod["serviceAccountName"],
                **({"namespace": namespace} if namespace else {})}]
    expected = [("hookgate-controller-dispatch", namespace,
                 [{"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": LEASE_VERBS}])]
    if any(d["kind"] == "EnvoyProxy" for d in docs):
        expected.append(("hookgate-proxy-pods", "envoy-gateway-system",
                         [{"apiGroups": [""], "resources": ["pods"], "verbs": ["list", "watch"]}]))
    roles = [d for d in docs if d["kind"] == "Role"]
    assert sorted((r["metadata"]["name"], r["metadata"].get("namespace"), r["rules"]) for r in roles) == expected
    bindings = [d for d in docs if d["kind"] == "RoleBinding" and d["roleRef"]["kind"] == "Role"]
    assert sorted((b["roleRef"]["name"], b["metadata"].get("namespace"), b["subjects"]) for b in bindings) == [
        (name, role_namespace, account) for name, role_namespace, _ in expected]
    (container,) = pod["containers"]
    assert {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}} in container["env"]


# A ServiceAccount of its own, bound as the manifests bind it: other tests deploy examples whose bindings
# share names with the session's seeded ones, so a review of the seeded account would depend on test order.
PROBE_HOME, PROBE_BOUND = "rbac-probe-system", "rbac-probe-apps"


@pytest.fixture(scope="module")
def probe_account(cp):
    from gitops import bind_manifest_rbac

    for namespace in (PROBE_HOME, PROBE_BOUND):
        cp.namespace(namespace)
    bind_manifest_rbac(cp, PROBE_HOME, "hookgate-controller", [PROBE_BOUND])
    return f"system:serviceaccount:{PROBE_HOME}:hookgate-controller"


@pytest.mark.parametrize("verb,resource,group,namespace,allowed", [
    *[pytest.param(verb, "leases", "coordination.k8s.io", PROBE_HOME, True, id=f"{verb} its own leases")
      for verb in LEASE_VERBS],
    pytest.param("watch", "leases", "coordination.k8s.io", PROBE_HOME, False, id="watch leases"),
    pytest.param("patch", "leases", "coordination.k8s.io", PROBE_HOME, False, id="patch leases"),
    pytest.param("deletecollection", "leases", "coordination.k8s.io", PROBE_HOME, False,
                 id="delete all leases at once"),
    pytest.param("create", "leases", "coordination.k8s.io", PROBE_BOUND, False, id="leases where it reconciles"),
    pytest.param("create", "leases", "coordination.k8s.io", "kube-system", False, id="leases elsewhere"),
    pytest.param("list", "leases", "coordination.k8s.io", "", False, id="leases cluster-wide"),
    pytest.param("get", "configmaps", "", PROBE_HOME, False, id="anything else of its namespace"),
    pytest.param("patch", "applications", "argoproj.io", PROBE_HOME, False,
                 id="reconcile in its own namespace"),
    pytest.param("patch", "applications", "argoproj.io", PROBE_BOUND, True, id="reconcile where bound"),
])
def test_the_api_server_gives_the_controller_exactly_the_manifests_rbac(cp, probe_account, verb, resource, group,
                                                                        namespace, allowed):
    """What the kube-apiserver decides for a ServiceAccount bound as the manifests bind it (as the controller
    and dispatch tests bind theirs)."""
    review = cp.ok("POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews", {
        "apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
        "spec": {"user": probe_account,
                 "groups": ["system:serviceaccounts", f"system:serviceaccounts:{PROBE_HOME}", "system:authenticated"],
                 "resourceAttributes": {"verb": verb, "resource": resource, "group": group, "namespace": namespace}}})
    assert review["status"].get("allowed", False) is allowed, review["status"]


def test_base_gateway_fails_closed_until_the_controller_key_is_set(tmp_path):
    rendered = tmp_path / "base.yaml"
    rendered.write_text(render("base/gateway"))
    out = check(rendered)
    assert out.returncode != 0
    assert "field `controllerKeys`: must hold the controller's public key" in out.stderr


def test_oci_layout_of_the_filter(tmp_path):
    """`make oci`: an OCI image layout in the Wasm image "compat" variant Envoy Gateway's Image source loads
    (one tar+gzip layer holding plugin.wasm, the compiled module), with every digest matching its blob, the
    config's diff_ids matching the uncompressed layer, the same digests on every run, and the manifest digest
    (what a policy's `sha256` takes for an Image source) printed."""
    import gzip
    import hashlib
    import io
    import json
    import re
    import tarfile

    from harness import WASM
    from registry import oci_layout

    out = tmp_path / "oci"
    stdout = oci_layout(out, "9.9.9")
    assert f"module sha256 for an HTTP source: {hashlib.sha256(WASM.read_bytes()).hexdigest()}" in stdout

    def blob(descriptor: dict) -> bytes:
        algorithm, digest = descriptor["digest"].split(":")
        data = (out / "blobs" / algorithm / digest).read_bytes()
        assert (algorithm, hashlib.sha256(data).hexdigest(), len(data)) == ("sha256", digest, descriptor["size"])
        return data

    assert json.loads((out / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    index = json.loads((out / "index.json").read_text())
    assert index["schemaVersion"] == 2
    (descriptor,) = index["manifests"]
    assert descriptor["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert descriptor["annotations"]["org.opencontainers.image.ref.name"] == "9.9.9"
    manifest = json.loads(blob(descriptor))
    assert (manifest["schemaVersion"], manifest["mediaType"]) == (2, "application/vnd.oci.image.manifest.v1+json")
    (layer,) = manifest["layers"]
    assert layer["mediaType"] == "application/vnd.oci.image.layer.v1.tar+gzip"
    tar = gzip.decompress(blob(layer))
    with tarfile.open(fileobj=io.BytesIO(tar)) as archive:
        (member,) = archive.getmembers()
        assert (member.name, member.isfile()) == ("plugin.wasm", True)
        assert archive.extractfile(member).read() == WASM.read_bytes()
    assert manifest["config"]["mediaType"] == "application/vnd.oci.image.config.v1+json"
    config = json.loads(blob(manifest["config"]))
    assert config["rootfs"] == {"type": "layers", "diff_ids": [f"sha256:{hashlib.sha256(tar).hexdigest()}"]}
    assert config["architecture"] and config["os"]

    printed = re.search(r"^manifest (sha256:[0-9a-f]{64}) \(code\.type: Image, sha256\)$", stdout, re.MULTILINE)
    assert printed and printed.group(1) == descriptor["digest"]
    again = tmp_path / "again"
    oci_layout(again, "9.9.9")
    assert json.loads((again / "index.json").read_text())["manifests"] == [descriptor]
    assert sorted(p.name for p in (again / "blobs/sha256").iterdir()) == \
        sorted(p.name for p in (out / "blobs/sha256").iterdir())


def test_argocd_rollback_pieces_fit_together():
    """The Argo CD notification template produces the notification the example's dispatch receiver accepts,
    at its path, with a bearer token; the workflow listens for its event type and keeps payload values out
    of the shell script."""
    import json
    import re

    example = MANIFESTS / "examples/argocd-refresh"
    docs = documents("examples/argocd-refresh")
    (dispatching,) = [d for d in docs if d["kind"] == "Receiver" and d["spec"].get("action") == "dispatch"]
    receiver = dispatching["spec"]
    # The controller allows `action: dispatch` only in its own namespace (--dispatch-namespace unset).
    deployment = controller_deployment(docs)
    assert dispatching["metadata"]["namespace"] == deployment["metadata"]["namespace"]
    assert not [a for a in deployment["spec"]["template"]["spec"]["containers"][0]["args"]
                if a.startswith("--dispatch-namespace")]

    cm = yaml.safe_load((example / "argocd-notifications/argocd-notifications-cm.yaml").read_text())["data"]
    service = yaml.safe_load(cm["service.webhook.hookgate-rollback"])
    assert service["url"].endswith(receiver["path"])
    assert {"name": "Authorization", "value": "Bearer $hookgate-token"} in service["headers"]
    template = yaml.safe_load(cm["template.hookgate-rollback"])["webhook"]["hookgate-rollback"]
    assert template["method"] == "POST"
    # Go template actions replaced by what Argo CD would put there.
    sample = re.sub(r"\{\{.*?\}\}", "3f786850e387550fdab836ed7e6dc881de23001b", template["body"])
    body = json.loads(sample)
    assert body["event_type"] == receiver["dispatch"]["eventType"]
    assert set(body["client_payload"]) == {"application", "failed_revision", "healthy_revision"}
    trigger = yaml.safe_load(cm["trigger.on-health-degraded"])[0]
    assert trigger["send"] == ["hookgate-rollback"] and "Degraded" in trigger["when"]

    workflow = yaml.safe_load((example / "github-workflows/rollback.yml").read_text())
    on = workflow[True] if True in workflow else workflow["on"]  # YAML 1.1 reads `on` as a boolean
    assert receiver["dispatch"]["eventType"] in on["repository_dispatch"]["types"]
    for job in workflow["jobs"].values():
        for step in job["steps"]:
            assert "client_payload" not in step.get("run", ""), "payload values must reach the script through env"
