"""Envoy Gateway as a real part: `envoy-gateway` built from its Go module (tests/control-plane/build.sh), run
standalone on this machine (file provider, Host infrastructure) with the project's Envoy, translating the
project's own manifests into the Envoy that the tests and the demo send deliveries through.

What Kubernetes would provide is swapped by the test-only Kustomize component `tests/standalone/` (a
`Backend` on loopback instead of the controller's Service, the module from a local URL). No secret reaches
Envoy Gateway or its Envoy: the filter takes its receivers from the controller. What only Host mode needs (REFERENCE.md §3: Envoy where func-e
looks for it, TLS for the Wasm cache) is written here and named `host-mode` in the resource directory.
"""

from __future__ import annotations

import atexit
import base64
import datetime
import functools
import hashlib
import http.server
import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from cluster import build_binaries
from harness import ROOT, stop_process

STANDALONE = ROOT / "tests/standalone"
# hookgate's own Gateway (manifests/base/gateway/proxy/gateway.yaml): namespace, name.
GATEWAY = ("envoy-gateway-system", "hookgate")
# Its https listener's certificate: a Secret the user (or cert-manager) creates.
WEBHOOK_TLS_SECRET = "hookgate-webhook-tls"
# The venv's Envoy (tests/requirements.txt; `envoy` on the PATH is a Python shim around it), placed where
# func-e looks for the version the standalone component's EnvoyProxy asks for.
ENVOY_BINARY = next(iter(sorted((ROOT / ".venv/lib").glob("python3*/site-packages/envoy/_bin/envoy"))), None)
ENVOY_VERSION = next(yaml.safe_load(p["patch"])[0]["value"]["host"]["envoyVersion"]
                     for p in yaml.safe_load((STANDALONE / "kustomization.yaml").read_text())["patches"]
                     if p["target"]["kind"] == "EnvoyProxy")


# What the file provider logs for each status update: the kind, the status as YAML, then the object's key.
_STATUS = re.compile(r"Got new status for (\w+)\n(.*?)\n\t(\{[^\n]*\})", re.S)


class NotSeen(AssertionError):
    """What wait() waited for did not happen in time."""


def render_text(directory: Path) -> str:
    """`kustomize build` of a directory, with Kustomize's default restrictions, as users run it."""
    out = subprocess.run([build_binaries()["KUSTOMIZE"], "build", str(directory)], capture_output=True, text=True)
    assert out.returncode == 0, f"kustomize build {directory}:\n{out.stderr}"
    return out.stdout


def render(directory: Path) -> list[dict]:
    """`kustomize build` of a directory, as documents."""
    return [d for d in yaml.safe_load_all(render_text(directory)) if d]


class ModuleServer:
    """Serves a directory's files over HTTP on loopback, as a release URL (the compiled module) or an
    issuer's JWKS endpoint would."""

    def __init__(self, directory: Path) -> None:
        handler = lambda *a, **kw: _QuietHandler(*a, directory=str(directory), **kw)  # noqa: E731
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


def http_code(url: str, module: Path) -> dict:
    """An EnvoyExtensionPolicy `code` that fetches `module` from `url`, checked by its sha256."""
    return {"type": "HTTP", "http": {"url": url, "sha256": hashlib.sha256(module.read_bytes()).hexdigest()}}


def overlay(base: Path, directory: Path, **fields) -> Path:
    """Writes a kustomization in `directory` that renders `base` with `fields` (components, patches) added.
    Returns the directory."""
    directory.mkdir(parents=True, exist_ok=True)
    document = {"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
                # Kustomize takes only relative paths to other kustomizations.
                "resources": [os.path.relpath(base, directory)], **fields}
    (directory / "kustomization.yaml").write_text(yaml.safe_dump(document, sort_keys=False))
    return directory


def standalone_overlay(example: Path, workdir: Path, *, controller_port: int, gateway_port: int,
                       wasm_code: dict, https_port: int | None = None) -> Path:
    """A kustomization that renders `example` unchanged through the standalone component, with this run's
    ports (hookgate's Gateway: `http` on `gateway_port`, `https` on `https_port`) and the module's source
    (`code` of the EnvoyExtensionPolicy). Returns its directory."""
    directory = workdir / f"standalone-{example.name}"
    listener_ports = [("http", gateway_port)] + ([("https", https_port)] if https_port else [])
    return overlay(example, directory, components=[os.path.relpath(STANDALONE, directory)], patches=[
        {"target": {"kind": "Backend", "name": "hookgate-controller"},
         "patch": json.dumps([{"op": "replace", "path": "/spec/endpoints/0/ip/port", "value": controller_port}])},
        {"target": {"kind": "Gateway", "name": GATEWAY[1]},
         "patch": json.dumps([{"op": "test", "path": f"/spec/listeners/{i}/name", "value": name} for i, (name, _)
                              in enumerate(listener_ports)]
                             + [{"op": "replace", "path": f"/spec/listeners/{i}/port", "value": port} for i, (_, port)
                                in enumerate(listener_ports)])},
        {"target": {"kind": "EnvoyExtensionPolicy"},
         "patch": json.dumps([{"op": "replace", "path": "/spec/wasm/0/code", "value": wasm_code}])},
    ])


@functools.cache
def webhook_tls() -> tuple[bytes, bytes]:
    """A self-signed certificate (PEM) and its key for the Gateway's https listener, made once per run: what
    cert-manager or the user would put in the Secret."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hookgate tests")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                   .serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(hours=1))
                   .not_valid_after(now + datetime.timedelta(days=2))
                   .add_extension(x509.SubjectAlternativeName([x509.DNSName("hooks.example.com")]), critical=False)
                   .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                   .sign(key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return certificate.public_bytes(serialization.Encoding.PEM), key_pem


def webhook_tls_secret() -> dict:
    """The Secret `hookgate-webhook-tls` the https listener of hookgate's Gateway names."""
    certificate, key = webhook_tls()
    return {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
            "metadata": {"name": WEBHOOK_TLS_SECRET, "namespace": GATEWAY[0]},
            "data": {"tls.crt": base64.b64encode(certificate).decode(), "tls.key": base64.b64encode(key).decode()}}


class EnvoyGateway:
    """A standalone envoy-gateway process and the Envoy it runs. `apply(docs)` replaces the resources it
    translates (a changed file is applied in about a second); `conditions` reads what it reports for each
    object; `config_dump` and `stats` read its Envoy. Its ports are fixed: one per machine."""

    def __init__(self, env: dict[str, str]) -> None:
        self.binary = build_binaries()["ENVOY_GATEWAY"]
        self.dir = Path(tempfile.mkdtemp(prefix="hookgate-eg-"))
        self.config_home, self.data_home = self.dir / "config", self.dir / "data"
        self.state_home, self.runtime_dir = self.dir / "state", self.dir / "run"
        self.resources = self.dir / "resources"
        self.resources.mkdir()
        certgen = subprocess.run([self.binary, "certgen", "--local", "--config-home", str(self.config_home)],
                                 capture_output=True, text=True, env={**os.environ, "HOME": str(self.dir)})
        assert certgen.returncode == 0, certgen.stderr
        # func-e runs this Envoy instead of downloading one.
        assert ENVOY_BINARY and ENVOY_BINARY.is_file(), "no Envoy in .venv (make venv)"
        envoy = self.data_home / "envoy-versions" / ENVOY_VERSION / "bin" / "envoy"
        envoy.parent.mkdir(parents=True)
        envoy.symlink_to(ENVOY_BINARY)
        self._write("host-mode.yaml", self._host_mode_documents())
        # What a cluster has beside the manifests: the https listener's certificate.
        self._write("webhook-tls.yaml", [webhook_tls_secret()])
        config = self.dir / "envoy-gateway.yaml"
        config.write_text(yaml.safe_dump({
            "apiVersion": "gateway.envoyproxy.io/v1alpha1",
            "kind": "EnvoyGateway",
            "gateway": {"controllerName": "gateway.envoyproxy.io/gatewayclass-controller"},
            "provider": {"type": "Custom", "custom": {
                "resource": {"type": "File", "file": {"paths": [str(self.resources)]}},
                "infrastructure": {"type": "Host", "host": {
                    "configHome": str(self.config_home), "dataHome": str(self.data_home),
                    "stateHome": str(self.state_home), "runtimeDir": str(self.runtime_dir)}},
            }},
            "logging": {"level": {"default": "info"}},
            "extensionApis": {"enableBackend": True, "enableEnvoyPatchPolicy": True},
        }))
        self.log_path = self.dir / "envoy-gateway.log"
        self._log = open(self.log_path, "wb")
        full_env = {"PATH": os.environ.get("PATH", ""), "HOME": str(self.dir), **env}
        self.proc = subprocess.Popen([self.binary, "server", "--config-path", str(config)], stdout=self._log,
                                     stderr=subprocess.STDOUT, env=full_env, start_new_session=True)
        atexit.register(self.cleanup)
        # A file written between the provider's first read and its watch is never seen: wait for the watch.
        wait(lambda: self.running() and "Watching path added" in self.log(), 60,
             "envoy-gateway watching its resources", self.log)

    def running(self) -> bool:
        """True while envoy-gateway runs; raises with its log once it has exited (ports it needs are fixed:
        another instance, or the demo, may hold them)."""
        if self.proc.poll() is not None:
            raise RuntimeError(f"envoy-gateway exited with {self.proc.returncode}:\n{self.log()[-4000:]}")
        return True

    # -- resources ---------------------------------------------------------------------------------------
    def _host_mode_documents(self) -> list[dict]:
        """Host mode only: Envoy reaches Envoy Gateway's Wasm cache on loopback with certgen's CA, and the
        client certificate Envoy Gateway hands Envoy for it comes from a Secret `envoy-gateway-system/envoy`."""
        certs = self.config_home / "certs"

        def b64(path: Path) -> str:
            return base64.b64encode(path.read_bytes()).decode()

        secret = {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
                  "metadata": {"name": "envoy", "namespace": "envoy-gateway-system"},
                  "data": {"ca.crt": b64(certs / "envoy/ca.crt"), "tls.crt": b64(certs / "envoy/tls.crt"),
                           "tls.key": b64(certs / "envoy/tls.key")}}
        cluster = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
        patch = {"apiVersion": "gateway.envoyproxy.io/v1alpha1", "kind": "EnvoyPatchPolicy",
                 "metadata": {"name": "host-mode-wasm-cache", "namespace": "envoy-gateway-system"},
                 "spec": {"targetRef": {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": GATEWAY[1]},
                          "type": "JSONPatch", "jsonPatches": [
                              {"type": cluster, "name": "wasm_cluster", "operation": {
                                  "op": "replace",
                                  "path": "/load_assignment/endpoints/0/lb_endpoints/0/endpoint/address/socket_address/address",
                                  "value": "127.0.0.1"}},
                              {"type": cluster, "name": "wasm_cluster", "operation": {
                                  "op": "replace",
                                  "path": "/transport_socket/typed_config/common_tls_context/validation_context/trusted_ca/filename",
                                  "value": str(certs / "envoy/ca.crt")}},
                          ]}}
        return [secret, patch]

    def _write(self, name: str, docs: list[dict]) -> None:
        tmp = self.resources / f".{name}.tmp"
        tmp.write_text(yaml.safe_dump_all(docs, sort_keys=False))
        tmp.rename(self.resources / name)

    def apply(self, docs: list[dict]) -> None:
        """Replaces the translated resources with `docs` (only kinds Envoy Gateway reads)."""
        self._write("resources.yaml", docs)

    # -- what it reports ---------------------------------------------------------------------------------
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def statuses(self) -> dict[tuple[str, str], dict]:
        """The latest status the file provider logged for each (kind, namespace/name); kinds it cannot name
        (EnvoyProxy) are logged as `Unknown`. With no Kubernetes, this log is where status goes. A status is
        logged when it changes: one that an earlier apply() set and this one left alone stays the latest."""
        latest = {}
        for kind, body, fields in _STATUS.findall(self.log()):
            latest[(kind, json.loads(fields)["key"])] = yaml.safe_load(body)
        return latest

    def conditions(self, kind: str, key: str) -> dict[str, dict]:
        """Conditions by type of one object's latest status (a policy's, under its first ancestor)."""
        status = self.statuses().get((kind, key))
        if status is None:
            return {}
        # Policies report per ancestor, routes per parent, the rest directly.
        holders = status.get("ancestors") or status.get("parents") or [status]
        conditions = holders[0].get("conditions", [])
        return {c["type"]: c for c in conditions}

    def envoy_admin(self) -> str:
        """The admin address of the Envoy it runs (written by Host infrastructure under the runtime dir)."""
        found = sorted(self.runtime_dir.glob("*/admin-address.txt"), key=lambda p: p.stat().st_mtime)
        if not found:
            raise FileNotFoundError("no admin-address.txt yet")
        return found[-1].read_text().strip()

    def envoy_pid(self) -> int:
        """The process id of the Envoy it runs (its child process)."""
        children = [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()
                    and _parent(p) == self.proc.pid and "envoy" in _cmdline(p)]
        assert len(children) == 1, children
        return children[0]

    def envoy_environment(self) -> dict[str, str]:
        """The environment of the Envoy it runs, as the kernel holds it."""
        raw = (Path("/proc") / str(self.envoy_pid()) / "environ").read_bytes()
        return dict(entry.decode(errors="replace").partition("=")[::2] for entry in raw.split(b"\0") if entry)

    def config_dump(self) -> dict:
        with urllib.request.urlopen(f"http://{self.envoy_admin()}/config_dump?include_eds", timeout=5) as r:
            return json.load(r)

    def stats(self) -> str:
        with urllib.request.urlopen(f"http://{self.envoy_admin()}/stats/prometheus", timeout=5) as r:
            return r.read().decode()

    def stop(self) -> None:
        stop_process(self.proc, group=True)
        if not self._log.closed:
            self._log.close()

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def _parent(proc: Path) -> int:
    try:
        status = (proc / "status").read_text()
    except OSError:
        return -1
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("PPid:")))


def _cmdline(proc: Path) -> str:
    try:
        return (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def wait(condition, timeout: float, what: str, detail=lambda: ""):
    """Polls `condition()` until it returns something truthy; raises with `detail()` on timeout."""
    deadline = time.monotonic() + timeout
    last_error = None
    while time.monotonic() < deadline:
        try:
            value = condition()
            if value:
                return value
        except (OSError, ValueError, KeyError) as error:
            last_error = error
        time.sleep(0.1)
    raise NotSeen(f"{what} not seen within {timeout}s (last error: {last_error}):\n{detail()}")

