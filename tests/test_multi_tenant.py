"""What the multi-tenant example's isolation rests on, shown on a real kube-apiserver with the example's own
ServiceAccount, ClusterRoles and bindings, each tenant's Receivers and Secrets in its own namespace, and the
controller Deployment run as a process.

The API server confines the controller's patches to the tenants' namespaces, but one ServiceAccount is bound
in both, so it does not keep team-a's receiver away from team-b's objects: the controller does (each
receiver only in its own namespace), and the gateway policies are the platform admin's (DESIGN.md, trust
model)."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

import pytest

import signers
from deploy import (MANIFESTS, RECEIVER_API, Example, configured, controller_deployment, deploy_cluster_side,
                    receiver_key, secret_volumes)
from gateway import wait

EXAMPLE = "multi-tenant"


@pytest.fixture(scope="module")
def tenants(cp, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("tenants")
    _, docs, values = configured(MANIFESTS / "examples" / EXAMPLE, workdir)
    example = Example(EXAMPLE, docs, [], values, cp, None, 0, "127.0.0.1")
    deploy_cluster_side(example, workdir)
    try:
        yield example
    finally:
        example.stop()


def attestation_key(example: Example) -> str:
    """The value of the Secret the controller Deployment mounts as its attestation key."""
    deployment = controller_deployment(example.docs)
    assert "hookgate-attestation" in secret_volumes(deployment)
    return example.secret_values[(deployment["metadata"]["namespace"], "hookgate-attestation", "key")]


def attested_post(example: Example, body: dict) -> tuple[int, dict]:
    """A request as the filter forwards it after verifying a delivery."""
    data = json.dumps(body).encode()
    ts = str(int(time.time()))
    request = urllib.request.Request(
        f"http://127.0.0.1:{example.controller.port}/hook/v1/reconcile", data=data, method="POST",
        headers={"Content-Type": "application/json", "x-hookgate-timestamp": ts,
                 "x-hookgate-signature": signers.attestation(attestation_key(example), ts, data)})
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def may_patch(example: Example, namespace: str) -> bool:
    """Whether RBAC lets the example's ServiceAccount patch GitRepositories in `namespace`."""
    (account,) = example.of_kind("ServiceAccount")
    user = f"system:serviceaccount:{account['metadata']['namespace']}:{account['metadata']['name']}"
    review = example.cp.ok("POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews", {
        "apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
        "spec": {"user": user, "resourceAttributes": {
            "group": "source.toolkit.fluxcd.io", "resource": "gitrepositories", "verb": "patch",
            "namespace": namespace}}})
    return review["status"].get("allowed", False)


def team_b_objects(example: Example) -> dict:
    return {(t.kind, t.name): example.cp.get(t.api_version, t.kind, t.namespace, t.name)["metadata"]
            .get("resourceVersion") for t in example.targets["team-b/github"]}


def test_rbac_confines_the_controller_to_the_tenants_not_one_tenant(tenants):
    # (Other tests bind a ServiceAccount of the same name elsewhere in this shared control plane: the
    # namespaces outside the tenants are ones no test binds it in.)
    assert {ns: may_patch(tenants, ns) for ns in ("team-a", "team-b", "default", "hookgate-system")} == {
        "team-a": True, "team-b": True, "default": False, "hookgate-system": False}


def test_the_controller_keeps_a_receiver_in_its_namespace(tenants):
    """team-a's receiver naming team-b's GitRepository is allowed by RBAC (above) and refused by the
    controller before any API call: nothing in team-b changes."""
    before = team_b_objects(tenants)
    status, reply = attested_post(tenants, {
        "receiver": {"namespace": "team-a", "name": "github"}, "type": "github", "event": "push",
        "targets": [{"kind": "GitRepository", "name": "infra", "namespace": "team-b"}]})
    assert status == 500, reply
    assert [t["status"] for t in reply["targets"]] == ["cross_namespace"], reply
    assert team_b_objects(tenants) == before
    # The same object through team-b's own receiver is reconciled: the refusal above is the namespace rule.
    status, reply = attested_post(tenants, {
        "receiver": {"namespace": "team-b", "name": "github"}, "type": "github", "event": "push",
        "targets": [{"kind": "GitRepository", "name": "infra"}]})
    assert status == 200, reply
    assert team_b_objects(tenants)[("GitRepository", "infra")] != before[("GitRepository", "infra")]


def test_each_tenants_receivers_are_compiled_with_the_secret_of_its_own_namespace(tenants):
    """Both tenants have a Secret `webhook-tokens`: each receiver is in the controller's configuration at the
    Flux path of its own namespace's token, never the other tenant's (its status says so; with no proxy
    here, Ready is False for that reason alone: NotServed)."""
    assert {r["namespace"] for r in tenants.receivers} == {"team-a", "team-b"}
    for receiver in tenants.receivers:
        path = signers.flux_path(tenants.secret(receiver), receiver["name"], receiver["namespace"])

        def status() -> dict:
            return tenants.cp.get(RECEIVER_API, "Receiver", receiver["namespace"], receiver["name"]).get("status", {})

        wait(lambda: status().get("webhookPath") == path and any(
            c["type"] == "Ready" and c["reason"] == "NotServed" for c in status().get("conditions", [])), 30,
            f"{receiver_key(receiver)} compiled at its path", lambda: json.dumps(status()))
