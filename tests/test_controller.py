"""The controller against a real kube-apiserver + etcd, running with a real ServiceAccount token bound to
the RBAC that manifests/ ships."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import subprocess
import time
import threading
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone

import pytest

from gitops import FLUX, KEY, RFC3339_NANOS, annotations, controller_env, kustomization, resource_versions
from harness import CONTROLLER, Controller

@pytest.fixture(scope="module")
def controller(cp, tmp_path_factory):
    with Controller(controller_env(cp, tmp_path_factory.mktemp("ctl")), ["--deadline-ms", "3000"]) as c:
        yield c


@pytest.fixture(scope="module")
def cross_ns_controller(cp, tmp_path_factory):
    with Controller(controller_env(cp, tmp_path_factory.mktemp("ctlx")), ["--allow-cross-namespace"]) as c:
        yield c


def post(port: int, body: bytes, key: str | None = KEY, timestamp: int | None = None, headers: dict | None = None):
    ts = str(int(time.time()) if timestamp is None else timestamp)
    h = {"Content-Type": "application/json"}
    if key is not None:
        h["x-hookgate-timestamp"] = ts
        h["x-hookgate-signature"] = "v1=" + hmac.new(key.encode(), ts.encode() + b"." + body, hashlib.sha256).hexdigest()
    h.update(headers or {})
    request = urllib.request.Request(f"http://127.0.0.1:{port}/hook/v1/reconcile", data=body, headers=h, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def reconcile_request(targets: list[dict], receiver_ns: str = "flux-system", delivery: str = "d-1") -> bytes:
    """A request as the filter sends it. Sent twice in the same second, the same bytes are a replay (401):
    tests that repeat a request give each one its own `delivery`."""
    return json.dumps({"receiver": {"namespace": receiver_ns, "name": "webapp"}, "type": "github", "event": "push",
                       "deliveryId": delivery, "ref": "refs/heads/main", "targets": targets}).encode()


GIT = {"kind": "GitRepository", "name": "webapp"}


@pytest.mark.parametrize("label,kwargs,body,status,reason", [
    ("missing attestation", {"key": None}, reconcile_request([GIT]), 401, "missing attestation timestamp"),
    ("wrong key", {"key": "another-key-of-enough-length-000"}, reconcile_request([GIT]), 401, "attestation signature mismatch"),
    ("stale timestamp", {"timestamp": int(time.time()) - 600}, reconcile_request([GIT]), 401,
     "attestation timestamp outside the allowed window"),
    ("malformed body", {}, b'{"receiver": 1}', 400, "malformed reconcile request"),
    ("receiver namespace with a path", {}, reconcile_request([GIT], receiver_ns="forbidden/gitrepositories"), 400,
     "receiver namespace and name must be Kubernetes names"),
])
def test_refusals_change_nothing(cp, controller, label, kwargs, body, status, reason):
    before = resource_versions(cp)
    got, reply = post(controller.port, body, **kwargs)
    assert got == status, reply
    assert reason in reply["error"]
    assert resource_versions(cp) == before, "a refused request must not patch anything"


@pytest.mark.parametrize("label,target,status,detail", [
    ("kind outside the allow-list", {"apiVersion": "v1", "kind": "Secret", "name": "x"}, "kind_not_allowed",
     "targets[0].kind: Secret is not a kind hookgate reconciles"),
    ("foreign group", {"apiVersion": "evil.example.com/v1", "kind": "GitRepository", "name": "x"}, "kind_not_allowed",
     "GitRepository is not served as evil.example.com/v1"),
    ("cross namespace", {"kind": "GitRepository", "name": "other", "namespace": "apps"}, "cross_namespace",
     "targets[0]: apps/other is outside the receiver's namespace"),
    ("wildcard without labels", {"kind": "Kustomization", "name": "*"}, "invalid", "requires matchLabels"),
    # Fields that reach request paths and label selectors, checked with Kubernetes' rules before any API call.
    ("apiVersion with a path", {"apiVersion": "source.toolkit.fluxcd.io/v1/namespaces/other/gitrepositories/x",
                                "kind": "GitRepository", "name": "webapp"}, "invalid",
     "targets[0].apiVersion: apiVersion must be group/version with a Kubernetes version"),
    ("matchLabels value with a selector", {"kind": "Kustomization", "name": "*", "matchLabels": {"app": "a,env!=prod"}},
     "invalid", "targets[0].matchLabels: matchLabels values must be Kubernetes label values"),
    ("matchLabels key with a selector", {"kind": "Kustomization", "name": "*", "matchLabels": {"app!": "a"}},
     "invalid", "targets[0].matchLabels: matchLabels keys must be Kubernetes label keys"),
    ("name with a path", {"kind": "GitRepository", "name": "webapp/status"}, "invalid",
     "targets[0].name: name must be an object name"),
    ("namespace with a path", {"kind": "GitRepository", "name": "webapp", "namespace": "forbidden/gitrepositories"},
     "invalid", "targets[0].namespace: namespace must be a Kubernetes namespace name"),
])
def test_a_refused_target_changes_nothing_and_the_others_are_annotated(cp, controller, label, target, status, detail):
    """As Flux goes on past a failing resource, a target refused before any API call is reported alone (500 for
    the request) and the request's other targets are annotated."""
    before = cp.get("source.toolkit.fluxcd.io/v1", "GitRepository", "flux-system", "webapp")
    got, reply = post(controller.port, reconcile_request([target, GIT], delivery=f"refused-{label}"))
    assert got == 500, reply
    assert [t["status"] for t in reply["targets"]] == [status, "annotated"], reply
    assert detail in reply["targets"][0]["detail"], reply
    assert (reply["annotated"], reply["failed"]) == (1, 1), reply
    after = cp.get("source.toolkit.fluxcd.io/v1", "GitRepository", "flux-system", "webapp")
    assert after["metadata"]["annotations"][FLUX] != before["metadata"].get("annotations", {}).get(FLUX)


def test_a_replayed_request_is_refused_and_changes_nothing(cp, controller):
    """An attested request is accepted once: the same bytes again within the window are refused with 401."""
    body, ts = reconcile_request([GIT], delivery="replayed"), int(time.time())
    status, reply = post(controller.port, body, timestamp=ts)
    assert status == 200, reply
    before = resource_versions(cp)
    status, reply = post(controller.port, body, timestamp=ts)
    assert (status, reply) == (401, {"error": "attestation already used", "reason": "replayed"})
    assert resource_versions(cp) == before
    status, reply = post(controller.port, body, timestamp=ts - 1)
    assert status == 200, "another signature is another request"


def test_annotates_flux_and_argo_targets(cp, controller):
    before = cp.get("source.toolkit.fluxcd.io/v1", "GitRepository", "flux-system", "webapp")
    status, reply = post(controller.port, reconcile_request([
        GIT,
        {"apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization", "name": "webapp-frontend"},
        {"kind": "Application", "name": "guestbook", "namespace": "argocd"},
    ]), )
    # The Application is in another namespace: refused alone without --allow-cross-namespace.
    assert status == 500, reply
    assert [t["status"] for t in reply["targets"]] == ["annotated", "annotated", "cross_namespace"], reply
    assert (reply["annotated"], reply["failed"]) == (2, 1)
    after = cp.get("source.toolkit.fluxcd.io/v1", "GitRepository", "flux-system", "webapp")
    assert RFC3339_NANOS.match(after["metadata"]["annotations"][FLUX])
    assert after["spec"] == before["spec"], "only metadata is patched"
    assert RFC3339_NANOS.match(annotations(cp, "kustomize.toolkit.fluxcd.io/v1", "Kustomization", "flux-system", "webapp-frontend")[FLUX])

    status, reply = post(controller.port, reconcile_request([{"kind": "Application", "name": "guestbook"}], receiver_ns="argocd"))
    assert status == 200, reply
    assert annotations(cp, "argoproj.io/v1alpha1", "Application", "argocd", "guestbook")["argocd.argoproj.io/refresh"] == "normal"


def test_every_request_sets_a_new_value(cp, controller):
    post(controller.port, reconcile_request([GIT], delivery="first"))
    first = annotations(cp, "source.toolkit.fluxcd.io/v1", "GitRepository", "flux-system", "webapp")[FLUX]
    status, _ = post(controller.port, reconcile_request([GIT], delivery="second"))
    assert status == 200
    assert annotations(cp, "source.toolkit.fluxcd.io/v1", "GitRepository", "flux-system", "webapp")[FLUX] != first


def test_missing_targets_are_reported(cp, controller):
    status, reply = post(controller.port, reconcile_request([{"kind": "GitRepository", "name": "nope"}]))
    assert status == 404
    assert reply["targets"][0]["status"] == "not_found"
    status, reply = post(controller.port, reconcile_request([GIT, {"kind": "GitRepository", "name": "nope"}]))
    assert status == 500, "any failing target makes the delivery fail so it can be redelivered"
    assert sorted(t["status"] for t in reply["targets"]) == ["annotated", "not_found"]


def test_wildcard_patches_every_match_and_reports_no_matches(cp, controller):
    for i in range(200):
        cp.apply(kustomization(f"fleet-{i:03d}", labels={"fleet": "edge"}))
    cp.apply(kustomization("fleet-outsider", labels={"fleet": "core"}))
    status, reply = post(controller.port, reconcile_request([{"kind": "Kustomization", "name": "*", "matchLabels": {"fleet": "edge"}}]))
    assert status == 200, reply
    assert reply["annotated"] == 200
    # The reply shows the configured target with counts; the names it matched are in the controller's log only.
    assert RFC3339_NANOS.match(reply["targets"][0].pop("requestedAt")), "when its earliest patch started"
    assert reply["targets"] == [{"apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization",
                                 "namespace": "flux-system", "name": "*", "matchLabels": {"fleet": "edge"},
                                 "status": "annotated", "matched": 200, "counts": {"annotated": 200}}]
    assert "fleet-0" not in json.dumps(reply)
    assert all(f"fleet-{i:03d}" in controller.log() for i in range(200))
    items = cp.ok("GET", cp.resource_path("kustomize.toolkit.fluxcd.io/v1", "Kustomization", "flux-system"),
                  query={"labelSelector": "fleet=edge"})["items"]
    assert all(FLUX in i["metadata"].get("annotations", {}) for i in items) and len(items) == 200
    assert FLUX not in annotations(cp, "kustomize.toolkit.fluxcd.io/v1", "Kustomization", "flux-system", "fleet-outsider")

    status, reply = post(controller.port, reconcile_request([{"kind": "Kustomization", "name": "*", "matchLabels": {"fleet": "none"}}]))
    assert status == 200
    assert reply["targets"] == [{"apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization",
                                 "namespace": "flux-system", "name": "*", "matchLabels": {"fleet": "none"},
                                 "status": "no_matches", "matched": 0}]


def concurrent_reconciles(port: int, target: dict, count: int) -> list[tuple[datetime, int, dict]]:
    """`count` requests for `target`, released together: (when each was sent, status, reply)."""
    start = threading.Barrier(count)

    def one(i: int):
        body = reconcile_request([target], delivery=f"concurrent-{time.monotonic_ns()}-{i}")
        start.wait()
        sent = datetime.now(timezone.utc)
        return (sent, *post(port, body))

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(one, range(count)))


def test_concurrent_requests_for_one_object_share_patches_and_every_answer_is_true(cp, controller):
    count = 32
    before = cp.served_requests()[("PATCH", "gitrepositories")]
    results = concurrent_reconciles(controller.port, GIT, count)
    patches = cp.served_requests()[("PATCH", "gitrepositories")] - before
    assert [status for _, status, _ in results] == [200] * count, results
    written = [reply["targets"][0]["requestedAt"] for _, _, reply in results]
    for (sent, _, reply), value in zip(results, written):
        # The patch that answered this request started after the request was sent (microseconds compared).
        assert datetime.fromisoformat(value[:26] + "+00:00") >= sent, (sent, reply)
    # Every value reported was written by a real PATCH, and requests shared them.
    assert len(set(written)) == patches < count, (patches, sorted(set(written)))
    assert annotations(cp, "source.toolkit.fluxcd.io/v1", "GitRepository", "flux-system", "webapp")[FLUX] == max(written)


def test_a_failing_patch_fails_every_request_that_shared_it(cp, controller):
    count = 32
    before = cp.served_requests()[("PATCH", "gitrepositories")]
    results = concurrent_reconciles(controller.port, {"kind": "GitRepository", "name": "absent"}, count)
    patches = cp.served_requests()[("PATCH", "gitrepositories")] - before
    assert [(status, reply["targets"][0]["status"]) for _, status, reply in results] == [(404, "not_found")] * count
    assert all("requestedAt" not in reply["targets"][0] for _, _, reply in results)
    assert 0 < patches < count, "the failures came from shared patches"


def test_namespace_outside_the_rbac_is_forbidden_by_the_api_server(cp, cross_ns_controller):
    before = resource_versions(cp)
    status, reply = post(cross_ns_controller.port, reconcile_request([
        GIT, {"kind": "GitRepository", "name": "forbidden-repo", "namespace": "forbidden"}]))
    assert status == 500
    by_ns = {t["namespace"]: t for t in reply["targets"]}
    assert by_ns["forbidden"] == {"apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "GitRepository",
                                  "namespace": "forbidden", "name": "forbidden-repo", "status": "forbidden"}
    assert by_ns["flux-system"]["status"] == "annotated"
    # The API server's message names the ServiceAccount and its groups: the controller's log has it, the
    # reply (shown in the provider's delivery log, outside the cluster) does not.
    account = "system:serviceaccount:hookgate-system:hookgate-controller"
    assert "system:" not in json.dumps(reply) and "hookgate-controller" not in json.dumps(reply), reply
    assert account in cross_ns_controller.log() and "cannot patch resource" in cross_ns_controller.log()
    after = resource_versions(cp)
    assert after[("GitRepository", "forbidden", "forbidden-repo")] == before[("GitRepository", "forbidden", "forbidden-repo")]


def test_health_readiness_and_metrics(cp, controller):
    assert controller.get("/healthz") == (200, "ok")
    assert controller.get("/readyz")[0] == 200
    status, text = controller.get("/metrics")
    assert status == 200
    assert re.search(r'hookgate_requests_total\{outcome="ok"\} [1-9]', text), text
    assert re.search(r'hookgate_requests_total\{outcome="unauthorized"\} [1-9]', text)
    assert re.search(r'hookgate_annotations_total\{kind="Kustomization",outcome="annotated"\} [1-9]', text)
    assert "hookgate_patch_duration_seconds_bucket" in text
    assert re.search(r'hookgate_patches_total\{kind="Kustomization",outcome="annotated"\} [1-9]', text)
    # Refused patches and missing objects are API server errors by code.
    assert re.search(r'hookgate_api_errors_total\{code="404"\} [1-9]', text), text
    assert "hookgate_requests_in_flight 0" in text.splitlines()


def test_api_server_outage_is_reported_honestly_and_recovers(cp, controller):
    cp.stop_apiserver()
    try:
        assert controller.get("/readyz")[0] == 503
        started = time.monotonic()
        status, reply = post(controller.port, reconcile_request([GIT], delivery="during-outage"))
        elapsed = time.monotonic() - started
        assert status == 503, reply
        assert reply["targets"][0]["status"] == "unavailable"
        assert elapsed < 10, "the answer comes within the providers' 10 s"
    finally:
        cp.start_apiserver()
    status, reply = post(controller.port, reconcile_request([GIT], delivery="after-outage"))
    assert status == 200, reply
    assert controller.get("/readyz")[0] == 200


def test_sigterm_lets_the_request_in_flight_finish(cp, tmp_path):
    import threading

    for i in range(200):
        cp.apply(kustomization(f"drain-{i:03d}", labels={"drain": "yes"}))
    c = Controller(controller_env(cp, tmp_path), ["--max-concurrency", "1"])
    result = {}
    request = reconcile_request([{"kind": "Kustomization", "name": "*", "matchLabels": {"drain": "yes"}}])
    worker = threading.Thread(target=lambda: result.update(reply=post(c.port, request)))
    worker.start()
    time.sleep(0.3)  # 200 sequential patches take longer than this
    c.proc.terminate()
    worker.join(30)
    status, reply = result["reply"]
    assert status == 200 and reply["annotated"] == 200, reply
    assert c.stop() == 0
    log = c.log()
    assert log.index("shutdown signal received") < log.index("reconcile request handled") < log.index("hookgate controller stopped")


KEY_REFUSALS = [
    ("trailing newline (echo, an editor, --from-file)", KEY + "\n", "begins or ends with whitespace"),
    ("trailing CRLF", KEY + "\r\n", "begins or ends with whitespace"),
    ("leading space", " " + KEY, "begins or ends with whitespace"),
    ("trailing tab", KEY + "\t", "begins or ends with whitespace"),
    ("too short", "short-key", "shorter than 16 bytes"),
]


@pytest.mark.parametrize("label,content,message", KEY_REFUSALS, ids=[case[0] for case in KEY_REFUSALS])
def test_controller_refuses_to_start_with_a_key_envoy_would_read_differently(tmp_path, label, content, message):
    """Envoy reads the Secret byte for byte: a key the two sides could read differently is refused at
    start-up, with how to fix it, and without the key."""
    key_file = tmp_path / "key"
    key_file.write_bytes(content.encode())
    out = subprocess.run([str(CONTROLLER), "serve", "--listen", "127.0.0.1:0", "--attestation-key-file", str(key_file)],
                         capture_output=True, text=True, timeout=30,
                         env={"PATH": os.environ.get("PATH", ""), "KUBECONFIG": str(tmp_path / "no-kubeconfig")})
    assert out.returncode != 0, out
    assert f"attestation key file {key_file}: " in out.stderr, out.stderr
    assert message in out.stderr, out.stderr
    assert "openssl rand -hex 32" in out.stderr, "the message says how to make a good key"
    assert content.strip() not in out.stdout + out.stderr, "the key is never shown"


def test_controller_reads_its_key_file_byte_for_byte_as_envoy_does(cp, tmp_path):
    key_file = tmp_path / "key"
    key_file.write_bytes(KEY.encode())
    env = {k: v for k, v in controller_env(cp, tmp_path).items() if k != "HOOKGATE_ATTESTATION_KEY"}
    with Controller(env, ["--attestation-key-file", str(key_file)]) as c:
        status, reply = post(c.port, reconcile_request([GIT]))
        assert status == 200, reply
