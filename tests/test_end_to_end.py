"""The whole pipeline with real parts: a provider's POST to the real Envoy with the compiled filter, the
controller, and the real kube-apiserver. Deliveries are sent with `hookgate send`, the CLI users run."""

from __future__ import annotations

import http.client
import json
import subprocess
import time

import pytest

import signers
from gitops import FLUX, RFC3339_NANOS, annotations, resource_versions
from harness import CONTROLLER, stop_process
from served import ServedEdge, receiver, secret

TOKEN = "e2e-webhook-token-0123456789abcdef"
SECRET_REF = {"name": "webapp-webhook-token"}
OBJECTS = [
    receiver("webapp", "flux-system", {
        "type": "github", "events": ["push", "ping"], "secretRef": SECRET_REF,
        "targets": [{"kind": "GitRepository", "name": "webapp"},
                    {"kind": "Kustomization", "name": "*", "matchLabels": {"app": "webapp"}}]}),
    # Argo CD refresh on push: only pushes to the branch the Application tracks refresh it.
    receiver("gitops-repo", "argocd", {
        "type": "github", "path": "/hook/argocd-refresh", "events": ["push"], "refs": {"branches": ["main"]},
        "secretRef": SECRET_REF, "targets": [{"kind": "Application", "name": "guestbook"}]}),
    # A token-only sender (an Argo CD notification): no delivery id, the same body every time.
    receiver("notifier", "flux-system", {
        "type": "bearer", "path": "/hook/notify", "secretRef": SECRET_REF,
        "targets": [{"kind": "GitRepository", "name": "webapp"}]}),
    # Flux's types that take a bodyless delivery and one that does not (issue 22, item 1).
    receiver("bodyless", "flux-system", {
        "type": "generic", "secretRef": SECRET_REF, "targets": [{"kind": "GitRepository", "name": "webapp"}]}),
    receiver("signed-bodyless", "flux-system", {
        "type": "generic-hmac", "secretRef": SECRET_REF, "targets": [{"kind": "GitRepository", "name": "webapp"}]}),
    receiver("registry", "flux-system", {
        "type": "dockerhub", "secretRef": SECRET_REF, "targets": [{"kind": "GitRepository", "name": "webapp"}]}),
    secret(SECRET_REF["name"], "flux-system", {"token": TOKEN}),
    secret(SECRET_REF["name"], "argocd", {"token": TOKEN}),
]
PATH = signers.flux_path(TOKEN, "webapp", "flux-system")
WEBAPP = ("source.toolkit.fluxcd.io/v1", "GitRepository", "flux-system", "webapp")


@pytest.fixture(scope="module")
def edge(cp, tmp_path_factory):
    """Envoy in front of the controller, which serves it the receivers and patches their targets."""
    with ServedEdge(cp, tmp_path_factory.mktemp("e2e"), OBJECTS) as served:
        yield served.envoy


def hookgate_send(url: str, secret: str, *extra: str) -> tuple[int, str]:
    out = subprocess.run([str(CONTROLLER), "send", "--type", "github", "--url", url, "--secret", secret, *extra],
                         capture_output=True, text=True, timeout=60)
    status, _, body = out.stdout.strip().partition(" ")
    return int(status), body


TARGETS = [("source.toolkit.fluxcd.io/v1", "GitRepository", "webapp"),
           ("kustomize.toolkit.fluxcd.io/v1", "Kustomization", "webapp-frontend"),
           ("kustomize.toolkit.fluxcd.io/v1", "Kustomization", "webapp-backend")]


def test_signed_push_reconciles_the_repository_and_every_labelled_kustomization(cp, edge):
    before = {t: annotations(cp, t[0], t[1], "flux-system", t[2]).get(FLUX) for t in TARGETS}
    unrelated = annotations(cp, "kustomize.toolkit.fluxcd.io/v1", "Kustomization", "flux-system", "unrelated").get(FLUX)
    status, body = hookgate_send(f"http://127.0.0.1:{edge.port}{PATH}", TOKEN)
    assert status == 200, body
    summary = json.loads(body)
    assert summary["annotated"] == 3 and summary["failed"] == 0
    for t in TARGETS:
        value = annotations(cp, t[0], t[1], "flux-system", t[2]).get(FLUX)
        assert value and RFC3339_NANOS.match(value) and value != before[t], t
    assert annotations(cp, "kustomize.toolkit.fluxcd.io/v1", "Kustomization", "flux-system", "unrelated").get(FLUX) == unrelated


def test_tampered_or_unsigned_deliveries_change_nothing_on_the_api_server(cp, edge):
    before = resource_versions(cp)
    push = json.dumps({"ref": "refs/heads/main"}).encode()
    headers = signers.github(TOKEN, push)
    import http.client
    for body, hdrs in [(push.replace(b"main", b"evil"), headers), (push, {**headers, "X-Hub-Signature-256": "sha256=" + "0" * 64}),
                       (push, {k: v for k, v in headers.items() if not k.startswith("X-Hub")})]:
        conn = http.client.HTTPConnection("127.0.0.1", edge.port, timeout=10)
        conn.request("POST", PATH, body=body, headers=hdrs)
        assert conn.getresponse().status == 401
        conn.close()
    status, _ = hookgate_send(f"http://127.0.0.1:{edge.port}{PATH}", "the-wrong-secret")
    assert status == 401
    assert resource_versions(cp) == before


def test_ping_is_answered_without_touching_the_cluster(cp, edge):
    before = resource_versions(cp)
    status, body = hookgate_send(f"http://127.0.0.1:{edge.port}{PATH}", TOKEN, "--event", "ping")
    assert (status, json.loads(body)) == (200, {"status": "pong"})
    assert resource_versions(cp) == before


def test_push_to_the_tracked_branch_refreshes_the_argo_cd_application(cp, edge):
    app = ("argoproj.io/v1alpha1", "Application", "argocd", "guestbook")
    cp.ok("PATCH", cp.resource_path(*app[:3], app[3]), {"metadata": {"annotations": {"argocd.argoproj.io/refresh": None}}},
          content_type="application/merge-patch+json")
    url = f"http://127.0.0.1:{edge.port}/hook/argocd-refresh"
    other = json.dumps({"ref": "refs/heads/feature/x"})
    status, body = hookgate_send(url, TOKEN, "--payload", _write(other))
    assert (status, json.loads(body)) == (202, {"status": "ignored", "reason": "ref not accepted"})
    assert "argocd.argoproj.io/refresh" not in annotations(cp, *app)
    status, body = hookgate_send(url, TOKEN)  # the built-in sample pushes to main
    assert status == 200, body
    assert annotations(cp, *app)["argocd.argoproj.io/refresh"] == "normal"


def post(port: int, path: str, headers: dict, body: bytes) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("POST", path, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def test_identical_deliveries_in_the_same_second_are_not_taken_for_a_replay(cp, edge):
    """The controller refuses an attestation it has already accepted; the filter's nonce makes two identical
    token-only deliveries in one second (the attestation's timestamp has whole seconds) two attestations."""
    body = json.dumps({"text": "app synced"}).encode()
    headers = signers.bearer(TOKEN, body)
    for _ in range(5):  # until both fall in one second
        second = int(time.time())
        replies = [post(edge.port, "/hook/notify", headers, body) for _ in range(2)]
        if int(time.time()) == second:
            break
    assert [status for status, _ in replies] == [200, 200], replies


def _write(text: str) -> str:
    import tempfile

    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        f.write(text)
    return f.name


def request(port: int, method: str, path: str, headers: dict, body: bytes | None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


# (case, receiver, method, headers): verified deliveries without a body, as Flux takes them. A POST without a
# body goes with `Content-Length: 0` (as `curl -X POST` in Flux's generic-oidc example), a GET with none.
BODYLESS = [
    ("POST, as Flux's documented curl", "bodyless", "POST", {}),
    ("PUT", "bodyless", "PUT", {}),
    ("GET", "bodyless", "GET", {}),
    ("DELETE", "bodyless", "DELETE", {}),
    ("an HMAC over the empty body", "signed-bodyless", "POST", signers.generic_hmac(TOKEN, b"")),
]


@pytest.mark.parametrize("case,name,method,headers", BODYLESS, ids=[c[0] for c in BODYLESS])
def test_a_bodyless_delivery_reconciles_with_any_method_as_in_flux(cp, edge, case, name, method, headers):
    """Issue 22, item 1. Envoy gives the filter no body to replace: it sends the attested request to the
    controller itself and answers with the controller's reply."""
    before = annotations(cp, *WEBAPP).get(FLUX)
    status, reply = request(edge.port, method, signers.flux_path(TOKEN, name, "flux-system"), headers, None)
    assert status == 200, reply
    summary = json.loads(reply)
    assert (summary["receiver"], summary["annotated"], summary["failed"]) == (f"flux-system/{name}", 1, 0), summary
    after = annotations(cp, *WEBAPP).get(FLUX)
    assert after and RFC3339_NANOS.match(after) and after != before


def test_a_bodyless_delivery_is_refused_where_flux_refuses_it(cp, edge):
    """dockerhub: Flux decodes the body as JSON, which an empty one is not (400 in Flux). A forged
    generic-hmac delivery without a body is refused for its signature."""
    before = resource_versions(cp)
    path = signers.flux_path(TOKEN, "registry", "flux-system")
    status, reply = request(edge.port, "POST", path, {}, None)
    assert (status, json.loads(reply)) == (400, {"error": "empty body"})
    forged = signers.generic_hmac("the-wrong-secret", b"")
    status, reply = request(edge.port, "POST", signers.flux_path(TOKEN, "signed-bodyless", "flux-system"), forged, None)
    assert (status, json.loads(reply)) == (401, {"error": "signature mismatch"})
    assert resource_versions(cp) == before


def test_a_bodyless_delivery_gets_503_when_the_controller_cannot_be_reached(cp, tmp_path):
    """The filter's call to the controller fails: the sender gets 503, and the filter keeps serving."""
    objects = [o for o in OBJECTS if o["metadata"]["name"] in ("bodyless", SECRET_REF["name"])]
    with ServedEdge(cp, tmp_path, objects) as served:
        stop_process(served.controller.proc)
        path = signers.flux_path(TOKEN, "bodyless", "flux-system")
        started = time.monotonic()
        status, _ = request(served.port, "POST", path, {}, None)
        assert status == 503
        assert time.monotonic() - started < 15
        assert "panicked" not in served.envoy.log()
