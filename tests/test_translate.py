"""The examples as Envoy Gateway translates them on Kubernetes: its own translators (tests/eg-translate, built
from its Go module) over the rendered manifests, unchanged, plus the GatewayClass and Gateway a cluster has.
There the Wasm filter is named `envoy.filters.http.wasm/envoyextensionpolicy/<ns>/<policy>/wasm/<i>` (in
standalone mode the kind is empty): the hold-headers patch must be Programmed under both namings."""

from __future__ import annotations

import copy

import pytest

from deploy import EXAMPLES, MANIFESTS, kubernetes_translation
from gateway import render
from harness import LISTENER_NAME, LOCAL_RATELIMIT

HOLD_HEADERS = ("envoy-gateway-system", "hookgate-hold-headers")


def translate(docs: list[dict], tmp_path) -> dict:
    """Envoy Gateway's translation of `docs` with the cluster's Gateway, which must raise no error."""
    result = kubernetes_translation(docs, tmp_path)
    assert not result["errors"], result["errors"]
    return result


def programmed(result: dict, namespace: str, name: str) -> dict:
    (status,) = [p["status"] for p in result["patches"] if (p["namespace"], p["name"]) == (namespace, name)]
    (ancestor,) = status["ancestors"]
    return next(c for c in ancestor["conditions"] if c["type"] == "Programmed")


def http_filters(result: dict) -> list[dict]:
    (listener,) = result["listeners"][LISTENER_NAME]
    chain = listener.get("defaultFilterChain") or listener["filterChains"][0]
    return chain["filters"][0]["typedConfig"]["httpFilters"]


@pytest.mark.parametrize("example", EXAMPLES)
def test_on_kubernetes_the_hold_headers_patch_is_programmed_and_the_rate_limit_is_in_front(example, tmp_path):
    docs = render(MANIFESTS / "examples" / example)
    result = translate(docs, tmp_path)
    condition = programmed(result, *HOLD_HEADERS)
    assert condition["status"] == "True", condition
    policy = next(d for d in docs if d["kind"] == "EnvoyExtensionPolicy")["metadata"]
    filters = http_filters(result)
    names = [f["name"] for f in filters]
    wasm_name = f"envoy.filters.http.wasm/envoyextensionpolicy/{policy['namespace']}/{policy['name']}/wasm/0"
    assert wasm_name in names, names
    assert names.index(LOCAL_RATELIMIT) < names.index(wasm_name), names
    wasm = filters[names.index(wasm_name)]
    assert wasm["disabled"] is True
    assert wasm["typedConfig"]["config"]["allowOnHeadersStopIteration"] is True


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
    patch = next(d for d in docs if d["kind"] == "EnvoyPatchPolicy")
    patch["spec"]["jsonPatches"][0]["operation"]["jsonPath"] = json_path
    condition = programmed(translate(docs, tmp_path), *HOLD_HEADERS)
    assert condition["status"] == expected, condition
