"""The examples as Envoy Gateway translates them on Kubernetes: its own translators (tests/eg-translate, built
from its Go module) over the rendered manifests, unchanged (hookgate's own GatewayClass and Gateway among them),
plus the certificate Secret a cluster has.
There the Wasm filter is named `envoy.filters.http.wasm/envoyextensionpolicy/<ns>/<policy>/wasm/<i>` (in
standalone mode the kind is empty): the hold-headers patch must be Programmed under both namings, and under
both of Envoy Gateway's names for the listeners it patches (XDSNameSchemeV2, the default from Envoy Gateway
1.10, names it by protocol and port), and so must the patch that keys the rate limit's IPv6 buckets by /64."""

from __future__ import annotations

import copy
import json

import pytest

from deploy import EXAMPLES, MANIFESTS, kubernetes_translation
from gateway import render
from harness import LISTENER_NAME, LOCAL_RATELIMIT

HOLD_HEADERS = ("envoy-gateway-system", "hookgate-hold-headers")


# Envoy Gateway's names for xDS resources -> (the runtime flags that choose them, the webhook listener's name,
# the hold-headers policy that patches it). Envoy Gateway 1.5 announced `XDSNameSchemeV2` as the default from
# 1.10: `<protocol>-<Gateway port>`. Each scheme's policy must be Programmed and the other ResourceNotFound.
# Each scheme names both listeners of hookgate's Gateway (http, https), and the patch must hold headers on both.
NAME_SCHEMES = {
    "by gateway and listener (the default up to Envoy Gateway 1.9)": (
        (), (LISTENER_NAME, LISTENER_NAME.replace("/http", "/https")), HOLD_HEADERS[1]),
    "XDSNameSchemeV2 (the default from Envoy Gateway 1.10)": (
        ("XDSNameSchemeV2",), ("tcp-80", "tcp-443"), "hookgate-hold-headers-xds-v2"),
}


PROXY_NAMESPACE = HOLD_HEADERS[0]
# Envoy Gateway's scheme (as in NAME_SCHEMES) -> the route configurations of hookgate's Gateway's listeners (http,
# https; the https one keeps its name under XDSNameSchemeV2) and the IPv6 rate limit policy Programmed there.
RATE_LIMIT_IPV6 = {
    "by gateway and listener (the default up to Envoy Gateway 1.9)": (
        (LISTENER_NAME, LISTENER_NAME.replace("/http", "/https")), "hookgate-rate-limit-ipv6"),
    "XDSNameSchemeV2 (the default from Envoy Gateway 1.10)": (
        ("http-80", LISTENER_NAME.replace("/http", "/https")), "hookgate-rate-limit-ipv6-xds-v2"),
}
# What the `Distinct` sourceCIDR rules key their buckets by: Envoy's formatter for the client address, and for
# IPv6 that address masked to its /64 (in CIDR notation).
WHOLE_ADDRESS = "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%"
PER_64 = "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT(64)%"


def translate(docs: list[dict], tmp_path, runtime_flags: tuple[str, ...] = ()) -> dict:
    """Envoy Gateway's translation of `docs` with the cluster's Gateway, which must raise no error."""
    result = kubernetes_translation(docs, tmp_path, runtime_flags)
    assert not result["errors"], result["errors"]
    return result


def programmed(result: dict, namespace: str, name: str) -> dict:
    statuses = [p["status"] for p in result["patches"] if (p["namespace"], p["name"]) == (namespace, name)]
    assert len(statuses) == 1, (f"{namespace}/{name}", [(p["namespace"], p["name"]) for p in result["patches"]])
    (status,) = statuses
    (ancestor,) = status["ancestors"]
    return next(c for c in ancestor["conditions"] if c["type"] == "Programmed")


def http_filters(result: dict, listener_name: str = LISTENER_NAME) -> list[dict]:
    (listener,) = result["listeners"][listener_name]
    chain = listener.get("defaultFilterChain") or listener["filterChains"][0]
    return chain["filters"][0]["typedConfig"]["httpFilters"]


@pytest.mark.parametrize("scheme", NAME_SCHEMES)
@pytest.mark.parametrize("example", EXAMPLES)
def test_on_kubernetes_the_hold_headers_patch_is_programmed_and_the_rate_limit_is_in_front(example, scheme,
                                                                                           tmp_path):
    runtime_flags, listener_names, applied = NAME_SCHEMES[scheme]
    docs = render(MANIFESTS / "examples" / example)
    result = translate(docs, tmp_path, runtime_flags)
    assert set(listener_names) <= set(result["listeners"]), list(result["listeners"])
    for _, _, policy in NAME_SCHEMES.values():
        condition = programmed(result, HOLD_HEADERS[0], policy)
        expected = ("True", "Programmed") if policy == applied else ("False", "ResourceNotFound")
        assert (condition["status"], condition["reason"]) == expected, (policy, condition)
    policy = next(d for d in docs if d["kind"] == "EnvoyExtensionPolicy")["metadata"]
    wasm_name = f"envoy.filters.http.wasm/envoyextensionpolicy/{policy['namespace']}/{policy['name']}/wasm/0"
    for listener_name in listener_names:
        filters = http_filters(result, listener_name)
        names = [f["name"] for f in filters]
        assert wasm_name in names, (listener_name, names)
        assert names.index(LOCAL_RATELIMIT) < names.index(wasm_name), (listener_name, names)
        wasm = filters[names.index(wasm_name)]
        assert wasm["disabled"] is True
        assert wasm["typedConfig"]["config"]["allowOnHeadersStopIteration"] is True, listener_name


def bucket_keys(route_config: dict) -> list[dict[str, str]]:
    """For each route with a local rate limit: each `Distinct` sourceCIDR rule's range -> what its bucket is
    keyed by (the descriptor value that is a formatter; the rule's other action has the range itself)."""
    keys = []
    for route in (r for host in route_config["virtualHosts"] for r in host["routes"]):
        local = route.get("typedPerFilterConfig", {}).get(LOCAL_RATELIMIT)
        if local is None:
            continue
        matches = [a["remoteAddressMatch"] for limit in local["rateLimits"] for a in limit["actions"]
                   if "remoteAddressMatch" in a]
        keys.append({cidr(m): m["descriptorValue"] for m in matches if m["descriptorValue"].startswith("%")})
    return keys


def cidr(remote_address_match: dict) -> str:
    (cidr_range,) = remote_address_match["addressMatcher"]["ranges"]
    return f"{cidr_range['addressPrefix']}/{cidr_range['prefixLen']}"


@pytest.mark.parametrize("scheme", RATE_LIMIT_IPV6)
@pytest.mark.parametrize("example", EXAMPLES)
def test_on_kubernetes_ipv6_senders_get_a_bucket_per_64_and_ipv4_senders_one_per_address(example, scheme,
                                                                                         tmp_path):
    runtime_flags = NAME_SCHEMES[scheme][0]
    route_config_names, applied = RATE_LIMIT_IPV6[scheme]
    result = translate(render(MANIFESTS / "examples" / example), tmp_path, runtime_flags)
    for _, policy in RATE_LIMIT_IPV6.values():
        condition = programmed(result, PROXY_NAMESPACE, policy)
        expected = ("True", "Programmed") if policy == applied else ("False", "ResourceNotFound")
        assert (condition["status"], condition["reason"]) == expected, (policy, condition)
    for name in route_config_names:
        (route_config,) = result["routes"][name]
        keys = bucket_keys(route_config)
        assert keys and all(k == {"::/0": PER_64, "0.0.0.0/0": WHOLE_ADDRESS} for k in keys), (name, keys)


# Namespace of a second route on /hook/ (more specific than the webhook route's prefix) -> whether hookgate's
# Gateway takes it. Only the controller's namespace may attach routes: a tenant's route could otherwise take
# the path of the proxies' confirmations.
ROUTE_NAMESPACES = {
    "the controller's namespace": ("flux-system", True),
    "a tenant's namespace": ("team-a", False),
}


@pytest.mark.parametrize("case", ROUTE_NAMESPACES)
def test_hookgates_gateway_takes_routes_only_from_the_controllers_namespace(case, tmp_path):
    namespace, attached = ROUTE_NAMESPACES[case]
    docs = copy.deepcopy(render(MANIFESTS / "examples/homelab-github"))
    route = copy.deepcopy(next(d for d in docs if d["kind"] == "HTTPRoute"))
    route["metadata"] = {"name": "second-route", "namespace": namespace}
    route["spec"]["rules"][0]["matches"][0]["path"] = {"type": "PathPrefix", "value": "/hook/v1/"}
    result = translate(docs + [route], tmp_path)
    routes = json.dumps(result["routes"])
    assert "httproute/flux-system/hookgate-webhooks/" in routes
    assert (f"httproute/{namespace}/second-route/" in routes) == attached, case


# jsonPath of the hold-headers patch -> Programmed on Kubernetes. The name-based paths are the ones the
# manifests once had (without the `envoy.filters.http.wasm/` prefix) and the standalone name: both match
# nothing on Kubernetes, which Envoy Gateway reports only as `Programmed: False`.
SELECTORS = {
    "by root id": ("..http_filters[?(@.typed_config.config.root_id=='hookgate')]", "True"),
    "by the old name": ("..http_filters[?(@.name=='envoyextensionpolicy/flux-system/hookgate/wasm/0')]", "False"),
    "by the standalone name": ("..http_filters[?(@.name=='envoy.filters.http.wasm//flux-system/hookgate/wasm/0')]",
                               "False"),
}


@pytest.mark.parametrize("case", SELECTORS)
def test_a_patch_that_matches_nothing_is_reported_not_programmed(case, tmp_path):
    json_path, expected = SELECTORS[case]
    docs = copy.deepcopy(render(MANIFESTS / "examples/homelab-github"))
    patch = next(d for d in docs if d["kind"] == "EnvoyPatchPolicy" and d["metadata"]["name"] == HOLD_HEADERS[1])
    patch["spec"]["jsonPatches"][0]["operation"]["jsonPath"] = json_path
    condition = programmed(translate(docs, tmp_path), *HOLD_HEADERS)
    assert condition["status"] == expected, condition


def test_until_the_certificate_exists_the_http_listener_still_holds_headers(tmp_path):
    """Without the Secret hookgate-webhook-tls the https listener is not built: the hold-headers policy reports
    ResourceNotFound naming only that listener (docs/operations.md, Troubleshooting), and http is patched."""
    docs = render(MANIFESTS / "examples/homelab-github")
    result = kubernetes_translation(docs, tmp_path, without_webhook_tls=True)
    condition = programmed(result, *HOLD_HEADERS)
    assert (condition["status"], condition["reason"]) == ("False", "ResourceNotFound"), condition
    assert condition["message"].endswith("Listener/envoy-gateway-system/hookgate/https"), condition["message"]
    wasm = next(f for f in http_filters(result) if f["name"].startswith("envoy.filters.http.wasm/"))
    assert wasm["typedConfig"]["config"]["allowOnHeadersStopIteration"] is True


def test_until_the_certificate_exists_the_http_listener_still_keys_ipv6_buckets_by_64(tmp_path):
    """Likewise the IPv6 rate limit policy names only the https route configuration, and http is patched."""
    docs = render(MANIFESTS / "examples/homelab-github")
    result = kubernetes_translation(docs, tmp_path, without_webhook_tls=True)
    condition = programmed(result, PROXY_NAMESPACE, "hookgate-rate-limit-ipv6")
    assert (condition["status"], condition["reason"]) == ("False", "ResourceNotFound"), condition
    assert condition["message"].endswith("RouteConfiguration/envoy-gateway-system/hookgate/https"), condition
    (route_config,) = result["routes"][LISTENER_NAME]
    assert [k["::/0"] for k in bucket_keys(route_config)] == [PER_64]
