"""A real Kubernetes control plane on loopback for tests and the demo: etcd and kube-apiserver built from
their Go modules (tests/control-plane/build.sh), RBAC authorization, a static admin token for the harness,
a service-account signing key so TokenRequest works, and the CRDs read from the projects' Go modules.
There is no controller-manager: namespaces get no default ServiceAccount and nothing garbage-collects."""

from __future__ import annotations

import atexit
import concurrent.futures
import functools
import http.client
import json
import os
import re
import secrets
import shutil
import ssl
import subprocess
import tempfile
import time
import urllib.parse
import zipfile
from collections import Counter
from pathlib import Path

import yaml

from harness import free_port, stop_process

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "tests/control-plane/build.sh"
FIXTURES = ROOT / "tests/fixtures"

# CRDs come from these Go modules (read from the module zip: some versions declare a newer `go` than the
# local toolchain, which only matters for building them, not for reading their YAML).
CRD_MODULES = {
    "flux": [
        ("github.com/fluxcd/source-controller", "v1.10.1", "config/crd/bases/"),
        ("github.com/fluxcd/kustomize-controller", "v1.10.1", "config/crd/bases/"),
        ("github.com/fluxcd/helm-controller", "v1.4.3", "config/crd/bases/"),
        ("github.com/fluxcd/image-reflector-controller", "v1.1.1", "config/crd/bases/"),
    ],
    "gateway": [
        ("sigs.k8s.io/gateway-api", "v1.6.1", "config/crd/standard/"),
        ("github.com/envoyproxy/gateway", "v1.9.1", "charts/gateway-helm/charts/crds/crds/generated/"),
    ],
    # What Envoy Gateway's Helm chart installs (its `crds` subchart): Gateway API's experimental channel at the
    # version Envoy Gateway pins, and Envoy Gateway's own.
    "envoy-gateway-chart": [("github.com/envoyproxy/gateway", "v1.9.1", "charts/gateway-helm/charts/crds/crds/")],
}


@functools.cache
def build_binaries() -> dict[str, str]:
    """Paths of the binaries tests/control-plane/build.sh builds (kube-apiserver, etcd, kubectl, kustomize,
    Envoy Gateway, the registry, eg-translate...), building them on the first call of a process."""
    out = subprocess.run(["bash", str(BUILD)], check=True, stdout=subprocess.PIPE, text=True).stdout
    return dict(line.split("=", 1) for line in out.strip().splitlines() if "=" in line)


@functools.cache
def kubectl_directory() -> Path:
    """A directory holding only `kubectl`, the one build.sh builds: first on the PATH of a command that runs
    `kubectl` as users type it (not whatever kubectl the machine has)."""
    directory = Path(tempfile.mkdtemp(prefix="hookgate-kubectl-"))
    (directory / "kubectl").symlink_to(build_binaries()["KUBECTL"])
    atexit.register(shutil.rmtree, directory, True)
    return directory


def module_files(module: str, version: str, prefix: str, suffix: str = ".yaml") -> list[str]:
    """Texts of the files under `prefix` in a Go module, downloaded through the Go module proxy."""
    env = {**os.environ, "GOFLAGS": "-mod=mod"}
    info = json.loads(subprocess.run(["go", "mod", "download", "-json", f"{module}@{version}"],
                                     stdout=subprocess.PIPE, env=env, text=True, cwd=tempfile.gettempdir()).stdout)
    zip_path = info.get("Zip")
    if not zip_path or not Path(zip_path).exists():
        raise RuntimeError(f"cannot download {module}@{version}: {info.get('Error')}")
    root = f"{module}@{version}/{prefix}"
    with zipfile.ZipFile(zip_path) as z:
        return [z.read(n).decode() for n in sorted(z.namelist()) if n.startswith(root) and n.endswith(suffix)]


def crd_documents(group: str | list[tuple[str, str, str]]) -> list[dict]:
    """The CRDs of a group of CRD_MODULES, or of a list of (module, version, directory)."""
    docs = []
    for module, version, prefix in CRD_MODULES[group] if isinstance(group, str) else group:
        for text in module_files(module, version, prefix):
            # libyaml's parser: the Python one takes seconds over Gateway API's and Envoy Gateway's CRDs.
            docs += [d for d in yaml.load_all(text, Loader=yaml.CSafeLoader)
                     if d and d.get("kind") == "CustomResourceDefinition"]
    return docs


class ApiError(RuntimeError):
    def __init__(self, status: int, body: dict | str):
        super().__init__(f"{status}: {body}")
        self.status = status
        self.body = body


class ControlPlane:
    def __init__(self) -> None:
        self.binaries = build_binaries()
        self.dir = Path(tempfile.mkdtemp(prefix="hookgate-cp-"))
        self.admin_token = secrets.token_hex(24)
        (self.dir / "tokens.csv").write_text(f"{self.admin_token},hookgate-admin,hookgate-admin,system:masters\n")
        subprocess.run(["openssl", "genrsa", "-out", str(self.dir / "sa.key"), "2048"], check=True,
                       stderr=subprocess.DEVNULL)
        subprocess.run(["openssl", "rsa", "-in", str(self.dir / "sa.key"), "-pubout", "-out", str(self.dir / "sa.pub")],
                       check=True, stderr=subprocess.DEVNULL)
        self.etcd_port, self.peer_port, self.port = free_port(), free_port(), free_port()
        self.procs: dict[str, subprocess.Popen] = {}
        self._discovery: dict[str, dict] = {}
        atexit.register(self.stop)
        self.start_etcd()
        self.start_apiserver()

    # -- processes ---------------------------------------------------------------------------------------
    def _spawn(self, name: str, args: list[str]) -> None:
        log = open(self.dir / f"{name}.log", "ab")
        self.procs[name] = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def start_etcd(self) -> None:
        peer = f"http://127.0.0.1:{self.peer_port}"
        self._spawn("etcd", [
            self.binaries["ETCD"], "--name", "default", "--data-dir", str(self.dir / "etcd"),
            "--listen-client-urls", f"http://127.0.0.1:{self.etcd_port}",
            "--advertise-client-urls", f"http://127.0.0.1:{self.etcd_port}",
            "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
            "--initial-cluster", f"default={peer}", "--log-level", "warn",
        ])

    def start_apiserver(self, timeout: float = 120) -> None:
        self._spawn("kube-apiserver", [
            self.binaries["KUBE_APISERVER"],
            "--etcd-servers", f"http://127.0.0.1:{self.etcd_port}",
            "--bind-address", "127.0.0.1", "--advertise-address", "127.0.0.1", "--secure-port", str(self.port),
            "--cert-dir", str(self.dir / "certs"),
            "--authorization-mode", "RBAC",
            "--token-auth-file", str(self.dir / "tokens.csv"),
            "--service-account-issuer", "https://kubernetes.default.svc",
            "--service-account-key-file", str(self.dir / "sa.pub"),
            "--service-account-signing-key-file", str(self.dir / "sa.key"),
            "--service-cluster-ip-range", "10.96.0.0/24",
            "--disable-admission-plugins", "ServiceAccount",
            "--enable-priority-and-fairness=false",
            "--v", "1",
        ])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.procs["kube-apiserver"].poll() is not None:
                raise RuntimeError(f"kube-apiserver exited:\n{self.log('kube-apiserver')[-4000:]}")
            try:
                status, _ = self.request("GET", "/readyz")
                if status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"kube-apiserver not ready in {timeout}s:\n{self.log('kube-apiserver')[-4000:]}")

    def stop_apiserver(self) -> None:
        self._stop("kube-apiserver")

    def _stop(self, name: str) -> None:
        proc = self.procs.pop(name, None)
        if proc:
            stop_process(proc, group=True)

    def stop(self) -> None:
        for name in ("kube-apiserver", "etcd"):
            self._stop(name)
        shutil.rmtree(self.dir, ignore_errors=True)

    def log(self, name: str) -> str:
        path = self.dir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    # -- HTTP --------------------------------------------------------------------------------------------
    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def ca_file(self) -> Path:
        return self.dir / "certs/apiserver.crt"

    def request(self, method: str, path: str, body=None, token: str | None = None,
                content_type: str = "application/json", query: dict | None = None) -> tuple[int, dict | str]:
        context = ssl.create_default_context(cafile=str(self.ca_file)) if self.ca_file.exists() else ssl._create_unverified_context()
        conn = http.client.HTTPSConnection("127.0.0.1", self.port, context=context, timeout=30)
        if query:
            path += ("&" if "?" in path else "?") + urllib.parse.urlencode(query)
        data = None if body is None else (body if isinstance(body, (bytes, str)) else json.dumps(body))
        headers = {"Authorization": f"Bearer {token or self.admin_token}", "Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = content_type
        try:
            conn.request(method, path, body=data, headers=headers)
            response = conn.getresponse()
            text = response.read().decode()
        finally:
            conn.close()
        try:
            return response.status, json.loads(text)
        except ValueError:
            return response.status, text

    def served_requests(self) -> Counter:
        """Requests the API server has served so far, by (verb, resource), from its own /metrics
        (`(non-resource)` for paths such as /version)."""
        status, text = self.request("GET", "/metrics")
        if status != 200:
            raise ApiError(status, text)
        counts: Counter = Counter()
        for labels, value in re.findall(r'^apiserver_request_total\{([^}]*)\} (\S+)$', text, re.M):
            fields = dict(re.findall(r'(\w+)="([^"]*)"', labels))
            counts[(fields.get("verb", ""), fields.get("resource", "") or "(non-resource)")] += int(float(value))
        return counts

    def ok(self, method: str, path: str, body=None, **kw) -> dict:
        status, reply = self.request(method, path, body, **kw)
        if status >= 300:
            raise ApiError(status, reply)
        return reply

    # -- resources ---------------------------------------------------------------------------------------
    def resource_path(self, api_version: str, kind: str, namespace: str | None = None, name: str | None = None) -> str:
        base = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
        if api_version not in self._discovery:
            self._discovery[api_version] = self.ok("GET", base)
        resource = next((r for r in self._discovery[api_version]["resources"] if r["kind"] == kind and "/" not in r["name"]), None)
        if resource is None:
            self._discovery.pop(api_version)
            raise ApiError(404, f"no resource for {api_version} {kind}")
        path = base
        if resource["namespaced"]:
            path += f"/namespaces/{namespace or 'default'}"
        path += f"/{resource['name']}"
        return path + (f"/{name}" if name else "")

    def apply(self, doc: dict, dry_run: bool = False, token: str | None = None) -> dict:
        """Server-side apply of one object (created or updated)."""
        meta = doc["metadata"]
        path = self.resource_path(doc["apiVersion"], doc["kind"], meta.get("namespace"), meta["name"])
        query = {"fieldManager": "hookgate-tests", "force": "true"}
        if dry_run:
            query["dryRun"] = "All"
        return self.ok("PATCH", path, json.dumps(doc), token=token, query=query,
                       content_type="application/apply-patch+yaml")

    def get(self, api_version: str, kind: str, namespace: str | None, name: str) -> dict:
        return self.ok("GET", self.resource_path(api_version, kind, namespace, name))

    def install_crds(self, docs: list[dict]) -> None:
        # A few at a time: each apply of a large CRD waits on the API server, not on this machine.
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            list(pool.map(self.apply, docs))
        for doc in docs:
            name = doc["metadata"]["name"]
            deadline = time.monotonic() + 60
            while True:
                crd = self.get("apiextensions.k8s.io/v1", "CustomResourceDefinition", None, name)
                conditions = crd.get("status", {}).get("conditions") or []
                if any(c["type"] == "Established" and c["status"] == "True" for c in conditions):
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"CRD {name} not established")
                time.sleep(0.1)
        self._discovery.clear()

    def namespace(self, name: str) -> None:
        self.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})

    def service_account_token(self, namespace: str, name: str, seconds: int = 3600) -> str:
        self.apply({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name, "namespace": namespace}})
        reply = self.ok("POST", f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token",
                        {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                         "spec": {"expirationSeconds": seconds}})
        return reply["status"]["token"]

    def kubeconfig(self, token: str, path: Path) -> Path:
        path.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "hookgate",
            "clusters": [{"name": "local", "cluster": {"server": self.server, "certificate-authority": str(self.ca_file)}}],
            "users": [{"name": "hookgate", "user": {"token": token}}],
            "contexts": [{"name": "hookgate", "context": {"cluster": "local", "user": "hookgate"}}],
        }))
        return path
