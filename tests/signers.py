"""How each provider signs a delivery, written from the providers' documentation independently of the
filter's Rust code, so the tests check the filter against the providers, not against itself."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time


def hex_hmac(algorithm: str, secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, getattr(hashlib, algorithm)).hexdigest()


def flux_path(token: str, name: str, namespace: str) -> str:
    return "/hook/" + hashlib.sha256((token + name + namespace).encode()).hexdigest()


def github(secret: str, body: bytes, event: str = "push", delivery: str = "72d3162e-cc78-11e3-81ab-4c9367dc0958") -> dict:
    return {
        "Content-Type": "application/json",
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery,
        "X-Hub-Signature-256": "sha256=" + hex_hmac("sha256", secret, body),
        "X-Hub-Signature": "sha1=" + hex_hmac("sha1", secret, body),
        "User-Agent": "GitHub-Hookshot/abc123",
    }


def gitea(secret: str, body: bytes, event: str = "push") -> dict:
    return {
        "Content-Type": "application/json",
        "X-Gitea-Event": event,
        "X-Gitea-Delivery": "gitea-delivery-1",
        "X-Gitea-Signature": hex_hmac("sha256", secret, body),
    }


def gitlab(secret: str, body: bytes, event: str = "Push Hook") -> dict:
    return {"Content-Type": "application/json", "X-Gitlab-Event": event, "X-Gitlab-Token": secret,
            "X-Gitlab-Event-UUID": "gitlab-uuid-1"}


def gitlab_signed(signing_token: str, body: bytes, event: str = "Push Hook", token: str | None = None,
                  timestamp: int | None = None) -> dict:
    """A GitLab hook with a signing token (`whsec_...`): Standard Webhooks headers whose `webhook-id` is the
    delivery's `Idempotency-Key`, besides GitLab's own; `X-Gitlab-Token` too when the hook also has a token."""
    idempotency_key = "gitlab-idempotency-1"
    headers = {**standard_webhooks(signing_token, body, msg_id=idempotency_key, timestamp=timestamp),
               "X-Gitlab-Event": event, "X-Gitlab-Event-UUID": "gitlab-uuid-1", "Idempotency-Key": idempotency_key}
    if token is not None:
        headers["X-Gitlab-Token"] = token
    return headers


def bitbucket(secret: str, body: bytes, event: str = "repo:push") -> dict:
    return {"Content-Type": "application/json", "X-Event-Key": event, "X-Request-UUID": "bb-uuid-1",
            "X-Hub-Signature": "sha256=" + hex_hmac("sha256", secret, body)}


def generic(secret: str, body: bytes) -> dict:
    return {"Content-Type": "application/json"}


def generic_hmac(secret: str, body: bytes) -> dict:
    return {"Content-Type": "application/json", "X-Signature": "sha256=" + hex_hmac("sha256", secret, body)}


def standard_webhooks(secret: str, body: bytes, msg_id: str = "msg_2Lq0", timestamp: int | None = None,
                      prefix: str = "webhook") -> dict:
    ts = str(int(time.time()) if timestamp is None else timestamp)
    key = base64.b64decode(secret.removeprefix("whsec_"))
    mac = hmac.new(key, f"{msg_id}.{ts}.".encode() + body, hashlib.sha256).digest()
    return {"Content-Type": "application/json", f"{prefix}-id": msg_id, f"{prefix}-timestamp": ts,
            f"{prefix}-signature": "v1," + base64.b64encode(mac).decode()}


def harbor(secret: str, body: bytes) -> dict:
    return {"Content-Type": "application/json", "Authorization": secret}


def nexus(secret: str, body: bytes) -> dict:
    return {"Content-Type": "application/json", "X-Nexus-Webhook-Id": "rm:repository:component",
            "X-Nexus-Webhook-Signature": hex_hmac("sha1", secret, body)}


def cdevents(secret: str, body: bytes) -> dict:
    return {"Content-Type": "application/json", "Ce-Type": "dev.cdevents.artifact.published.0.1.1",
            "Ce-Id": "ce-1", "Ce-Specversion": "1.0", "Ce-Source": "/ci"}


def bearer(secret: str, body: bytes) -> dict:
    return {"Content-Type": "application/json", "Authorization": f"Bearer {secret}"}


def basic(secret: str, body: bytes) -> dict:
    """Argo CD's `basicAuth`: the secret is `user:password`."""
    return {"Content-Type": "application/json", "Authorization": "Basic " + base64.b64encode(secret.encode()).decode()}


def azure_devops(secret: str, body: bytes) -> dict:
    """An Azure DevOps service hook ("Web Hooks" consumer) with basic authentication, `user:password`. The
    event is in the body (`eventType`); no provider header names it."""
    return {**basic(secret, body), "Content-Type": "application/json; charset=utf-8"}


def attestation(key: str, timestamp: str, body: bytes) -> str:
    return "v1=" + hmac.new(key.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def pubsub_push(event: dict) -> bytes:
    """A Pub/Sub push subscription's request body carrying a registry `event` (Artifact Registry's
    `{action, digest, tag}`) in its base64 `message.data`, as Google sends it; the gcr type's body."""
    data = base64.b64encode(json.dumps(event).encode()).decode()
    message = {"attributes": {}, "data": data, "messageId": "2070443601311540", "message_id": "2070443601311540",
               "publishTime": "2021-02-26T19:13:55.749Z", "publish_time": "2021-02-26T19:13:55.749Z"}
    return json.dumps({"message": message, "subscription": "projects/my-project/subscriptions/gar"}).encode()
