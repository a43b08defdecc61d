"""Receivers served to a standalone Envoy as a cluster serves them (docs/live-configuration.md): `Receiver`
objects and their Secrets in the real kube-apiserver, the controller (`hookgate serve --channel-key-file`)
watching them under its ServiceAccount, and the real Envoy (tests/harness.py) whose filter is given only the
bootstrap: which cluster reaches the controller and the controller's public key. The filter enrolls, is
confirmed on its own listener, and loads the sealed configuration; nothing is in Envoy's environment."""

from __future__ import annotations

import json
import secrets
import subprocess
import urllib.request
from pathlib import Path

import yaml

from gateway import render, wait
from gitops import ALLOWED_NAMESPACES, CONTROLLER_NAMESPACE, controller_env
from harness import (CLUSTER_NAME, CONTROLLER, CONTROLLER_CLUSTER, ROOT, Controller, Envoy, envoy_bootstrap,
                     free_port)

API = "hookgate.io/v1alpha1"
CRDS = ROOT / "manifests/base/crds"
# The test controller's ServiceAccount (tests/gitops.py) gets what the manifests give the controller to
# watch Receivers and Secrets: their ClusterRole, bound under a name of its own (the manifests' own binding
# names another namespace's ServiceAccount in tests/test_live_receivers.py).
BINDING = "hookgate-controller-receivers-tests"


def receiver(name: str, namespace: str, spec: dict) -> dict:
    return {"apiVersion": API, "kind": "Receiver", "metadata": {"name": name, "namespace": namespace}, "spec": spec}


def secret(name: str, namespace: str, data: dict[str, str]) -> dict:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": namespace},
            "stringData": data}


def public_key(channel_key: str) -> str:
    """The public half of a channel key, as users get it: `hookgate public-key`."""
    out = subprocess.run([str(CONTROLLER), "public-key", "-"], input=channel_key, capture_output=True,
                         text=True, check=True)
    return out.stdout.strip()


def prepare(cp) -> None:
    """The Receiver CRD installed and the test controller allowed to watch Receivers and Secrets and to
    reconcile in the seeded namespaces (once)."""
    if getattr(cp, "_receivers_prepared", False):
        return
    cp.install_crds([d for d in render(CRDS) if d["kind"] == "CustomResourceDefinition"])
    role = next(d for f in sorted((ROOT / "manifests/base").rglob("*.yaml")) for d in yaml.safe_load_all(f.read_text())
                if d and d.get("kind") == "ClusterRole"
                and any("receivers" in rule.get("resources", []) for rule in d.get("rules", [])))
    cp.apply(role)
    cp.apply({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
              "metadata": {"name": BINDING},
              "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                          "name": role["metadata"]["name"]},
              "subjects": [{"kind": "ServiceAccount", "name": "hookgate-controller",
                            "namespace": CONTROLLER_NAMESPACE}]})
    # Its reconcile rights where the seeded objects are, under a binding name of its own: the examples'
    # bindings named `hookgate-controller` in those namespaces name their own controllers' accounts.
    for namespace in ALLOWED_NAMESPACES:
        cp.apply({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                  "metadata": {"name": "hookgate-controller-served", "namespace": namespace},
                  "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                              "name": "hookgate-controller"},
                  "subjects": [{"kind": "ServiceAccount", "name": "hookgate-controller",
                                "namespace": CONTROLLER_NAMESPACE}]})
    cp._receivers_prepared = True


class ServedEdge:
    """Envoy with the filter, configured by a controller from `objects` (Receivers and Secrets, applied
    first; those it created are deleted on exit). The route's upstream is `upstream_port`, or the controller itself (as on a
    cluster) when it is None. The controller watches only the objects' namespaces and signs attestations
    with `attestation_key` (default: tests/gitops.py's). Ready once the filter has loaded every Receiver of
    those namespaces but `refused` ones."""

    def __init__(self, cp, workdir: Path, objects: list[dict], *, upstream_port: int | None = None,
                 attestation_key: str | None = None, controller_args: list[str] = (), refused: int = 0,
                 concurrency: int = 1, log_level: str = "info", adjust=lambda bootstrap: bootstrap,
                 **bootstrap_options) -> None:
        prepare(cp)
        self.cp, self.objects = cp, objects
        namespaces = sorted({o["metadata"]["namespace"] for o in objects})
        for namespace in namespaces:
            cp.namespace(namespace)
        # Deleted on exit: the objects this edge created (another edge may be serving the same ones).
        self.created = []
        for obj in sorted(objects, key=lambda o: o["kind"] != "Secret"):
            meta = obj["metadata"]
            path = cp.resource_path(obj["apiVersion"], obj["kind"], meta["namespace"], meta["name"])
            if cp.request("GET", path)[0] == 404:
                self.created.append(path)
            cp.apply(obj)
        channel_key = secrets.token_hex(32)
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "channel-key").write_text(channel_key)
        listen_port = free_port()
        args = ["--channel-key-file", str(workdir / "channel-key"), "--proxy-listener-port", str(listen_port),
                "--webhook-host", "hooks.test",
                *(a for ns in namespaces for a in ("--watch-namespace", ns))]
        if attestation_key is not None:
            (workdir / "attestation-key").write_text(attestation_key)
            args += ["--attestation-key-file", str(workdir / "attestation-key")]
        self.controller = Controller(controller_env(cp, workdir), args + list(controller_args))
        try:
            bootstrap = {"controller": {"cluster": CLUSTER_NAME if upstream_port is None else CONTROLLER_CLUSTER},
                         "controllerKeys": [public_key(channel_key)]}
            self.envoy = Envoy(adjust(envoy_bootstrap(
                listen_port=listen_port, admin_port=free_port(), filter_config=bootstrap,
                upstream_port=self.controller.port if upstream_port is None else upstream_port,
                controller_port=None if upstream_port is None else self.controller.port, **bootstrap_options)),
                {}, concurrency=concurrency, log_level=log_level)
        except Exception:
            self.controller.stop()
            raise
        # Every Receiver of the watched namespaces is served (others' too), but the `refused`.
        expected = sum(len(cp.ok("GET", cp.resource_path(API, "Receiver", ns))["items"]) for ns in namespaces) - refused
        try:
            wait(lambda: self.receivers_loaded() == expected, 60, f"{expected} receivers loaded by the filter",
                 lambda: self.envoy.log()[-3000:] + self.controller.log()[-3000:])
        except Exception:
            self.close()
            raise

    @property
    def port(self) -> int:
        return self.envoy.port

    def stat(self, name: str) -> int:
        """The value of the filter's metric `name` in Envoy (0 before it is set)."""
        url = f"http://127.0.0.1:{self.envoy.admin_port}/stats?format=json&filter={name}$"
        with urllib.request.urlopen(url, timeout=5) as r:
            return sum(int(s.get("value", 0)) for s in json.load(r)["stats"])

    def receivers_loaded(self) -> int:
        """The receivers of the configuration the filter has loaded (0 before one)."""
        return self.stat("hookgate_configuration_receivers")

    def controller_metric(self, series: str) -> int:
        """The value of the controller's metric `series` (its name and labels as exposed; 0 before it is set)."""
        status, text = self.controller.get("/metrics")
        assert status == 200
        return sum(int(float(x.rsplit(" ", 1)[1])) for x in text.splitlines() if x.startswith(series + " "))

    def controller_requests(self, outcome: str) -> int:
        """Configuration requests the controller answered with `outcome`, from its own metrics."""
        return self.controller_metric(f'hookgate_configuration_requests_total{{outcome="{outcome}"}}')

    def close(self) -> None:
        try:
            self.envoy.cleanup()
        finally:
            self.controller.stop()
            for path in reversed(self.created):  # the Receivers before their Secrets
                self.cp.request("DELETE", path)

    def __enter__(self) -> "ServedEdge":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
