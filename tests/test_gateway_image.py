"""The filter as users ship it: `make oci`'s image layout pushed to a real OCI registry (distribution, built
from its Go module) on loopback and loaded by the real Envoy Gateway with `code.type: Image`, then
verifying deliveries. Everywhere else the tests use the HTTP source with its sha256."""

from __future__ import annotations

import hashlib
import json

import pytest

from deploy import deploy, policy_keys, wait_translated
from gateway import EnvoyGateway
from harness import WASM, free_port
from registry import Registry, oci_layout

EXAMPLE = "homelab-github"
REPOSITORY, TAG = "hookgate/filter", "0.1.0"


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    """The module pushed as `make oci` writes it: the image reference and its manifest digest."""
    layout = tmp_path_factory.mktemp("oci") / "layout"
    oci_layout(layout, TAG)
    with Registry() as registry:
        digest = registry.push(layout, REPOSITORY, TAG)
        yield registry, f"{registry.host}/{REPOSITORY}:{TAG}", digest


def test_envoy_gateway_loads_the_filter_from_an_oci_image(cp, image, tmp_path):
    registry, reference, digest = image
    gateway = EnvoyGateway({})
    try:
        example = deploy(EXAMPLE, cp, gateway, workdir=tmp_path, gateway_port=free_port(),
                         wasm_code={"type": "Image", "image": {"url": reference, "sha256": digest.removeprefix("sha256:")}},
                         source="127.0.4.1")
        try:
            wait_translated(example)
            for kind, key in policy_keys(example):
                assert gateway.conditions(kind, key)["Accepted"]["status"] == "True", (kind, key)
            # Envoy runs exactly the module that was pushed (Envoy Gateway hands it over with its sha256).
            dump = json.dumps(gateway.config_dump())
            assert hashlib.sha256(WASM.read_bytes()).hexdigest() in dump
            assert f"GET /v2/{REPOSITORY}/manifests/{TAG}" in registry.log()
            receiver = example.receivers[0]
            status, body = example.send(example.delivery(receiver))
            assert status == 200 and json.loads(body)["failed"] == 0, body
            status, body = example.send(example.delivery(receiver, forged=True))
            assert status == 401, body
        finally:
            example.stop()
    finally:
        gateway.cleanup()
