"""Behind a load balancer (manifests/components/behind-load-balancer): every request reaches Envoy from the
balancer's address, with the sender's in X-Forwarded-For. With the component, the rate limit keeps a bucket
per sender (per /64 for IPv6 senders); without it, every sender behind the balancer shares the balancer's one
bucket. Through the real standalone Envoy Gateway, on the homelab example."""

from __future__ import annotations

import contextlib
import dataclasses
import os
from pathlib import Path

import pytest
import yaml

from deploy import MANIFESTS, Example, deploy, wait_translated
from gateway import EnvoyGateway, ModuleServer, http_code, wait
from harness import WASM, free_port

COMPONENT = MANIFESTS / "components/behind-load-balancer"

# Whether the example has the component -> the balancer's address, and what a second sender behind the balancer gets once a first sender's flood has
# used up its bucket: its own budget (401, the filter's refusal of a forged delivery) or the balancer's empty
# bucket (429).
CASES = {
    "with the component, a bucket per sender": (True, "127.0.8.1", 401),
    "without it, one bucket for the balancer": (False, "127.0.9.1", 429),
}


def behind_balancer(workdir: Path, component: bool) -> Path:
    root = workdir / ("with-component" if component else "without-component")
    root.mkdir()
    document = {"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
                "resources": [os.path.relpath(MANIFESTS / "examples/homelab-github", root)]}
    if component:
        document["components"] = [os.path.relpath(COMPONENT, root)]
    (root / "kustomization.yaml").write_text(yaml.safe_dump(document))
    return root


@pytest.fixture
def gateway():
    """A fresh Envoy Gateway and Envoy per case: Envoy keeps rate limit buckets across configuration updates."""
    gateway, modules = EnvoyGateway({}), ModuleServer(WASM.parent)
    try:
        yield gateway, http_code(modules.url(WASM.name), WASM)
    finally:
        gateway.cleanup()
        modules.close()


def from_sender(example: Example, sender: str):
    receiver = example.receivers[0]
    delivery = example.delivery(receiver, forged=True)
    return dataclasses.replace(delivery, headers={**delivery.headers, "X-Forwarded-For": sender})


@contextlib.contextmanager
def deployed_behind_balancer(component: bool, balancer: str, cp, gateway, tmp_path):
    """The homelab example (with or without the component) behind a balancer at `balancer`, every worker's
    filter configured."""
    envoy_gateway, wasm_code = gateway
    example = deploy(behind_balancer(tmp_path, component), cp, envoy_gateway, workdir=tmp_path,
                     gateway_port=free_port(), wasm_code=wasm_code, source=balancer)
    try:
        probe = balancer.replace(".1", ".2")
        wait_translated(example, probe_source=probe)
        # Every worker's filter configured: the first request a worker's VM sees can come before its
        # configuration (503).
        wait(lambda: all(example.send(example.unsigned(example.receivers[0]), probe)[0] == 401 for _ in range(20)),
             30, "every worker's filter configured")
        yield example
    finally:
        example.stop()


def after_a_flood(example: Example, flooder: str, second: str) -> list[int]:
    """The answers to 5 forged deliveries from sender `second` once a flood from sender `flooder` has used up
    its bucket."""
    flood = [example.send(from_sender(example, flooder))[0] for _ in range(200)]
    assert flood[:100] == [401] * 100 and flood[-1] == 429, flood
    return [example.send(from_sender(example, second))[0] for _ in range(5)]


@pytest.mark.parametrize("case", CASES)
def test_senders_behind_a_balancer_get_their_own_buckets_with_the_component(case, cp, gateway, tmp_path):
    component, balancer, second_sender_gets = CASES[case]
    with deployed_behind_balancer(component, balancer, cp, gateway, tmp_path) as example:
        second = after_a_flood(example, "203.0.113.7", "203.0.113.8")
        assert second == [second_sender_gets] * 5, (case, second)


IPV6_FLOODER = "2001:db8:1:2::7"
# A second IPv6 sender's address, once IPV6_FLOODER has used up its bucket -> what it gets: the flooder's
# empty bucket (429) from anywhere in the flooder's /64, or a budget of its own (401, the filter's refusal of
# a forged delivery) from the next /64.
IPV6_SENDERS = {
    "another address of the flooder's /64 shares its bucket": ("2001:db8:1:2:ffff:ffff:ffff:fffe", 429),
    "an address of the next /64 has a bucket of its own": ("2001:db8:1:3::7", 401),
}


@pytest.mark.parametrize("case", IPV6_SENDERS)
def test_ipv6_senders_get_a_bucket_per_64(case, cp, gateway, tmp_path):
    second_sender, second_sender_gets = IPV6_SENDERS[case]
    with deployed_behind_balancer(True, "127.0.20.1", cp, gateway, tmp_path) as example:
        second = after_a_flood(example, IPV6_FLOODER, second_sender)
        assert second == [second_sender_gets] * 5, (case, second)
