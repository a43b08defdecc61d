"""`make bench`, the peer: hookgate (Envoy + filter + controller) side by side with Flux's own webhook receiver,
notification-controller built from its Go module (bench/flux/build.sh), in one run against the same real
kube-apiserver + etcd, both fed the same signed 8 KiB GitHub push for the GitRepository flux-system/webapp.

Measures, per peer: push to annotation visible through a watch (sequential deliveries); valid deliveries/s
at 8 concurrent senders; forged deliveries/s at 8 concurrent (bad signature) with the API server requests
and the CPU time of every process involved per delivery; genuine deliveries' latency during that forged
flood; the RSS of each process. Rounds are interleaved (the order alternating between rounds so that drift
hits both peers alike) and the table shows medians of the rounds.

Flux runs twice, side by side on the same Receiver: as `flux install` deploys it (client-side API limiter
kube-api-qps 50 / burst 300; its Secret read from the API server on every delivery), and with that limiter
lifted, so that the limiter's share of any difference is visible. Ratios are hookgate against each.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path


BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent / "tests"))
sys.path.insert(0, str(BENCH))

import signers  # noqa: E402
from cluster import crd_documents  # noqa: E402
from controller_bench import TOKEN, AnnotationWatch, cpu_seconds, percentile, post_via_envoy  # noqa: E402
from edge_bench import push_body, rss_kib, run_wrk, wrk_script  # noqa: E402
from gitops import seeded_control_plane  # noqa: E402
from harness import free_port, stop_process, wait_for_http  # noqa: E402
from served import ServedEdge, receiver, secret  # noqa: E402

FLUX_BUILD = BENCH / "flux/build.sh"
NOTIFICATION_MODULE = "github.com/fluxcd/notification-controller"
FLUX_NAMESPACE = "flux-system"
TARGET = "webapp"  # the GitRepository both peers annotate
SENDERS = 8
TARGET_RATIO = 3.0  # hookgate's valid throughput at 8 concurrent senders, against Flux's
PROCESS_LABELS = ["Envoy", "hookgate controller", "notification-controller", "kube-apiserver", "etcd"]


def build_flux_controllers(*names: str) -> dict[str, str]:
    """bench/flux/build.sh for the controllers `names`: NAME=path and NAME_VERSION=version for each (e.g.
    NOTIFICATION_CONTROLLER), building each on the first call."""
    out = subprocess.run(["bash", str(FLUX_BUILD), *names], check=True, stdout=subprocess.PIPE, text=True).stdout
    return dict(line.split("=", 1) for line in out.strip().splitlines() if "=" in line)


class FluxController:
    """One of Flux's controllers on loopback: its health and metrics servers (and the ports in `addresses`,
    flag -> port) on free ports, leader election off (one replica), the cluster reached through
    `kubeconfig`; ready when its /readyz answers."""

    def __init__(self, name: str, binary: str, kubeconfig: Path, args: list[str] = (),
                 addresses: dict[str, int] | None = None) -> None:
        self.name = name
        self.health_port = free_port()
        self.workdir = Path(tempfile.mkdtemp(prefix="hookgate-flux-"))
        self.log_path = self.workdir / f"{name}.log"
        self._log = open(self.log_path, "wb")
        env = {"PATH": os.environ.get("PATH", ""), "KUBECONFIG": str(kubeconfig), "RUNTIME_NAMESPACE": FLUX_NAMESPACE}
        ports = {"health-addr": self.health_port, "metrics-addr": free_port(), **(addresses or {})}
        self.proc = subprocess.Popen(
            [binary, *(f"--{flag}=127.0.0.1:{port}" for flag, port in ports.items()),
             "--watch-all-namespaces=true", "--enable-leader-election=false", "--log-level=info", *args],
            stdout=self._log, stderr=subprocess.STDOUT, env=env)
        wait_for_http(self.proc, f"http://127.0.0.1:{self.health_port}/readyz", 60, name, self.log)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        stop_process(self.proc)
        self._log.close()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> "FluxController":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


class NotificationController(FluxController):
    """Flux's notification-controller, its receiver server on `port` and its event server on free ports."""

    def __init__(self, binary: str, kubeconfig: Path, args: list[str] = ()) -> None:
        self.port = free_port()
        super().__init__("notification-controller", binary, kubeconfig, args,
                         {"receiverAddr": self.port, "events-addr": free_port()})


def flux_receiver(cp, name: str, token: str, timeout: float = 60, target: str = TARGET) -> str:
    """A github Receiver (push and ping) for the GitRepository `target` with its token Secret; waits until a
    notification-controller reports it Ready and returns its `status.webhookPath`."""
    cp.apply({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": f"{name}-token", "namespace": FLUX_NAMESPACE},
              "stringData": {"token": token}})
    cp.apply({"apiVersion": "notification.toolkit.fluxcd.io/v1", "kind": "Receiver",
              "metadata": {"name": name, "namespace": FLUX_NAMESPACE},
              "spec": {"type": "github", "events": ["push", "ping"], "secretRef": {"name": f"{name}-token"},
                       "resources": [{"apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "GitRepository", "name": target}]}})
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = cp.get("notification.toolkit.fluxcd.io/v1", "Receiver", FLUX_NAMESPACE, name).get("status", {})
        ready = any(c["type"] == "Ready" and c["status"] == "True" for c in status.get("conditions", []))
        if ready and status.get("webhookPath"):
            return status["webhookPath"]
        time.sleep(0.2)
    raise RuntimeError(f"Receiver {name} not Ready in {timeout}s: {status}")


@dataclass
class Peer:
    """One system under test: where its deliveries go, and the processes whose cost counts for it."""
    name: str
    port: int
    path: str
    processes: dict[str, int]  # label -> pid
    rounds: list[dict] = field(default_factory=list)


def sequential_latencies(peer: Peer, watch: AnnotationWatch, body: bytes, count: int) -> list[float]:
    """Milliseconds from sending a delivery to seeing its new annotation value through the watch."""
    latencies = []
    for _ in range(count):
        before = len(watch.seen)
        started = time.monotonic()
        status = post_via_envoy(peer.port, peer.path, body)  # a signed POST, to Envoy or to Flux directly
        assert status == 200, f"{peer.name}: a signed push answered {status}"
        latencies.append((watch.wait_new(before) - started) * 1000)
    return latencies


def load(cp, peer: Peer, script: Path, seconds: int, genuine_body: bytes | None = None) -> dict:
    """wrk at SENDERS connections for `seconds`; the API server requests and each process's CPU time it
    caused; with `genuine_body`, genuine deliveries sent one after another meanwhile, timed request to answer."""
    genuine: list[float] = []
    failed_genuine: list[int] = []
    done = threading.Event()

    def send_genuine() -> None:
        while not done.is_set():
            started = time.monotonic()
            status = post_via_envoy(peer.port, peer.path, genuine_body)
            genuine.append((time.monotonic() - started) * 1000)
            if status != 200:
                failed_genuine.append(status)

    requests_before = cp.served_requests()
    cpu_before = {label: cpu_seconds([pid]) for label, pid in peer.processes.items()}
    sender = threading.Thread(target=send_genuine, daemon=True) if genuine_body else None
    if sender:
        sender.start()
    result = run_wrk(peer.port, script, seconds, SENDERS)
    done.set()
    if sender:
        sender.join()
    cpu = {label: cpu_seconds([pid]) - cpu_before[label] for label, pid in peer.processes.items()}
    requests = cp.served_requests() - requests_before
    return {**result, "cpu": cpu, "requests": requests, "genuine": genuine, "failed_genuine": failed_genuine}


def run_round(cp, peer: Peer, watch: AnnotationWatch, body: bytes, scripts: dict[str, Path], args) -> None:
    latencies = sequential_latencies(peer, watch, body, args.deliveries)
    valid = load(cp, peer, scripts["valid"], args.seconds)
    # The forged flood twice: alone, for its own throughput, API requests and CPU; then with genuine
    # deliveries alongside, for their latency (their own requests and CPU would blur the first).
    forged = load(cp, peer, scripts["forged"], args.seconds)
    flood = load(cp, peer, scripts["forged"], args.seconds, genuine_body=body)
    rss = {label: rss_kib(pid) / 1024 for label, pid in peer.processes.items()}
    peer.rounds.append({"latencies": latencies, "valid": valid, "forged": forged, "flood": flood, "rss": rss})
    print(f"  {peer.name:24s} p50 {statistics.median(latencies):6.1f} ms  valid {valid['rps']:7.0f}/s  "
          f"forged {forged['rps']:7.0f}/s  genuine during the flood: {len(flood['genuine'])}, "
          f"p50 {statistics.median(flood['genuine']):6.1f} ms", flush=True)


def summarize(peer: Peer) -> dict[str, float | None]:
    """The table's rows for one peer: medians over its rounds."""
    rounds = peer.rounds

    def med(f) -> float:
        return statistics.median(f(r) for r in rounds)

    rows: dict[str, float | None] = {
        "push -> annotation seen, p50 ms": med(lambda r: statistics.median(r["latencies"])),
        "push -> annotation seen, p99 ms": med(lambda r: percentile(r["latencies"], 0.99)),
    }
    for kind in ("valid", "forged"):
        rows[f"{kind} deliveries/s, {SENDERS} senders"] = med(lambda r: r[kind]["rps"])
        rows[f"  API requests per {kind} delivery"] = med(lambda r: r[kind]["requests"].total() / r[kind]["total"])
        for label in PROCESS_LABELS:
            rows[f"  CPU-s per 1,000 {kind}: {label}"] = (
                med(lambda r: 1000 * r[kind]["cpu"][label] / r[kind]["total"]) if label in peer.processes else None)
        rows[f"  CPU-s per 1,000 {kind}: all processes"] = med(lambda r: 1000 * sum(r[kind]["cpu"].values()) / r[kind]["total"])
    rows["genuine during forged flood, p50 ms"] = med(lambda r: statistics.median(r["flood"]["genuine"]))
    rows["genuine during forged flood, p99 ms"] = med(lambda r: percentile(r["flood"]["genuine"], 0.99))
    for label in PROCESS_LABELS:
        rows[f"RSS MiB: {label}"] = med(lambda r: r["rss"][label]) if label in peer.processes else None
    return rows


def request_breakdown(peer: Peer, kind: str) -> str:
    """The API requests per delivery by verb and resource (median round), to show where they go."""
    totals: Counter = Counter()
    deliveries = 0
    for r in peer.rounds:
        totals += r[kind]["requests"]
        deliveries += r[kind]["total"]
    top = [f"{verb} {resource} {count / deliveries:.3f}" for (verb, resource), count in totals.most_common(4)]
    return ", ".join(top) or "none"


def fmt(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}" if abs(value) < 1000 else f"{value:.0f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds per peer (medians reported)")
    parser.add_argument("--deliveries", type=int, default=200, help="sequential deliveries per round for latency")
    parser.add_argument("--seconds", type=int, default=5, help="duration of each wrk load per round")
    parser.add_argument("--flux-defaults-only", action="store_true",
                        help="skip the Flux column with the client-side API limiter lifted")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk not found: `make bench` installs it (apt-get install wrk)")
    load_start = os.getloadavg()

    flux = build_flux_controllers("notification-controller")
    print("starting the control plane, hookgate (Envoy + filter + controller) and Flux's notification-controller "
          f"{flux['NOTIFICATION_CONTROLLER_VERSION']} ...", flush=True)
    cp = seeded_control_plane()
    workdir = Path(tempfile.mkdtemp(prefix="hookgate-peer-"))
    try:
        with ExitStack() as running:
            cp.install_crds(crd_documents([(NOTIFICATION_MODULE, flux["NOTIFICATION_CONTROLLER_VERSION"], "config/crd/bases/")]))
            # The peer gets the admin token: its own RBAC is not what is measured here.
            admin_kubeconfig = cp.kubeconfig(cp.admin_token, workdir / "admin-kubeconfig")

            # hookgate's receiver is an object whose Secret holds the same token; the controller serves it to
            # the filter and is the route's upstream. Log level warn: Envoy Gateway's default for its proxies.
            objects = [receiver(TARGET, FLUX_NAMESPACE, {"type": "github", "secretRef": {"name": "hookgate-token"},
                                                         "targets": [{"kind": "GitRepository", "name": TARGET}]}),
                       secret("hookgate-token", FLUX_NAMESPACE, {"token": TOKEN})]
            served = running.enter_context(ServedEdge(cp, workdir / "hookgate", objects, log_level="warn"))
            controller, envoy = served.controller, served.envoy
            shared = {"kube-apiserver": cp.procs["kube-apiserver"].pid, "etcd": cp.procs["etcd"].pid}
            peers = [Peer("hookgate", envoy.port, signers.flux_path(TOKEN, TARGET, FLUX_NAMESPACE),
                          {"Envoy": envoy.proc.pid, "hookgate controller": controller.proc.pid, **shared})]

            flux_variants = [("Flux", [])]
            if not args.flux_defaults_only:
                flux_variants.append(("Flux, API limiter off", ["--kube-api-qps=100000", "--kube-api-burst=100000"]))
            for name, flux_args in flux_variants:
                nc = running.enter_context(NotificationController(flux["NOTIFICATION_CONTROLLER"], admin_kubeconfig, flux_args))
                peers.append(Peer(name, nc.port, "", {"notification-controller": nc.proc.pid, **shared}))
            # Both Flux variants serve the same Receiver (they reconcile it to the same status).
            flux_path = flux_receiver(cp, TARGET, TOKEN)
            for peer in peers[1:]:
                peer.path = flux_path

            body = push_body(8 * 1024)
            valid_headers = signers.github(TOKEN, body)
            forged_headers = {**valid_headers, "X-Hub-Signature-256": "sha256=" + "0" * 64, "X-Hub-Signature": "sha1=" + "0" * 40}
            watch = AnnotationWatch(cp, TARGET)
            scripts_by_peer = {}
            for i, peer in enumerate(peers):
                scripts_by_peer[peer.name] = {
                    "valid": wrk_script(workdir, f"valid-{i}", peer.path, valid_headers, body),
                    "forged": wrk_script(workdir, f"forged-{i}", peer.path, forged_headers, body)}
                # Warm-up: connections, caches and informers.
                sequential_latencies(peer, watch, body, 5)
                run_wrk(peer.port, scripts_by_peer[peer.name]["valid"], 1, SENDERS)
                run_wrk(peer.port, scripts_by_peer[peer.name]["forged"], 1, SENDERS)

            print(f"{args.rounds} interleaved rounds: {args.deliveries} sequential deliveries, then {args.seconds}s valid "
                  f"and {args.seconds}s forged at {SENDERS} senders, per peer", flush=True)
            for round_index in range(args.rounds):
                order = peers if round_index % 2 == 0 else list(reversed(peers))
                print(f"round {round_index + 1}:", flush=True)
                for peer in order:
                    run_round(cp, peer, watch, body, scripts_by_peer[peer.name], args)
            failures = check_answers(peers)
            watch_resumed = watch.resumed
    finally:
        cp.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    report(peers, args, flux["NOTIFICATION_CONTROLLER_VERSION"], load_start, watch_resumed)
    if failures:
        print("unexpected answers: " + "; ".join(failures))
        return 1
    return 0


def check_answers(peers: list[Peer]) -> list[str]:
    """Every valid delivery answered 2xx, every forged one refused, every genuine one during the flood 200."""
    failures = []
    for peer in peers:
        for i, r in enumerate(peer.rounds):
            if r["valid"]["non2xx"]:
                failures.append(f"{peer.name} round {i + 1}: {r['valid']['non2xx']} valid deliveries not 2xx")
            for phase in ("forged", "flood"):
                if r[phase]["non2xx"] != r[phase]["total"]:
                    failures.append(f"{peer.name} round {i + 1}: {r[phase]['total'] - r[phase]['non2xx']} forged deliveries 2xx")
            if r["flood"]["failed_genuine"]:
                failures.append(f"{peer.name} round {i + 1}: genuine deliveries answered {sorted(set(r['flood']['failed_genuine']))}")
    return failures


def report(peers: list[Peer], args, flux_version: str, load_start: tuple, watch_resumed: int) -> None:
    hookgate, fluxes = peers[0], peers[1:]
    columns = {peer.name: summarize(peer) for peer in peers}
    print(f"\nhookgate vs Flux notification-controller {flux_version}: the same signed 8 KiB GitHub push, one real "
          f"kube-apiserver + etcd on loopback; nproc={os.cpu_count()}; medians of {args.rounds} interleaved rounds "
          f"({args.deliveries} sequential deliveries, {args.seconds}s loads at {SENDERS} senders each)")
    print(f"load average at start {load_start[0]:.2f}, at end {os.getloadavg()[0]:.2f}; "
          "ratio = hookgate / Flux (above 1 is better for throughput, below 1 for time, requests, CPU, memory)")
    header = f"{'measure':50s} {'hookgate':>10s}"
    for flux in fluxes:
        header += f" {flux.name:>22s} {'ratio':>7s}"
    print(header)
    for row, value in columns[hookgate.name].items():
        line = f"{row:50s} {fmt(value):>10s}"
        for flux in fluxes:
            other = columns[flux.name][row]
            ratio = "-" if value is None or other is None or other == 0 else f"{value / other:.2f}x"
            line += f" {fmt(other):>22s} {ratio:>7s}"
        print(line)
    for peer in peers:
        print(f"API requests per delivery, {peer.name}: valid: {request_breakdown(peer, 'valid')}; "
              f"forged: {request_breakdown(peer, 'forged')}")
    print("API requests are all the API server counted during a load, its own background included, over the deliveries "
          "wrk saw answered (the few in flight when it stops are not counted). Flux's default client-side limiter "
          "(50 requests/s, burst 300) bounds its Secret reads, so the Flux column's throughputs depend on the "
          f"load's length and on the phase before it; the limiter-off column does not. Annotation watch resumed "
          f"{watch_resumed} times.")

    for flux in fluxes:
        per_round = [h["valid"]["rps"] / f["valid"]["rps"] for h, f in zip(hookgate.rounds, flux.rounds)]
        ratio = statistics.median(per_round)
        if args.rounds < 3:
            verdict = f"not judged: {args.rounds} round(s), fewer than 3"
        else:
            verdict = "met" if ratio >= TARGET_RATIO else "NOT met"
        print(f"target: hookgate valid throughput at {SENDERS} concurrent senders >= {TARGET_RATIO:.0f}x {flux.name}'s: "
              f"{ratio:.2f}x (rounds: {', '.join(f'{r:.2f}x' for r in per_round)}): {verdict}")


if __name__ == "__main__":
    sys.exit(main())
