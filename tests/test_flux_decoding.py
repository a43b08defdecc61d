"""Registry and CDEvents payloads decoded as Flux v1.9.3 decodes them (issue 22, items 3 and 7), through the
real Envoy with the compiled filter, served by the controller, which patches the targets on the real
kube-apiserver.

- gcr: Flux unwraps the Pub/Sub push (the base64 `message.data`) and gives CEL filters the registry's event
  `{action, digest, tag}` as `req`, so its documented Artifact Registry filter runs on a gcr receiver; a push
  Flux cannot decode is refused. The ID token is verified by Envoy's JWT filter, added here to the bootstrap
  as Envoy Gateway's SecurityPolicy adds it, with the key of an issuer this test holds.
- dockerhub, quay, acr: Flux only decodes the body into its struct; a missing field is fine, a wrongly typed
  one is not.
- cdevents: the body is the CDEvent (CloudEvents binary mode); `Ce-Type` is read only for `events`; a
  structured-mode CloudEvent is not a CDEvent to Flux's SDK, and is refused."""

from __future__ import annotations

import base64
import json
import time

import pytest

import signers
from gitops import FLUX, annotations
from oidc_issuer import Issuer
from served import ServedEdge, receiver, secret
from test_cel import FLUX_LABEL_FILTER, FLUX_TAG_FILTER, GAR_TAG, IMAGE_REPOSITORIES, image_repository
from test_edge_filter import send

NS = "apps"
ISSUER = "https://accounts.google.com"
AUDIENCE = "https://hooks.test/hook/gar"
EMAIL = "gar-push@my-project.iam.gserviceaccount.com"
ID_TOKEN = {"jwtProvider": "google", "audience": AUDIENCE, "email": EMAIL}
SECRET = "flux-decoding-secret-0123456789"
IMAGES = "image.toolkit.fluxcd.io/v1"
HELLO = [{"apiVersion": IMAGES, "kind": "ImageRepository", "name": "hello-world"}]

RECEIVERS = [
    # Flux's documented Artifact Registry filters, on the type Artifact Registry delivers with.
    receiver("gar-pubsub", NS, {
        "type": "gcr", "idToken": ID_TOKEN, "resourceFilter": FLUX_TAG_FILTER,
        "targets": [{"apiVersion": IMAGES, "kind": "ImageRepository", "name": "*",
                     "matchLabels": {"registry": "gar"}, "filter": FLUX_LABEL_FILTER}]}),
    # The receiver's own filter, at the edge, on the same `req`.
    receiver("gar-edge", NS, {"type": "gcr", "idToken": ID_TOKEN,
                              "filter": "req.action == 'INSERT' && req.tag.endsWith(':1.1')", "targets": HELLO}),
    *(receiver(name, NS, {"type": name, "secretRef": {"name": "flux-decoding"}, "targets": HELLO})
      for name in ("dockerhub", "quay", "acr", "cdevents")),
    receiver("cdevents-typed", NS, {"type": "cdevents", "secretRef": {"name": "flux-decoding"}, "targets": HELLO,
                                    "events": ["dev.cdevents.artifact.published.0.2.0"]}),
]
ID_TOKEN_RECEIVERS = ("gar-pubsub", "gar-edge")


def path_of(name: str) -> str:
    return signers.flux_path("" if name in ID_TOKEN_RECEIVERS else SECRET, name, NS)


def with_jwt_filter(issuer: Issuer):
    """Adds Envoy's JWT filter before the Wasm filter, requiring a Google-issued token on the gcr receivers'
    paths and writing its claims to the metadata the hookgate filter reads, as Envoy Gateway configures it."""
    def adjust(bootstrap: dict) -> dict:
        manager = bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
        filters = manager["http_filters"]
        wasm = next(i for i, f in enumerate(filters) if f["name"].startswith("envoy.filters.http.wasm"))
        filters.insert(wasm, {"name": "envoy.filters.http.jwt_authn", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
            "providers": {"google": {"issuer": ISSUER, "local_jwks": {"inline_string": issuer.jwks()},
                                     "forward": True, "payload_in_metadata": "google"}},
            "rules": [{"match": {"path": path_of(name)}, "requires": {"provider_name": "google"}}
                      for name in ID_TOKEN_RECEIVERS]}})
        return bootstrap
    return adjust


@pytest.fixture(scope="module")
def issuer() -> Issuer:
    return Issuer("google-1")


@pytest.fixture(scope="module")
def edge(cp, issuer, tmp_path_factory):
    for name, (labels, notes, _) in IMAGE_REPOSITORIES.items():
        cp.apply(image_repository(name, labels, notes))
    objects = [*RECEIVERS, secret("flux-decoding", NS, {"token": SECRET})]
    with ServedEdge(cp, tmp_path_factory.mktemp("flux-decoding"), objects, adjust=with_jwt_filter(issuer)) as served:
        yield served
        assert "panicked" not in served.envoy.log()


def pubsub_push(data: str) -> bytes:
    """A Pub/Sub push whose `message.data` is `data` as given (not necessarily base64)."""
    envelope = json.loads(signers.pubsub_push({}))
    envelope["message"]["data"] = data
    return json.dumps(envelope).encode()


gar_push = signers.pubsub_push


def deliver_gcr(edge: ServedEdge, issuer: Issuer, name: str, body: bytes) -> tuple[int, dict]:
    now = int(time.time())
    token = issuer.token({"iss": ISSUER, "aud": AUDIENCE, "email": EMAIL, "email_verified": True,
                          "sub": "1234567890", "iat": now, "exp": now + 600})
    headers = {"content-type": "application/json", "authorization": f"Bearer {token}"}
    status, reply = send(edge.port, path_of(name), headers, body)
    return status, json.loads(reply)


def requested_at(cp, name: str) -> str | None:
    return annotations(cp, IMAGES, "ImageRepository", NS, name).get(FLUX)


OTHER_TAG = GAR_TAG | {"tag": "us-east1-docker.pkg.dev/my-project/my-repo/other-app:1.1"}


# (case, event, counts of the wildcard target, the ImageRepositories annotated)
GAR_CASES = [
    ("a push of hello-world annotates the production hello-world only", GAR_TAG,
     {"annotated": 1, "filtered": 2}, {"hello-world"}),
    ("a push of an image no repository is named after annotates none", OTHER_TAG | {"tag": "x/unknown:1.0"},
     {"filtered": 3}, set()),
]


@pytest.mark.parametrize("case,event,counts,annotated", GAR_CASES, ids=[c[0] for c in GAR_CASES])
def test_flux_documented_gar_filter_on_a_gcr_receiver(cp, edge, issuer, case, event, counts, annotated):
    """Flux's `req.tag.contains(res.metadata.name)` and its label filter, evaluated by the controller on the
    event the filter unwrapped from the Pub/Sub push (before the fix: 500, `filter_error` for every object,
    as `req` was the envelope)."""
    mine = [n for n, (labels, _, _) in IMAGE_REPOSITORIES.items() if labels["registry"] == "gar"]
    before = {n: requested_at(cp, n) for n in mine}
    status, reply = deliver_gcr(edge, issuer, "gar-pubsub", gar_push(event))
    assert status == 200 and reply["targets"][0]["counts"] == counts and reply["failed"] == 0, reply
    assert {n for n in mine if requested_at(cp, n) != before[n]} == annotated


# (case, body, status, reply)
EDGE_CASES = [
    ("the tag the filter wants: forwarded", gar_push(GAR_TAG), 200, None),
    ("another tag: ignored by the filter", gar_push(GAR_TAG | {"tag": GAR_TAG["tag"] + "-rc"}), 202,
     {"status": "ignored", "reason": "filter"}),
    ("another action: ignored by the filter", gar_push(GAR_TAG | {"action": "DELETE"}), 202,
     {"status": "ignored", "reason": "filter"}),
    ("data Flux cannot decode: refused", pubsub_push(base64.b64encode(b"INSERT").decode()), 400,
     {"error": "malformed payload"}),
    ("not a Pub/Sub push: refused", json.dumps(GAR_TAG).encode(), 400, {"error": "malformed payload"}),
]


@pytest.mark.parametrize("case,body,status,expected", EDGE_CASES, ids=[c[0] for c in EDGE_CASES])
def test_a_gcr_receiver_filter_reads_the_registry_event(cp, edge, issuer, case, body, status, expected):
    before = requested_at(cp, "hello-world")
    got_status, reply = deliver_gcr(edge, issuer, "gar-edge", body)
    assert got_status == status, reply
    if expected is None:
        assert reply["annotated"] == 1, reply
        assert requested_at(cp, "hello-world") != before
    else:
        assert reply == expected
        assert requested_at(cp, "hello-world") == before


CDEVENT = {"context": {"version": "0.4.1", "id": "271069a8", "source": "/ci/pipelines",
                       "type": "dev.cdevents.artifact.published.0.2.0", "timestamp": "2024-03-01T10:00:00Z"},
           "subject": {"id": "pkg:oci/app@sha256:0b5c2e1d?repository_url=europe-docker.pkg.dev/p/r/app", "source": "/ci/pipelines", "type": "artifact", "content": {}}}
STRUCTURED = {"specversion": "1.0", "id": "1", "source": "/ci/pipelines", "type": "dev.cdevents.artifact.published.0.2.0",
              "datacontenttype": "application/json", "data": CDEVENT}
BINARY = {"ce-specversion": "1.0", "ce-id": "1", "ce-source": "/ci/pipelines"}
JSON = {"content-type": "application/json"}

# (case, receiver, headers, body, status, error or None for 200)
SECRET_PATH_CASES = [
    ("dockerhub: a push without repository", "dockerhub", JSON, {"push_data": {"tag": "1.1"}}, 200, None),
    ("dockerhub: a numeric tag", "dockerhub", JSON, {"push_data": {"tag": 1.1}}, 400, "malformed payload"),
    ("quay: a push without docker_url", "quay", JSON, {"updated_tags": ["1.1"]}, 200, None),
    ("quay: updated_tags a string", "quay", JSON, {"updated_tags": "1.1"}, 400, "malformed payload"),
    ("acr: a push without target", "acr", JSON, {"action": "push"}, 200, None),
    ("acr: target a list", "acr", JSON, {"target": []}, 400, "malformed payload"),
    ("cdevents: binary mode", "cdevents", JSON | BINARY | {"ce-type": CDEVENT["context"]["type"]}, CDEVENT, 200, None),
    ("cdevents: binary mode without Ce-Type", "cdevents", JSON | BINARY, CDEVENT, 200, None),
    ("cdevents: structured mode is not a CDEvent to Flux", "cdevents",
     {"content-type": "application/cloudevents+json"}, STRUCTURED, 400, "malformed payload"),
    ("cdevents with events: no Ce-Type to match", "cdevents-typed", JSON | BINARY, CDEVENT, 400,
     "missing event header"),
]


@pytest.mark.parametrize("case,name,headers,body,status,error", SECRET_PATH_CASES, ids=[c[0] for c in SECRET_PATH_CASES])
def test_secret_path_types_decode_as_flux(cp, edge, case, name, headers, body, status, error):
    before = requested_at(cp, "hello-world")
    got_status, reply = send(edge.port, path_of(name), headers, json.dumps(body).encode())
    assert got_status == status, reply
    if error is None:
        assert json.loads(reply)["annotated"] == 1, reply
        assert requested_at(cp, "hello-world") != before
    else:
        assert json.loads(reply) == {"error": error}
        assert requested_at(cp, "hello-world") == before
