"""`make release`: hookgate's two artifacts, pushed to a registry and pinned by digest.

- The controller image, `REGISTRY/hookgate-controller:VERSION`: an OCI image index of linux/amd64 and
  linux/arm64 images, each one layer holding the static (musl) `hookgate` binary, a CA bundle (the rollback
  dispatch calls the GitHub API over TLS) and the non-root user 65532; entrypoint `/hookgate`, command `serve`.
  Assembled as an OCI image layout by this script: no container daemon, no base image.
- The filter, `REGISTRY/hookgate-filter:VERSION`: the Wasm module as Envoy Gateway's Image source loads it
  (tools/oci_layout.py).

Both are pushed with oras (`oras cp --from-oci-layout`), read back from the registry by digest, and a Kustomize
component is written beside them (OUT/component) that sets the controller's image by digest and the
EnvoyExtensionPolicy's `code` to the filter's image with its manifest digest. Reference it from your overlay
(README, Install). Registry credentials are oras's (`oras login`, or the Docker config)."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import certifi
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from oci_layout import (INDEX_MEDIA_TYPE, REF_NAME, new_layout, reproducible_tar, write_blob,  # noqa: E402
                        write_image, write_index, write_layout)

# Image platform architecture → the Rust target its binary is built for (Makefile, `release`).
TARGETS = {"amd64": "x86_64-unknown-linux-musl", "arm64": "aarch64-unknown-linux-musl"}
CONTROLLER, FILTER = "hookgate-controller", "hookgate-filter"
NONROOT = 65532  # the user the Deployment runs as (runAsUser)


def controller_tar(binary: bytes) -> bytes:
    """The image's one layer: the binary, the CA bundle where rustls's platform verifier reads it on Linux,
    and passwd/group entries for the non-root user."""
    passwd = f"root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:{NONROOT}:{NONROOT}:nonroot:/home/nonroot:/sbin/nologin\n"
    group = f"root:x:0:\nnonroot:x:{NONROOT}:\n"
    return reproducible_tar([
        ("etc", None, 0o755), ("etc/passwd", passwd.encode(), 0o644), ("etc/group", group.encode(), 0o644),
        ("etc/ssl", None, 0o755), ("etc/ssl/certs", None, 0o755),
        ("etc/ssl/certs/ca-certificates.crt", Path(certifi.where()).read_bytes(), 0o644),
        ("hookgate", binary, 0o755),
    ])


def controller_config(architecture: str) -> dict:
    return {"architecture": architecture, "os": "linux",
            "config": {"User": f"{NONROOT}:{NONROOT}", "Entrypoint": ["/hookgate"], "Cmd": ["serve"],
                       "ExposedPorts": {"8080/tcp": {}}, "WorkingDir": "/"}}


def write_controller_layout(binaries: dict[str, Path], out: Path, version: str) -> dict:
    """The controller's layout: one image per architecture and the index naming them, tagged `version`.
    Returns the index's descriptor."""
    blobs = new_layout(out)
    annotations = {"org.opencontainers.image.title": CONTROLLER, "org.opencontainers.image.version": version}
    images = []
    for architecture, binary in binaries.items():
        image = write_image(blobs, controller_tar(binary.read_bytes()), controller_config(architecture), annotations)
        images.append({**image, "platform": {"architecture": architecture, "os": "linux"}})
    index = json.dumps({"schemaVersion": 2, "mediaType": INDEX_MEDIA_TYPE, "manifests": images,
                        "annotations": annotations}, indent=2).encode()
    descriptor = {"mediaType": INDEX_MEDIA_TYPE, **write_blob(blobs, index), "annotations": {REF_NAME: version}}
    write_index(out, [descriptor])
    return descriptor


def oras(binary: str, *args: str) -> str:
    result = subprocess.run([binary, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if result.returncode != 0:
        raise SystemExit(f"oras {args[0]}: {result.stderr.strip()}")
    return result.stdout.strip()


def push(binary: str, layout: Path, version: str, reference: str, expected: str, plain_http: bool) -> None:
    """Copies the layout's `version` to `reference`, then resolves the reference at the registry: it must be
    the digest written locally."""
    plain = ["--to-plain-http"] if plain_http else []
    oras(binary, "cp", *plain, "--from-oci-layout", f"{layout}:{version}", reference)
    resolved = oras(binary, "resolve", *(["--plain-http"] if plain_http else []), reference)
    if resolved != expected:
        raise SystemExit(f"{reference} resolves to {resolved}, not the pushed {expected}")


def component(registry: str, version: str, controller_digest: str, filter_digest: str) -> str:
    """The Kustomize component pinning both artifacts by digest."""
    # Envoy Gateway pulls the module by its digest and checks the manifest against `sha256` too.
    code = {"type": "Image", "image": {"url": f"{registry}/{FILTER}@{filter_digest}",
                                       "sha256": filter_digest.removeprefix("sha256:")}}
    patch = json.dumps([{"op": "replace", "path": "/spec/wasm/0/code", "value": code}])
    document = {"apiVersion": "kustomize.config.k8s.io/v1alpha1", "kind": "Component",
                "images": [{"name": CONTROLLER, "newName": f"{registry}/{CONTROLLER}", "digest": controller_digest}],
                "patches": [{"target": {"group": "gateway.envoyproxy.io", "kind": "EnvoyExtensionPolicy",
                                        "name": "hookgate"}, "patch": patch}]}
    return (f"# Written by `make release REGISTRY={registry} VERSION={version}` (tools/release.py): hookgate's\n"
            f"# controller image and filter module, pinned by digest.\n"
            + yaml.safe_dump(document, sort_keys=False, width=1000))


def is_loopback(registry: str) -> bool:
    host = registry.split("/", 1)[0].rsplit(":", 1)[0]
    return host in ("localhost", "127.0.0.1", "[::1]")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--registry", required=True, help="where to push, e.g. ghcr.io/you")
    parser.add_argument("--version", required=True, help="the tag of both artifacts, e.g. 0.1.0")
    parser.add_argument("--wasm", type=Path, required=True, help="the filter module")
    parser.add_argument("--binaries", type=Path, required=True,
                        help="cargo's target directory, holding <rust target>/<profile>/hookgate for each")
    parser.add_argument("--profile", default="release")
    parser.add_argument("--oras", required=True, help="the oras binary")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--plain-http", action="store_true",
                        help="push over plain HTTP (default only for a registry on loopback)")
    args = parser.parse_args()
    registry = args.registry.rstrip("/")
    plain_http = args.plain_http or is_loopback(registry)
    binaries = {arch: args.binaries / target / args.profile / "hookgate" for arch, target in TARGETS.items()}
    controller = write_controller_layout(binaries, args.out / "controller", args.version)
    module = write_layout(args.wasm, args.out / "filter", args.version)
    for name, layout, descriptor in [(CONTROLLER, "controller", controller), (FILTER, "filter", module)]:
        push(args.oras, args.out / layout, args.version, f"{registry}/{name}:{args.version}", descriptor["digest"],
             plain_http)
        print(f"{registry}/{name}:{args.version} {descriptor['digest']}")
    (args.out / "component").mkdir(exist_ok=True)
    (args.out / "component/kustomization.yaml").write_text(
        component(registry, args.version, controller["digest"], module["digest"]))
    print(f"component: {args.out / 'component'}")


if __name__ == "__main__":
    main()
