"""A real OCI registry on loopback for tests and the demo: `registry` from github.com/distribution (built by
tests/control-plane/build.sh), plain HTTP, storing in a temporary directory; and push_layout(), which pushes
an OCI image layout (tools/oci_layout.py writes one) to it with the OCI distribution API and nothing but the
Python standard library."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import subprocess
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from cluster import build_binaries
from harness import ROOT, WASM, free_port, stop_process, wait_for_http

REF_NAME = "org.opencontainers.image.ref.name"


def oci_layout(out: Path, tag: str) -> str:
    """Writes the compiled module as `make oci` does (tools/oci_layout.py) into `out`; returns what it prints."""
    result = subprocess.run(["python3", str(ROOT / "tools/oci_layout.py"), "--wasm", str(WASM), "--out", str(out),
                             "--tag", tag], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return result.stdout


class Registry:
    """A running distribution registry at `url` (`host` is 127.0.0.1:`port`, the form image references
    take); stop() (or the context manager) ends the process and removes its storage."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.url = f"http://{self.host}"
        self.workdir = Path(tempfile.mkdtemp(prefix="hookgate-registry-"))
        self.config_path = self.workdir / "config.yml"
        self.config_path.write_text(registry_config(self.workdir / "storage", self.host))
        self.log_path = self.workdir / "registry.log"
        self._log = open(self.log_path, "wb")
        # Tracing is on by default in distribution v3 and would try to export to a collector on localhost.
        env = {"PATH": os.environ.get("PATH", ""), "OTEL_TRACES_EXPORTER": "none"}
        self.proc = subprocess.Popen([build_binaries()["REGISTRY"], "serve", str(self.config_path)],
                                     stdout=self._log, stderr=subprocess.STDOUT, env=env)
        try:
            wait_for_http(self.proc, f"{self.url}/v2/", 30, "registry", self.log)
        except BaseException:
            self.stop()
            raise

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def push(self, layout_dir: Path, repository: str, tag: str) -> str:
        return push_layout(self.url, layout_dir, repository, tag)

    def stop(self) -> int:
        code = stop_process(self.proc)
        self._log.close()
        shutil.rmtree(self.workdir, ignore_errors=True)
        return code

    def __enter__(self) -> "Registry":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def registry_config(storage: Path, addr: str) -> str:
    """The registry's configuration: filesystem storage, plain HTTP on `addr`, warnings and errors only (and
    the access log); a random upload-state secret, which the registry would otherwise warn it made up."""
    return (f"version: 0.1\n"
            f"log:\n  level: warn\n"
            f"storage:\n  filesystem:\n    rootdirectory: {storage}\n"
            f"http:\n  addr: {addr}\n  secret: {secrets.token_hex(16)}\n")


def base_url(registry: str) -> str:
    """`http://host:port` for a URL or a bare host:port (then plain HTTP)."""
    return (registry if "://" in registry else f"http://{registry}").rstrip("/")


def request(method: str, url: str, data: bytes | None = None, headers: dict[str, str] | None = None,
            ok: tuple[int, ...] = (200,)):
    """Sends one request; returns (status, headers, body), raising with the registry's error body unless
    the status is in `ok`."""
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=60) as response:
            status, response_headers, body = response.status, response.headers, response.read()
    except urllib.error.HTTPError as e:
        status, response_headers, body = e.code, e.headers, e.read()
    if status not in ok:
        raise RuntimeError(f"{method} {url}: {status} {body.decode(errors='replace')}")
    return status, response_headers, body


def select_manifest(layout_dir: Path, tag: str) -> dict:
    """The descriptor in the layout's index.json named `tag`, or its only one."""
    manifests = json.loads((layout_dir / "index.json").read_text())["manifests"]
    named = [m for m in manifests if m.get("annotations", {}).get(REF_NAME) == tag]
    if named:
        return named[0]
    if len(manifests) == 1:
        return manifests[0]
    raise ValueError(f"{layout_dir}: no manifest named {tag!r} among {len(manifests)}")


def read_blob(layout_dir: Path, digest: str) -> bytes:
    algorithm, hex_digest = digest.split(":", 1)
    data = (layout_dir / "blobs" / algorithm / hex_digest).read_bytes()
    if algorithm != "sha256" or hashlib.sha256(data).hexdigest() != hex_digest:
        raise ValueError(f"{layout_dir}: blob {digest} does not match its digest")
    return data


def push_blob(base: str, repository: str, digest: str, data: bytes) -> None:
    """Monolithic upload (POST, then PUT with the digest), skipped when the registry has the blob already."""
    status, _, _ = request("HEAD", f"{base}/v2/{repository}/blobs/{digest}", ok=(200, 404))
    if status == 200:
        return
    _, headers, _ = request("POST", f"{base}/v2/{repository}/blobs/uploads/", data=b"", ok=(202,))
    location = urllib.parse.urljoin(f"{base}/", headers["Location"])
    separator = "&" if urllib.parse.urlsplit(location).query else "?"
    request("PUT", f"{location}{separator}digest={urllib.parse.quote(digest)}", data=data,
            headers={"Content-Type": "application/octet-stream"}, ok=(201,))


def push_layout(registry: str, layout_dir: Path, repository: str, tag: str) -> str:
    """Pushes the image of an OCI image layout (the manifest named `tag` in its index.json, or its only one)
    to `registry` (a URL or host:port) as `repository:tag`: its config and layer blobs, then the manifest
    under its own media type. Returns the manifest digest, `sha256:<hex>`."""
    base = base_url(registry)
    descriptor = select_manifest(layout_dir, tag)
    manifest_bytes = read_blob(layout_dir, descriptor["digest"])
    manifest = json.loads(manifest_bytes)
    for blob in [manifest["config"], *manifest["layers"]]:
        push_blob(base, repository, blob["digest"], read_blob(layout_dir, blob["digest"]))
    media_type = manifest.get("mediaType") or descriptor["mediaType"]
    _, headers, _ = request("PUT", f"{base}/v2/{repository}/manifests/{tag}", data=manifest_bytes,
                            headers={"Content-Type": media_type}, ok=(201,))
    digest = f"sha256:{hashlib.sha256(manifest_bytes).hexdigest()}"
    if headers.get("Docker-Content-Digest", digest) != digest:
        raise RuntimeError(f"registry stored the manifest as {headers['Docker-Content-Digest']}, not {digest}")
    return digest
