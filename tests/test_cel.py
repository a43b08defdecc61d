"""CEL filters with the real parts: a receiver's `filter` decided by the compiled filter in the real Envoy,
and Flux's documented `resourceFilter` and per-resource `filter` (verbatim) deciding which objects the
controller patches on the real kube-apiserver."""

from __future__ import annotations

import json
import time

import pytest

import signers
from gateway import wait
from gitops import FLUX, annotations
from served import ServedEdge, receiver, secret
from test_edge_filter import assert_nothing_upstream, send, upstream

# `upstream` is test_edge_filter's recording-upstream fixture, used here too.
__all__ = ["upstream"]

SECRET = "cel-webhook-secret-0123456789"
NAMESPACE = "apps"
# The edge's receivers, whose targets are not patched (the upstream records).
EDGE_NAMESPACE = "cel-edge"
# The edge filter: an event, a header and payload fields.
EDGE_FILTER = ("event == 'push' && headers['user-agent'].startsWith('GitHub-Hookshot/') "
               "&& req.ref == 'refs/heads/main' && req.repository.name == 'webapp'")
# At the bounds: 12 levels of brackets and 12 negations, parsed inside V8's stack.
NESTED_FILTER = "(" * 11 + "req.ref == 'refs/heads/main'" + ")" * 11 + " && " + "!" * 12 + "true"
# Flux's documentation, docs/spec/v1/receivers.md, verbatim.
FLUX_TAG_FILTER = "req.tag.contains(res.metadata.name)"
FLUX_ANNOTATION_FILTER = ("has(res.metadata.annotations) && req.tag.split('/').last().value().split(\":\").first().value() "
                          "== res.metadata.annotations['update-image']")
FLUX_LABEL_FILTER = "res.metadata.labels['environment'] == 'production'"
GAR_TAG = {"action": "INSERT",
           "digest": "us-east1-docker.pkg.dev/my-project/my-repo/hello-world@sha256:6ec128e26cd5",
           "tag": "us-east1-docker.pkg.dev/my-project/my-repo/hello-world:1.1"}


def github_receiver(name: str, filter_: str, **extra) -> dict:
    return receiver(name, EDGE_NAMESPACE, {"type": "github", "secretRef": {"name": "cel-secret"}, "filter": filter_,
                                      "targets": [{"kind": "GitRepository", "name": "webapp"}], **extra})


def path_of(name: str) -> str:
    return signers.flux_path(SECRET, name, EDGE_NAMESPACE)


# 10^10 comparisons on 100,000 elements without a bound on the work of one evaluation.
QUADRATIC_FILTER = "req.a.exists(x, 1 in req.a)"

EDGE_RECEIVERS = [
    github_receiver("webapp", EDGE_FILTER, resourceFilter="req.head_commit.id != ''"),
    github_receiver("nested", NESTED_FILTER),
    github_receiver("quadratic", QUADRATIC_FILTER),
]


@pytest.fixture(scope="module")
def envoy(cp, upstream, tmp_path_factory):
    with ServedEdge(cp, tmp_path_factory.mktemp("cel-edge"), [*EDGE_RECEIVERS, secret("cel-secret", EDGE_NAMESPACE, {"token": SECRET})],
                    upstream_port=upstream.port) as served:
        yield served.envoy
        assert "panicked" not in served.envoy.log()


def push(**fields) -> bytes:
    body = {"ref": "refs/heads/main", "repository": {"name": "webapp", "private": True},
            "head_commit": {"id": "abc123", "message": "do-not-forward-this-message"}}
    body.update(fields)
    return json.dumps(body).encode()


# (case, receiver, event, body, expected reply: None for a forward)
EDGE_CASES = [
    ("true: forwarded", "webapp", "push", push(), None),
    ("another event", "webapp", "release", push(), "filter"),
    ("another branch", "webapp", "push", push(ref="refs/heads/dev"), "filter"),
    ("another repository", "webapp", "push", push(repository={"name": "other"}), "filter"),
    ("a field the filter reads is missing: fails closed", "webapp", "push",
     json.dumps({"ref": "refs/heads/main"}).encode(), "filter error"),
    ("an expression at the nesting bound", "nested", "push", push(), None),
]


@pytest.mark.parametrize("case,name,event,body,ignored", EDGE_CASES, ids=[c[0] for c in EDGE_CASES])
def test_the_receiver_filter_decides_at_the_edge(envoy, upstream, case, name, event, body, ignored):
    upstream.reset()
    status, reply = send(envoy.port, path_of(name), signers.github(SECRET, body, event=event), body)
    if ignored:
        assert (status, json.loads(reply)) == (202, {"status": "ignored", "reason": ignored})
        assert_nothing_upstream(upstream)
    else:
        upstream.wait_until_quiet(0.1)
        assert status == 200 and len(upstream.requests) == 1, (status, reply)


def test_a_quadratic_filter_stops_at_its_budget_within_a_second(envoy, upstream):
    """Issue 22, item 9: the filter's work is bounded whatever the expression and the payload. 100,000
    zeros (about 200 KB, well inside the default bodyLimit) make this filter 10^10 comparisons on the
    Envoy worker that serves every route; it stops at the evaluation budget and fails closed."""
    upstream.reset()
    body = json.dumps({"a": [0] * 100_000}).encode()
    started = time.monotonic()
    status, reply = send(envoy.port, path_of("quadratic"), signers.github(SECRET, body, event="push"), body, timeout=5)
    elapsed = time.monotonic() - started
    assert (status, json.loads(reply)) == (202, {"status": "ignored", "reason": "filter error"})
    assert elapsed < 1, elapsed
    assert_nothing_upstream(upstream)


def test_only_the_payload_fields_the_target_filters_read_are_forwarded(envoy, upstream):
    upstream.reset()
    body = push()
    status, _ = send(envoy.port, path_of("webapp"), signers.github(SECRET, body), body)
    upstream.wait_until_quiet(0.1)
    assert status == 200
    forwarded = json.loads(upstream.requests[0].body)
    assert forwarded["resourceFilter"] == "req.head_commit.id != ''"
    # The edge filter's fields (ref, repository) are not the target filters': only head_commit.id goes.
    assert forwarded["payload"] == {"head_commit": {"id": "abc123"}}
    assert b"do-not-forward-this-message" not in upstream.requests[0].body


def test_an_unverified_delivery_is_refused_before_any_filter(envoy, upstream):
    upstream.reset()
    body = push()
    status, reply = send(envoy.port, path_of("webapp"), signers.github("not-the-secret", body), body)
    assert (status, json.loads(reply)) == (401, {"error": "signature mismatch"})
    assert_nothing_upstream(upstream)


@pytest.mark.parametrize("field,expression,message", [
    ("filter", "req.ref ==", "spec.filter: invalid CEL: unexpected end of expression"),
    ("filter", "req.commits.exists(c, req.commits.exists(d, c == d))",
     "spec.filter: has a comprehension inside another (quadratic time)"),
    ("resourceFilter", "size(req) > 0", "spec.resourceFilter: reads `req` whole"),
])
def test_a_bad_expression_refuses_only_its_receiver_and_says_where(cp, upstream, tmp_path, field, expression,
                                                                    message):
    """The controller compiles each receiver alone: one with a bad expression is left out (its status says
    which field and why), and the others are served."""
    bad = github_receiver("bad", EDGE_FILTER, **{field: expression})
    upstream.reset()
    with ServedEdge(cp, tmp_path, [bad, *EDGE_RECEIVERS, secret("cel-secret", EDGE_NAMESPACE, {"token": SECRET})], upstream_port=upstream.port,
                    refused=1) as served:
        body = push()
        status, reply = send(served.port, path_of("bad"), signers.github(SECRET, body), body)
        assert (status, json.loads(reply)) == (404, {"error": "unknown webhook path"})
        assert_nothing_upstream(upstream)
        status, _ = send(served.port, path_of("nested"), signers.github(SECRET, body), body)
        assert status == 200
        ready = {}

        def refused() -> bool:
            nonlocal ready
            status = cp.get("hookgate.io/v1alpha1", "Receiver", EDGE_NAMESPACE, "bad").get("status", {})
            ready = next((c for c in status.get("conditions", []) if c["type"] == "Ready"), {})
            return ready.get("reason") == "InvalidSpec"

        wait(refused, 30, "the refused receiver's status", lambda: json.dumps(ready))
        assert ready["status"] == "False" and message in ready["message"], ready


def image_repository(name: str, labels: dict, annotations: dict | None = None) -> dict:
    return {"apiVersion": "image.toolkit.fluxcd.io/v1", "kind": "ImageRepository",
            "metadata": {"name": name, "namespace": NAMESPACE, "labels": labels, "annotations": annotations or {}},
            "spec": {"image": f"us-east1-docker.pkg.dev/my-project/my-repo/{name}", "interval": "5m"}}


# name -> (labels, annotations, annotated by the delivery)
IMAGE_REPOSITORIES = {
    # Flux's per-resource example: the tag contains the name, and the label is production.
    "hello-world": ({"registry": "gar", "environment": "production"}, None, True),
    "world": ({"registry": "gar", "environment": "staging"}, None, False),
    "other-app": ({"registry": "gar", "environment": "production"}, None, False),
    # Flux's annotation example.
    "image-a": ({"registry": "gar-annotated"}, {"update-image": "hello-world"}, True),
    "image-b": ({"registry": "gar-annotated"}, {"update-image": "other"}, False),
    "image-c": ({"registry": "gar-annotated"}, None, False),
}
GAR_RECEIVERS = [
    receiver("gar-receiver", NAMESPACE, {
        "type": "generic", "secretRef": {"name": "cel-secret"}, "resourceFilter": FLUX_TAG_FILTER,
        "targets": [{"apiVersion": "image.toolkit.fluxcd.io/v1", "kind": "ImageRepository", "name": "*",
                     "matchLabels": {"registry": "gar"}, "filter": FLUX_LABEL_FILTER}]}),
    receiver("gar-annotated", NAMESPACE, {
        "type": "generic", "secretRef": {"name": "cel-secret"}, "resourceFilter": FLUX_ANNOTATION_FILTER,
        "targets": [{"apiVersion": "image.toolkit.fluxcd.io/v1", "kind": "ImageRepository", "name": "*",
                     "matchLabels": {"registry": "gar-annotated"}}]}),
    # Its filter reads a field larger than the controller's former 1 MiB request limit.
    receiver("gar-large", NAMESPACE, {
        "type": "generic", "secretRef": {"name": "cel-secret"}, "bodyLimit": 8 * 1024 * 1024,
        "resourceFilter": FLUX_TAG_FILTER + " && size(req.notes) > 0",
        "targets": [{"apiVersion": "image.toolkit.fluxcd.io/v1", "kind": "ImageRepository", "name": "hello-world"}]}),
    # Named targets: their metadata is listed by name (the controller's RBAC has no `get`).
    receiver("gar-named", NAMESPACE, {
        "type": "generic", "secretRef": {"name": "cel-secret"},
        "targets": [{"apiVersion": "image.toolkit.fluxcd.io/v1", "kind": "ImageRepository", "name": name,
                     "filter": FLUX_LABEL_FILTER} for name in ("hello-world", "world")]}),
]


@pytest.fixture(scope="module")
def cluster_edge(cp, tmp_path_factory):
    """The controller both serves the receivers and patches their targets, as on a cluster."""
    for name, (labels, notes, _) in IMAGE_REPOSITORIES.items():
        cp.apply(image_repository(name, labels, notes))
    with ServedEdge(cp, tmp_path_factory.mktemp("cel"), [*GAR_RECEIVERS, secret("cel-secret", NAMESPACE, {"token": SECRET})]) as served:
        yield served.envoy


@pytest.mark.parametrize("receiver,counts", [
    ("gar-receiver", {"annotated": 1, "filtered": 2}),
    ("gar-annotated", {"annotated": 1, "filtered": 2}),
])
def test_flux_documented_filters_patch_only_the_matching_objects(cp, cluster_edge, receiver, counts):
    api_version = "image.toolkit.fluxcd.io/v1"
    spec = next(r["spec"] for r in GAR_RECEIVERS if r["metadata"]["name"] == receiver)
    label = spec["targets"][0]["matchLabels"]["registry"]
    mine = {n: v for n, v in IMAGE_REPOSITORIES.items() if v[0]["registry"] == label}
    before = {n: annotations(cp, api_version, "ImageRepository", NAMESPACE, n).get(FLUX) for n in mine}
    body = json.dumps(GAR_TAG).encode()
    status, reply = send(cluster_edge.port, signers.flux_path(SECRET, receiver, NAMESPACE), signers.generic(SECRET, body), body)
    assert status == 200, reply
    summary = json.loads(reply)
    assert summary["targets"][0]["counts"] == counts and summary["failed"] == 0, summary
    for name, (_, _, expected) in mine.items():
        after = annotations(cp, api_version, "ImageRepository", NAMESPACE, name).get(FLUX)
        assert (after != before[name]) == expected, name


def test_a_filter_error_fails_closed_and_is_reported(cp, cluster_edge):
    """The payload lacks the field Flux's filter reads: nothing is patched, and the reply says so (500, as
    Flux answers)."""
    api_version = "image.toolkit.fluxcd.io/v1"
    before = annotations(cp, api_version, "ImageRepository", NAMESPACE, "hello-world").get(FLUX)
    body = json.dumps({"action": "INSERT"}).encode()
    status, reply = send(cluster_edge.port, signers.flux_path(SECRET, "gar-receiver", NAMESPACE),
                         signers.generic(SECRET, body), body)
    summary = json.loads(reply)
    assert status == 500 and summary["targets"][0]["counts"] == {"filter_error": 3}, summary
    assert annotations(cp, api_version, "ImageRepository", NAMESPACE, "hello-world").get(FLUX) == before


def test_named_targets_are_filtered_too(cp, cluster_edge):
    api_version = "image.toolkit.fluxcd.io/v1"
    before = {n: annotations(cp, api_version, "ImageRepository", NAMESPACE, n).get(FLUX) for n in ("hello-world", "world")}
    body = json.dumps(GAR_TAG).encode()
    status, reply = send(cluster_edge.port, signers.flux_path(SECRET, "gar-named", NAMESPACE),
                         signers.generic(SECRET, body), body)
    assert status == 200, reply
    assert [t["status"] for t in json.loads(reply)["targets"]] == ["annotated", "filtered"]
    assert annotations(cp, api_version, "ImageRepository", NAMESPACE, "hello-world").get(FLUX) != before["hello-world"]
    assert annotations(cp, api_version, "ImageRepository", NAMESPACE, "world").get(FLUX) == before["world"]


def test_a_large_field_the_filters_read_reaches_the_controller(cp, cluster_edge):
    """The filter forwards the fields the target filters read, here 2 MiB of them, and the controller reads
    the request (its 1 MiB limit answered 413 to this verified delivery)."""
    api_version = "image.toolkit.fluxcd.io/v1"
    before = annotations(cp, api_version, "ImageRepository", NAMESPACE, "hello-world").get(FLUX)
    body = json.dumps({**GAR_TAG, "notes": "n" * (2 * 1024 * 1024)}).encode()
    status, reply = send(cluster_edge.port, signers.flux_path(SECRET, "gar-large", NAMESPACE),
                         signers.generic(SECRET, body), body)
    assert status == 200, reply[:300]
    assert [t["status"] for t in json.loads(reply)["targets"]] == ["annotated"]
    assert annotations(cp, api_version, "ImageRepository", NAMESPACE, "hello-world").get(FLUX) != before
