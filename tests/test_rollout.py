"""No delivery lost to a rollout: the controller's two replicas are restarted one after the other while a
sender posts a delivery every 50 ms, through the real Envoy Gateway (standalone, tests/gateway.py)
translating homelab-github's route and its BackendTrafficPolicy, in front of two controller processes run
from the example's Deployment against the real kube-apiserver. Every delivery is answered 200: signed
pushes, which Envoy forwards on the route (and retries), and, to a second receiver, bearer deliveries
without a body, which the filter forwards by a call of its own (and sends again).

Standalone, the Backend's endpoints are static: a stopped replica stays in Envoy's load balancing (on a
cluster, readiness and the preStop sleep take it out of the EndpointSlice first). That is the harder case:
every request Envoy sends to the stopped replica fails to connect, or finds the kept-alive connection the
replica closed as it drained, and only a retry on another replica saves it (the route's, or for a call the
filter's own)."""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass

import pytest
import yaml

import signers
from deploy import (MANIFESTS, PUSH, Delivery, Example, controller_deployment, controller_from_deployment, deploy,
                    wait_translated)
from gateway import EnvoyGateway, ModuleServer, http_code, wait
from harness import WASM, Controller, free_port

EXAMPLE = MANIFESTS / "examples/homelab-github"
# Beside the example's GitHub receiver: one whose sender (Argo CD's GET, Flux's curl) may send no body.
BODYLESS_RECEIVER = {"apiVersion": "hookgate.io/v1alpha1", "kind": "Receiver",
                     "metadata": {"name": "rollout-bodyless", "namespace": "flux-system"},
                     "spec": {"type": "bearer", "secretRef": {"name": "hookgate-github-token", "keys": ["token"]},
                              "targets": [{"kind": "GitRepository", "name": "flux-system"}]}}
INTERVAL = 0.05  # between two deliveries
DOWN = 2.0  # a replica's time between its exit and its start (a new pod takes longer)
SETTLE = 2.0  # before, between and after the restarts
# One rate-limit bucket (120 a minute) per client address: the sender moves through these.
SOURCES = [f"127.0.6.{i}" for i in range(1, 251)]


@dataclass
class Sent:
    bodyless: bool
    started: float
    status: int  # 0: no HTTP answer at all
    body: str


class Sender:
    """Posts a delivery every INTERVAL seconds from a thread, one at a time, until stop(): in turn a fresh
    signed push (its own body and delivery id) and a bearer delivery without a body."""

    def __init__(self, example: Example) -> None:
        self.example = example
        self.receiver = next(r for r in example.receivers if r["type"] == "github")
        self.path = example.delivery(self.receiver).path
        bearer = next(r for r in example.receivers if r["type"] == "bearer")
        self.bodyless = Delivery(example.delivery(bearer).path,
                                 {"Authorization": f"Bearer {example.secret(bearer)}"}, b"")
        self.sent: list[Sent] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def delivery(self, index: int) -> Delivery:
        if index % 2:
            return self.bodyless
        body = json.dumps({**PUSH, "after": f"{index:040x}"}).encode()
        headers = signers.github(self.example.secret(self.receiver), body, "push", str(uuid.uuid4()))
        return Delivery(self.path, headers, body)

    def _run(self) -> None:
        index = 0
        while not self._stop.wait(INTERVAL):
            started = time.monotonic()
            try:
                status, body = self.example.send(self.delivery(index), SOURCES[index % len(SOURCES)])
            except OSError as error:
                status, body = 0, repr(error)
            self.sent.append(Sent(index % 2 == 1, started, status, body))
            index += 1

    def stop(self) -> list[Sent]:
        self._stop.set()
        self._thread.join(60)
        return self.sent


@pytest.fixture(scope="module")
def replicas(cp, tmp_path_factory):
    """homelab-github deployed with two controller replicas: the Backend standing for the controller's
    Service has both as endpoints."""
    modules = ModuleServer(WASM.parent)
    gateway = EnvoyGateway({})
    workdir = tmp_path_factory.mktemp("rollout")
    port = free_port()
    example, second = None, None
    with_bodyless = workdir / "homelab-github-and-bodyless"
    with_bodyless.mkdir()
    (with_bodyless / "receiver.yaml").write_text(yaml.safe_dump(BODYLESS_RECEIVER))
    (with_bodyless / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        "resources": [os.path.relpath(EXAMPLE, with_bodyless), "receiver.yaml"]}))
    try:
        example = deploy(with_bodyless, cp, gateway, workdir=workdir, gateway_port=port, source=SOURCES[0],
                         wasm_code=http_code(modules.url(WASM.name), WASM))
        # The second replica: the same Deployment, ServiceAccount token and flags; a pod name of its own.
        second = controller_from_deployment(
            controller_deployment(example.docs), example.secret_values, workdir,
            {"KUBECONFIG": str(workdir / "kubeconfig"), "HOSTNAME": "hookgate-controller-b"},
            ["--proxy-listener-port", str(port), "--webhook-host", example.host])
        controllers = [example.controller, second]
        (backend,) = [d for d in example.gateway_docs if d["kind"] == "Backend"]
        backend["spec"]["endpoints"] = [{"ip": {"address": "127.0.0.1", "port": c.port}} for c in controllers]
        gateway.apply(example.gateway_docs)
        wait(lambda: f'"port_value": {second.port}' in json.dumps(gateway.config_dump()), 60,
             "Envoy routing to the second replica", gateway.log)
        wait_translated(example, probe_source="127.0.7.1")
        yield example, controllers
    finally:
        if second:
            second.stop()
        if example:
            example.stop()
        gateway.cleanup()
        modules.close()


def webhook_route(example: Example) -> dict:
    """The Envoy route of the example's webhook HTTPRoute, from its Envoy's configuration."""
    (route_doc,) = [d for d in example.gateway_docs if d["kind"] == "HTTPRoute"]
    cluster = f"httproute/{route_doc['metadata']['namespace']}/{route_doc['metadata']['name']}/rule/0"
    return next(r for c in example.gateway.config_dump()["configs"] for rc in c.get("dynamic_route_configs", [])
                for vh in rc["route_config"]["virtual_hosts"] for r in vh["routes"]
                if r.get("route", {}).get("cluster") == cluster)


def test_a_request_no_replica_took_is_retried_on_another_replica(replicas):
    """What the BackendTrafficPolicy's retry becomes in Envoy: connection failures and resets only (an
    answer the controller gave is not repeated), and Envoy Gateway's previous-hosts predicate, without
    which a retry could go to the replica that just failed, over a round-robin cluster, whose next pick
    after a refused one is another replica."""
    example, _ = replicas
    route = webhook_route(example)["route"]
    (cluster,) = [c["cluster"] for c in example.gateway.config_dump()["configs"]
                  for c in c.get("dynamic_active_clusters", []) if c["cluster"]["name"] == route["cluster"]]
    policies = [p["typed_extension_config"]["name"] for p in cluster.get("load_balancing_policy", {}).get("policies", [])]
    assert policies == ["envoy.load_balancing_policies.round_robin"], policies
    policy = route.get("retry_policy")
    assert policy, "no retry policy on the webhook route"
    assert set(policy["retry_on"].split(",")) == {"connect-failure", "reset"}, policy
    assert policy["num_retries"] == 2, policy
    assert [p["name"] for p in policy.get("retry_host_predicate", [])] == [
        "envoy.retry_host_predicates.previous_hosts"], policy


def restart_one_after_the_other(controllers: list[Controller]) -> list[tuple[float, float]]:
    """Each replica stopped (SIGTERM: it drains), started again on its port after DOWN seconds, and ready
    before the next; returns when each was out, from its SIGTERM to its readiness."""
    windows = []
    for controller in controllers:
        began = time.monotonic()
        controller.restart(down=DOWN)
        wait(lambda: controller.get("/readyz")[0] == 200, 30, "the restarted replica ready", controller.log)
        windows.append((began, time.monotonic()))
        time.sleep(SETTLE)
    return windows


def test_no_delivery_is_lost_while_the_replicas_restart_one_after_the_other(replicas):
    example, controllers = replicas
    sender = Sender(example)
    try:
        time.sleep(SETTLE)
        # Both replicas take deliveries: Envoy balances over the two endpoints.
        assert all(c.requests_answered() > 0 for c in controllers), [c.requests_answered() for c in controllers]
        windows = restart_one_after_the_other(controllers)
    finally:
        sent = sender.stop()
    during = [s for s in sent if any(began <= s.started <= ended for began, ended in windows)]
    lost = [s for s in sent if s.status != 200]
    for bodyless, kind in ((False, "with a body"), (True, "without a body")):
        of_kind = [s for s in sent if s.bodyless == bodyless]
        print(f"\nrollout, deliveries {kind}: {len(of_kind)}, {sum(s in during for s in of_kind)} while a replica "
              f"was out; answers {dict(Counter(s.status for s in of_kind))}; not 200: "
              f"{sum(s.status != 200 for s in of_kind)}")
    # The restarts happened under load: deliveries were sent while each replica was out.
    assert all(sum(b <= s.started <= e for s in sent) >= 10 for b, e in windows), (windows, len(sent))
    assert not lost, [(s.bodyless, s.status, s.body[:200]) for s in lost[:10]]
    # Each 200 is the controller's: the delivery annotated its receiver's targets and none failed.
    replies = [json.loads(s.body) for s in sent]
    assert all(r["annotated"] >= 1 and r["failed"] == 0 for r in replies), replies[:3]
    # And the restarted replicas serve again.
    assert all(c.requests_answered() > 0 for c in controllers)
