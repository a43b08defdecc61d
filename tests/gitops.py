"""The GitOps world the controller and end-to-end tests run in: a seeded control plane, the manifests'
RBAC bound to a real ServiceAccount, and Flux / Argo CD objects."""

from __future__ import annotations

import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import yaml

from cluster import FIXTURES, ROOT, ControlPlane, crd_documents

KEY = "controller-test-attestation-key-0123456789"
RBAC = ROOT / "manifests/base/controller/rbac.yaml"
ALLOWED_NAMESPACES = ["flux-system", "apps", "argocd"]
# The controller's own namespace: its ServiceAccount and its dispatch records (Leases).
CONTROLLER_NAMESPACE = "hookgate-system"
RFC3339_NANOS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z$")
FLUX = "reconcile.fluxcd.io/requestedAt"


def bind_manifest_rbac(cp: ControlPlane, sa_namespace: str, sa_name: str, namespaces: list[str]) -> None:
    """Applies manifests/base/controller/rbac.yaml as Kustomize would: the ClusterRole bound in `namespaces`,
    the Role (dispatch records) and its binding in the ServiceAccount's own namespace."""
    for doc in yaml.safe_load_all(RBAC.read_text()):
        if doc["kind"] == "ClusterRole":
            cp.apply(doc)
        elif doc["kind"] == "Role":
            cp.apply({**doc, "metadata": {**doc["metadata"], "namespace": sa_namespace}})
        elif doc["kind"] == "RoleBinding":
            for ns in namespaces if doc["roleRef"]["kind"] == "ClusterRole" else [sa_namespace]:
                binding = json.loads(json.dumps(doc))
                binding["metadata"]["namespace"] = ns
                for subject in binding["subjects"]:
                    subject["namespace"] = sa_namespace
                    subject["name"] = sa_name
                cp.apply(binding)


def git_repository(name: str, ns: str = "flux-system", labels: dict | None = None) -> dict:
    return {"apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "GitRepository",
            "metadata": {"name": name, "namespace": ns, "labels": labels or {}},
            "spec": {"url": f"https://github.com/example/{name}", "interval": "10m", "ref": {"branch": "main"}}}


def kustomization(name: str, ns: str = "flux-system", labels: dict | None = None) -> dict:
    return {"apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization",
            "metadata": {"name": name, "namespace": ns, "labels": labels or {}},
            "spec": {"interval": "10m", "path": "./deploy", "prune": True,
                     "sourceRef": {"kind": "GitRepository", "name": "webapp"}}}


def application(name: str, ns: str = "argocd") -> dict:
    return {"apiVersion": "argoproj.io/v1alpha1", "kind": "Application", "metadata": {"name": name, "namespace": ns},
            "spec": {"project": "default", "source": {"repoURL": "https://github.com/example/guestbook", "path": "."}}}


def controller_env(cp: ControlPlane, workdir: Path) -> dict:
    """The controller's environment as the Deployment gives it: the ServiceAccount's token (through a
    kubeconfig), the attestation key, and its namespace from the downward API."""
    token = cp.service_account_token(CONTROLLER_NAMESPACE, "hookgate-controller")
    return {"KUBECONFIG": str(cp.kubeconfig(token, workdir / "kubeconfig")), "HOOKGATE_ATTESTATION_KEY": KEY,
            "POD_NAMESPACE": CONTROLLER_NAMESPACE}


def annotations(cp: ControlPlane, api_version: str, kind: str, ns: str, name: str) -> dict:
    return cp.get(api_version, kind, ns, name)["metadata"].get("annotations", {})


def resource_versions(cp: ControlPlane) -> dict:
    out = {}
    for api_version, kind, ns in [("source.toolkit.fluxcd.io/v1", "GitRepository", "flux-system"),
                                  ("kustomize.toolkit.fluxcd.io/v1", "Kustomization", "flux-system"),
                                  ("source.toolkit.fluxcd.io/v1", "GitRepository", "forbidden")]:
        for item in cp.ok("GET", cp.resource_path(api_version, kind, ns))["items"]:
            out[(kind, ns, item["metadata"]["name"])] = item["metadata"]["resourceVersion"]
    return out


def seeded_control_plane() -> ControlPlane:
    plane = ControlPlane()
    crds = crd_documents("flux") + list(yaml.safe_load_all((FIXTURES / "argocd-application-crd.yaml").read_text()))
    plane.install_crds(crds)
    for ns in ALLOWED_NAMESPACES + ["forbidden", CONTROLLER_NAMESPACE]:
        plane.namespace(ns)
    bind_manifest_rbac(plane, CONTROLLER_NAMESPACE, "hookgate-controller", ALLOWED_NAMESPACES)
    for obj in [git_repository("webapp"), git_repository("forbidden-repo", "forbidden"), git_repository("other", "apps"),
                kustomization("webapp-frontend", labels={"app": "webapp"}), kustomization("webapp-backend", labels={"app": "webapp"}),
                kustomization("unrelated", labels={"app": "other"}), application("guestbook")]:
        plane.apply(obj)
    return plane


class FakeGitHub:
    """Speaks POST /repos/{owner}/{repo}/dispatches: records every request, answers from a script, each
    answer after `delay` seconds (as a slow GitHub would)."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.script: list[int] = []  # statuses to answer, in order; 204 once empty
        self.delay = 0.0
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                with outer.lock:
                    outer.requests.append({"path": self.path, "body": json.loads(body),
                                           "headers": {k.lower(): v for k, v in self.headers.items()}})
                    status = outer.script.pop(0) if outer.script else 204
                time.sleep(outer.delay)
                payload = b"" if status == 204 else json.dumps({"message": f"GitHub says {status}"}).encode()
                self.send_response(status)
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def reset(self, script: list[int] | None = None, delay: float = 0.0) -> None:
        self.requests = []
        self.script = list(script or [])
        self.delay = delay
