"""Writes the filter as an OCI image layout in the format Envoy Gateway's Image source (code.type: Image)
loads: the Wasm image spec's "compat" variant, a standard OCI image whose single layer
(application/vnd.oci.image.layer.v1.tar+gzip) is a tar holding one file, plugin.wasm. The layout is
reproducible: the same module always gives the same blobs and the same manifest digest.

Prints the manifest digest (its hex is what an EnvoyExtensionPolicy's `sha256` takes for an Image source)
and the sha256 of the module itself (for an HTTP source). Push the layout with any OCI tool, for example
`oras cp --from-oci-layout target/oci:0.1.0 ghcr.io/you/hookgate-filter:0.1.0` or
`skopeo copy oci:target/oci:0.1.0 docker://ghcr.io/you/hookgate-filter:0.1.0`."""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import shutil
import tarfile
from pathlib import Path

LAYER_MEDIA_TYPE = "application/vnd.oci.image.layer.v1.tar+gzip"
CONFIG_MEDIA_TYPE = "application/vnd.oci.image.config.v1+json"
MANIFEST_MEDIA_TYPE = "application/vnd.oci.image.manifest.v1+json"
INDEX_MEDIA_TYPE = "application/vnd.oci.image.index.v1+json"
PLUGIN_FILE = "plugin.wasm"  # the name Envoy Gateway's fetcher looks for in the layer


def write_blob(blobs: Path, data: bytes) -> dict:
    digest = hashlib.sha256(data).hexdigest()
    (blobs / digest).write_bytes(data)
    return {"digest": f"sha256:{digest}", "size": len(data)}


def plugin_tar(module: bytes) -> bytes:
    """An uncompressed tar of one regular file, plugin.wasm, with fixed metadata (mtime 0, root, 0644)."""
    info = tarfile.TarInfo(PLUGIN_FILE)
    info.size, info.mtime, info.mode = len(module), 0, 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        tar.addfile(info, io.BytesIO(module))
    return buf.getvalue()


def gzipped(data: bytes) -> bytes:
    """gzip without a file name and with mtime 0, so equal input gives equal output."""
    return gzip.compress(data, compresslevel=9, mtime=0)


def image_config(diff_id: str) -> bytes:
    """A minimal OCI image config; rootfs.diff_ids holds the digest of the layer's uncompressed tar."""
    return json.dumps({"architecture": "wasm", "os": "wasip1",
                       "rootfs": {"type": "layers", "diff_ids": [diff_id]}}, indent=2).encode()


def write_layout(wasm: Path, out: Path, tag: str) -> dict:
    """Writes the layout; returns the manifest descriptor."""
    if out.exists():
        shutil.rmtree(out)
    blobs = out / "blobs/sha256"
    blobs.mkdir(parents=True)
    tar = plugin_tar(wasm.read_bytes())
    layer = {"mediaType": LAYER_MEDIA_TYPE, **write_blob(blobs, gzipped(tar))}
    diff_id = f"sha256:{hashlib.sha256(tar).hexdigest()}"
    config = {"mediaType": CONFIG_MEDIA_TYPE, **write_blob(blobs, image_config(diff_id))}
    manifest = {"schemaVersion": 2, "mediaType": MANIFEST_MEDIA_TYPE, "config": config, "layers": [layer],
                "annotations": {"org.opencontainers.image.title": "hookgate-filter",
                                "org.opencontainers.image.version": tag}}
    descriptor = {"mediaType": MANIFEST_MEDIA_TYPE, **write_blob(blobs, json.dumps(manifest, indent=2).encode()),
                  "annotations": {"org.opencontainers.image.ref.name": tag}}
    (out / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    (out / "index.json").write_text(json.dumps({"schemaVersion": 2, "mediaType": INDEX_MEDIA_TYPE,
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
    print(f"manifest {descriptor['digest']} (code.type: Image, sha256)")


if __name__ == "__main__":
    main()
