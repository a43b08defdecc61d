"""Envoy Gateway with its Kubernetes provider, as users run it: `envoy-gateway server` (built from its Go module,
tests/control-plane/build.sh) watching the real kube-apiserver, with the CRDs and the configuration its Helm
chart installs, and the certificates its `certgen` job writes into the API server. There is no kubelet and
no controller-manager: what they would do is done here, and only that.

- A pod's container runs as a process (`run_container`): its command, its arguments with `$(VAR)` expanded,
  its environment (the downward API's fields read from the Pod object), its Secret, ConfigMap and emptyDir
  volumes at their mount paths, and its own /etc/hosts, through tests/control-plane/pod-root.sh (a mount
  namespace of its own: nothing is created on the machine).
- Pods have an address of their own: a network namespace holding one end of a veth pair, in the benchmarking
  range (198.18.0.0/15, RFC 2544) that no network routes; the other end, on this machine, is the address the
  controller listens on. The API server refuses loopback addresses in EndpointSlices (and a proxy pod's address
  must be one the controller can post to), so the test owns both addresses. Traffic goes only to them and to
  loopback.
- Cluster DNS is the pod's /etc/hosts: Envoy Gateway's Service names resolve to this machine's end of the pair.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import json
import os
import re
import subprocess
import urllib.request
from pathlib import Path

import yaml

from cluster import FIXTURES, ROOT, ControlPlane, build_binaries, crd_documents
from deploy import (Example, configured, controller_deployment, controller_from_deployment, receiver_key,
                    seed_targets)
from gateway import ENVOY_BINARY, ModuleServer, http_code, overlay, wait, webhook_tls_secret
from harness import WASM, stop_process

POD_ROOT = ROOT / "tests/control-plane/pod-root.sh"
CRDS = ROOT / "manifests/base/crds"
RECEIVER_CRD = "receivers.hookgate.io"
# Envoy's container port for a Gateway listener on port 80 (Envoy Gateway adds 10000 below 1024).
PROXY_LISTENER_PORT = 10080
# ... and for the https listener on port 443.
PROXY_HTTPS_PORT = 10443
EG_NAMESPACE = "envoy-gateway-system"
# The chart's Service for Envoy Gateway (xDS, the Wasm cache, the rate limit), by the names a proxy uses.
EG_SERVICE_NAMES = ("envoy-gateway", f"envoy-gateway.{EG_NAMESPACE}", f"envoy-gateway.{EG_NAMESPACE}.svc",
                    f"envoy-gateway.{EG_NAMESPACE}.svc.cluster.local")


class PodNetwork:
    """A network namespace for pods, joined to this machine by a veth pair: `host_address` here,
    `pod_address` inside. One per machine (fixed names and addresses, like Envoy Gateway's ports): a leftover
    of an interrupted run is removed first."""

    NAME, HOST_LINK, POD_LINK = "hookgate-eg-pods", "hookgate-eg0", "hookgate-eg1"
    host_address, pod_address = "198.18.0.1", "198.18.0.2"

    def __init__(self) -> None:
        self._remove()
        for command in (["ip", "netns", "add", self.NAME],
                        ["ip", "link", "add", self.HOST_LINK, "type", "veth", "peer", "name", self.POD_LINK],
                        ["ip", "link", "set", self.POD_LINK, "netns", self.NAME],
                        ["ip", "addr", "add", f"{self.host_address}/30", "dev", self.HOST_LINK],
                        ["ip", "link", "set", self.HOST_LINK, "up"],
                        [*self.enter, "ip", "addr", "add", f"{self.pod_address}/30", "dev", self.POD_LINK],
                        [*self.enter, "ip", "link", "set", self.POD_LINK, "up"],
                        [*self.enter, "ip", "link", "set", "lo", "up"]):
            out = subprocess.run(command, capture_output=True, text=True)
            if out.returncode != 0:
                self._remove()
                raise RuntimeError(f"{' '.join(command)}: {out.stderr.strip()} (needs root and iproute2)")
        atexit.register(self.close)

    @property
    def enter(self) -> list[str]:
        """A command prefix that runs the command inside the namespace."""
        return ["nsenter", f"--net=/var/run/netns/{self.NAME}"]

    def _remove(self) -> None:
        subprocess.run(["ip", "link", "del", self.HOST_LINK], capture_output=True)
        subprocess.run(["ip", "netns", "del", self.NAME], capture_output=True)

    def close(self) -> None:
        self._remove()


class Process:
    """A process started by run_process, its output in a log file."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], workdir: Path) -> None:
        self.name, self.log_path = name, workdir / f"{name}.log"
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(argv, stdout=self._log, stderr=subprocess.STDOUT, env=env,
                                     start_new_session=True)

    def running(self) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.log()[-4000:]}")
        return True

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        stop_process(self.proc, group=True)
        self._log.close()


def run_process(name: str, argv: list[str], env: dict[str, str], workdir: Path, mounts: dict[str, Path],
                netns: PodNetwork | None = None) -> Process:
    """Runs `argv` with `mounts` (mount path: file or directory on this machine) in a root of its own, in
    the pods' network namespace when given, with a private IPC namespace (Envoy's hot-restart region is per
    pod)."""
    root = workdir / f"{name}-root"
    root.mkdir(parents=True)
    command = [*(netns.enter if netns else []), "unshare", "--mount", "--ipc", "--propagation", "private",
               "sh", str(POD_ROOT), str(root), *(f"{source}:{path}" for path, source in mounts.items()), "--",
               *argv]
    return Process(name, command, {"PATH": os.environ.get("PATH", ""), **env}, workdir)


def hosts_file(path: Path, address: str) -> Path:
    """A pod's /etc/hosts resolving Envoy Gateway's Service to `address` (cluster DNS, as far as a pod of
    envoy-gateway-system asks it)."""
    path.write_text("127.0.0.1 localhost\n" + "".join(f"{address} {name} {name}.\n" for name in EG_SERVICE_NAMES))
    return path


def write_volume(cp: ControlPlane, namespace: str, volume: dict, directory: Path) -> Path:
    """A pod volume's files as the kubelet writes them: a Secret's or ConfigMap's keys (or its `items`),
    an emptyDir empty."""
    directory.mkdir(parents=True)
    if "emptyDir" in volume:
        return directory
    if "secret" in volume:
        source, name = volume["secret"], volume["secret"]["secretName"]
        data = {k: base64.b64decode(v) for k, v in cp.get("v1", "Secret", namespace, name).get("data", {}).items()}
    elif "configMap" in volume:
        source, name = volume["configMap"], volume["configMap"]["name"]
        data = {k: v.encode() for k, v in cp.get("v1", "ConfigMap", namespace, name).get("data", {}).items()}
    else:
        raise NotImplementedError(f"volume {volume['name']}: only secret, configMap and emptyDir")
    for item in source.get("items") or [{"key": key, "path": key} for key in data]:
        (directory / item["path"]).parent.mkdir(parents=True, exist_ok=True)
        (directory / item["path"]).write_bytes(data[item["key"]])
    return directory


def field_value(pod: dict, path: str) -> str:
    """A downward API fieldRef's value from the Pod object (an annotation or label it lacks is empty)."""
    keyed = re.fullmatch(r"metadata\.(annotations|labels)\['([^']+)'\]", path)
    if keyed:
        return pod["metadata"].get(keyed[1], {}).get(keyed[2], "")
    section, field = path.split(".", 1)
    return pod[section][field]


def expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes' `$(VAR)` expansion of an argument: a defined variable is replaced, `$$` is `$`, the rest
    stays as written."""
    return re.sub(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)",
                  lambda m: "$" if m[0] == "$$" else env.get(m[1], m[0]), text)


def run_container(cp: ControlPlane, pod: dict, container_name: str, workdir: Path, *, binary: Path,
                  netns: PodNetwork, hosts: Path) -> Process:
    """What a kubelet does for one container of `pod` (an object in the API server, its status set), with
    `binary` as its image's command."""
    namespace = pod["metadata"]["namespace"]
    spec = pod["spec"]
    (container,) = [c for c in spec["containers"] if c["name"] == container_name]
    env = {}
    for variable in container.get("env", []):
        field = variable.get("valueFrom", {}).get("fieldRef")
        env[variable["name"]] = field_value(pod, field["fieldPath"]) if field else variable.get("value", "")
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    mounts = {m["mountPath"]: write_volume(cp, namespace, volumes[m["name"]], workdir / "volumes" / m["name"])
              for m in container.get("volumeMounts", [])}
    mounts["/etc/hosts"] = hosts
    argv = [str(binary), *(expand(a, env) for a in container.get("command", [])[1:] + container.get("args", []))]
    return run_process(container_name, argv, env, workdir, mounts, netns)


def crd_documents_of(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d and d.get("kind") == "CustomResourceDefinition"]


# Envoy Gateway's configuration: its chart's defaults, and the EnvoyPatchPolicy API the examples need.
CONFIGURATION = {
    "apiVersion": "gateway.envoyproxy.io/v1alpha1", "kind": "EnvoyGateway",
    "gateway": {"controllerName": "gateway.envoyproxy.io/gatewayclass-controller"},
    "provider": {"type": "Kubernetes"},
    "logging": {"level": {"default": "info"}},
    "extensionApis": {"enableEnvoyPatchPolicy": True},
}


class KubernetesEnvoyGateway:
    """`envoy-gateway server` with its Kubernetes provider, as its Helm chart runs it in envoy-gateway-system:
    its ConfigMap `envoy-gateway-config` (CONFIGURATION) at /config, the `envoy-gateway` Secret that
    `envoy-gateway certgen` (the chart's job, run here against the API server) writes at /certs, an emptyDir
    for its Wasm cache. It talks to the API server as an administrator (the chart's RBAC is a Helm template,
    and no Helm runs here). Its ports are fixed: one per machine."""

    def __init__(self, cp: ControlPlane, workdir: Path) -> None:
        self.cp, self.workdir = cp, workdir
        self.binary = build_binaries()["ENVOY_GATEWAY"]
        workdir.mkdir(parents=True, exist_ok=True)
        cp.namespace(EG_NAMESPACE)
        self.env = {"KUBECONFIG": str(cp.kubeconfig(cp.admin_token, workdir / "eg-kubeconfig")),
                    "ENVOY_GATEWAY_NAMESPACE": EG_NAMESPACE, "KUBERNETES_CLUSTER_DOMAIN": "cluster.local",
                    "HOME": str(workdir)}
        certgen = subprocess.run([self.binary, "certgen", "--disable-topology-injector"], capture_output=True,
                                 text=True, env={"PATH": os.environ.get("PATH", ""), **self.env}, timeout=60)
        assert certgen.returncode == 0, certgen.stdout + certgen.stderr
        # The chart's ConfigMap, mounted at /config as the chart mounts it.
        cp.apply({"apiVersion": "v1", "kind": "ConfigMap",
                  "metadata": {"name": "envoy-gateway-config", "namespace": EG_NAMESPACE},
                  "data": {"envoy-gateway.yaml": yaml.safe_dump(CONFIGURATION)}})
        volumes = {"/config": {"name": "config", "configMap": {"name": "envoy-gateway-config"}},
                   "/certs": {"name": "certs", "secret": {"secretName": "envoy-gateway"}},
                   "/var/lib/eg/wasm": {"name": "wasm", "emptyDir": {}}}
        mounts = {path: write_volume(cp, EG_NAMESPACE, volume, workdir / "volumes" / volume["name"])
                  for path, volume in volumes.items()}
        self.process = run_process("envoy-gateway",
                                   [self.binary, "server", "--config-path=/config/envoy-gateway.yaml"],
                                   self.env, workdir, mounts)
        atexit.register(self.stop)

    def log(self) -> str:
        return self.process.log()

    def stop(self) -> None:
        self.process.stop()


def proxy_deployment(cp: ControlPlane, gateway: tuple[str, str]) -> dict | None:
    """The Deployment Envoy Gateway made for the proxies of a Gateway (name, namespace), labelled with its
    owning Gateway, once it has made it and the ConfigMap its pods mount."""
    selector = (f"gateway.envoyproxy.io/owning-gateway-name={gateway[0]},"
                f"gateway.envoyproxy.io/owning-gateway-namespace={gateway[1]}")
    items = cp.ok("GET", f"/apis/apps/v1/namespaces/{EG_NAMESPACE}/deployments",
                  query={"labelSelector": selector})["items"]
    if len(items) != 1:
        return None
    name = items[0]["metadata"]["name"]
    return items[0] if cp.request("GET", f"/api/v1/namespaces/{EG_NAMESPACE}/configmaps/{name}")[0] == 200 else None


def scheduled_pod(cp: ControlPlane, deployment: dict, address: str) -> dict:
    """What the ReplicaSet controller, the scheduler and the kubelet make of a Deployment: one Pod of its
    template, Running and Ready at `address` (set through the status subresource). Returns the Pod."""
    template = deployment["spec"]["template"]
    namespace, name = deployment["metadata"]["namespace"], f"{deployment['metadata']['name']}-0"
    cp.apply({"apiVersion": "v1", "kind": "Pod",
              "metadata": {**template["metadata"], "name": name, "namespace": namespace},
              "spec": template["spec"]})
    status = {"phase": "Running", "podIP": address, "podIPs": [{"ip": address}], "hostIP": address,
              "conditions": [{"type": "Ready", "status": "True"}]}
    return cp.ok("PATCH", f"/api/v1/namespaces/{namespace}/pods/{name}/status", {"status": status},
                 content_type="application/merge-patch+json")


def endpoint_slice(cp: ControlPlane, service: dict, address: str, named_ports: dict[str, int]) -> None:
    """What the EndpointSlice controller makes of a Service with one ready pod, at `address`: labelled as the
    Service (Envoy Gateway finds its proxies' own slices by their owning Gateway), each port of the Service at
    its targetPort (a name is the pod's port of that name, in `named_ports`)."""
    meta = service["metadata"]
    ports = [{"name": p.get("name", ""), "protocol": p.get("protocol", "TCP"),
              "port": named_ports[target] if isinstance(target := p.get("targetPort", p["port"]), str) else target}
             for p in service["spec"]["ports"]]
    cp.apply({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
              "metadata": {"name": f"{meta['name']}-0", "namespace": meta["namespace"],
                           "labels": {**meta.get("labels", {}), "kubernetes.io/service-name": meta["name"]}},
              "addressType": "IPv4", "ports": ports,
              "endpoints": [{"addresses": [address], "conditions": {"ready": True, "serving": True}}]})


def kubectl(cp: ControlPlane, workdir: Path, *args: str) -> subprocess.CompletedProcess:
    """The kubectl build.sh builds, as an administrator (its cache in `workdir`)."""
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(workdir),
           "KUBECONFIG": str(cp.kubeconfig(cp.admin_token, workdir / "admin-kubeconfig"))}
    return subprocess.run([build_binaries()["KUBECTL"], *args], capture_output=True, text=True, env=env, timeout=120)


def route_gateway(docs: list[dict]) -> tuple[str, str]:
    """The Gateway (name, namespace) the example's HTTPRoute attaches to."""
    route = next(d for d in docs if d["kind"] == "HTTPRoute")
    parent = route["spec"]["parentRefs"][0]
    return parent["name"], parent.get("namespace", route["metadata"]["namespace"])


class KubernetesExample:
    """An example installed with kubectl the way the README says (the Receiver CRD first, then `kubectl apply
    -k` of the example, configured through a kustomization over it: controllerKeys and the module's source), on
    a cluster of its own (Envoy Gateway watches every namespace) that has what the example expects: Flux's
    CRDs, Envoy Gateway (its chart's CRDs, its certgen, `envoy-gateway server`), External Secrets Operator's
    CRD and the Secrets it would write. The controller Deployment and Envoy Gateway's proxy Deployment run as
    processes; `example` (deploy.Example) signs and sends deliveries to the proxy pod's listener."""

    def __init__(self, directory: Path, workdir: Path) -> None:
        self.workdir = workdir
        self._stack = contextlib.ExitStack()
        try:
            self.network = PodNetwork()
            self._stack.callback(self.network.close)
            self.cp = ControlPlane()
            self._stack.callback(self.cp.stop)
            self.cp.install_crds(crd_documents("envoy-gateway-chart") + crd_documents("flux")
                                 + crd_documents_of(FIXTURES / "secret-operators-crds.yaml"))
            self.cp.namespace("flux-system")  # Flux's own
            self.gateway = KubernetesEnvoyGateway(self.cp, workdir / "envoy-gateway")
            self._stack.callback(self.gateway.stop)
            self.example = self._install(directory)
            self._run_controller()
            self.envoy = self._run_proxy()
            self._stack.callback(self.envoy.stop)
            self._wait_serving()
        except BaseException:
            self.close()
            raise

    def _install(self, directory: Path) -> Example:
        """The README's commands, with the cluster side of what the example expects, and the module served
        from loopback (the release URL is not reachable here)."""
        modules = ModuleServer(WASM.parent)
        self._stack.callback(modules.close)
        configured_dir, docs, values = configured(directory, self.workdir)
        user = overlay(configured_dir, self.workdir / "user", patches=[
            {"target": {"kind": "EnvoyExtensionPolicy", "name": "hookgate"}, "patch": json.dumps(
                [{"op": "replace", "path": "/spec/wasm/0/code", "value": http_code(modules.url(WASM.name), WASM)}])}])
        # The CRD first, and established: `kubectl apply -k` right after it fails ("no matches for kind
        # Receiver"). `kubectl apply -f` of that directory would also read its kustomization.yaml as an object
        # and fail.
        for command in (["apply", "-k", str(CRDS)], ["wait", "--for=condition=Established", f"crd/{RECEIVER_CRD}"],
                        ["apply", "-k", str(user)]):
            out = kubectl(self.cp, self.workdir, *command)
            assert out.returncode == 0, f"kubectl {' '.join(command)}:\n{out.stdout}{out.stderr}"
        # The https listener's certificate, which the user (or cert-manager) creates.
        self.cp.apply(webhook_tls_secret())
        # What External Secrets Operator writes from the example's ExternalSecrets.
        for namespace, name in sorted({(ns, name) for ns, name, _ in values}):
            self.cp.apply({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": namespace},
                           "stringData": {key: value for (ns, secret, key), value in values.items()
                                          if (ns, secret) == (namespace, name)}})
        example = Example(directory.name, docs, [], values, self.cp, None, PROXY_LISTENER_PORT,
                          self.network.host_address, address=self.network.pod_address,
                          https_port=PROXY_HTTPS_PORT)
        for receiver in example.receivers:
            example.targets[receiver_key(receiver)] = seed_targets(self.cp, receiver)
        return example

    def _run_controller(self) -> None:
        """The controller Deployment as a process under its ServiceAccount, listening at this machine's end of
        the pods' network, and its Service's EndpointSlice pointing there."""
        docs = self.example.docs
        deployment = controller_deployment(docs)
        namespace = deployment["metadata"]["namespace"]
        account = deployment["spec"]["template"]["spec"]["serviceAccountName"]
        token = self.cp.service_account_token(namespace, account)
        env = {"KUBECONFIG": str(self.cp.kubeconfig(token, self.workdir / "controller-kubeconfig"))}
        # Not its container port (8080): here it shares the machine's network with Envoy Gateway, whose
        # metrics listen on :8080 (pods on a cluster have a network each). The EndpointSlice gives this port.
        self.example.controller = controller_from_deployment(deployment, self.example.secret_values,
                                                             self.workdir / "controller", env, [],
                                                             host=self.network.host_address)
        self._stack.callback(self.example.controller.stop)
        (service,) = [d for d in docs if d["kind"] == "Service"
                      and d["metadata"]["name"] == deployment["metadata"]["name"]]
        (port,) = [p["name"] for p in deployment["spec"]["template"]["spec"]["containers"][0]["ports"]]
        endpoint_slice(self.cp, service, self.network.host_address, {port: self.example.controller.port})

    def _run_proxy(self) -> Process:
        """Envoy Gateway's proxy Deployment for the example's Gateway, once it has made it: its Pod at the
        pods' address, its `envoy` container run as a process (the venv's Envoy; the `shutdown-manager`
        container, which only drains Envoy when the pod terminates, is not run)."""
        gateway = route_gateway(self.example.docs)
        deployment = wait(lambda: proxy_deployment(self.cp, gateway), 60, "Envoy Gateway's proxy Deployment",
                          self.gateway.log)
        pod = scheduled_pod(self.cp, deployment, self.network.pod_address)
        # Its Service's endpoints: the proxy's own cluster (zone-aware routing) waits for them.
        service = self.cp.get("v1", "Service", EG_NAMESPACE, deployment["metadata"]["name"])
        endpoint_slice(self.cp, service, self.network.pod_address, {})
        hosts = hosts_file(self.workdir / "proxy-hosts", self.network.host_address)
        return run_container(self.cp, pod, "envoy", self.workdir / "proxy", binary=ENVOY_BINARY,
                             netns=self.network, hosts=hosts)

    def _wait_serving(self) -> None:
        """Until the proxy's filter serves every receiver: it has enrolled with the controller through Envoy,
        the controller confirmed its VM at the proxy pod's address and sealed it the configuration, and an
        unsigned delivery is refused 401 (not refused before Envoy listens, nor 503 before the configuration)."""
        example = self.example

        def refused_unsigned(receiver: dict) -> bool:
            try:
                return example.send(example.unsigned(receiver))[0] == 401
            except OSError:
                return False

        logs = (self.gateway.process, self.envoy, example.controller)
        for receiver in example.receivers:
            wait(lambda: refused_unsigned(receiver), 90, f"the proxy's filter serving {receiver_key(receiver)}",
                 lambda: "\n".join(p.log()[-3000:] for p in logs))

    def status_conditions(self, kind: str, namespace: str, name: str) -> dict[str, dict]:
        """Conditions by type of an object's status as Envoy Gateway wrote it to the API server (a policy's
        under its first ancestor, a route's under its first parent)."""
        doc = next(d for d in self.example.docs if d["kind"] == kind)
        status = self.cp.get(doc["apiVersion"], kind, namespace, name).get("status", {})
        holders = status.get("ancestors") or status.get("parents") or [status]
        return {c["type"]: c for c in holders[0].get("conditions", [])}

    def proxy_stats(self) -> str:
        """The proxy's Prometheus stats, from the stats listener Envoy Gateway's bootstrap opens on the pod's
        address."""
        with urllib.request.urlopen(f"http://{self.network.pod_address}:19001/stats/prometheus", timeout=5) as r:
            return r.read().decode()

    def close(self) -> None:
        self._stack.close()
