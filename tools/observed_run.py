"""A run of hookgate to observe, with real parts: Envoy Gateway (standalone, tests/gateway.py) and the
controller deployed from manifests/examples/argocd-refresh plus a second GitHub Receiver whose name differs
from the example's only in `.` for `-` (`gitops.repo` beside `gitops-repo`), a real Prometheus scraping
Envoy's /stats/prometheus and the controller's /metrics as the PodMonitors of manifests/observability do,
and deliveries of every kind: signed, forged, to no receiver, a rollback dispatch (one refused by GitHub),
and a flood the rate limit cuts.

Serves tests/test_observability.py and tools/dashboard_picture.py (tests/ must be on sys.path)."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import yaml

from cluster import build_binaries
from deploy import MANIFESTS, Delivery, Example, deploy, is_receiver, send, wait_translated
from gateway import EnvoyGateway, ModuleServer, http_code, render, wait
from gitops import FakeGitHub
from harness import WASM, free_port, stop_process

EXAMPLE = "argocd-refresh"
# The example's GitHub receiver is `gitops-repo`: with the old dotted counter names both were one counter.
TWIN = "gitops.repo"
# Client addresses: deliveries, the flood, and the probe that waits for the translation.
SOURCE, FLOOD_SOURCE, PROBE_SOURCE = "127.0.6.1", "127.0.6.2", "127.0.6.3"


def twin_overlay(workdir: Path) -> Path:
    """The example with TWIN added: a copy of its first Receiver under the other name (with the same Secret)."""
    example = MANIFESTS / "examples" / EXAMPLE
    overlay = workdir / "observed"
    overlay.mkdir(parents=True, exist_ok=True)
    first = next(d for d in render(example) if is_receiver(d))
    twin = {**first, "metadata": {"name": TWIN, "namespace": first["metadata"]["namespace"]}}
    (overlay / "twin.yaml").write_text(yaml.safe_dump(twin, sort_keys=False))
    (overlay / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        # Kustomize takes only relative paths to other kustomizations.
        "resources": [os.path.relpath(example, overlay), "twin.yaml"],
    }, sort_keys=False))
    return overlay


class Prometheus:
    """A real Prometheus (tests/control-plane/build.sh) scraping `targets` {job: (host:port, path)} every
    `interval`, Envoy's job with honor_labels as the PodMonitor has it."""

    def __init__(self, targets: dict[str, tuple[str, str]], interval: str = "1s") -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="hookgate-prometheus-"))
        config = {"global": {"scrape_interval": interval, "evaluation_interval": interval},
                  "scrape_configs": [{"job_name": job, "metrics_path": path, "honor_labels": job == "envoy",
                                      "static_configs": [{"targets": [address]}]}
                                     for job, (address, path) in targets.items()]}
        (self.dir / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.url = f"http://127.0.0.1:{free_port()}"
        self._log = open(self.dir / "prometheus.log", "wb")
        self.proc = subprocess.Popen(
            [build_binaries()["PROMETHEUS"], f"--config.file={self.dir / 'prometheus.yml'}",
             f"--storage.tsdb.path={self.dir / 'data'}", f"--web.listen-address={self.url.removeprefix('http://')}"],
            stdout=self._log, stderr=subprocess.STDOUT)
        wait(lambda: self._get("/-/ready"), 60, "Prometheus ready", self.log)
        wait(lambda: all(t["health"] == "up" for t in self.targets()) and len(self.targets()) == len(targets),
             60, "Prometheus scraping every target", lambda: json.dumps(self.targets()) + self.log())

    def _get(self, path: str) -> bytes:
        with urllib.request.urlopen(self.url + path, timeout=10) as r:
            return r.read()

    def log(self) -> str:
        return (self.dir / "prometheus.log").read_text(errors="replace")

    def targets(self) -> list[dict]:
        return json.loads(self._get("/api/v1/targets"))["data"]["activeTargets"]

    def query_range(self, expr: str, start: float, end: float, step: float) -> list[dict]:
        query = urllib.parse.urlencode({"query": expr, "start": start, "end": end, "step": step})
        body = json.loads(self._get(f"/api/v1/query_range?{query}"))
        assert body["status"] == "success", body
        return body["data"]["result"]

    def stop(self) -> None:
        stop_process(self.proc)
        self._log.close()


@dataclass
class Run:
    example: Example
    gateway: EnvoyGateway
    github: FakeGitHub
    prometheus: Prometheus

    def envoy_metrics(self) -> str:
        return self.gateway.stats()

    def controller_metrics(self) -> str:
        status, text = self.example.controller.get("/metrics")
        assert status == 200, text
        return text


@contextmanager
def observed_run(cp, scrape_interval: str = "1s"):
    """Deploys the run and starts Prometheus on it; stops everything on exit."""
    workdir = Path(tempfile.mkdtemp(prefix="hookgate-observed-"))
    modules, github, gateway = ModuleServer(WASM.parent), FakeGitHub(), None
    example = prometheus = None
    try:
        gateway = EnvoyGateway({})
        example = deploy(twin_overlay(workdir), cp, gateway, workdir=workdir,
                         gateway_port=free_port(), wasm_code=http_code(modules.url(WASM.name), WASM), source=SOURCE,
                         controller_args=["--github-api-url", f"http://127.0.0.1:{github.port}"])
        wait_translated(example, probe_source=PROBE_SOURCE)
        prometheus = Prometheus({"envoy": (gateway.envoy_admin(), "/stats/prometheus"),
                                 "controller": (f"127.0.0.1:{example.controller.port}", "/metrics")},
                                interval=scrape_interval)
        yield Run(example, gateway, github, prometheus)
    finally:
        if prometheus:
            prometheus.stop()
        if example:
            example.stop()
        if gateway:
            gateway.cleanup()
        modules.close()
        github.server.shutdown()


def send_deliveries(run: Run, flood: int = 130, refuse_dispatch: bool = False, forged: int = 1) -> dict[str, list[int]]:
    """One round of every kind of delivery: a signed one to each receiver and `forged` forged ones, one to
    no receiver, and `flood` forged ones from one address (past the rate limit's 120 a minute they get
    429). Returns the statuses by kind."""
    example = run.example
    statuses: dict[str, list[int]] = {}

    def record(kind: str, status: int) -> None:
        statuses.setdefault(kind, []).append(status)

    for receiver in example.receivers:
        if receiver.get("action") == "dispatch":
            run.github.script = [403] if refuse_dispatch else []
            record("dispatch", example.send(example.delivery(receiver))[0])
        else:
            record("signed", example.send(example.delivery(receiver))[0])
        for _ in range(forged):
            record("forged", example.send(example.delivery(receiver, forged=True))[0])
    record("unknown path", send(example.port, example.host, Delivery("/hook/nothing-here", {}, b"{}"), SOURCE)[0])
    flooded = example.delivery(example.receivers[0], forged=True)
    for _ in range(flood):
        record("flood", example.send(flooded, source=FLOOD_SOURCE)[0])
    return statuses


def settle(seconds: float = 1.0) -> None:
    """Deliveries one second apart are never byte-identical attestations (the controller refuses replays)."""
    time.sleep(seconds)
