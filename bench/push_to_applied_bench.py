"""`make bench`, push to applied: a `git push` to a real Gitea (tests/forge.py) until Flux has fetched the pushed
commit (GitRepository `status.artifact.revision` = `main@sha1:<commit>`) and until Flux has applied it (a ConfigMap
from the repository, applied by a Kustomization, holds the pushed value). Flux's source-controller and
kustomize-controller and notification-controller are built from their Go modules (bench/flux/build.sh) and run as
processes on the real kube-apiserver + etcd (tests/cluster.py), with the settings `flux install` gives them
(client-side API limits, concurrency, interval jitter). Three ways, in one run:

  hookgate       Gitea's webhook (type gitea) -> the real Envoy with the hookgate filter -> the hookgate controller,
                 which annotates the GitRepository (tests/served.py, as tests/test_forge.py runs it).
  Flux receiver  Gitea's webhook straight to notification-controller's receiver, a Receiver of type `github`
                 (notification-controller v1.9 has no `gitea` type; Gitea also sends GitHub's headers,
                 X-GitHub-Event and X-Hub-Signature-256, which it verifies).
  polling        no webhook: the GitRepository's interval, 1m.

The two webhook ways get one repository each (GitRepository interval 1h, so that no poll interferes) and are
measured with sequential pushes, alternating between them, each waiting until its ConfigMap is applied before
the next: `--pushes` each (after `--warmup` not counted). Polling cannot be measured that way in reasonable time
(50 sequential waits of up to a minute), so it gets `--polled` repositories, each with its own GitRepository and
Kustomization, measured once each and concurrently: their objects are created spread over one interval (so
their poll times are spread over the minute as in a cluster whose objects were not all created at once), then
each gets one push, in a shuffled order, and every push waits for its own repository's next poll. The polling
objects exist only during that phase, so their polls do not load source-controller while the webhook ways are
measured. Times are seen through watches on the API server (GitRepositories, and ConfigMaps in APPS); they
start when `git commit` + `git push` starts (a row shows when `git push` returned). p99 is by nearest rank:
over 50 samples, the largest. The table is printed and written as JSON to target/bench/push_to_applied.json.
About 8 minutes on 2 cores once the controllers are built (their first build: about 20 minutes).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import secrets
import shutil
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(BENCH))

from cluster import ControlPlane, crd_documents  # noqa: E402
from controller_bench import percentile  # noqa: E402
from forge import USER, Gitea  # noqa: E402
from gitops import ALLOWED_NAMESPACES, CONTROLLER_NAMESPACE, FLUX, bind_manifest_rbac  # noqa: E402
from harness import free_port  # noqa: E402
from peer_bench import (FLUX_NAMESPACE, FluxController, NotificationController,  # noqa: E402
                        build_flux_controllers, flux_receiver)
from served import ServedEdge, receiver, secret  # noqa: E402

APPS = "bench-apps"  # where the Kustomizations apply the repositories' ConfigMaps
SECRET = "push-bench-webhook-secret-0123456789abcdef"
CONTROLLERS = ["source-controller", "kustomize-controller", "notification-controller"]
OUT = ROOT / "target/bench/push_to_applied.json"
MEASURES = {"pushed": "git commit + push returned", "annotated": "push -> reconcile requested",
            "fetched": "push -> artifact revision",
            "applied": "push -> ConfigMap applied"}


class FirstSeen:
    """Watches a collection of the API server and records the time each key that `keys(object)` yields is first
    seen. A watch the API server ends is resumed from a fresh list (counted in `resumed`; a key first seen on
    resuming is timed then, so late rather than early); any other end is kept in `ended`."""

    def __init__(self, cp: ControlPlane, path: str, keys) -> None:
        self.cp, self.path, self.keys = cp, path, keys
        self.seen: dict[tuple, float] = {}
        self.cond = threading.Condition()
        self.resumed = 0
        self.ended: str | None = None
        self.response = self._open()
        threading.Thread(target=self._read, daemon=True).start()

    def _open(self) -> http.client.HTTPResponse:
        listing = self.cp.ok("GET", self.path)
        for item in listing["items"]:
            self._record(item)
        conn = http.client.HTTPSConnection("127.0.0.1", self.cp.port, timeout=3600,
                                           context=ssl.create_default_context(cafile=str(self.cp.ca_file)))
        conn.request("GET", f"{self.path}?watch=1&resourceVersion={listing['metadata']['resourceVersion']}",
                     headers={"Authorization": f"Bearer {self.cp.admin_token}"})
        return conn.getresponse()

    def _record(self, obj: dict) -> None:
        now = time.monotonic()
        with self.cond:
            for key in self.keys(obj):
                self.seen.setdefault(key, now)
            self.cond.notify_all()

    def _read(self) -> None:
        try:
            while True:
                line = self.response.readline()
                if not line:
                    self.resumed += 1
                    self.response = self._open()
                    continue
                event = json.loads(line)
                if event["type"] == "ERROR":
                    raise RuntimeError(event["object"].get("message"))
                self._record(event["object"])
        except Exception as e:  # the thread's end must reach wait(), not vanish
            with self.cond:
                self.ended = repr(e)
                self.cond.notify_all()

    def wait(self, match, timeout: float, what: str) -> float:
        """The earliest time of the keys for which `match(key, time)` holds, once there is one."""
        def found() -> list[float]:
            return [t for k, t in self.seen.items() if match(k, t)]
        with self.cond:
            if not self.cond.wait_for(lambda: found() or self.ended, timeout):
                raise TimeoutError(f"{what}: not seen within {timeout:.0f}s")
            if not found():
                raise RuntimeError(f"{what}: the watch ended: {self.ended}")
            return min(found())


def git_repository_keys(obj: dict):
    name = obj["metadata"]["name"]
    yield ("annotated", name, obj["metadata"].get("annotations", {}).get(FLUX))
    yield ("fetched", name, obj.get("status", {}).get("artifact", {}).get("revision"))


def config_map_keys(obj: dict):
    yield ("applied", obj["metadata"]["name"], obj.get("data", {}).get("value"))


@dataclass
class Repository:
    """A Gitea repository holding deploy/ (a ConfigMap named after it), and its local clone."""
    name: str
    clone: Path
    commit: str = ""

    def write(self, value: str) -> None:
        deploy = self.clone / "deploy"
        deploy.mkdir(exist_ok=True)
        (deploy / "kustomization.yaml").write_text("resources:\n- configmap.yaml\n")
        (deploy / "configmap.yaml").write_text(
            f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {self.name}\ndata:\n  value: \"{value}\"\n")
        subprocess.run(["git", "add", "-A"], cwd=self.clone, check=True)


def create_repository(gitea: Gitea, name: str) -> Repository:
    repo = Repository(name, gitea.create_repository(name))
    repo.write("initial")
    repo.commit = gitea.push(repo.clone)
    return repo


def flux_objects(gitea: Gitea, name: str, interval: str) -> list[dict]:
    """A GitRepository for the repository (anonymous clone over HTTP) and a Kustomization applying its deploy/."""
    return [
        {"apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "GitRepository",
         "metadata": {"name": name, "namespace": FLUX_NAMESPACE},
         "spec": {"url": f"{gitea.url}/{USER}/{name}.git", "interval": interval, "ref": {"branch": "main"}}},
        {"apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization",
         "metadata": {"name": name, "namespace": FLUX_NAMESPACE},
         "spec": {"interval": "1h", "path": "./deploy", "prune": True, "targetNamespace": APPS,
                  "sourceRef": {"kind": "GitRepository", "name": name}}},
    ]


@dataclass
class Way:
    name: str
    samples: dict[str, list[float]] = field(default_factory=lambda: {m: [] for m in MEASURES})


class Watches:
    """The two watches every measure reads: GitRepositories (annotation, artifact revision) and ConfigMaps."""

    def __init__(self, cp: ControlPlane) -> None:
        self.sources = FirstSeen(cp, cp.resource_path("source.toolkit.fluxcd.io/v1", "GitRepository", FLUX_NAMESPACE),
                                 git_repository_keys)
        self.applied = FirstSeen(cp, cp.resource_path("v1", "ConfigMap", APPS), config_map_keys)

    def ready(self, repo: Repository, value: str, timeout: float = 120) -> None:
        """Flux has fetched the repository's current commit and applied `value`."""
        self.fetched_at(repo, timeout)
        self.applied_at(repo, value, timeout)

    def fetched_at(self, repo: Repository, timeout: float) -> float:
        revision = f"main@sha1:{repo.commit}"
        return self.sources.wait(lambda k, t: k == ("fetched", repo.name, revision), timeout,
                                 f"{repo.name} revision {revision}")

    def applied_at(self, repo: Repository, value: str, timeout: float) -> float:
        return self.applied.wait(lambda k, t: k == ("applied", repo.name, value), timeout,
                                 f"{repo.name} ConfigMap value {value}")

    def annotated_at(self, repo: Repository, since: float, timeout: float) -> float:
        return self.sources.wait(lambda k, t: k[:2] == ("annotated", repo.name) and k[2] and t >= since, timeout,
                                 f"{repo.name} reconcile requested")


def push(gitea: Gitea, repo: Repository) -> tuple[str, float, float]:
    """A commit changing the ConfigMap's value, pushed; returns the value, when the commit started and when
    `git push` returned."""
    value = secrets.token_hex(8)
    repo.write(value)
    started = time.monotonic()
    repo.commit = gitea.push(repo.clone)
    return value, started, time.monotonic()


def measure_webhooks(gitea: Gitea, watches: Watches, ways: list[tuple[Way, Repository]], args) -> None:
    """Sequential pushes, alternating between the ways (the order reversed every round, so that drift hits
    them alike); each push is waited for until applied."""
    for round_index in range(args.warmup + args.pushes):
        order = ways if round_index % 2 == 0 else list(reversed(ways))
        for way, repo in order:
            value, started, pushed = push(gitea, repo)
            times = {"pushed": pushed, "annotated": watches.annotated_at(repo, started, 60),
                     "fetched": watches.fetched_at(repo, 60),
                     "applied": watches.applied_at(repo, value, 60)}
            if round_index >= args.warmup:
                for measure, at in times.items():
                    way.samples[measure].append(at - started)
        if (round_index + 1) % 10 == 0:
            print(f"  {round_index + 1}/{args.warmup + args.pushes} rounds", flush=True)


def measure_polling(cp: ControlPlane, gitea: Gitea, watches: Watches, repos: list[Repository], way: Way,
                    interval: float) -> None:
    """Each repository's objects created spread over one interval, then one push each (shuffled order), each
    waited for until applied."""
    started_at = time.monotonic()
    for i, repo in enumerate(repos):
        time.sleep(max(0.0, started_at + i * interval / len(repos) - time.monotonic()))
        for obj in flux_objects(gitea, repo.name, f"{interval:.0f}s"):
            cp.apply(obj)
    for repo in repos:
        watches.ready(repo, "initial")
    print(f"  {len(repos)} polled repositories ready; one push each", flush=True)
    pushed = []
    for repo in random.Random(21).sample(repos, len(repos)):
        pushed.append((repo, *push(gitea, repo)))
    limit = 2 * interval + 60
    for repo, value, started, returned in pushed:
        way.samples["pushed"].append(returned - started)
        way.samples["fetched"].append(watches.fetched_at(repo, limit) - started)
        way.samples["applied"].append(watches.applied_at(repo, value, limit) - started)


def control_plane(flux: dict[str, str]) -> ControlPlane:
    """kube-apiserver + etcd with the built controllers' own CRDs, the namespaces, and the hookgate controller's
    RBAC (tests/gitops.py) but no seeded objects: every GitRepository here is one Flux really fetches."""
    cp = ControlPlane()
    cp.install_crds(crd_documents([(f"github.com/fluxcd/{name}", flux[f"{name.upper().replace('-', '_')}_VERSION"],
                                    "config/crd/bases/") for name in CONTROLLERS]))
    for ns in ALLOWED_NAMESPACES + [CONTROLLER_NAMESPACE, APPS]:
        cp.namespace(ns)
    bind_manifest_rbac(cp, CONTROLLER_NAMESPACE, "hookgate-controller", ALLOWED_NAMESPACES)
    return cp


def run(args, flux: dict[str, str], workdir: Path) -> list[Way]:
    cp = control_plane(flux)
    try:
        with ExitStack() as running:
            kubeconfig = cp.kubeconfig(cp.admin_token, workdir / "admin-kubeconfig")
            storage = workdir / "storage"
            storage.mkdir()
            storage_port = free_port()
            running.enter_context(FluxController(
                "source-controller", flux["SOURCE_CONTROLLER"], kubeconfig,
                [f"--storage-path={storage}", f"--storage-adv-addr=127.0.0.1:{storage_port}"],
                {"storage-addr": storage_port}))
            running.enter_context(FluxController("kustomize-controller", flux["KUSTOMIZE_CONTROLLER"], kubeconfig))
            notifications = running.enter_context(NotificationController(flux["NOTIFICATION_CONTROLLER"], kubeconfig))
            gitea = running.enter_context(Gitea())
            edge = running.enter_context(ServedEdge(cp, workdir / "hookgate", [
                receiver("via-hookgate", FLUX_NAMESPACE, {
                    "type": "gitea", "path": "/hook/via-hookgate", "events": ["push"], "refs": {"branches": ["main"]},
                    "secretRef": {"name": "push-bench"},
                    "targets": [{"kind": "GitRepository", "name": "via-hookgate"}]}),
                secret("push-bench", FLUX_NAMESPACE, {"token": SECRET})], log_level="warn"))
            flux_path = flux_receiver(cp, "via-flux", SECRET, target="via-flux")
            watches = Watches(cp)

            print("repositories, GitRepositories and Kustomizations ...", flush=True)
            hookgate, receiver_way = Way("hookgate"), Way("Flux receiver")
            polling = Way(f"polling ({args.interval:.0f}s)")
            webhook_ways = []
            for way, name, url in [(hookgate, "via-hookgate", f"http://127.0.0.1:{edge.port}/hook/via-hookgate"),
                                   (receiver_way, "via-flux", f"http://127.0.0.1:{notifications.port}{flux_path}")]:
                repo = create_repository(gitea, name)
                for obj in flux_objects(gitea, name, "1h"):
                    cp.apply(obj)
                watches.ready(repo, "initial")
                gitea.add_webhook(name, url, SECRET)
                webhook_ways.append((way, repo))
            polled = [create_repository(gitea, f"polled-{i:02d}") for i in range(args.polled)]

            print(f"webhooks: {args.pushes} sequential pushes per way (+{args.warmup} warm-up), alternating",
                  flush=True)
            measure_webhooks(gitea, watches, webhook_ways, args)
            print(f"polling: {args.polled} repositories, created over one interval ({args.interval:.0f}s)", flush=True)
            measure_polling(cp, gitea, watches, polled, polling, args.interval)
            resumed = watches.sources.resumed + watches.applied.resumed
            if resumed:
                print(f"(watches resumed {resumed} times: values first seen on resuming are timed late)")
    finally:
        cp.stop()
    return [hookgate, receiver_way, polling]


def report(ways: list[Way], flux: dict[str, str], args, elapsed: float, load: tuple) -> dict:
    rows = []
    for way in ways:
        for measure, label in MEASURES.items():
            samples = way.samples[measure]
            if samples:
                rows.append({"way": way.name, "measure": label, "n": len(samples),
                             "p50_s": round(statistics.median(samples), 3),
                             "p99_s": round(percentile(samples, 0.99), 3),
                             "min_s": round(min(samples), 3), "max_s": round(max(samples), 3)})
    versions = {name: flux[f"{name.upper().replace('-', '_')}_VERSION"] for name in CONTROLLERS}
    print(f"\npush -> applied: git commit + push to Gitea until Flux has fetched the commit / applied its ConfigMap; "
          f"{', '.join(f'{k} {v}' for k, v in versions.items())}; real kube-apiserver + etcd, Gitea, Envoy on "
          f"loopback; nproc={os.cpu_count()}; load average {load[0]:.2f} at start, {os.getloadavg()[0]:.2f} at end")
    print(f"{'way':16s} {'measure':30s} {'n':>4s} {'p50 s':>8s} {'p99 s':>8s} {'min s':>8s} {'max s':>8s}")
    for r in rows:
        print(f"{r['way']:16s} {r['measure']:30s} {r['n']:4d} {r['p50_s']:8.3f} {r['p99_s']:8.3f} "
              f"{r['min_s']:8.3f} {r['max_s']:8.3f}")
    print("Flux receiver: a Receiver of type github (v1.9 has no gitea type) verifying the GitHub-style headers "
          "Gitea sends. p99 is by nearest rank (with 50 samples, the largest).")
    result = {"versions": versions, "receiver_type": "github", "pushes_per_webhook_way": args.pushes,
              "polled_repositories": args.polled, "interval_s": args.interval, "nproc": os.cpu_count(),
              "load_average_start": load[0], "elapsed_s": round(elapsed), "rows": rows}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written to {OUT.relative_to(ROOT)} ({elapsed / 60:.1f} min)")
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pushes", type=int, default=50, help="measured pushes per webhook way")
    parser.add_argument("--warmup", type=int, default=2, help="pushes per webhook way before measuring")
    parser.add_argument("--polled", type=int, default=50, help="repositories measured by polling, one push each")
    parser.add_argument("--interval", type=float, default=60, help="the polled GitRepositories' interval, seconds")
    args = parser.parse_args()
    load, started = os.getloadavg(), time.monotonic()
    flux = build_flux_controllers(*CONTROLLERS)
    print(f"starting kube-apiserver + etcd, Flux's controllers ({', '.join(CONTROLLERS)}), Gitea, and hookgate "
          "(Envoy + filter + controller) ...", flush=True)
    workdir = Path(tempfile.mkdtemp(prefix="hookgate-push-bench-"))
    try:
        ways = run(args, flux, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    report(ways, flux, args, time.monotonic() - started, load)
    return 0


if __name__ == "__main__":
    sys.exit(main())
