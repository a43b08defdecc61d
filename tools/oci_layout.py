"""Writes the filter as an OCI image layout, in the Wasm artifact format Envoy Gateway's Image source
accepts (the "oci" variant: one layer of media type application/vnd.module.wasm.content.layer.v1+wasm), and
prints the sha256 of the module for an HTTP source. Push the layout with any OCI tool, for example
`oras cp --from-oci-layout target/oci:0.1.0 ghcr.io/you/hookgate-filter:0.1.0` or
`skopeo copy oci:target/oci:0.1.0 docker://ghcr.io/you/hookgate-filter:0.1.0`."""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
from pathlib import Path

LAYER_MEDIA_TYPE = "application/vnd.module.wasm.content.layer.v1+wasm"
CONFIG_MEDIA_TYPE = "application/vnd.module.wasm.config.v1+json"
MANIFEST_MEDIA_TYPE = "application/vnd.oci.image.manifest.v1+json"


def write_blob(blobs: Path, data: bytes) -> dict:
    digest = hashlib.sha256(data).hexdigest()
    (blobs / digest).write_bytes(data)
    return {"digest": f"sha256:{digest}", "size": len(data)}


def write_layout(wasm: Path, out: Path, tag: str) -> dict:
    """Writes the layout; returns the manifest descriptor."""
    if out.exists():
        shutil.rmtree(out)
    blobs = out / "blobs/sha256"
    blobs.mkdir(parents=True)
    module = wasm.read_bytes()
    layer = {"mediaType": LAYER_MEDIA_TYPE, **write_blob(blobs, module),
             "annotations": {"org.opencontainers.image.title": "plugin.wasm"}}
    config = {"mediaType": CONFIG_MEDIA_TYPE, **write_blob(blobs, json.dumps({"type": "envoy_proxy"}).encode())}
    manifest = {"schemaVersion": 2, "mediaType": MANIFEST_MEDIA_TYPE, "config": config, "layers": [layer],
                "annotations": {"org.opencontainers.image.title": "hookgate-filter",
                                "org.opencontainers.image.version": tag}}
    descriptor = {"mediaType": MANIFEST_MEDIA_TYPE, **write_blob(blobs, json.dumps(manifest, indent=2).encode()),
                  "annotations": {"org.opencontainers.image.ref.name": tag}}
    (out / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    (out / "index.json").write_text(json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                                                "manifests": [descriptor]}, indent=2))
    return descriptor


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--wasm", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--tag", default="0.1.0")
    args = parser.parse_args()
    descriptor = write_layout(args.wasm, args.out, args.tag)
    print(f"OCI image layout: {args.out} (tag {args.tag}, manifest {descriptor['digest']})")
    print(f"module sha256 for an HTTP source: {hashlib.sha256(args.wasm.read_bytes()).hexdigest()}")


if __name__ == "__main__":
    main()
