"""Secret-less senders (generic-oidc, gcr) on the real Envoy Gateway: the homelab example with the
id-tokens Component and two Receivers without a Secret, its SecurityPolicy's JWT providers fetching their
JWKS from issuers this test runs on loopback. A valid token at Flux's path (sha256(name + namespace)) reconciles the receiver's target; an
expired, misaddressed, tampered, foreign or missing token, or one whose claims the receiver does not accept,
is refused by Envoy's JWT filter or by the hookgate filter and changes nothing."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest
import yaml

import signers
from deploy import MANIFESTS, RECEIVER_API, Delivery, deploy, policy_keys, wait_translated
from gateway import EnvoyGateway, ModuleServer, http_code, wait
from harness import WASM, free_port
from oidc_issuer import Issuer, b64url

NS = "flux-system"
CI_ISSUER = "https://ci.example.test"
GOOGLE_ISSUER = "https://accounts.google.com"
GCR_AUDIENCE = "https://hooks.homelab.example.com/hook/registry"
GCR_EMAIL = "pusher@example-project.iam.gserviceaccount.com"
# receiver name -> (type, idToken block, target kind, target name)
RECEIVERS = {
    "ci": ("generic-oidc", {"jwtProvider": "ci", "issuers": [CI_ISSUER],
                            "validations": ["claims.repository == 'example/app'"]}, "Kustomization", "ci-apps"),
    "registry": ("gcr", {"jwtProvider": "google", "audience": GCR_AUDIENCE, "email": GCR_EMAIL},
                 "ImageRepository", "app-image"),
    # Its validation reads an email: the token must say the issuer verified it.
    "mail": ("generic-oidc", {"jwtProvider": "ci", "issuers": [CI_ISSUER],
                              "validations": ["claims.email == 'deploy@example.test'"]}, "Kustomization", "ci-apps"),
    # Its JWT provider reads the token from another header than the bearer token the filter reads.
    "groups": ("generic-oidc", {"jwtProvider": "header", "issuers": [CI_ISSUER],
                                "validations": ["claims.groups[0] != 'blocked'"]}, "Kustomization", "ci-apps"),
}
ID_TOKEN_HEADER = "x-id-token"


def overlay(workdir: Path, jwks: ModuleServer) -> Path:
    """The homelab-github example plus the id-tokens Component: the two receivers above as Receiver objects
    (no Secret), their Flux paths on the ID-token route, and JWT providers whose JWKS this test serves."""
    root = workdir / "id-tokens"
    root.mkdir()
    receivers = [{"apiVersion": RECEIVER_API, "kind": "Receiver", "metadata": {"name": name, "namespace": NS},
                  "spec": {"type": kind, "idToken": block, "targets": [{"kind": target_kind, "name": target}]}}
                 for name, (kind, block, target_kind, target) in RECEIVERS.items()]
    (root / "receivers.yaml").write_text(yaml.safe_dump_all(receivers, sort_keys=False))
    paths = [{"path": {"type": "Exact", "value": signers.flux_path("", name, NS)}} for name in RECEIVERS]
    providers = [
        {"name": "ci", "issuer": CI_ISSUER, "audiences": ["notification-controller"],
         "remoteJWKS": {"uri": jwks.url("ci.json")}},
        {"name": "google", "issuer": GOOGLE_ISSUER, "remoteJWKS": {"uri": jwks.url("google.json")}},
        {"name": "header", "issuer": CI_ISSUER, "audiences": ["notification-controller"],
         "remoteJWKS": {"uri": jwks.url("ci.json")}, "extractFrom": {"headers": [{"name": ID_TOKEN_HEADER}]}},
    ]
    patch = lambda kind, name, ops: {"target": {"kind": kind, "name": name}, "patch": json.dumps(ops)}  # noqa: E731
    in_namespace = {"op": "add", "path": "/metadata/namespace", "value": NS}
    (root / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        # Kustomize takes only relative paths to other kustomizations.
        "resources": [os.path.relpath(MANIFESTS / "examples/homelab-github", root), "receivers.yaml"],
        "components": [os.path.relpath(MANIFESTS / "base/gateway/id-tokens", root)],
        "patches": [
            patch("HTTPRoute", "hookgate-id-token-webhooks", [
                in_namespace,
                {"op": "add", "path": "/spec/hostnames", "value": ["hooks.homelab.example.com"]},
                {"op": "replace", "path": "/spec/rules/0/matches", "value": paths}]),
            patch("SecurityPolicy", "hookgate-id-tokens", [
                in_namespace, {"op": "replace", "path": "/spec/jwt/providers", "value": providers}]),
        ]}, sort_keys=False))
    return root


@pytest.fixture(scope="module")
def issuers() -> dict[str, Issuer]:
    return {"ci": Issuer("ci-1"), "google": Issuer("google-1"), "stranger": Issuer("ci-1")}


@pytest.fixture(scope="module")
def deployed(cp, issuers, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("id-tokens")
    # The issuers' JWKS endpoints.
    (workdir / "jwks").mkdir()
    for name in ("ci", "google"):
        (workdir / "jwks" / f"{name}.json").write_text(issuers[name].jwks())
    jwks = ModuleServer(workdir / "jwks")
    root = overlay(workdir, jwks)
    gateway = EnvoyGateway({})
    modules = ModuleServer(WASM.parent)
    try:
        example = deploy(root, cp, gateway, workdir=workdir, gateway_port=free_port(),
                         wasm_code=http_code(modules.url(WASM.name), WASM), source="127.0.7.1")
        try:
            wait_translated(example, probe_source="127.0.7.2")
            # The ID-token route is translated with the rest; its JWKS is fetched on first use.
            wait(lambda: send(example, "ci", valid_ci(issuers))[0] == 200, 60,
                 "a valid ID token accepted on the ID-token route", gateway.log)
            yield example
        finally:
            example.stop()
    finally:
        gateway.cleanup()
        modules.close()
        jwks.close()


def claims(receiver: str, **changes) -> dict:
    """A token's claims as its genuine sender's issuer signs them, with `changes` (None removes a claim)."""
    now = int(time.time())
    base = {"iat": now, "nbf": now, "exp": now + 600, "sub": "sender"}
    if receiver in ("ci", "mail", "groups"):
        base |= {"iss": CI_ISSUER, "aud": "notification-controller", "repository": "example/app"}
        base |= {"mail": {"email": "deploy@example.test", "email_verified": True},
                 "groups": {"groups": ["staff"]}}.get(receiver, {})
    else:
        base |= {"iss": GOOGLE_ISSUER, "aud": GCR_AUDIENCE, "email": GCR_EMAIL, "email_verified": True}
    base |= changes
    return {k: v for k, v in base.items() if v is not None}


def valid_ci(issuers: dict[str, Issuer]) -> str:
    return issuers["ci"].token(claims("ci"))


def unsigned_bearer(issuers: dict[str, Issuer], verified: dict, **changes) -> tuple[str, str]:
    """A bearer token signed by a key no provider trusts, whose claims are `verified` with `changes`, and a
    genuine token of `verified` for the header the `header` provider reads. The JWT filter verifies the
    genuine one only (providers that read the bearer token refuse it), and the hookgate filter reads the
    bearer token: it takes it only when its claims are the verified ones."""
    return issuers["stranger"].token(verified | changes), issuers["ci"].token(verified)


def valid(issuers: dict[str, Issuer], receiver: str) -> str | tuple[str, str]:
    if receiver == "groups":
        return unsigned_bearer(issuers, claims("groups"))
    return issuers["google" if receiver == "registry" else "ci"].token(claims(receiver))


def send(example, receiver: str, token: str | tuple[str, str] | None) -> tuple[int, str]:
    """POSTs with `token` as the bearer token; a pair is a bearer token and the token for the header the
    `header` provider reads."""
    bearer, verified = token if isinstance(token, tuple) else (token, None)
    headers = {"content-type": "application/json"} | ({"authorization": f"Bearer {bearer}"} if bearer else {})
    if verified:
        headers[ID_TOKEN_HEADER] = verified
    if RECEIVERS[receiver][0] == "gcr":
        # A Pub/Sub push of an Artifact Registry event: the body Flux's gcr receiver decodes.
        body = signers.pubsub_push({"action": "INSERT", "digest": "europe-docker.pkg.dev/p/r/app@sha256:00",
                                    "tag": "europe-docker.pkg.dev/p/r/app:1.0.0"})
    else:
        body = json.dumps({"event": "published", "receiver": receiver}).encode()
    return example.send(Delivery(signers.flux_path("", receiver, NS), headers, body))


def tampered(token: str) -> str:
    """`token` with its payload changed after signing."""
    header, _, signature = token.split(".")
    return ".".join([header, b64url(json.dumps(claims("ci", sub="someone-else")).encode()), signature])


@dataclass
class Case:
    name: str
    receiver: str
    token: Callable[[dict[str, Issuer]], str | tuple[str, str] | None]
    status: int
    reason: str  # in the reply: the hookgate filter's reason, or Envoy's JWT filter's message


FORGED = [
    Case("expired", "ci", lambda i: i["ci"].token(claims("ci", iat=int(time.time()) - 7200,
                                                            nbf=int(time.time()) - 7200,
                                                            exp=int(time.time()) - 3600)),
         401, "Jwt is expired"),
    Case("wrong audience", "ci", lambda i: i["ci"].token(claims("ci", aud="someone-else")),
         403, "Audiences in Jwt are not allowed"),
    Case("wrong issuer", "ci", lambda i: i["ci"].token(claims("ci", iss="https://evil.example.test")),
         401, "Jwt issuer is not configured"),
    Case("tampered signature", "ci", lambda i: tampered(i["ci"].token(claims("ci"))),
         401, "Jwt verification fails"),
    Case("signed by a key the issuer does not publish", "ci", lambda i: i["stranger"].token(claims("ci")),
         401, "Jwt verification fails"),
    Case("no token", "ci", lambda i: None, 401, "Jwt is missing"),
    Case("a validation false: another repository's token", "ci",
         lambda i: i["ci"].token(claims("ci", repository="attacker/app")), 403, "token claims not accepted"),
    Case("gcr: wrong email", "registry",
         lambda i: i["google"].token(claims("registry", email="attacker@gmail.com")),
         403, "token claims not accepted"),
    Case("gcr: unverified email", "registry",
         lambda i: i["google"].token(claims("registry", email_verified=False)),
         403, "token claims not accepted"),
    Case("gcr: no email_verified", "registry",
         lambda i: i["google"].token(claims("registry", email_verified=None)),
         403, "token claims not accepted"),
    Case("gcr: wrong audience", "registry",
         lambda i: i["google"].token(claims("registry", aud="https://other.example.com/")),
         403, "token claims not accepted"),
    Case("gcr: a valid token of the other issuer", "registry", valid_ci, 401, "token not verified"),
    Case("an email without email_verified", "mail",
         lambda i: i["ci"].token(claims("mail", email_verified=None)), 403, "token claims not accepted"),
    Case("an email not verified", "mail",
         lambda i: i["ci"].token(claims("mail", email_verified=False)), 403, "token claims not accepted"),
    # The verified token's `groups` is an object (which the validation refuses: it has no item 0); the
    # bearer token's is a list of the same pairs (`{"staff": ""}` and `["staff"]`), which it accepts.
    Case("a list claim where the verified one is an object", "groups",
         lambda i: unsigned_bearer(i, claims("groups", groups={"staff": ""}), groups=["staff"]),
         401, "token not verified"),
    Case("a claim changed in an unsigned bearer token", "groups",
         lambda i: unsigned_bearer(i, claims("groups"), repository="attacker/app"), 401, "token not verified"),
    Case("gcr: expired", "registry",
         lambda i: i["google"].token(claims("registry", exp=int(time.time()) - 3600)), 401, "Jwt is expired"),
]


def target_annotation(example, receiver: str) -> str | None:
    (target,) = example.targets[f"{NS}/{receiver}"]
    obj = example.cp.get(target.api_version, target.kind, target.namespace, target.name)
    return obj["metadata"].get("annotations", {}).get(target.annotation)


def test_envoy_gateway_accepts_the_security_policy_and_the_route(deployed):
    keys = policy_keys(deployed) + [("SecurityPolicy", f"{NS}/hookgate-id-tokens")]
    for kind, name in keys:
        conditions = deployed.gateway.conditions(kind, name)
        assert conditions["Accepted"]["status"] == "True", (kind, name, conditions)


@pytest.mark.parametrize("receiver", RECEIVERS)
def test_a_valid_id_token_at_flux_path_reconciles_the_target(deployed, issuers, receiver):
    token = valid(issuers, receiver)
    before = target_annotation(deployed, receiver)
    status, reply = send(deployed, receiver, token)
    assert status == 200, f"{status} {reply}\n{deployed.controller.log()[-2000:]}"
    assert json.loads(reply)["annotated"] == 1, reply
    assert target_annotation(deployed, receiver) != before


@pytest.mark.parametrize("case", FORGED, ids=[c.name for c in FORGED])
def test_a_forged_or_refused_token_reaches_nothing(deployed, issuers, case):
    before = {name: target_annotation(deployed, name) for name in RECEIVERS}
    requests_before = deployed.controller.requests_answered()
    status, reply = send(deployed, case.receiver, case.token(issuers))
    assert (status, case.reason in reply) == (case.status, True), reply
    assert {name: target_annotation(deployed, name) for name in RECEIVERS} == before
    assert deployed.controller.requests_answered() == requests_before


def test_other_receivers_need_no_token(deployed):
    """The JWT requirement is on the ID-token route only: the GitHub receiver's signed push still works."""
    (github,) = [r for r in deployed.receivers if r["type"] == "github"]
    status, reply = deployed.send(deployed.delivery(github))
    assert status == 200, reply



def test_a_bodyless_post_with_a_valid_id_token_reconciles_as_in_fluxs_example(deployed, issuers):
    """Issue 22, item 1: Flux's generic-oidc example is `curl -X POST -H "Authorization: Bearer $TOKEN"`,
    no body. Envoy's JWT filter verifies the token; Envoy gives the hookgate filter no body to replace, so it
    sends the attested request to the controller's cluster (as Envoy Gateway names it) itself and answers
    with the controller's reply."""
    before = target_annotation(deployed, "ci")
    headers = {"authorization": f"Bearer {valid_ci(issuers)}"}
    status, reply = deployed.send(Delivery(signers.flux_path("", "ci", NS), headers, b""))
    assert status == 200, f"{status} {reply}\n{deployed.controller.log()[-2000:]}"
    assert json.loads(reply)["annotated"] == 1, reply
    assert target_annotation(deployed, "ci") != before
