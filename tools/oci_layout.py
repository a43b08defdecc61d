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
REF_NAME = "org.opencontainers.image.ref.name"
PLUGIN_FILE = "plugin.wasm"  # the name Envoy Gateway's fetcher looks for in the layer


def write_blob(blobs: Path, data: bytes) -> dict:
    digest = hashlib.sha256(data).hexdigest()
    (blobs / digest).write_bytes(data)
    return {"digest": f"sha256:{digest}", "size": len(data)}


def reproducible_tar(entries: list[tuple[str, bytes | None, int]]) -> bytes:
    """An uncompressed tar of `entries` (name, content or None for a directory, mode) in the given order,
    with fixed metadata (mtime 0, owner root): equal entries give equal bytes."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, content, mode in entries:
            info = tarfile.TarInfo(name)
            info.mtime, info.mode, info.uid, info.gid, info.uname, info.gname = 0, mode, 0, 0, "", ""
            if content is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
    return buf.getvalue()


def plugin_tar(module: bytes) -> bytes:
    """A tar of one regular file, plugin.wasm (0644)."""
    return reproducible_tar([(PLUGIN_FILE, module, 0o644)])


def gzipped(data: bytes) -> bytes:
    """gzip without a file name and with mtime 0, so equal input gives equal output."""
    return gzip.compress(data, compresslevel=9, mtime=0)


def write_image(blobs: Path, tar: bytes, config: dict, annotations: dict[str, str]) -> dict:
    """Writes the blobs of a one-layer image (the gzipped `tar`, `config` with its rootfs, the manifest with
    `annotations`) into `blobs`; returns the manifest's descriptor."""
    layer = {"mediaType": LAYER_MEDIA_TYPE, **write_blob(blobs, gzipped(tar))}
    # rootfs.diff_ids holds the digest of the layer's uncompressed tar.
    rootfs = {"type": "layers", "diff_ids": [f"sha256:{hashlib.sha256(tar).hexdigest()}"]}
    config_blob = json.dumps({**config, "rootfs": rootfs}, indent=2).encode()
    config_descriptor = {"mediaType": CONFIG_MEDIA_TYPE, **write_blob(blobs, config_blob)}
    manifest = {"schemaVersion": 2, "mediaType": MANIFEST_MEDIA_TYPE, "config": config_descriptor,
                "layers": [layer], "annotations": annotations}
    return {"mediaType": MANIFEST_MEDIA_TYPE, **write_blob(blobs, json.dumps(manifest, indent=2).encode())}


def new_layout(out: Path) -> Path:
    """Empties `out` for a new layout; returns its blob directory."""
    if out.exists():
        shutil.rmtree(out)
    blobs = out / "blobs/sha256"
    blobs.mkdir(parents=True)
    return blobs


def write_layout(wasm: Path, out: Path, tag: str) -> dict:
    """Writes the filter's layout; returns the manifest descriptor."""
    blobs = new_layout(out)
    # A minimal OCI image config: the module is not an executable of any platform.
    descriptor = write_image(blobs, plugin_tar(wasm.read_bytes()), {"architecture": "wasm", "os": "wasip1"},
                             {"org.opencontainers.image.title": "hookgate-filter",
                              "org.opencontainers.image.version": tag})
    descriptor["annotations"] = {REF_NAME: tag}
    write_index(out, [descriptor])
    return descriptor


def write_index(out: Path, descriptors: list[dict]) -> None:
    """The layout's oci-layout marker and index.json, listing `descriptors`."""
    (out / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    (out / "index.json").write_text(json.dumps({"schemaVersion": 2, "mediaType": INDEX_MEDIA_TYPE,
                                                "manifests": descriptors}, indent=2))


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
