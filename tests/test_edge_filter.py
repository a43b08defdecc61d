"""The compiled filter in the real Envoy, configured as Envoy Gateway configures it and given its receivers by
the controller (Receiver objects and their Secret in the real kube-apiserver, tests/served.py), in front of a
recording upstream: what a provider's delivery turns into, and that nothing of a refused one gets through."""

from __future__ import annotations

import base64
import http.client
import json
import re
import socket
import statistics
import subprocess
import threading
import time
from dataclasses import dataclass
from typing import Callable

import pytest

import signers
from gateway import wait
from harness import CONTROLLER, FORWARD_PATH, Envoy, RecordingUpstream, envoy_bootstrap, free_port
from served import ServedEdge, secret

ATTESTATION_KEY = "attestation-key-for-tests-0123456789abcdef"
SW_KEY = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"
SECRETS = {
    "GH_OLD": "github-old-secret", "GH_NEW": "github-new-secret", "GH_OTHER": "github-other-secret",
    "GITEA": "gitea-secret", "GITLAB": "gitlab-token", "BITBUCKET": "bitbucket-secret",
    "GENERIC": "generic-token", "GENERIC_HMAC": "generic-hmac-secret", "SW": SW_KEY,
    "HARBOR": "harbor-auth-value", "NEXUS": "nexus-secret", "DOCKERHUB": "dockerhub-token",
    "QUAY": "quay-token", "ACR": "acr-token", "CDEVENTS": "cdevents-token", "BEARER": "argo-bearer-token",
    "BASIC": "argocd:argo-basic-password", "AZURE": "azure-hooks:azure-basic-password",
    "GITLAB_SIGNING": "whsec_" + base64.b64encode(b"gitlab-signing-key-of-32-bytes!!").decode(),
}
# The receivers' namespace (their targets are never patched: the upstream records).
NS = "edge"
TARGET = [{"kind": "GitRepository", "name": "webapp"}]
ARGO_TARGETS = [{"apiVersion": "argoproj.io/v1alpha1", "kind": "Application", "name": "guestbook", "namespace": "argocd"}]


# The Secret holding every receiver's secrets, each under its own key.
SECRET_NAME = "edge-secrets"


def receiver(name: str, type_: str, keys: list[str], **extra) -> dict:
    """A Receiver reading `keys` of the Secret SECRET_NAME."""
    spec = {"type": type_, "secretRef": {"name": SECRET_NAME, "keys": keys}, "targets": TARGET, **extra}
    return {"apiVersion": "hookgate.io/v1alpha1", "kind": "Receiver", "metadata": {"name": name, "namespace": NS},
            "spec": spec}


RECEIVERS = [
    receiver("webapp", "github", ["GH_OLD", "GH_NEW"], events=["push", "package"],
             refs={"branches": ["main"], "tags": ["v*"]}, bodyLimit=2 * 1024 * 1024,
             targets=[{"kind": "GitRepository", "name": "webapp"},
                      {"kind": "Kustomization", "name": "*", "matchLabels": {"app": "webapp"}}]),
    receiver("other", "github", ["GH_OTHER"], path="/hook/pinned-other"),
    receiver("small", "github", ["GH_NEW"], path="/hook/small", bodyLimit=65536),
    receiver("off", "github", ["GH_NEW"], path="/hook/off", suspend=True),
    receiver("gitea", "gitea", ["GITEA"], events=["push"]),
    receiver("gitlab", "gitlab", ["GITLAB"], events=["Push Hook", "Tag Push Hook"]),
    receiver("gitlab-signing", "gitlab", ["GITLAB", "GITLAB_SIGNING"], events=["Push Hook"]),
    receiver("gitlab-signed-only", "gitlab", ["GITLAB_SIGNING"], requireSignature=True),
    receiver("bitbucket", "bitbucket", ["BITBUCKET"], events=["repo:push", "repo:refs_changed"]),
    receiver("azure", "azure-devops", ["AZURE"], events=["git.push"], refs={"branches": ["main"]}),
    receiver("generic", "generic", ["GENERIC"]),
    receiver("generic-hmac", "generic-hmac", ["GENERIC_HMAC"]),
    receiver("standard", "standard-webhooks", ["SW"]),
    receiver("harbor", "harbor", ["HARBOR"], events=["PUSH_ARTIFACT"],
             targets=[{"kind": "ImageRepository", "name": "app"}]),
    receiver("nexus", "nexus", ["NEXUS"]),
    receiver("dockerhub", "dockerhub", ["DOCKERHUB"], targets=[{"kind": "ImageRepository", "name": "app"}]),
    receiver("quay", "quay", ["QUAY"], targets=[{"kind": "ImageRepository", "name": "app"}]),
    receiver("acr", "acr", ["ACR"], targets=[{"kind": "ImageRepository", "name": "app"}]),
    receiver("cdevents", "cdevents", ["CDEVENTS"], events=["dev.cdevents.artifact.published.0.1.1"]),
    receiver("argocd", "bearer", ["BEARER"], path="/hook/argocd", targets=ARGO_TARGETS),
    receiver("argocd-basic", "basic", ["BASIC"], path="/hook/argocd-basic", targets=ARGO_TARGETS),
]
OBJECTS = [*RECEIVERS, secret(SECRET_NAME, NS, SECRETS)]


def served_edge(cp, workdir, **options) -> ServedEdge:
    """The Envoy with the filter, serving OBJECTS (the Argo CD receivers target another namespace)."""
    return ServedEdge(cp, workdir, OBJECTS, attestation_key=ATTESTATION_KEY,
                      controller_args=["--allow-cross-namespace"], **options)


GITHUB_PUSH = json.dumps({"ref": "refs/heads/main", "after": "a" * 40, "repository": {"full_name": "org/webapp"}}).encode()
AZURE_EVENT_ID = "03c164c2-8912-4d5e-8009-3707d5f83734"


def azure_push(ref_updates: list) -> bytes:
    """A `git.push` service hook event (trimmed), as Microsoft documents it."""
    return json.dumps({
        "subscriptionId": "00000000-0000-0000-0000-000000000000", "notificationId": 3, "id": AZURE_EVENT_ID,
        "eventType": "git.push", "publisherId": "tfs",
        "resource": {"refUpdates": ref_updates, "pushId": 14,
                     "repository": {"name": "webapp", "remoteUrl": "https://dev.azure.com/org/proj/_git/webapp"}},
    }).encode()


AZURE_PUSH = azure_push([{"name": "refs/heads/main", "oldObjectId": "a" * 40, "newObjectId": "b" * 40}])
REGISTRY_BODIES = {
    "dockerhub": {"push_data": {"tag": "1.2.3"}, "repository": {"repo_url": "https://hub.docker.com/r/org/app"}},
    "quay": {"docker_url": "quay.io/org/app", "updated_tags": ["1.2.3"]},
    "acr": {"id": "acr-1", "action": "push", "target": {"repository": "app", "tag": "1.2.3"}},
    "harbor": {"type": "PUSH_ARTIFACT", "event_data": {"resources": [{"tag": "1.2.3"}]}},
}


def path_of(name: str, env: str) -> str:
    return signers.flux_path(SECRETS[env], name, NS)


# provider type -> (path, signer, secret, body, expected fields of the reconcile request)
CASES = {
    "github": (path_of("webapp", "GH_NEW"), signers.github, SECRETS["GH_NEW"], GITHUB_PUSH,
               {"event": "push", "ref": "refs/heads/main", "deliveryId": "72d3162e-cc78-11e3-81ab-4c9367dc0958"}),
    "gitea": (path_of("gitea", "GITEA"), signers.gitea, SECRETS["GITEA"], GITHUB_PUSH,
              {"event": "push", "ref": "refs/heads/main", "deliveryId": "gitea-delivery-1"}),
    "gitlab": (path_of("gitlab", "GITLAB"), signers.gitlab, SECRETS["GITLAB"],
               json.dumps({"object_kind": "tag_push", "ref": "refs/tags/v1.0.0"}).encode(),
               {"event": "Push Hook", "ref": "refs/tags/v1.0.0", "deliveryId": "gitlab-uuid-1"}),
    "bitbucket": (path_of("bitbucket", "BITBUCKET"), signers.bitbucket, SECRETS["BITBUCKET"],
                  json.dumps({"push": {"changes": [{"new": {"type": "branch", "name": "main"}}]}}).encode(),
                  {"event": "repo:push", "ref": "refs/heads/main", "deliveryId": "bb-uuid-1"}),
    "azure-devops": (path_of("azure", "AZURE"), signers.azure_devops, SECRETS["AZURE"], AZURE_PUSH,
                     {"event": "git.push", "ref": "refs/heads/main", "deliveryId": AZURE_EVENT_ID}),
    "generic": (path_of("generic", "GENERIC"), signers.generic, SECRETS["GENERIC"], b"{}", {}),
    "generic-hmac": (path_of("generic-hmac", "GENERIC_HMAC"), signers.generic_hmac, SECRETS["GENERIC_HMAC"],
                     b"anything at all", {}),
    "standard-webhooks": (path_of("standard", "SW"), signers.standard_webhooks, SW_KEY,
                          json.dumps({"type": "image.pushed", "data": {}}).encode(),
                          {"event": "image.pushed", "deliveryId": "msg_2Lq0"}),
    "harbor": (path_of("harbor", "HARBOR"), signers.harbor, SECRETS["HARBOR"],
               json.dumps(REGISTRY_BODIES["harbor"]).encode(), {"event": "PUSH_ARTIFACT", "imageTag": "1.2.3"}),
    "nexus": (path_of("nexus", "NEXUS"), signers.nexus, SECRETS["NEXUS"], b'{"action":"CREATED"}',
              {"event": "rm:repository:component"}),
    "dockerhub": (path_of("dockerhub", "DOCKERHUB"), signers.generic, SECRETS["DOCKERHUB"],
                  json.dumps(REGISTRY_BODIES["dockerhub"]).encode(), {"imageTag": "1.2.3"}),
    "quay": (path_of("quay", "QUAY"), signers.generic, SECRETS["QUAY"],
             json.dumps(REGISTRY_BODIES["quay"]).encode(), {"imageTag": "1.2.3"}),
    "acr": (path_of("acr", "ACR"), signers.generic, SECRETS["ACR"],
            json.dumps(REGISTRY_BODIES["acr"]).encode(), {"imageTag": "1.2.3", "deliveryId": "acr-1"}),
    "cdevents": (path_of("cdevents", "CDEVENTS"), signers.cdevents, SECRETS["CDEVENTS"], b'{"context":{"id":"1"},"subject":{"id":"app"}}',
                 {"event": "dev.cdevents.artifact.published.0.1.1", "deliveryId": "ce-1"}),
    "bearer": ("/hook/argocd", signers.bearer, SECRETS["BEARER"],
               json.dumps({"app": "guestbook", "status": "Degraded"}).encode(), {}),
    "basic": ("/hook/argocd-basic", signers.basic, SECRETS["BASIC"],
              json.dumps({"app": "guestbook", "status": "Degraded"}).encode(), {}),
}


@pytest.fixture(scope="module")
def upstream():
    server = RecordingUpstream()
    yield server
    server.close()


@pytest.fixture(scope="module")
def envoy(cp, upstream, tmp_path_factory):
    with served_edge(cp, tmp_path_factory.mktemp("edge"), upstream_port=upstream.port) as served:
        yield served.envoy
        # A panic would trap the VM and fail every later request on that worker.
        assert "panicked" not in served.envoy.log()


@pytest.fixture
def edge(envoy, upstream):
    """The Envoy under test, with the upstream's record cleared."""
    upstream.reset()
    return envoy


def send(port: int, path: str, headers: dict, body: bytes | None, method: str = "POST", chunked: bool = False,
         timeout: float = 20):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        if chunked:
            conn.request(method, path, body=iter([body[i:i + 1000] for i in range(0, len(body), 1000)]),
                         headers=headers, encode_chunked=True)
        else:
            conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


# How long the upstream must have seen nothing before a refusal counts as having reached nothing.
QUIET_SECONDS = 0.1


def assert_nothing_upstream(upstream: RecordingUpstream) -> None:
    """Nothing reached the upstream: checked once it has been quiet for QUIET_SECONDS, so a request that
    arrives after the answer (or is still arriving) is seen too."""
    upstream.wait_until_quiet(QUIET_SECONDS)
    assert (upstream.connections, upstream.raw_bytes, upstream.requests) == (0, 0, [])


def test_nothing_upstream_catches_a_request_that_arrives_late():
    """The check can fail: a request sent upstream only after the check began is caught."""
    late = RecordingUpstream()
    try:
        def deliver() -> None:
            time.sleep(QUIET_SECONDS / 2)
            with socket.create_connection(("127.0.0.1", late.port), timeout=5) as s:
                s.sendall(b"POST /late HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}")
                s.recv(4096)

        sender = threading.Thread(target=deliver)
        sender.start()
        with pytest.raises(AssertionError):
            assert_nothing_upstream(late)
        sender.join()
        assert [r.path for r in late.requests] == ["/late"]
        late.reset()
        assert_nothing_upstream(late)
    finally:
        late.close()


def assert_attested_forward(upstream: RecordingUpstream, original_headers: dict) -> dict:
    assert len(upstream.requests) == 1, upstream.requests
    forwarded = upstream.requests[0]
    assert (forwarded.method, forwarded.path) == ("POST", FORWARD_PATH)
    assert forwarded.headers["content-type"] == "application/json"
    assert int(forwarded.headers["content-length"]) == len(forwarded.body)
    ts = forwarded.headers["x-hookgate-timestamp"]
    assert abs(int(ts) - time.time()) < 30
    assert forwarded.headers["x-hookgate-signature"] == signers.attestation(ATTESTATION_KEY, ts, forwarded.body)
    for name in original_headers:
        if name.lower() not in ("content-type", "content-length"):
            assert name.lower() not in forwarded.headers, f"provider header {name} was forwarded"
    request = json.loads(forwarded.body)
    assert re.fullmatch(r"[0-9a-f]{32}", request["nonce"]), "a fresh nonce: identical deliveries are distinct attestations"
    return request


@pytest.mark.parametrize("provider", sorted(CASES))
def test_verified_delivery_is_rewritten_and_attested(edge, upstream, provider):
    path, sign, secret, body, expected = CASES[provider]
    headers = sign(secret, body)
    status, reply = send(edge.port, path, headers, body)
    assert status == 200, reply
    assert reply == b'{"ok":true}', "the controller's answer goes back to the provider"
    request = assert_attested_forward(upstream, headers)
    assert request["type"] == provider
    assert request["receiver"]["namespace"] == NS
    for key, value in expected.items():
        assert request[key] == value, key
    assert request["targets"], "targets are carried"
    assert secret not in json.dumps(request)


def tamper(body: bytes) -> bytes:
    return body[:-1] + (b" " if body[-1:] != b" " else b"\n")


@dataclass(frozen=True)
class Refusal:
    """A named variant of a provider's genuine delivery and the answer it gets."""
    name: str
    # (path, signer, secret, body) of the genuine delivery -> (path, headers, body) of the variant
    variant: Callable[[str, Callable, str, bytes], tuple[str, dict, bytes]]
    status: int
    reason: str


SIGNATURE_MISMATCH, TOKEN_MISMATCH = "signature mismatch", "token mismatch"
MISSING_SIGNATURE, MISSING_TOKEN = "missing signature", "missing token"
UNSUPPORTED_ALGORITHM = "unsupported signature algorithm"


def without(headers: dict, names: tuple[str, ...]) -> dict:
    return {k: v for k, v in headers.items() if k not in names}


def tampered_body() -> Refusal:
    return Refusal("tampered body", lambda path, sign, secret, body: (path, sign(secret, body), tamper(body)),
                   401, SIGNATURE_MISMATCH)


def wrong_secret(reason: str, other: Callable[[str], str] = lambda s: s.replace(s[-4:], "XXXX")) -> Refusal:
    return Refusal("wrong secret", lambda path, sign, secret, body: (path, sign(other(secret), body), body),
                   401, reason)


def missing_proof(reason: str, *headers: str) -> Refusal:
    """Every header in `headers` (the proof, and any other header that proves as much) left out."""
    return Refusal("missing proof", lambda path, sign, secret, body: (path, without(sign(secret, body), headers), body),
                   401, reason)


def malformed_proof(header: str, value: str) -> Refusal:
    return Refusal("malformed proof", lambda path, sign, secret, body: (path, {**sign(secret, body), header: value}, body),
                   401, "malformed signature header")


def wrong_algorithm(header: str) -> Refusal:
    def variant(path, sign, secret, body):
        good = sign(secret, body)
        return path, {**good, header: good[header].replace("sha256=", "md5=")}, body
    return Refusal("wrong algorithm", variant, 401, UNSUPPORTED_ALGORITHM)


def sha1_without_opt_in(header: str, *others: str) -> Refusal:
    """A genuine `sha1=` MAC in `header`, the `others` that prove as much left out."""
    def variant(path, sign, secret, body):
        sha1 = "sha1=" + signers.hex_hmac("sha1", secret, body)
        return path, {**without(sign(secret, body), (header, *others)), header: sha1}, body
    return Refusal("sha1 without opt-in", variant, 401, UNSUPPORTED_ALGORITHM)


def unknown_path() -> Refusal:
    """The secret path is the proof: another token's path is unknown."""
    return Refusal("wrong secret", lambda path, sign, secret, body: (path.replace(path[-8:], "00000000"), sign(secret, body), body),
                   404, "unknown webhook path")


def malformed_payload(body: bytes = b'{"unexpected":true}') -> Refusal:
    """`body` for the genuine one: a payload the type cannot decode (for the registry types, one Flux's
    decoding into its struct refuses: a field of the wrong JSON type)."""
    return Refusal("malformed payload", lambda path, sign, secret, _: (path, sign(secret, body), body),
                   400, "malformed payload")


def missing_event_header(header: str) -> Refusal:
    return Refusal("missing event header", lambda path, sign, secret, body: (path, without(sign(secret, body), (header,)), body),
                   400, "missing event header")


def verified_refusal(name: str, body: bytes, status: int, reason: str) -> Refusal:
    """`body` in place of the genuine one, with a genuine proof of it."""
    return Refusal(name, lambda path, sign, secret, _: (path, sign(secret, body), body), status, reason)


# Azure DevOps bodies refused after verification. The first is Argo CD's CVE-2025-59538: a push whose
# `refUpdates` is empty crashed its handler.
AZURE_MALFORMED = [
    verified_refusal("push without ref updates", azure_push([]), 400, "malformed payload"),
    verified_refusal("push without resource", json.dumps({"eventType": "git.push"}).encode(), 400, "malformed payload"),
    verified_refusal("ref update without name", azure_push([{"oldObjectId": "a" * 40}]), 400, "malformed payload"),
    verified_refusal("no eventType", json.dumps({"resource": {"refUpdates": [{"name": "refs/heads/main"}]}}).encode(),
                     400, "missing event header"),
]


STALE_TIMESTAMP = Refusal(
    "stale timestamp",
    lambda path, sign, secret, body: (path, signers.standard_webhooks(secret, body, timestamp=int(time.time()) - 600), body),
    401, "timestamp outside tolerance")

# provider type -> how variants of its genuine delivery are refused
REFUSALS = {
    "github": [tampered_body(), wrong_secret(SIGNATURE_MISMATCH),
               missing_proof(MISSING_SIGNATURE, "X-Hub-Signature-256", "X-Hub-Signature"),
               malformed_proof("X-Hub-Signature-256", "sha256=not-hex"), wrong_algorithm("X-Hub-Signature-256"),
               sha1_without_opt_in("X-Hub-Signature-256", "X-Hub-Signature")],
    "gitea": [tampered_body(), wrong_secret(SIGNATURE_MISMATCH), missing_proof(MISSING_SIGNATURE, "X-Gitea-Signature"),
              malformed_proof("X-Gitea-Signature", "zz")],
    "gitlab": [wrong_secret(TOKEN_MISMATCH), missing_proof(MISSING_TOKEN, "X-Gitlab-Token")],
    "bitbucket": [tampered_body(), wrong_secret(SIGNATURE_MISMATCH), missing_proof(MISSING_SIGNATURE, "X-Hub-Signature"),
                  malformed_proof("X-Hub-Signature", "sha256"), wrong_algorithm("X-Hub-Signature"),
                  sha1_without_opt_in("X-Hub-Signature")],
    "azure-devops": [wrong_secret(TOKEN_MISMATCH), missing_proof(MISSING_TOKEN, "Authorization"),
                     malformed_proof("Authorization", "Token abc"), *AZURE_MALFORMED],
    "generic": [unknown_path()],
    "generic-hmac": [tampered_body(), wrong_secret(SIGNATURE_MISMATCH), missing_proof(MISSING_SIGNATURE, "X-Signature"),
                     malformed_proof("X-Signature", "sha256=zz"), wrong_algorithm("X-Signature"),
                     sha1_without_opt_in("X-Signature")],
    "standard-webhooks": [tampered_body(),
                          wrong_secret(SIGNATURE_MISMATCH, other=lambda _: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
                          missing_proof(MISSING_SIGNATURE, "webhook-signature"),
                          malformed_proof("webhook-signature", "v1,***"), STALE_TIMESTAMP],
    "harbor": [wrong_secret(TOKEN_MISMATCH), missing_proof(MISSING_TOKEN, "Authorization")],
    "nexus": [tampered_body(), wrong_secret(SIGNATURE_MISMATCH),
              missing_proof(MISSING_SIGNATURE, "X-Nexus-Webhook-Signature"),
              malformed_proof("X-Nexus-Webhook-Signature", "nothex")],
    "dockerhub": [unknown_path(), malformed_payload(b'{"push_data":"1.2.3"}')],
    "quay": [unknown_path(), malformed_payload(b'{"updated_tags":"1.2.3"}')],
    "acr": [unknown_path(), malformed_payload(b'{"target":[]}')],
    "cdevents": [unknown_path(), malformed_payload(), missing_event_header("Ce-Type")],
    "bearer": [wrong_secret(TOKEN_MISMATCH), missing_proof(MISSING_TOKEN, "Authorization"),
               malformed_proof("Authorization", "Token abc")],
    "basic": [wrong_secret(TOKEN_MISMATCH), missing_proof(MISSING_TOKEN, "Authorization"),
              malformed_proof("Authorization", "Token abc")],
}
assert REFUSALS.keys() == CASES.keys(), "every provider with a case has its refusals"
ALL_REFUSALS = [(provider, refusal) for provider in sorted(CASES) for refusal in REFUSALS[provider]]


@pytest.mark.parametrize("provider,refusal", ALL_REFUSALS, ids=[f"{p}-{r.name}" for p, r in ALL_REFUSALS])
def test_refused_delivery_reaches_nothing(edge, upstream, provider, refusal):
    genuine_path, sign, secret, genuine_body, _ = CASES[provider]
    path, headers, body = refusal.variant(genuine_path, sign, secret, genuine_body)
    status, reply = send(edge.port, path, headers, body)
    assert status == refusal.status, reply
    assert json.loads(reply) == {"error": refusal.reason}
    assert_nothing_upstream(upstream)


GITLAB_PUSH = json.dumps({"object_kind": "push", "ref": "refs/heads/main"}).encode()
GITLAB_FORWARDED = {"event": "Push Hook", "ref": "refs/heads/main", "deliveryId": "gitlab-uuid-1", "type": "gitlab"}
# GitLab receivers with a signing token -> (path, signer, secret, body): a receiver that also has a token,
# and one that requires the signature.
GITLAB_SIGNING = {
    "with a token too": (path_of("gitlab-signing", "GITLAB_SIGNING"), signers.gitlab_signed,
                         SECRETS["GITLAB_SIGNING"], GITLAB_PUSH),
    "signature required": (path_of("gitlab-signed-only", "GITLAB_SIGNING"), signers.gitlab_signed,
                           SECRETS["GITLAB_SIGNING"], GITLAB_PUSH),
}
OTHER_SIGNING_TOKEN = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
GITLAB_SIGNING_REFUSALS = [
    tampered_body(), wrong_secret(SIGNATURE_MISMATCH, other=lambda _: OTHER_SIGNING_TOKEN),
    malformed_proof("webhook-signature", "v1,***"),
    Refusal("stale timestamp", lambda path, sign, secret, body: (
        path, sign(secret, body, timestamp=int(time.time()) - 600), body), 401, "timestamp outside tolerance"),
    # The signature decides when there is one: a genuine token does not make up for a wrong signature.
    Refusal("wrong signature with the token", lambda path, sign, secret, body: (
        path, sign(OTHER_SIGNING_TOKEN, body, token=SECRETS["GITLAB"]), body), 401, SIGNATURE_MISMATCH),
]
ALL_GITLAB_SIGNING_REFUSALS = [(case, refusal) for case in GITLAB_SIGNING for refusal in GITLAB_SIGNING_REFUSALS]


@pytest.mark.parametrize("case", sorted(GITLAB_SIGNING))
def test_gitlab_signed_delivery_is_forwarded(edge, upstream, case):
    path, sign, secret, body = GITLAB_SIGNING[case]
    headers = sign(secret, body)
    status, reply = send(edge.port, path, headers, body)
    assert status == 200, reply
    request = assert_attested_forward(upstream, headers)
    assert {key: request[key] for key in GITLAB_FORWARDED} == GITLAB_FORWARDED
    assert secret not in json.dumps(request)


@pytest.mark.parametrize("case,refusal", ALL_GITLAB_SIGNING_REFUSALS,
                         ids=[f"{c}-{r.name}" for c, r in ALL_GITLAB_SIGNING_REFUSALS])
def test_gitlab_signed_delivery_refused(edge, upstream, case, refusal):
    genuine_path, sign, secret, genuine_body = GITLAB_SIGNING[case]
    path, headers, body = refusal.variant(genuine_path, sign, secret, genuine_body)
    status, reply = send(edge.port, path, headers, body)
    assert (status, json.loads(reply)) == (refusal.status, {"error": refusal.reason})
    assert_nothing_upstream(upstream)


def test_gitlab_token_is_accepted_unless_the_signature_is_required(edge, upstream):
    """Per secret: the receiver with a token and a signing token takes the token alone; the one requiring
    the signature refuses a token, even its own signing token sent as one."""
    token_path = path_of("gitlab-signing", "GITLAB")
    status, _ = send(edge.port, token_path, signers.gitlab(SECRETS["GITLAB"], GITLAB_PUSH), GITLAB_PUSH)
    assert status == 200
    assert assert_attested_forward(upstream, {})["ref"] == "refs/heads/main"
    upstream.reset()
    required_path = GITLAB_SIGNING["signature required"][0]
    for token in (SECRETS["GITLAB"], SECRETS["GITLAB_SIGNING"]):
        status, reply = send(edge.port, required_path, signers.gitlab(token, GITLAB_PUSH), GITLAB_PUSH)
        assert (status, json.loads(reply)) == (401, {"error": MISSING_SIGNATURE})
    assert_nothing_upstream(upstream)


def test_every_type_of_the_provider_table_has_a_case():
    """The binary's provider table (the values `hookgate send --type` takes) is what CASES covers."""
    usage = subprocess.run([str(CONTROLLER), "send", "--help"], capture_output=True, text=True, check=True).stdout
    types = re.search(r"--type <KIND>.*\[possible values: ([^\]]+)\]", usage).group(1).split(", ")
    assert sorted(types) == sorted([*CASES, *ID_TOKEN_TYPES])


# Types whose proof is Envoy's JWT filter, which this hand-written bootstrap lacks: their cases run on the
# real Envoy Gateway, in test_id_tokens.py.
ID_TOKEN_TYPES = ("generic-oidc", "gcr")


GITHUB_PATH = path_of("webapp", "GH_NEW")


def test_secret_rotation_accepts_current_secrets_only(edge, upstream):
    for env_name in ("GH_OLD", "GH_NEW"):
        upstream.reset()
        status, _ = send(edge.port, GITHUB_PATH, signers.github(SECRETS[env_name], GITHUB_PUSH), GITHUB_PUSH)
        assert status == 200
        assert len(upstream.requests) == 1
    upstream.reset()
    removed = signers.github("github-secret-removed-last-month", GITHUB_PUSH)
    status, reply = send(edge.port, GITHUB_PATH, removed, GITHUB_PUSH)
    assert (status, json.loads(reply)) == (401, {"error": "signature mismatch"})
    assert_nothing_upstream(upstream)


def test_every_secret_has_its_flux_path(edge, upstream):
    old_path = path_of("webapp", "GH_OLD")
    assert old_path != GITHUB_PATH
    status, _ = send(edge.port, old_path, signers.github(SECRETS["GH_NEW"], GITHUB_PUSH), GITHUB_PUSH)
    assert status == 200


def test_ping_is_answered_at_the_edge_after_verification(edge, upstream):
    body = b'{"zen":"Keep it logically awesome.","hook_id":1}'
    status, reply = send(edge.port, GITHUB_PATH, signers.github(SECRETS["GH_NEW"], body, event="ping"), body)
    assert (status, json.loads(reply)) == (200, {"status": "pong"})
    status, reply = send(edge.port, GITHUB_PATH, signers.github("wrong", body, event="ping"), body)
    assert status == 401
    bitbucket_path, _, secret, _, _ = CASES["bitbucket"]
    status, reply = send(edge.port, bitbucket_path, signers.bitbucket(secret, b"{}", event="diagnostics:ping"), b"{}")
    assert (status, json.loads(reply)) == (200, {"status": "pong"})
    assert_nothing_upstream(upstream)


@pytest.mark.parametrize("event,body,reason", [
    ("issues", GITHUB_PUSH, "event not accepted"),
    ("push", json.dumps({"ref": "refs/heads/feature/x"}).encode(), "ref not accepted"),
    ("push", json.dumps({"ref": "refs/tags/release-1"}).encode(), "ref not accepted"),
    ("package", json.dumps({"action": "published"}).encode(), "no ref in payload"),
])
def test_filtered_deliveries_are_ignored_after_verification(edge, upstream, event, body, reason):
    status, reply = send(edge.port, GITHUB_PATH, signers.github(SECRETS["GH_NEW"], body, event=event), body)
    assert (status, json.loads(reply)) == (202, {"status": "ignored", "reason": reason})
    # An unverified sender learns nothing about the filters: it gets 401 as for any other event.
    status, _ = send(edge.port, GITHUB_PATH, signers.github("guess", body, event=event), body)
    assert status == 401
    assert_nothing_upstream(upstream)


@pytest.mark.parametrize("body,reason", [
    (json.dumps({"id": AZURE_EVENT_ID, "eventType": "git.pullrequest.created", "resource": {}}).encode(),
     "event not accepted"),
    (azure_push([{"name": "refs/heads/feature/x"}]), "ref not accepted"),
])
def test_azure_devops_event_and_ref_come_from_the_body(edge, upstream, body, reason):
    path, sign, secret, _, _ = CASES["azure-devops"]
    status, reply = send(edge.port, path, sign(secret, body), body)
    assert (status, json.loads(reply)) == (202, {"status": "ignored", "reason": reason})
    assert_nothing_upstream(upstream)


def test_tag_push_matching_the_ref_filter_is_forwarded(edge, upstream):
    body = json.dumps({"ref": "refs/tags/v2.0.0"}).encode()
    status, _ = send(edge.port, GITHUB_PATH, signers.github(SECRETS["GH_NEW"], body), body)
    assert status == 200
    assert assert_attested_forward(upstream, {})["ref"] == "refs/tags/v2.0.0"


def test_form_encoded_github_delivery(edge, upstream):
    from urllib.parse import urlencode
    body = urlencode({"payload": GITHUB_PUSH.decode()}).encode()
    headers = {**signers.github(SECRETS["GH_NEW"], body), "Content-Type": "application/x-www-form-urlencoded"}
    status, _ = send(edge.port, GITHUB_PATH, headers, body)
    assert status == 200
    assert assert_attested_forward(upstream, headers)["ref"] == "refs/heads/main"


@pytest.mark.parametrize("method,path,status,reason", [
    ("POST", "/hook/0000000000000000000000000000000000000000000000000000000000000000", 404, "unknown webhook path"),
    ("POST", FORWARD_PATH, 404, "unknown webhook path"),
    # Suspended: 503 without verifying, as Flux answers (issue 22, item 5).
    ("POST", "/hook/off", 503, "receiver suspended"),
    # hookgate's own types keep their senders' methods; Flux's take any (issue 22, item 1).
    ("PUT", path_of("gitea", "GITEA"), 405, "method not allowed"),
    ("DELETE", "/hook/argocd", 405, "method not allowed"),
])
def test_routing_refusals(edge, upstream, method, path, status, reason):
    body = GITHUB_PUSH
    got, reply = send(edge.port, path, signers.github(SECRETS["GH_NEW"], body), body, method=method)
    assert (got, json.loads(reply)) == (status, {"error": reason})
    assert_nothing_upstream(upstream)


@pytest.mark.parametrize("method", ["PUT", "GET", "PATCH"])
def test_flux_types_take_any_method(edge, upstream, method):
    """Flux's receiver checks no method (issue 22, item 1): a signed push sent with another method is
    forwarded, as the attested POST."""
    headers = signers.github(SECRETS["GH_NEW"], GITHUB_PUSH)
    status, _ = send(edge.port, GITHUB_PATH, headers, GITHUB_PUSH, method=method)
    assert status == 200
    assert assert_attested_forward(upstream, headers)["ref"] == "refs/heads/main"


def test_forged_attestation_sent_directly_to_the_forward_path_is_refused(edge, upstream):
    body = b'{"receiver":{"namespace":"edge","name":"webapp"},"type":"github","targets":[]}'
    headers = {"x-hookgate-timestamp": str(int(time.time())), "x-hookgate-signature": "v1=" + "0" * 64}
    status, _ = send(edge.port, FORWARD_PATH, headers, body)
    assert status == 404
    assert_nothing_upstream(upstream)


def test_query_string_is_ignored_for_matching(edge, upstream):
    status, _ = send(edge.port, GITHUB_PATH + "?source=github", signers.github(SECRETS["GH_NEW"], GITHUB_PUSH), GITHUB_PUSH)
    assert status == 200
    assert upstream.requests[0].path == FORWARD_PATH


def test_signature_cannot_be_replayed_against_another_receiver(edge, upstream):
    # A delivery captured on its way to one receiver, sent to another receiver's path: refused.
    headers = signers.github(SECRETS["GH_NEW"], GITHUB_PUSH)
    status, _ = send(edge.port, GITHUB_PATH, headers, GITHUB_PUSH)
    assert status == 200
    upstream.reset()
    status, reply = send(edge.port, "/hook/pinned-other", headers, GITHUB_PUSH)
    assert (status, json.loads(reply)) == (401, {"error": "signature mismatch"})
    gitea_path = CASES["gitea"][0]
    status, _ = send(edge.port, gitea_path, headers, GITHUB_PUSH)
    assert status == 401
    assert_nothing_upstream(upstream)


def test_declared_length_over_the_limit_is_refused_before_buffering(edge, upstream):
    body = b"x" * 70000
    # Only the headers are sent: the answer must come without the body.
    with socket.create_connection(("127.0.0.1", edge.port), timeout=10) as s:
        s.sendall(f"POST /hook/small HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n"
                  "X-GitHub-Event: push\r\n\r\n".encode())
        head = s.recv(4096).decode()
    assert head.startswith("HTTP/1.1 413"), head
    assert '{"error":"payload too large"}' in head
    assert_nothing_upstream(upstream)


def test_chunked_body_growing_over_the_limit_is_refused(edge, upstream):
    body = json.dumps({"ref": "refs/heads/main", "pad": "x" * 70000}).encode()
    status, reply = send(edge.port, "/hook/small", signers.github(SECRETS["GH_NEW"], body), body, chunked=True)
    assert (status, json.loads(reply)) == (413, {"error": "payload too large"})
    assert_nothing_upstream(upstream)


def test_body_in_many_chunks(edge, upstream):
    body = json.dumps({"ref": "refs/heads/main", "commits": [{"id": str(i)} for i in range(3000)]}).encode()
    assert len(body) > 40000
    headers = signers.github(SECRETS["GH_NEW"], body)
    status, _ = send(edge.port, GITHUB_PATH, headers, body, chunked=True)
    assert status == 200
    assert assert_attested_forward(upstream, headers)["ref"] == "refs/heads/main"


def test_slow_body_is_held_until_complete(edge, upstream):
    headers = signers.github(SECRETS["GH_NEW"], GITHUB_PUSH)
    head = f"POST {GITHUB_PATH} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(GITHUB_PUSH)}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    with socket.create_connection(("127.0.0.1", edge.port), timeout=10) as s:
        s.sendall(head.encode())
        for i in range(0, len(GITHUB_PUSH), 10):
            s.sendall(GITHUB_PUSH[i:i + 10])
            time.sleep(0.05)
            # Nothing may reach the upstream while the body is incomplete.
            if i + 10 < len(GITHUB_PUSH):
                assert upstream.raw_bytes == 0
        reply = s.recv(4096).decode()
    assert reply.startswith("HTTP/1.1 200"), reply
    assert_attested_forward(upstream, headers)


def test_huge_header_is_refused_by_envoy(edge, upstream):
    headers = {**signers.github(SECRETS["GH_NEW"], GITHUB_PUSH), "X-Padding": "p" * 100_000}
    status, _ = send(edge.port, GITHUB_PATH, headers, GITHUB_PUSH)
    assert status == 431
    assert_nothing_upstream(upstream)


def test_non_utf8_proof_header_is_refused_without_crashing(edge, upstream):
    head = (f"POST {GITHUB_PATH} HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nX-GitHub-Event: push\r\n").encode()
    head += b"X-Hub-Signature-256: sha256=\xff\xfe\r\n\r\n{}"
    with socket.create_connection(("127.0.0.1", edge.port), timeout=10) as s:
        s.sendall(head)
        reply = s.recv(4096)
    assert reply.startswith(b"HTTP/1.1 401"), reply
    # The VM is still alive: a valid delivery right after is forwarded.
    status, _ = send(edge.port, GITHUB_PATH, signers.github(SECRETS["GH_NEW"], GITHUB_PUSH), GITHUB_PUSH)
    assert status == 200


@pytest.mark.parametrize("provider", ["bearer", "basic"])
@pytest.mark.parametrize("method", ["GET", "PUT", "POST"])
def test_token_receivers_take_every_method_they_advertise(edge, upstream, provider, method):
    """Issue 9, item 5. Argo CD's webhook service sends GET unless its template sets a method, with the
    template's `body` if it has one: forwarded, the targets from the receiver's configuration. The token is
    checked first, so without it the answer is 401 with or without a body. A verified request without a body
    (issue 22, item 1) is sent to the controller by the filter itself (Envoy gives a Wasm filter no body to
    replace), which answers with the controller's reply: nothing goes the route's way."""
    path, sign, secret, body, _ = CASES[provider]
    wrong = secret[:-4] + "XXXX"
    cases = [  # label, headers, body, status, error (None: forwarded)
        ("right token, body", sign(secret, body), body, 200, None),
        ("wrong token, body", sign(wrong, body), body, 401, "token mismatch"),
        ("missing token, body", {"Content-Type": "application/json"}, body, 401, "missing token"),
        ("wrong token, no body", sign(wrong, b""), None, 401, "token mismatch"),
        ("missing token, no body", {}, None, 401, "missing token"),
        ("right token, no body", sign(secret, b""), None, 200, "by call"),
    ]
    for label, headers, payload, status, error in cases:
        upstream.reset()
        got, reply = send(edge.port, path, headers, payload, method=method)
        if error == "by call":
            summary = json.loads(reply)
            assert (got, summary["annotated"], summary["failed"]) == (200, 1, 0), label
            assert summary["targets"][0]["name"] == "guestbook", label
            assert_nothing_upstream(upstream)
        elif error is None:
            assert (got, reply) == (200, b'{"ok":true}'), label
            request = assert_attested_forward(upstream, headers)
            assert request["targets"] == ARGO_TARGETS, label
            assert "event" not in request and "ref" not in request, label
        else:
            assert (got, json.loads(reply)) == (status, {"error": error}), label
            assert_nothing_upstream(upstream)


@pytest.mark.parametrize("chunked", [False, True])
def test_bodyless_request_is_answered_by_the_controller_and_the_vm_survives(edge, upstream, chunked):
    """Without a body (Content-Length: 0, or a chunked body of no chunk), a verified delivery is sent to the
    controller by the filter itself; a type whose Flux receiver decodes the body refuses one."""
    headers = signers.bearer(SECRETS["BEARER"], b"")
    status, reply = send(edge.port, "/hook/argocd", headers, b"", chunked=chunked)
    assert (status, json.loads(reply)["annotated"]) == (200, 1)
    path, sign, secret, _, _ = CASES["quay"]
    status, reply = send(edge.port, path, sign(secret, b""), b"", chunked=chunked)
    assert (status, json.loads(reply)) == (400, {"error": "empty body"})
    assert_nothing_upstream(upstream)
    status, _ = send(edge.port, "/hook/argocd", signers.bearer(SECRETS["BEARER"], b"{}"), b"{}")
    assert status == 200


def test_rejections_are_logged_with_the_reason_and_never_the_secret(edge, upstream):
    send(edge.port, GITHUB_PATH, signers.github("wrong", GITHUB_PUSH), GITHUB_PUSH)
    time.sleep(0.2)
    log = edge.log()
    assert f"receiver {NS}/webapp: rejected with 401: signature mismatch" in log
    for value in SECRETS.values():
        assert value not in log


# Envoy Gateway starts its proxies with `--log-level warn` (EnvoyProxy `spec.logging.level`, default
# `DefaultEnvoyProxyLoggingLevel` in its api/v1alpha1) and `--component-log-level misc:error`, which leaves
# the `wasm` component at warn: a line below it never reaches the proxy's log.
ENVOY_GATEWAY_LOG_LEVEL = "warn"


@pytest.fixture(scope="module")
def edge_at_gateway_log_level(cp, upstream, tmp_path_factory):
    with served_edge(cp, tmp_path_factory.mktemp("edge-warn"), upstream_port=upstream.port,
                     log_level=ENVOY_GATEWAY_LOG_LEVEL) as served:
        yield served.envoy


# (name, path, signed with, the line Envoy Gateway's proxy must log)
REFUSALS_LOGGED = [
    ("signature mismatch", GITHUB_PATH, "wrong", f"receiver {NS}/webapp: rejected with 401: signature mismatch"),
    ("unknown path", "/hook/moved-after-a-token-change", SECRETS["GH_NEW"],
     "hookgate: rejected with 404: unknown webhook path"),
]


@pytest.mark.parametrize("path,secret,logged", [c[1:] for c in REFUSALS_LOGGED], ids=[c[0] for c in REFUSALS_LOGGED])
def test_every_refusal_is_logged_at_envoy_gateways_default_level(edge_at_gateway_log_level, upstream, path, secret,
                                                                 logged):
    edge = edge_at_gateway_log_level
    upstream.reset()
    status, _ = send(edge.port, path, signers.github(secret, GITHUB_PUSH), GITHUB_PUSH)
    assert status in (401, 404)
    wait(lambda: logged in edge.log(), 5, logged, lambda: edge.log()[-3000:])
    # An accepted delivery stays below warn: one line per delivery only where the operator asked for info.
    status, _ = send(edge.port, GITHUB_PATH, signers.github(SECRETS["GH_NEW"], GITHUB_PUSH), GITHUB_PUSH)
    assert status == 200
    time.sleep(0.2)
    assert "accepted event" not in edge.log()


def test_an_unconfigured_filter_counts_from_zero_and_logs_each_refusal_at_envoy_gateways_default_level(upstream):
    config = {**BOOTSTRAP, "controllerKeys": []}
    bootstrap = envoy_bootstrap(listen_port=free_port(), admin_port=free_port(), upstream_port=upstream.port,
                                filter_config=config)
    with Envoy(bootstrap, {}, log_level=ENVOY_GATEWAY_LOG_LEVEL) as proxy:
        # Counted from 0 before the first refusal, so that the alerts' `increase()` sees that one too.
        for reason in ("not_configured", "unknown_path"):
            zero = f'hookgate_deliveries_total{{namespace="",receiver="",outcome="rejected",reason="{reason}"}} 0'
            assert zero in proxy.stats_prometheus().splitlines(), reason
        status, _ = send(proxy.port, GITHUB_PATH, signers.github(SECRETS["GH_NEW"], GITHUB_PUSH), GITHUB_PUSH)
        assert status == 503
        logged = "hookgate: rejected with 503: filter configuration invalid"
        wait(lambda: logged in proxy.log(), 5, logged, lambda: proxy.log()[-3000:])


def test_a_filter_that_cannot_reach_the_controller_says_so_at_envoy_gateways_default_level(upstream):
    """At warn, so the operator of Envoy Gateway sees it; once per VM (the main thread's and the worker's)
    when it starts failing, not once per call."""
    bootstrap = envoy_bootstrap(listen_port=free_port(), admin_port=free_port(), upstream_port=upstream.port,
                                filter_config=BOOTSTRAP, controller_port=free_port())
    with Envoy(bootstrap, {}, log_level=ENVOY_GATEWAY_LOG_LEVEL) as proxy:
        logged = "hookgate: cannot fetch the configuration: "
        wait(lambda: logged in proxy.log(), 10, logged, lambda: proxy.log()[-3000:])
        time.sleep(1)
        once = proxy.log().count(logged)
        # The filter asks again every few seconds meanwhile.
        time.sleep(4)
        assert proxy.log().count(logged) == once <= 2, proxy.log()[-3000:]


def test_metrics_count_per_receiver_outcome(edge, upstream):
    before = edge.stats_prometheus()
    send(edge.port, GITHUB_PATH, signers.github("wrong", GITHUB_PUSH), GITHUB_PUSH)
    send(edge.port, GITHUB_PATH, signers.github(SECRETS["GH_NEW"], GITHUB_PUSH), GITHUB_PUSH)
    after = edge.stats_prometheus()

    def value(text: str, needle: str) -> int:
        lines = [line for line in text.splitlines() if needle in line and not line.startswith("#")]
        return int(float(lines[0].rsplit(" ", 1)[1])) if lines else 0

    webapp = f'hookgate_deliveries_total{{namespace="{NS}",receiver="webapp"'
    accepted, mismatch = f'{webapp},outcome="accepted",reason=""}}', f'{webapp},outcome="rejected",reason="signature_mismatch"}}'
    assert value(after, accepted) == value(before, accepted) + 1
    assert value(after, mismatch) >= 1


A_PUBLIC_KEY = "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"
BOOTSTRAP = {"controller": {"cluster": "hookgate-controller"}, "controllerKeys": [A_PUBLIC_KEY]}


@pytest.mark.parametrize("mutation,logged", [
    # Receivers are objects: a receivers document in the plugin configuration is no longer read.
    (lambda c: c.update(receivers=[]), "field `receivers`: unknown field"),
    (lambda c: [c.clear(), c.update(receivers=[{"name": "webapp", "namespace": NS, "type": "github",
                                                "secrets": [{"env": "GH_NEW"}]}])],
     "field `receivers`: receivers are not read from the plugin configuration: they are `Receiver` objects"),
    (lambda c: c["controller"].update(cluster=""), "field `controller.cluster`: must name the Envoy cluster"),
    (lambda c: c.update(controllerKeys=[]), "field `controllerKeys`"),
    # A key of the wrong kind is described, never shown (a private key pasted here stays unshown).
    (lambda c: c.update(controllerKeys=A_PUBLIC_KEY), "field `controllerKeys`: must be a list"),
    (lambda c: c.update(controllerKeys=[12345678901234567890123]),
     "field `controllerKeys[0]`: must be a string, not a number"),
])
def test_invalid_bootstrap_fails_closed(upstream, mutation, logged):
    config = json.loads(json.dumps(BOOTSTRAP))
    mutation(config)
    bootstrap = envoy_bootstrap(listen_port=free_port(), admin_port=free_port(), upstream_port=upstream.port,
                                filter_config=config)
    upstream.reset()
    with Envoy(bootstrap, {}) as proxy:
        for path in (GITHUB_PATH, "/hook/pinned-other", "/hook/anything"):
            status, reply = send(proxy.port, path, signers.github(SECRETS["GH_NEW"], GITHUB_PUSH), GITHUB_PUSH)
            assert (status, json.loads(reply)) == (503, {"error": "filter configuration invalid"})
        log = proxy.log()
        assert "invalid configuration, refusing every request: " + logged in log
        for shown in ["12345678901234567890123", "1.2345678901234568", A_PUBLIC_KEY]:
            assert shown not in log
    assert_nothing_upstream(upstream)


def test_without_held_headers_the_filter_is_never_configured(cp, upstream, tmp_path):
    """Why `allow_on_headers_stop_iteration` is required: without it Envoy never gives the filter the body
    while it holds the headers, so the controller's confirmation (a POST with a body) cannot be read, the
    filter never gets its receivers, and every delivery is refused."""
    upstream.reset()
    with served_edge(cp, tmp_path, upstream_port=upstream.port, hold_headers=False,
                     refused=len(RECEIVERS)) as served:
        # The VM asked again after the controller posted its confirmation, still unconfirmed.
        wait(lambda: served.controller_requests("awaiting_confirmation") >= 3, 30,
             "the filter asking the controller, unconfirmed", served.controller.log)
        assert served.controller_requests("sent") == 0
        assert served.receivers_loaded() == 0
        assert served.stat("hookgate_confirmations_received_total") == 0
        status, reply = send(served.port, GITHUB_PATH, signers.github(SECRETS["GH_NEW"], GITHUB_PUSH), GITHUB_PUSH,
                             timeout=10)
        assert (status, json.loads(reply)) == (503, {"error": "filter configuration invalid"})
    assert upstream.requests == []


def h2_post(port: int, path: str, headers: dict, body: bytes, trailers: list | None = None) -> tuple[int, bytes]:
    """One HTTP/2 (prior knowledge) POST, optionally ending with trailers, as HTTP/2 clients may send."""
    import h2.config
    import h2.connection
    import h2.events

    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
    conn.initiate_connection()
    stream = conn.get_next_available_stream_id()
    conn.send_headers(stream, [(":method", "POST"), (":path", path), (":scheme", "http"), (":authority", "hooks")]
                      + [(k.lower(), v) for k, v in headers.items()])
    conn.send_data(stream, body, end_stream=not trailers)
    if trailers:
        conn.send_headers(stream, trailers, end_stream=True)
    sock.sendall(conn.data_to_send())
    status, data = 0, b""
    with sock:
        while True:
            raw = sock.recv(65536)
            assert raw, "connection closed before the response ended"
            for event in conn.receive_data(raw):
                if isinstance(event, h2.events.ResponseReceived):
                    status = int(dict(event.headers)[":status"])
                elif isinstance(event, h2.events.DataReceived):
                    data += event.data
                    conn.acknowledge_received_data(len(event.data), stream)
                elif isinstance(event, (h2.events.StreamEnded, h2.events.StreamReset)):
                    return status, data
            sock.sendall(conn.data_to_send())


def test_http2_deliveries_with_and_without_trailers(edge, upstream):
    headers = signers.github(SECRETS["GH_NEW"], GITHUB_PUSH)
    for trailers in (None, [("x-provider-trailer", "secret-ish")]):
        upstream.reset()
        status, reply = h2_post(edge.port, GITHUB_PATH, headers, GITHUB_PUSH, trailers)
        assert (status, reply) == (200, b'{"ok":true}')
        request = assert_attested_forward(upstream, headers)
        assert request["ref"] == "refs/heads/main"
        assert "x-provider-trailer" not in upstream.requests[0].headers
    upstream.reset()
    status, reply = h2_post(edge.port, GITHUB_PATH, signers.github("wrong", GITHUB_PUSH), GITHUB_PUSH, [("x-t", "v")])
    assert (status, json.loads(reply)) == (401, {"error": "signature mismatch"})
    assert_nothing_upstream(upstream)


def raise_header_limit(bootstrap: dict, kb: int) -> dict:
    """The bootstrap with Envoy's request header limit (60 KiB by default) raised to `kb` KiB."""
    listener = bootstrap["static_resources"]["listeners"][0]
    listener["filter_chains"][0]["filters"][0]["typed_config"]["max_request_headers_kb"] = kb
    return bootstrap


def test_thousands_of_standard_webhooks_signatures_cost_no_more_than_one(cp, upstream, tmp_path):
    """Issue 9, item 1: 15,000 empty `v1,` entries in `webhook-signature` over a 3 MiB body once cost one MAC
    of the body each, keeping the Envoy worker busy for minutes. Now the work is one MAC per key: such a
    delivery takes about as long as a one-entry one with the same body."""
    path = CASES["standard-webhooks"][0]
    # 3 MiB exactly: the receiver's default body limit.
    padding = 3 * 1024 * 1024 - len(json.dumps({"type": "image.pushed", "pad": ""}))
    body = json.dumps({"type": "image.pushed", "pad": "x" * padding}).encode()
    assert len(body) == 3 * 1024 * 1024
    genuine = signers.standard_webhooks(SW_KEY, body)
    flood = " ".join(["v1,"] * 15_000)
    one_entry = {**genuine, "webhook-signature": "v1," + base64.b64encode(bytes(32)).decode()}
    many_entries = {**genuine, "webhook-signature": flood}
    mismatch = (401, {"error": "signature mismatch"})
    with served_edge(cp, tmp_path, upstream_port=upstream.port,
                     adjust=lambda bootstrap: raise_header_limit(bootstrap, kb=128)) as served:
        proxy = served.envoy

        def timed(headers: dict) -> tuple[float, tuple[int, dict]]:
            start = time.perf_counter()
            status, reply = send(proxy.port, path, headers, body, timeout=60)
            return time.perf_counter() - start, (status, json.loads(reply))

        upstream.reset()
        # Only the first 8 readable entries are read: a genuine one after the flood is not reached...
        assert timed({**genuine, "webhook-signature": flood + " " + genuine["webhook-signature"]})[1] == mismatch
        assert_nothing_upstream(upstream)
        # ... and one before it verifies.
        _, (status, reply) = timed({**genuine, "webhook-signature": genuine["webhook-signature"] + " " + flood})
        assert (status, reply) == (200, {"ok": True})
        assert assert_attested_forward(upstream, genuine)["deliveryId"] == "msg_2Lq0"
        upstream.reset()

        one, many = [], []
        for _ in range(5):  # interleaved, so a noisy moment slows both alike
            for times, headers in ((one, one_entry), (many, many_entries)):
                elapsed, answer = timed(headers)
                assert answer == mismatch
                times.append(elapsed)
        assert_nothing_upstream(upstream)
        assert "panicked" not in proxy.log()
    print(f"median one entry {statistics.median(one):.3f} s, 15,000 entries {statistics.median(many):.3f} s")
    assert statistics.median(many) <= 5 * statistics.median(one), (one, many)
