"""The compiled filter in the real Envoy, configured as Envoy Gateway configures it, in front of a
recording upstream: what a provider's delivery turns into, and that nothing of a refused one gets through."""

from __future__ import annotations

import http.client
import json
import socket
import time

import pytest

import signers
from harness import FORWARD_PATH, Envoy, RecordingUpstream, envoy_bootstrap, free_port

ATTESTATION_KEY = "attestation-key-for-tests-0123456789abcdef"
SW_KEY = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"
SECRETS = {
    "GH_OLD": "github-old-secret", "GH_NEW": "github-new-secret", "GH_OTHER": "github-other-secret",
    "GITEA": "gitea-secret", "GITLAB": "gitlab-token", "BITBUCKET": "bitbucket-secret",
    "GENERIC": "generic-token", "GENERIC_HMAC": "generic-hmac-secret", "SW": SW_KEY,
    "HARBOR": "harbor-auth-value", "NEXUS": "nexus-secret", "DOCKERHUB": "dockerhub-token",
    "QUAY": "quay-token", "ACR": "acr-token", "CDEVENTS": "cdevents-token", "BEARER": "argo-bearer-token",
}
NS = "flux-system"
TARGET = [{"kind": "GitRepository", "name": "webapp"}]


def receiver(name: str, type_: str, secret_envs: list[str], **extra) -> dict:
    return {"name": name, "namespace": NS, "type": type_, "secrets": [{"env": e} for e in secret_envs],
            "targets": TARGET, **extra}


FILTER_CONFIG = {
    "receivers": [
        receiver("webapp", "github", ["GH_OLD", "GH_NEW"], events=["push", "package"],
                 refs={"branches": ["main"], "tags": ["v*"]}, bodyLimit=2 * 1024 * 1024,
                 targets=[{"kind": "GitRepository", "name": "webapp"},
                          {"kind": "Kustomization", "name": "*", "matchLabels": {"app": "webapp"}}]),
        receiver("other", "github", ["GH_OTHER"], path="/hook/pinned-other"),
        receiver("small", "github", ["GH_NEW"], path="/hook/small", bodyLimit=65536),
        receiver("off", "github", ["GH_NEW"], path="/hook/off", disabled=True),
        receiver("gitea", "gitea", ["GITEA"], events=["push"]),
        receiver("gitlab", "gitlab", ["GITLAB"], events=["Push Hook", "Tag Push Hook"]),
        receiver("bitbucket", "bitbucket", ["BITBUCKET"], events=["repo:push", "repo:refs_changed"]),
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
        receiver("argocd", "bearer", ["BEARER"], path="/hook/argocd",
                 targets=[{"apiVersion": "argoproj.io/v1alpha1", "kind": "Application", "name": "guestbook",
                           "namespace": "argocd"}]),
    ]
}

GITHUB_PUSH = json.dumps({"ref": "refs/heads/main", "after": "a" * 40, "repository": {"full_name": "org/webapp"}}).encode()
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
}


@pytest.fixture(scope="module")
def upstream():
    server = RecordingUpstream()
    yield server
    server.close()


@pytest.fixture(scope="module")
def envoy(upstream):
    env = {**SECRETS, "HOOKGATE_ATTESTATION_KEY": ATTESTATION_KEY}
    bootstrap = envoy_bootstrap(listen_port=free_port(), admin_port=free_port(), upstream_port=upstream.port,
                                filter_config=FILTER_CONFIG, host_env_keys=sorted(env))
    with Envoy(bootstrap, env) as proxy:
        yield proxy


@pytest.fixture
def edge(envoy, upstream):
    """The Envoy under test, with the upstream's record cleared."""
    upstream.reset()
    return envoy


def send(port: int, path: str, headers: dict, body: bytes, method: str = "POST", chunked: bool = False):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
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


def assert_nothing_upstream(upstream: RecordingUpstream) -> None:
    time.sleep(0.05)
    assert (upstream.connections, upstream.raw_bytes, upstream.requests) == (0, 0, [])


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
    return json.loads(forwarded.body)


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


# provider -> list of (label, headers, body, expected status, expected reason)
def bad_variants(provider: str):
    path, sign, secret, body, _ = CASES[provider]
    good = sign(secret, body)
    variants = []
    if provider in ("generic", "dockerhub", "quay", "acr", "cdevents"):
        # The secret path is the proof: another token's path is unknown; a wrong shape is malformed.
        variants.append(("wrong secret", path.replace(path[-8:], "00000000"), good, body, 404, "unknown webhook path"))
        if provider != "generic":
            variants.append(("malformed payload", path, good, b'{"unexpected":true}', 400, "malformed payload"))
        if provider == "cdevents":
            no_type = {k: v for k, v in good.items() if k != "Ce-Type"}
            variants.append(("missing event header", path, no_type, body, 400, "missing event header"))
        return variants
    proof_header = {
        "github": "X-Hub-Signature-256", "gitea": "X-Gitea-Signature", "gitlab": "X-Gitlab-Token",
        "bitbucket": "X-Hub-Signature", "generic-hmac": "X-Signature", "standard-webhooks": "webhook-signature",
        "harbor": "Authorization", "nexus": "X-Nexus-Webhook-Signature", "bearer": "Authorization",
    }[provider]
    token_type = provider in ("gitlab", "harbor", "bearer")
    mismatch = "token mismatch" if token_type else "signature mismatch"
    if not token_type:
        variants.append(("tampered body", path, good, tamper(body), 401, mismatch))
    variants.append(("wrong secret", path, sign(secret.replace(secret[-4:], "XXXX") if provider != "standard-webhooks"
                                                 else "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", body), body, 401, mismatch))
    missing = {k: v for k, v in good.items() if k != proof_header and not (provider == "github" and k == "X-Hub-Signature")}
    variants.append(("missing proof", path, missing, body, 401,
                     "missing token" if token_type and provider != "bearer" else
                     "missing token" if provider == "bearer" else "missing signature"))
    malformed = {**good, proof_header: {
        "github": "sha256=not-hex", "gitea": "zz", "bitbucket": "sha256", "generic-hmac": "sha256=zz",
        "standard-webhooks": "v1,***", "nexus": "nothex", "bearer": "Token abc", "gitlab": "", "harbor": "",
    }[provider]}
    if provider not in ("gitlab", "harbor"):
        variants.append(("malformed proof", path, malformed, body, 401, "malformed signature header"))
    if provider in ("github", "bitbucket", "generic-hmac"):
        header = good[proof_header]
        variants.append(("wrong algorithm", path, {**good, proof_header: header.replace("sha256=", "md5=")}, body,
                         401, "unsupported signature algorithm"))
        sha1 = {**missing, proof_header: "sha1=" + signers.hex_hmac("sha1", secret, body)}
        variants.append(("sha1 without opt-in", path, sha1, body, 401, "unsupported signature algorithm"))
    if provider == "standard-webhooks":
        stale = signers.standard_webhooks(secret, body, timestamp=int(time.time()) - 600)
        variants.append(("stale timestamp", path, stale, body, 401, "timestamp outside tolerance"))
    return variants


ALL_BAD = [(p, *v) for p in sorted(CASES) for v in bad_variants(p)]


@pytest.mark.parametrize("provider,label,path,headers,body,status,reason", ALL_BAD,
                         ids=[f"{v[0]}-{v[1]}" for v in ALL_BAD])
def test_refused_delivery_reaches_nothing(edge, upstream, provider, label, path, headers, body, status, reason):
    got_status, reply = send(edge.port, path, headers, body)
    assert got_status == status, reply
    assert json.loads(reply) == {"error": reason}
    assert_nothing_upstream(upstream)
