"""Every example of manifests/, translated by the real Envoy Gateway (standalone, tests/gateway.py) into the
Envoy it programs, in front of the example's own controller Deployment run as a process against the real
kube-apiserver, which serves the filter the example's Receivers: each EnvoyPatchPolicy of Envoy Gateway's xDS
naming scheme is Programmed, a signed delivery for each receiver is verified, forwarded and sets the annotation
(or dispatches), a forged one gets 401 and reaches nothing, the rate limit runs before the filter with a bucket
per client address, and no secret is in any gateway object, in Envoy's configuration or in its environment."""

from __future__ import annotations

import json
import subprocess
import time

import pytest

import signers
from deploy import EXAMPLES, PING_EVENTS, Example, deploy, policy_keys, receiver_key, wait_translated
from gateway import EnvoyGateway, ModuleServer, http_code, wait
from gitops import FakeGitHub
from harness import CONTROLLER, LISTENER_NAME, WASM, envoy_bootstrap, free_port

@pytest.fixture(scope="module")
def world(cp):
    """One Envoy Gateway for every example, with an empty environment: no secret reaches it."""
    modules = ModuleServer(WASM.parent)
    github = FakeGitHub()
    gateway = EnvoyGateway({})
    try:
        yield {"gateway": gateway, "modules": modules, "github": github, "port": free_port()}
    finally:
        gateway.cleanup()
        modules.close()
        github.server.shutdown()


@pytest.fixture(scope="module", params=EXAMPLES)
def example(request, world, cp, tmp_path_factory) -> Example:
    # Each example sends from addresses of its own, so the per-address rate limit buckets of one example
    # (the Envoy keeps them across configuration updates) do not affect the next.
    index = EXAMPLES.index(request.param) + 1
    deployed = deploy(request.param, cp, world["gateway"], workdir=tmp_path_factory.mktemp(request.param),
                      gateway_port=world["port"], wasm_code=http_code(world["modules"].url(WASM.name), WASM),
                      source=f"127.0.1.{index}",
                      controller_args=["--github-api-url", f"http://127.0.0.1:{world['github'].port}"])
    try:
        wait_translated(deployed, probe_source=f"127.0.5.{index}")
        yield deployed
    finally:
        deployed.stop()


def refusals(example: Example) -> int:
    """Deliveries the filter refused, from the counter it keeps in Envoy (`outcome="rejected"`)."""
    return sum(int(float(line.rsplit(" ", 1)[1])) for line in example.gateway.stats().splitlines()
               if line.startswith("hookgate_deliveries_total{") and 'outcome="rejected"' in line)


# The patches (hold-headers, the rate limit's IPv6 /64 buckets) -> the policy for Envoy Gateway's names in this
# run, and the one for its XDSNameSchemeV2 names, which this run does not use: that one patches nothing here
# (test_translate.py runs Envoy Gateway's translator under both names).
PATCHES = {
    "hold-headers": ("envoy-gateway-system/hookgate-hold-headers",
                     "envoy-gateway-system/hookgate-hold-headers-xds-v2"),
    "IPv6 buckets": ("envoy-gateway-system/hookgate-rate-limit-ipv6",
                     "envoy-gateway-system/hookgate-rate-limit-ipv6-xds-v2"),
}
OTHER_NAME_SCHEME = {other for _, other in PATCHES.values()}


def test_every_policy_is_accepted_and_every_patch_programmed(example):
    """A JSONPath that matches nothing is Accepted but `Programmed: False`, and the filter is then never
    configured (every delivery gets 503):
    Envoy Gateway's own status says whether each patch applied."""
    keys = policy_keys(example)
    assert {("EnvoyPatchPolicy", name) for names in PATCHES.values() for name in names} <= set(keys), keys
    for kind, name in keys:
        conditions = example.gateway.conditions(kind, name)
        assert conditions["Accepted"]["status"] == "True", (kind, name, conditions)
        if kind == "EnvoyPatchPolicy":
            programmed = conditions.get("Programmed", {})
            expected = ("False", "ResourceNotFound") if name in OTHER_NAME_SCHEME else ("True", "Programmed")
            assert (programmed.get("status"), programmed.get("reason")) == expected, (kind, name, conditions)


@pytest.mark.parametrize("listener_name", [LISTENER_NAME, LISTENER_NAME.replace("/http", "/https")])
def test_envoy_runs_the_rate_limit_before_the_filter_and_holds_headers(example, listener_name):
    listener = next(l["active_state"]["listener"] for c in example.gateway.config_dump()["configs"]
                    for l in c.get("dynamic_listeners", []) if l["name"] == listener_name)
    chain = listener.get("default_filter_chain") or listener["filter_chains"][0]
    filters = chain["filters"][0]["typed_config"]["http_filters"]
    names = [f["name"] for f in filters]
    wasm = next(i for i, n in enumerate(names) if n.startswith("envoy.filters.http.wasm/"))
    assert names.index("envoy.filters.http.local_ratelimit") < wasm < names.index("envoy.filters.http.router"), names
    assert filters[wasm]["typed_config"]["config"]["allow_on_headers_stop_iteration"] is True


def test_signed_delivery_reaches_the_cluster_for_every_receiver(example, world):
    github = world["github"]
    for receiver in example.receivers:
        name = receiver_key(receiver)
        before, dispatches = example.annotations(receiver), len(github.requests)
        status, body = example.send(example.delivery(receiver))
        assert status == 200, f"{name}: {status} {body}\n{example.controller.log()[-2000:]}"
        reply = json.loads(body)
        if receiver.get("action") == "dispatch":
            assert reply["dispatch"] == "sent", reply
            assert len(github.requests) == dispatches + 1
            assert github.requests[-1]["path"] == f"/repos/{receiver['dispatch']['repository']}/dispatches"
            continue
        after = example.annotations(receiver)
        targets = example.targets[name]
        assert reply["annotated"] == sum(t.selected for t in targets) and reply["failed"] == 0, reply
        for target in targets:
            where = (target.kind, target.namespace, target.name)
            assert (after[where] != before[where]) is target.selected, (name, target, before, after)


def test_forged_delivery_is_refused_at_the_edge_and_reaches_nothing(example, world):
    github = world["github"]
    for receiver in example.receivers:
        before, requests, dispatches = example.annotations(receiver), example.controller.requests_answered(), len(github.requests)
        status, body = example.send(example.delivery(receiver, forged=True))
        assert status == 401, f"{receiver_key(receiver)}: {status} {body}"
        assert example.controller.requests_answered() == requests
        assert example.annotations(receiver) == before
        assert len(github.requests) == dispatches


def test_a_forged_flood_from_one_address_is_cut_before_the_filter_and_spares_other_addresses(example):
    """120 requests a minute per client address: a flood from one address is answered 429 by the rate limit
    in front of the filter (which never sees, so never hashes, what is over the limit), while other
    addresses keep their own budget and a genuine delivery still passes."""
    index = EXAMPLES.index(example.name) + 1
    receiver = next(r for r in example.receivers if r.get("action") != "dispatch")
    forged = example.delivery(receiver, forged=True)
    second = int(time.time())
    refused_before = refusals(example)
    started = time.monotonic()
    statuses = [example.send(forged, source=f"127.0.2.{index}")[0] for _ in range(200)]
    # The bucket holds 120 and refills continuously at 120 a minute (2 a second) while the flood runs.
    allowed = 120 + int(2 * (time.monotonic() - started)) + 1
    assert set(statuses) == {401, 429}, statuses
    assert statuses.count(401) <= allowed and statuses[:100] == [401] * 100, statuses
    # Right after it, another address still has its whole budget (one shared bucket would be empty).
    others = [example.send(forged, source=f"127.0.4.{index}")[0] for _ in range(10)]
    assert others == [401] * 10, others
    # Every 401 is one of the filter's refusals; none of the 429s reached it.
    refused = statuses.count(401) + len(others)
    wait(lambda: refusals(example) - refused_before == refused, 10, "the filter's refusal count to match the 401s",
         lambda: f"{refusals(example) - refused_before} refusals for {refused} 401s")
    # The genuine delivery is the one an earlier test sent, byte for byte: within the same second the filter
    # attests it with the same signature, which the controller refuses as a replay (401). A provider's
    # redelivery comes later; so does this one.
    while int(time.time()) <= second:
        time.sleep(0.05)
    status, body = example.send(example.delivery(receiver), source=f"127.0.3.{index}")
    assert status == 200, body


def shape(listener: dict, route: dict) -> dict:
    """What the static bootstrap must share with Envoy Gateway's output: the listener's buffer limit, the HTTP
    filters (name, disabled, type) in order, the Wasm filter's identity and flags, and how the webhook route
    matches and switches the filter on."""
    chain = listener.get("default_filter_chain") or listener["filter_chains"][0]
    filters = chain["filters"][0]["typed_config"]["http_filters"]
    wasm = next(f for f in filters if f["name"].startswith("envoy.filters.http.wasm/"))
    config = wasm["typed_config"]["config"]
    return {
        "buffer limit": listener["per_connection_buffer_limit_bytes"],
        "filters": [(f["name"], f.get("disabled", False), f["typed_config"]["@type"]) for f in filters],
        "wasm": {"name": config["name"], "root_id": config["root_id"], "fail_open": config.get("fail_open", False),
                 "allow_on_headers_stop_iteration": config.get("allow_on_headers_stop_iteration", False),
                 "vm_id": config["vm_config"]["vm_id"], "runtime": config["vm_config"]["runtime"]},
        "route match": route["match"],
        "route enables": route["typed_per_filter_config"][wasm["name"]],
    }


def test_the_static_bootstrap_equals_envoy_gateways_output(example):
    """tests/harness.py's hand-written bootstrap (fast edge tests, the benchmark) is what Envoy Gateway
    generates for the same policy, in every part that decides whether a delivery is held, verified and
    forwarded."""
    configs = example.gateway.config_dump()["configs"]
    listener = next(l["active_state"]["listener"] for c in configs for l in c.get("dynamic_listeners", [])
                    if l["name"] == LISTENER_NAME)
    route_doc = next(d for d in example.gateway_docs if d["kind"] == "HTTPRoute")
    cluster = f"httproute/{route_doc['metadata']['namespace']}/{route_doc['metadata']['name']}/rule/0"
    route = next(r for c in configs for rc in c.get("dynamic_route_configs", [])
                 for vh in rc["route_config"]["virtual_hosts"] for r in vh["routes"]
                 if r.get("route", {}).get("cluster") == cluster)
    policy = next(d for d in example.gateway_docs if d["kind"] == "EnvoyExtensionPolicy")["metadata"]

    static = envoy_bootstrap(listen_port=1, admin_port=2, upstream_port=3, filter_config={},
                             policy=(policy["namespace"], policy["name"]))
    static_listener = static["static_resources"]["listeners"][0]
    static_route = static_listener["filter_chains"][0]["filters"][0]["typed_config"]["route_config"][
        "virtual_hosts"][0]["routes"][0]
    assert static_listener["name"] == listener["name"]
    assert shape(static_listener, static_route) == shape(listener, route)


def test_no_secret_is_in_any_gateway_object_nor_in_envoy(example):
    """The receivers' secrets and the controller's keys are in Secrets the controller reads, and in the
    filter's memory once sealed to it: not in what Envoy Gateway is given (its objects, where no policy
    exposes a variable and the EnvoyProxy sets none), not in Envoy's configuration (which any extension
    can read through the admin interface), not in Envoy's environment (which any extension's hostKeys
    read). The bootstrap holds the controller's public key."""
    values = set(example.secret_values.values())
    assert values and all(len(v) >= 48 for v in values)
    docs = json.dumps(example.gateway_docs)
    dump = json.dumps(example.gateway.config_dump())
    environment = json.dumps(example.gateway.envoy_environment())
    for value in values:
        assert value not in docs and value not in dump and value not in environment
    for doc in example.gateway_docs:
        assert doc["kind"] != "Secret", doc["metadata"]
        if doc["kind"] == "EnvoyExtensionPolicy":
            assert all("env" not in wasm for wasm in doc["spec"]["wasm"]), doc["spec"]
    (config,) = [w["config"] for d in example.gateway_docs if d["kind"] == "EnvoyExtensionPolicy"
                 for w in d["spec"]["wasm"]]
    assert set(config) == {"controller", "controllerKeys"} and len(config["controllerKeys"]) == 1, config
    assert config["controllerKeys"][0] in dump
    # What the rendered manifests give the Envoy pods on a cluster: no environment at all.
    (proxy,) = example.of_kind("EnvoyProxy")
    assert "kubernetes" not in proxy["spec"]["provider"], proxy["spec"]["provider"]


def test_hookgate_send_reaches_the_route_by_its_host_name(example):
    """`hookgate send --resolve`, as a user tries a route before DNS points at the gateway: the URL keeps
    the route's host name (which the route matches) and the connection goes to the given address."""
    receiver = next(r for r in example.receivers if r["type"] == "github")
    secret = example.secret(receiver)
    path = receiver.get("path") or signers.flux_path(secret, receiver["name"], receiver["namespace"])
    event = next(e for e in receiver.get("events", ["push"]) if e.lower() not in PING_EVENTS)
    out = subprocess.run([str(CONTROLLER), "send", "--type", "github", "--event", event, "--secret", secret,
                          "--url", f"http://{example.host}:{example.port}{path}", "--resolve", "127.0.0.1"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.startswith("200 "), (out.stdout, out.stderr)


def test_a_delivery_over_https_reaches_the_cluster(example):
    """The URL to register with providers is hookgate's Gateway's https listener, with the certificate of its
    Secret. (Last for each example: an Argo CD refresh annotation keeps its value once set.)"""
    receiver = next(r for r in example.receivers if r.get("secretRef") and r.get("action") != "dispatch")
    status, body = example.send_https(example.delivery(receiver))
    assert status == 200, f"{status} {body}"
    reply = json.loads(body)
    assert reply["annotated"] >= 1 and reply["failed"] == 0, reply
