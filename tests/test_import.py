"""`hookgate import` on the Receivers of Flux's documentation and common setups (GitHub push+ping with a
GitRepository and `*` Kustomizations by label; GitLab with a Kustomization in another namespace; Harbor;
Docker Hub) and their Secrets: it writes hookgate `Receiver` objects (hookgate.io/v1alpha1) reading the same
Secrets, which the real kube-apiserver takes and `hookgate check` compiles on Flux's paths. Applied with
the input Secrets and served by the controller to the real Envoy with the filter (tests/served.py), a
delivery at the path Flux computed for the original Receiver reconciles the Receiver's targets in the real
kube-apiserver, and a forged one changes nothing."""

from __future__ import annotations

import base64
import http.client
import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

import signers
from deploy import DELIVERIES, MANIFESTS, Delivery
from gitops import FLUX, annotations, git_repository, kustomization
from harness import CONTROLLER
from served import ServedEdge

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


CASES = [
    Case("github-receiver", "github-token", *DELIVERIES[("github", "push")]),
    Case("gitlab-receiver", "gitlab-token", *DELIVERIES[("gitlab", "push hook")]),
    Case("harbor-receiver", "harbor-token", *DELIVERIES[("harbor", "push_artifact")]),
    # Docker Hub signs nothing: the secret path is the proof.
    Case("dockerhub-receiver", "dockerhub-token", lambda _s, _b: {"Content-Type": "application/json"},
         DOCKERHUB_PUSH, signed=False),
]

RECEIVER_API = "hookgate.io/v1alpha1"
FLUX_RECEIVERS = {d["metadata"]["name"]: d for d in FILE_DOCUMENTS + LIST_STREAM["items"] if d["kind"] == "Receiver"}
SECRETS = [d for d in FILE_DOCUMENTS + LIST_STREAM["items"] if d["kind"] == "Secret"]
RECEIVERS_CRD = MANIFESTS / "base/crds/receivers.hookgate.io.yaml"


def run_hookgate(*args: str, stdin: str | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(CONTROLLER), *args], input=stdin, capture_output=True, text=True, timeout=30,
                          env={**os.environ, "RUST_BACKTRACE": "0", **(env or {})})


@pytest.fixture(scope="module")
def imported_objects(tmp_path_factory) -> tuple[Path, list[dict], str]:
    """`hookgate import` of the file and of the List on standard input: (output directory, the objects it
    wrote, stderr)."""
    work = tmp_path_factory.mktemp("import-objects")
    receivers_file = work / "receivers.yaml"
    receivers_file.write_text(yaml.safe_dump_all(FILE_DOCUMENTS))
    out = work / "out"
    result = run_hookgate("import", str(receivers_file), "-", "--out", str(out),
                          stdin=yaml.safe_dump(LIST_STREAM))
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["receivers.yaml"]
    objects = [d for d in yaml.safe_load_all((out / "receivers.yaml").read_text()) if d]
    return out, objects, result.stderr


def test_each_flux_receiver_becomes_a_receiver_object_reading_the_same_secret(imported_objects):
    _, objects, _ = imported_objects
    by_name = {o["metadata"]["name"]: o for o in objects}
    assert sorted(by_name) == sorted(case.receiver for case in CASES)  # not gcr-receiver
    for case in CASES:
        written, flux = by_name[case.receiver], FLUX_RECEIVERS[case.receiver]
        assert written["apiVersion"] == RECEIVER_API and written["kind"] == "Receiver"
        assert written["metadata"] == {"name": case.receiver, "namespace": NS}
        spec = written["spec"]
        assert spec["type"] == flux["spec"]["type"]
        assert spec["secretRef"] == {"name": case.secret, "keys": ["token"]}
        assert spec["targets"] == flux["spec"]["resources"], case.receiver
        assert spec.get("events") == flux["spec"].get("events"), case.receiver
        assert "status" not in written


def test_the_objects_summary_gives_paths_notes_and_what_serve_flux_receivers_serves_as_it_is(imported_objects):
    out, _, summary = imported_objects
    for case in CASES:
        path = signers.flux_path(TOKENS[case.secret], case.receiver, NS)
        assert f"imported {NS}/{case.receiver} " in summary and f"{RECEIVER_API}): {path}\n" in summary, summary
    assert f"skipped {NS}/gcr-receiver: type `gcr` proves with an ID token" in summary, summary
    assert (f"note: {NS}/gitlab-receiver: spec.resources[1] is in namespace apps: run the controller with "
            "--allow-cross-namespace and bind its ClusterRole in apps, or the Receiver is not Ready "
            "(CrossNamespaceTarget)") in summary, summary
    assert f"wrote {out / 'receivers.yaml'}: apply it" in summary, summary
    # The GitLab Receiver carries a note (its cross-namespace target); the others carry over unchanged.
    assert ("Flux Receivers the controller can serve as they are with --serve-flux-receivers (imported with no "
            f"note): {NS}/github-receiver, {NS}/harbor-receiver, {NS}/dockerhub-receiver\n") in summary, summary


def test_the_objects_say_what_differs_and_hold_no_token(imported_objects):
    out, _, summary = imported_objects
    written = (out / "receivers.yaml").read_text()
    for token in TOKENS.values():
        assert token not in written and token not in summary
    comments = " ".join(line[2:] for line in written.splitlines() if line.startswith("# "))
    assert f"From Flux Receiver {NS}/github-receiver (notification.toolkit.fluxcd.io/v1), on the path Flux gave " \
           "it; nothing else differs." in comments, comments
    assert f"From Flux Receiver {NS}/gitlab-receiver (notification.toolkit.fluxcd.io/v1), on the path Flux gave " \
           "it; differs: spec.resources[1] is in namespace apps" in comments, comments


@pytest.mark.parametrize("with_secrets, flags, returncode, expected", [
    (True, [], 1, {"gitlab-receiver": "CrossNamespaceTarget: spec.targets[1].namespace: apps is not the receiver's "
                                      "namespace"}),
    (True, ["--allow-cross-namespace"], 0, {}),
    (False, ["--allow-cross-namespace"], 0, {}),
], ids=["with the Secrets", "with the Secrets, --allow-cross-namespace", "without the Secrets"])
def test_hookgate_check_compiles_the_objects_as_the_controller_on_flux_paths(imported_objects, tmp_path, with_secrets,
                                                                             flags, returncode, expected):
    """`hookgate check` on what `import` wrote (and the Secrets): the controller's compiler serves
    each Receiver on the path Flux gave it, or says why not as the Receiver's Ready condition would."""
    out, _, _ = imported_objects
    files = [str(out / "receivers.yaml")]
    if with_secrets:
        (tmp_path / "secrets.yaml").write_text(yaml.safe_dump_all(SECRETS))
        files.append(str(tmp_path / "secrets.yaml"))
    result = run_hookgate("check", *flags, *files)
    assert result.returncode == returncode, result.stdout + result.stderr
    report = result.stdout
    for case in CASES:
        header = f"Receiver {NS}/{case.receiver} ({FLUX_RECEIVERS[case.receiver]['spec']['type']}): "
        if case.receiver in expected:
            assert header + expected[case.receiver] in report, report
        elif with_secrets:
            path = signers.flux_path(TOKENS[case.secret], case.receiver, NS)
            assert f"{header}OK\n  path: {path}\n" in report, report
        else:
            assert (f"{header}OK\n  path: /hook/<sha256 of Secret {case.secret} key token + name + namespace> "
                    "(add the Secret to the files to print it)\n") in report, report
    for token in TOKENS.values():
        assert token not in report


@pytest.mark.parametrize("documents, flags, returncode, expected", [
    ([FILE_DOCUMENTS[0], FILE_DOCUMENTS[1]], [], 0,
     [f"imported {NS}/github-receiver (github) as Receiver {NS}/github-receiver ({RECEIVER_API}): Flux's path (its "
      f"Secret {NS}/github-token is not in the input: the Receiver reads it in the cluster)"]),
    ([FILE_DOCUMENTS[2], FILE_DOCUMENTS[3]], [], 1, ["no Receiver could be imported; nothing written"]),
    # Receivers as objects are the one output: the filter configuration and its components are gone.
    ([FILE_DOCUMENTS[0], FILE_DOCUMENTS[3]], ["--to", "policy"], 2, ["unexpected argument '--to'"]),
], ids=["no Secret: the Receivers read theirs in the cluster", "only a type hookgate lacks", "no --to any more"])
def test_objects_need_no_secret_and_nothing_is_written_when_nothing_imports(tmp_path, documents, flags, returncode,
                                                                            expected):
    source = tmp_path / "receivers.yaml"
    source.write_text(yaml.safe_dump_all(documents))
    result = run_hookgate("import", str(source), *flags, "--out", str(tmp_path / "out"))
    assert result.returncode == returncode, result.stderr
    for line in expected:
        assert line in result.stderr, result.stderr
    assert (tmp_path / "out/receivers.yaml").exists() is (returncode == 0)


def receiver_api_path(cp, namespace: str, name: str) -> str:
    return cp.resource_path(RECEIVER_API, "Receiver", namespace, name)


def test_the_objects_apply_on_the_real_api_server_and_url_reads_the_status(imported_objects, cp, tmp_path):
    """The real kube-apiserver with the CRD of manifests/base/crds takes every written Receiver under strict
    field validation (server-side apply, dry run); then, as after a migration, `hookgate url --receiver`
    reads a Receiver's URL from the status the controller writes (written here by hand), through a
    kubeconfig."""
    _, objects, _ = imported_objects
    cp.install_crds([yaml.safe_load(RECEIVERS_CRD.read_text())])
    apply = {"fieldManager": "hookgate-tests", "force": "true", "fieldValidation": "Strict"}
    for obj in objects:
        meta = obj["metadata"]
        cp.ok("PATCH", receiver_api_path(cp, meta["namespace"], meta["name"]), json.dumps(obj),
              query={**apply, "dryRun": "All"}, content_type="application/apply-patch+yaml")

    namespace = "hookgate-import-url"
    cp.namespace(namespace)
    kubeconfig = cp.kubeconfig(cp.admin_token, tmp_path / "kubeconfig")
    (github,) = [o for o in objects if o["metadata"]["name"] == "github-receiver"]
    path = signers.flux_path(TOKENS["github-token"], "github-receiver", NS)
    ready = {"type": "Ready", "lastTransitionTime": "2030-01-01T00:00:00Z", "observedGeneration": 1}
    # (case, status, returncode, stdout, stderr's start)
    cases = [
        ("served, with the URL", {"observedGeneration": 1, "webhookPath": path, "url": f"https://hooks.example.com{path}",
                                  "conditions": [{**ready, "status": "True", "reason": "Served", "message": "served"}]},
         0, f"https://hooks.example.com{path}\n", ""),
        ("not at a proxy yet: the path, a warning",
         {"observedGeneration": 1, "webhookPath": path,
          "conditions": [{**ready, "status": "False", "reason": "NotServed", "message": "no proxy has applied it yet"}]},
         0, f"{path}\n", f"warning: Receiver {namespace}/github-receiver is not Ready: NotServed: no proxy"),
        ("refused: why", {"observedGeneration": 1, "conditions": [
            {**ready, "status": "False", "reason": "SecretNotFound", "message": "Secret github-token not found"}]},
         1, "", f"Error: Receiver {namespace}/github-receiver has no webhook path: SecretNotFound: Secret github-token"),
    ]
    url = receiver_api_path(cp, namespace, "github-receiver")
    cp.ok("PATCH", url, json.dumps({**github, "metadata": {**github["metadata"], "namespace": namespace}}),
          query=apply, content_type="application/apply-patch+yaml")
    try:
        for case, status, returncode, stdout, stderr in cases:
            # A merge patch keeps what it does not name: name every field a case leaves out.
            status = {"webhookPath": None, "url": None, **status}
            cp.ok("PATCH", url + "/status", {"status": status}, content_type="application/merge-patch+json")
            result = run_hookgate("url", "--receiver", f"{namespace}/github-receiver", env={"KUBECONFIG": str(kubeconfig)})
            assert (result.returncode, result.stdout) == (returncode, stdout), (case, result.stderr)
            assert result.stderr.startswith(stderr), (case, result.stderr)
        result = run_hookgate("url", "--receiver", f"{namespace}/missing", env={"KUBECONFIG": str(kubeconfig)})
        assert result.returncode == 1 and f"no Receiver {namespace}/missing ({RECEIVER_API})" in result.stderr
    finally:
        # A later module's controller would compile a Receiver left here.
        cp.request("DELETE", url)


# -- what `hookgate import` wrote, served: the Receivers and the input Secrets in the real kube-apiserver ---------

def image_repository(name: str, ns: str, labels: dict) -> dict:
    return {"apiVersion": "image.toolkit.fluxcd.io/v1", "kind": "ImageRepository",
            "metadata": {"name": name, "namespace": ns, "labels": labels},
            "spec": {"image": f"ghcr.io/example/{name}", "interval": "5m"}}


# The smallest valid object of each kind the imported Receivers target, by (name, namespace, labels).
TARGET_OBJECTS = {"GitRepository": git_repository, "Kustomization": kustomization, "ImageRepository": image_repository}


@dataclass(frozen=True)
class Target:
    api_version: str
    kind: str
    namespace: str
    name: str
    selected: bool  # a wildcard target's object without its labels is seeded too, and must stay untouched
    created: bool   # by this module (deleted at its end), not there before

    def annotation(self, cp) -> str | None:
        return annotations(cp, self.api_version, self.kind, self.namespace, self.name).get(FLUX)


def seed_targets(cp, receiver: dict) -> list[Target]:
    """What a Flux Receiver's resources name, in the real kube-apiserver: the named object, or for `name: "*"`
    one object carrying the resource's labels and one without them."""
    seeded = []
    for resource in receiver["spec"]["resources"]:
        kind, namespace = resource["kind"], resource.get("namespace", receiver["metadata"]["namespace"])
        if resource["name"] == "*":
            base = f"{receiver['metadata']['name']}-{kind.lower()}"
            objects = [(base, resource["matchLabels"], True), (f"{base}-unlabelled", {}, False)]
        else:
            objects = [(resource["name"], {}, True)]
        cp.namespace(namespace)
        for name, labels, selected in objects:
            doc = TARGET_OBJECTS[kind](name, namespace, labels)
            assert doc["apiVersion"] == resource.get("apiVersion", doc["apiVersion"])
            created = cp.request("GET", cp.resource_path(doc["apiVersion"], kind, namespace, name))[0] == 404
            cp.apply(doc)
            seeded.append(Target(doc["apiVersion"], kind, namespace, name, selected, created))
    return seeded


@pytest.fixture(scope="module")
def served(imported_objects, cp, tmp_path_factory):
    """The Receivers `hookgate import` wrote and the input Secrets applied to the real kube-apiserver, the
    objects their Flux Receivers name seeded there, and the controller serving them to the real Envoy with
    the filter, as their upstream too (it patches the targets). The GitLab Receiver targets a Kustomization in
    `apps`: as the import's summary says, the controller runs with --allow-cross-namespace (its
    ServiceAccount may reconcile there). Yields (edge, the seeded targets by receiver name)."""
    _, objects, _ = imported_objects
    targets = {case.receiver: seed_targets(cp, FLUX_RECEIVERS[case.receiver]) for case in CASES}
    try:
        with ServedEdge(cp, tmp_path_factory.mktemp("served"), [*objects, *SECRETS],
                        controller_args=["--allow-cross-namespace"]) as edge:
            yield edge, targets
    finally:
        for target in {t for seeded in targets.values() for t in seeded if t.created}:
            cp.request("DELETE", cp.resource_path(target.api_version, target.kind, target.namespace, target.name))


def post(port: int, delivery: Delivery) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("POST", delivery.path, body=delivery.body, headers=delivery.headers)
        response = conn.getresponse()
        return response.status, response.read().decode(errors="replace")
    finally:
        conn.close()


@pytest.mark.parametrize("case", CASES, ids=[c.receiver for c in CASES])
def test_a_delivery_at_flux_path_reconciles_the_receivers_targets(cp, served, case):
    edge, targets = served
    mine = targets[case.receiver]
    before = {t: t.annotation(cp) for t in mine}
    status, reply = post(edge.port, case.delivery()[0])
    assert status == 200, f"{status} {reply}\n{edge.controller.log()[-2000:]}"
    summary = json.loads(reply)
    assert summary["receiver"] == f"{NS}/{case.receiver}" and summary["failed"] == 0, reply
    assert summary["annotated"] >= sum(t.selected for t in mine) > 0, reply
    for target in mine:
        assert (target.annotation(cp) != before[target]) is target.selected, (target, before)


@pytest.mark.parametrize("case", CASES, ids=[c.receiver for c in CASES])
def test_a_forged_delivery_changes_nothing(cp, served, case):
    edge, targets = served
    mine = targets[case.receiver]
    before = {t: t.annotation(cp) for t in mine}
    delivery, expected = case.delivery(forged=True)
    status, reply = post(edge.port, delivery)
    assert status == expected, reply
    assert {t: t.annotation(cp) for t in mine} == before
