"""The filter's OCI image (tools/oci_layout.py, `make oci`) in a real registry: pushed with the OCI
distribution API to distribution's registry and read back the way an image puller reads it, by tag, with
the manifest digest it was pushed under and a layer that unpacks to plugin.wasm, the compiled module."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
import urllib.request

import pytest

from harness import WASM
from registry import Registry, oci_layout, push_layout

MANIFEST_MEDIA_TYPE = "application/vnd.oci.image.manifest.v1+json"


@pytest.fixture(scope="module")
def registry():
    with Registry() as r:
        yield r


def get(url: str, accept: str | None = None):
    req = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    with urllib.request.urlopen(req, timeout=30) as response:
        return response.status, response.headers, response.read()


def test_the_filter_image_round_trips_through_a_real_registry(registry, tmp_path):
    layout = tmp_path / "oci"
    oci_layout(layout, "1.2.3")
    pushed = push_layout(registry.host, layout, "hookgate/filter", "1.2.3")
    (descriptor,) = json.loads((layout / "index.json").read_text())["manifests"]
    assert pushed == descriptor["digest"]

    status, headers, body = get(f"{registry.url}/v2/hookgate/filter/manifests/1.2.3", accept=MANIFEST_MEDIA_TYPE)
    assert status == 200
    assert headers["Docker-Content-Digest"] == pushed
    assert headers["Content-Type"] == MANIFEST_MEDIA_TYPE
    assert f"sha256:{hashlib.sha256(body).hexdigest()}" == pushed
    manifest = json.loads(body)
    (layer,) = manifest["layers"]
    assert layer["mediaType"] == "application/vnd.oci.image.layer.v1.tar+gzip"

    status, _, blob = get(f"{registry.url}/v2/hookgate/filter/blobs/{layer['digest']}")
    assert status == 200
    assert f"sha256:{hashlib.sha256(blob).hexdigest()}" == layer["digest"]
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(blob))) as archive:
        (member,) = archive.getmembers()
        assert member.name == "plugin.wasm"
        assert archive.extractfile(member).read() == WASM.read_bytes()

    # The same image pushed again (its blobs are there already) keeps its digest, by digest as well as by tag.
    assert registry.push(layout, "hookgate/filter", "latest") == pushed
    status, headers, _ = get(f"{registry.url}/v2/hookgate/filter/manifests/{pushed}", accept=MANIFEST_MEDIA_TYPE)
    assert (status, headers["Docker-Content-Digest"]) == (200, pushed)
