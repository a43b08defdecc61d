"""`make bench-flood`: how much a flood of forged deliveries from one address stalls the Envoy worker.

One Envoy (one worker) built like Envoy Gateway's (tests/harness.py), with the filter at its default
`bodyLimit`, a webhook route and a plain route, in front of a fast upstream (edge_bench.py's). The filter
takes its one receiver from the controller, as on a cluster (tests/served.py: a Receiver and its Secret in
the real kube-apiserver). Two variants run side by side: the webhook route with the local rate limit Envoy
Gateway generates for the project's BackendTrafficPolicy (taken from Envoy Gateway's own translators,
tests/eg-translate), and without it.

Each round, in both variants, interleaved: wrk from 127.0.0.1 measures the plain route's throughput, once
without a flood (baseline) and once while a flooder bound to 127.0.0.2 sends forged 1 MiB deliveries to the
webhook route at full speed over several keep-alive connections. During both, genuine signed deliveries
from other addresses (127.0.0.3 onwards) go one at a time on fresh connections and their latency is taken.
Figures are medians over the rounds. A separate measurement gives the worker's CPU time per forged delivery
(1 MiB and the largest the default bodyLimit admits), from the worker thread's scheduler statistics.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import multiprocessing
import os
import shutil
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent / "tests"))
sys.path.insert(0, str(BENCH))

import signers  # noqa: E402
from deploy import MANIFESTS, kubernetes_translation  # noqa: E402
from controller_bench import percentile  # noqa: E402
from edge_bench import KEY, SECRET, TARGETS, direct_upstream, push_body, run_wrk, wrk_script  # noqa: E402
from gateway import render  # noqa: E402
from gitops import seeded_control_plane  # noqa: E402
from harness import LISTENER_NAME, LOCAL_RATELIMIT, Envoy, free_port  # noqa: E402
from served import ServedEdge, receiver, secret  # noqa: E402

EXAMPLE = MANIFESTS / "examples/homelab-github"
RATE_LIMIT_POLICY = "hookgate-rate-limit"
FLOOD_SOURCE = "127.0.0.2"
GENUINE_FIRST_SOURCE = "127.0.0.3"
COST_SOURCE = "127.0.0.250"
# The default bodyLimit (filter/src/config/mod.rs DEFAULT_BODY_LIMIT), which the bench leaves unset.
DEFAULT_BODY_LIMIT = 3 * 1024 * 1024
# A genuine source sends at most this many deliveries before the next address takes over, so that the
# genuine client stays within its own bucket (120 a minute): a provider sends a handful a minute, and what
# is measured here is their latency, not their count.
GENUINE_PER_SOURCE = 100
# What runs beside wrk on the plain route: nothing, the flood on the Envoy measured, the same flood on a twin.
SCENARIOS = ("baseline", "flood", "flood on a twin")


# -- the rate limit, as Envoy Gateway generates it -----------------------------------------------------------
def envoy_gateway_rate_limit(workdir: Path) -> tuple[dict, dict]:
    """(the listener's local rate limit filter, the webhook route's local rate limit config) that Envoy
    Gateway's translators generate for the example's manifests, unchanged, with the cluster's Gateway."""
    # The Wasm filter is not needed here (harness.py's bootstrap has it): leave out what configures it.
    docs = [d for d in render(EXAMPLE) if d["kind"] not in {"EnvoyExtensionPolicy", "EnvoyPatchPolicy"}]
    out = kubernetes_translation(docs, workdir)
    if out["errors"]:
        raise RuntimeError(f"Envoy Gateway's translation failed: {out['errors']}")
    (listener,) = out["listeners"][LISTENER_NAME]
    chain = listener.get("defaultFilterChain") or listener["filterChains"][0]
    (listener_filter,) = [f for f in chain["filters"][0]["typedConfig"]["httpFilters"]
                          if f["name"] == LOCAL_RATELIMIT]
    def policies(route: dict) -> set[tuple[str, str]]:
        listed = route.get("metadata", {}).get("filterMetadata", {}).get("envoy-gateway", {}).get("policies", [])
        return {(p["kind"], p["name"]) for p in listed}

    (route,) = [r for configs in out["routes"].values() for rc in configs for vh in rc["virtualHosts"]
                for r in vh["routes"] if ("BackendTrafficPolicy", RATE_LIMIT_POLICY) in policies(r)]
    return listener_filter, route["typedPerFilterConfig"][LOCAL_RATELIMIT]


# The receiver the flood targets, as an object with its Secret (the filter takes it from the controller).
RECEIVER_OBJECTS = [secret("bench-webhook", "flux-system", {"token": SECRET}),
                    receiver("webapp", "flux-system", {"type": "github", "secretRef": {"name": "bench-webhook"},
                                                       "targets": TARGETS})]


def with_rate_limit(rate_limit: tuple[dict, dict] | None):
    """What ServedEdge does to harness.py's bootstrap: Envoy Gateway's rate limit put in, if given."""
    def adjust(bootstrap: dict) -> dict:
        if rate_limit:
            listener_filter, route_config = rate_limit
            manager = bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
            filters = manager["http_filters"]
            index = next(i for i, f in enumerate(filters) if f["name"] == LOCAL_RATELIMIT)
            filters[index] = listener_filter
            webhook_route = manager["route_config"]["virtual_hosts"][0]["routes"][0]
            webhook_route["typed_per_filter_config"][LOCAL_RATELIMIT] = route_config
        return bootstrap
    return adjust


# -- HTTP/1.1 on raw sockets, from a chosen source address ----------------------------------------------------
def request_bytes(path: str, headers: dict, body: bytes) -> bytes:
    head = [f"POST {path} HTTP/1.1", "Host: bench", f"Content-Length: {len(body)}"]
    head += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def parse_head(head: bytes) -> tuple[int, int, bool]:
    """(status, content length, whether the server closes the connection) of a response head."""
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    fields = {k.strip().lower(): v.strip().lower() for k, v in (line.split(":", 1) for line in lines[1:] if ":" in line)}
    return status, int(fields.get("content-length", "0")), fields.get("connection") == "close"


def read_response(sock: socket.socket) -> tuple[int, bool]:
    """Reads one response from a blocking socket: (status, whether the server closes the connection)."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed before a response")
        buf += chunk
    head, rest = buf.split(b"\r\n\r\n", 1)
    status, length, close = parse_head(head)
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed mid-response")
        rest += chunk
    return status, close


def connect_from(source: str, port: int) -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((source, 0))
    sock.connect(("127.0.0.1", port))
    return sock


# -- the flooder: its own process, bounded in count and time -------------------------------------------------
async def _flood(port: int, source: str, request: bytes, connections: int, max_requests: int,
                 seconds: float) -> dict:
    counts: dict[str, int] = {}
    sent = 0
    deadline = time.monotonic() + seconds

    def count(what: str) -> None:
        counts[what] = counts.get(what, 0) + 1

    async def one_connection() -> None:
        nonlocal sent
        while time.monotonic() < deadline and sent < max_requests:
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
            except OSError:
                count("connect error")
                await asyncio.sleep(0.001)
                continue
            try:
                close = False
                while not close and time.monotonic() < deadline and sent < max_requests:
                    sent += 1
                    # The whole body is queued at once; the answer may come before it is all sent (429).
                    writer.write(request)
                    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), max(0.1, deadline - time.monotonic()))
                    status, length, close = parse_head(head[:-4])
                    await reader.readexactly(length)
                    count(str(status))
                    # An answer before the body was consumed: Envoy closes; otherwise wait for the send.
                    if writer.transport.get_write_buffer_size():
                        close = True
                    else:
                        await writer.drain()
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
                count("connection error")
            except asyncio.TimeoutError:
                pass
            finally:
                writer.transport.abort()

    start = time.monotonic()
    await asyncio.gather(*(one_connection() for _ in range(connections)))
    return {"counts": counts, "sent": sent, "seconds": time.monotonic() - start}


def flooder_main(port: int, source: str, request: bytes, connections: int, max_requests: int, seconds: float,
                 results) -> None:
    results.put("started")
    loop = asyncio.new_event_loop()
    loop.set_exception_handler(lambda *_: None)  # writes after Envoy's early 429 and close: expected
    outcome = loop.run_until_complete(_flood(port, source, request, connections, max_requests, seconds))
    times = os.times()
    outcome["cpu"] = times.user + times.system
    results.put(outcome)


# -- genuine deliveries: one at a time, each on a fresh connection, as a provider sends them ------------------
class GenuineClient:
    """Sends `request` from successive source addresses every `interval` seconds until stopped."""

    def __init__(self, port: int, request: bytes, interval: float, first_source: str) -> None:
        self.port, self.request, self.interval = port, request, interval
        self.source = ipaddress.IPv4Address(first_source)
        self.sent_from_source = 0
        self.latencies_ms: list[float] = []
        self.statuses: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self.latencies_ms, self.statuses = [], {}
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            if self.sent_from_source == GENUINE_PER_SOURCE:
                self.source, self.sent_from_source = self.source + 1, 0
            self.sent_from_source += 1
            started = time.perf_counter()
            try:
                with connect_from(str(self.source), self.port) as sock:
                    sock.settimeout(10)
                    sock.sendall(self.request)
                    status, _ = read_response(sock)
                outcome = str(status)
            except OSError:
                outcome = "error"
            elapsed = time.perf_counter() - started
            self.latencies_ms.append(elapsed * 1000)
            self.statuses[outcome] = self.statuses.get(outcome, 0) + 1
            self._stop.wait(max(0.0, self.interval - elapsed))


# -- the Envoy worker's CPU time -----------------------------------------------------------------------------
def worker_task(envoy: Envoy) -> Path:
    """The /proc entry of the Envoy's one worker thread."""
    for task in Path(f"/proc/{envoy.proc.pid}/task").iterdir():
        if (task / "comm").read_text().strip() == "wrk:worker_0":
            return task
    raise RuntimeError("no Envoy worker thread found")


def cpu_seconds(task: Path) -> float:
    """Time the thread has run on a CPU, in nanoseconds resolution (schedstat), as seconds."""
    return int((task / "schedstat").read_text().split()[0]) / 1e9


def exchange(sock: socket.socket, request: bytes) -> tuple[int, bool]:
    """Sends `request` while reading the answer, which may come before the body is sent (the rate limit's
    429): (status, whether the connection is done)."""
    failed = []

    def send() -> None:
        try:
            sock.sendall(request)
        except OSError as error:
            failed.append(error)

    sender = threading.Thread(target=send)
    sender.start()
    try:
        status, close = read_response(sock)
    finally:
        sender.join(timeout=5)
        if sender.is_alive():  # the server stopped reading the body: unblock the sender
            sock.shutdown(socket.SHUT_RDWR)
            sender.join()
            failed.append(TimeoutError())
    return status, close or bool(failed)


def cost_per_request(envoy: Envoy, task: Path, source: str, request: bytes, count: int) -> tuple[float, float, str]:
    """Sends `count` requests one after another, on one keep-alive connection while the server keeps it:
    (median latency ms, worker CPU ms per request, the answers)."""
    latencies, statuses = [], {}
    sock = connect_from(source, envoy.port)
    before = cpu_seconds(task)
    try:
        for _ in range(count):
            started = time.perf_counter()
            status, close = exchange(sock, request)
            latencies.append((time.perf_counter() - started) * 1000)
            statuses[status] = statuses.get(status, 0) + 1
            if close:
                sock.close()
                sock = connect_from(source, envoy.port)
    finally:
        sock.close()
    cpu_ms = (cpu_seconds(task) - before) * 1000 / count
    return statistics.median(latencies), cpu_ms, " ".join(f"{n}x{s}" for s, n in sorted(statuses.items()))


def spend_bucket(envoy: Envoy, source: str, request: bytes, limit: int = 1000) -> None:
    """Sends `request` from `source` until the rate limit answers 429 (at most `limit` times)."""
    sock = connect_from(source, envoy.port)
    try:
        for _ in range(limit):
            status, close = exchange(sock, request)
            if status == 429:
                return
            if close:
                sock.close()
                sock = connect_from(source, envoy.port)
    finally:
        sock.close()
    raise RuntimeError(f"no 429 after {limit} requests from {source}")


# -- the run ---------------------------------------------------------------------------------------------------
def body_within(limit: int) -> bytes:
    """The largest push payload push_body makes that is at most `limit` bytes."""
    size = limit
    while len(body := push_body(size)) > limit:
        size -= 4096
    return body


def run_scenario(edge: Envoy, task: Path, wrk_plain: Path, genuine: GenuineClient, flood_target: Envoy | None,
                 flood_request: bytes, args) -> dict:
    """wrk on the plain route of `edge` while the genuine client sends to it, and the flooder floods
    `flood_target` if given."""
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    flooder = None
    if flood_target is not None:
        flooder = context.Process(target=flooder_main, daemon=True, args=(
            flood_target.port, FLOOD_SOURCE, flood_request, args.flood_connections, args.flood_max_requests,
            args.seconds + 2 * args.settle, results))
        flooder.start()
        results.get(timeout=60)  # flooding from now on
    genuine.start()
    try:
        time.sleep(args.settle)
        cpu_before, started = cpu_seconds(task), time.monotonic()
        wrk = run_wrk(edge.port, wrk_plain, args.seconds, args.connections)
        worker_busy = (cpu_seconds(task) - cpu_before) / (time.monotonic() - started)
    finally:
        genuine.stop()
        flood = None
        if flooder is not None:
            try:
                flood = results.get(timeout=args.seconds + 4 * args.settle + 30)
            finally:
                flooder.join(timeout=10)
                if flooder.is_alive():
                    flooder.kill()
                    flooder.join()
    return {"rps": wrk["rps"], "plain_non2xx": wrk["non2xx"], "worker_busy": worker_busy,
            "genuine_p50": percentile(genuine.latencies_ms, 0.50), "genuine_p99": percentile(genuine.latencies_ms, 0.99),
            "genuine_count": len(genuine.latencies_ms), "genuine_statuses": dict(genuine.statuses), "flood": flood}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=8, help="wrk's duration in one scenario of one round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=8, help="wrk's connections to the plain route")
    parser.add_argument("--settle", type=float, default=1.0, help="seconds of flood before wrk starts, and after")
    parser.add_argument("--flood-connections", type=int, default=8)
    parser.add_argument("--flood-max-requests", type=int, default=200_000, help="the flooder's bound per scenario")
    parser.add_argument("--genuine-interval", type=float, default=0.05, help="seconds between genuine deliveries")
    parser.add_argument("--cost-requests", type=int, default=40, help="forged deliveries per CPU-cost measurement")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk not found: `make bench` installs it (apt-get install wrk)")

    workdir = Path(tempfile.mkdtemp(prefix="hookgate-flood-"))
    rate_limit = envoy_gateway_rate_limit(workdir)
    hook = signers.flux_path(SECRET, "webapp", "flux-system")
    small = push_body(8 * 1024)
    genuine_request = request_bytes(hook, signers.github(SECRET, small), small)

    def forged(body: bytes) -> bytes:
        return request_bytes(hook, {**signers.github(SECRET, body), "X-Hub-Signature-256": "sha256=" + "0" * 64}, body)

    mib, largest = push_body(1024 * 1024), body_within(DEFAULT_BODY_LIMIT)
    over_limit = push_body(DEFAULT_BODY_LIMIT + 64 * 1024)
    flood_request = forged(mib)
    costs = {  # name -> request; the plain route proxies the same body to the upstream, for comparison
        f"forged {len(mib) / 2**20:.2f} MiB, webhook route": forged(mib),
        f"forged {len(largest) / 2**20:.2f} MiB, webhook route": forged(largest),
        f"forged {len(over_limit) / 2**20:.2f} MiB (over bodyLimit)": forged(over_limit),
        f"{len(mib) / 2**20:.2f} MiB, plain route": request_bytes("/plain/bench", {"Content-Type": "application/json"}, mib),
        f"{len(largest) / 2**20:.2f} MiB, plain route": request_bytes("/plain/bench", {"Content-Type": "application/json"}, largest),
    }

    variants = {"no rate limit": None, "rate limit (Envoy Gateway's)": rate_limit}
    upstream_port = free_port()
    results: dict[tuple[str, str], list[dict]] = {(v, s): [] for v in variants for s in SCENARIOS}
    cost_results: dict[str, list[tuple[float, float, str]]] = {name: [] for name in costs}
    limited = "rate limit (Envoy Gateway's)"
    # Over the rate limit, the same 1 MiB and a small body: what the bytes cost apart from the connection.
    over_rate_limit = {f"forged {len(mib) / 2**20:.2f} MiB, over the rate limit (429)": flood_request,
                       f"forged {len(small) / 1024:.0f} KiB, over the rate limit (429)": forged(small)}
    cost_results.update({name: [] for name in over_rate_limit})
    envoys: list[Envoy] = []
    served: list[ServedEdge] = []
    cp = seeded_control_plane()

    def start(rate_limit: tuple[dict, dict] | None) -> Envoy:
        served.append(ServedEdge(cp, workdir / f"edge-{len(served)}", RECEIVER_OBJECTS, upstream_port=upstream_port,
                                 attestation_key=KEY, adjust=with_rate_limit(rate_limit)))
        return served[-1].envoy

    try:
        envoys.append(Envoy(direct_upstream(upstream_port, free_port()), {}, log_level="warn"))
        # Per variant, the Envoy measured and a twin of it: flooding the twin costs the machine the same
        # as flooding the Envoy measured, without its worker's stall (the control for a machine of few cores).
        edges = {v: start(limit) for v, limit in variants.items()}
        twins = {v: start(limit) for v, limit in variants.items()}
        tasks = {v: worker_task(e) for v, e in edges.items()}
        wrk_plain = wrk_script(workdir, "plain", "/plain/bench", {"Content-Type": "application/json"}, small)
        genuine = {v: GenuineClient(e.port, genuine_request, args.genuine_interval, GENUINE_FIRST_SOURCE)
                   for v, e in edges.items()}

        def scenario_run(variant: str, scenario: str, settings) -> dict:
            target = {"baseline": None, "flood": edges[variant], "flood on a twin": twins[variant]}[scenario]
            return run_scenario(edges[variant], tasks[variant], wrk_plain, genuine[variant], target,
                                flood_request, settings)

        order = [(v, s) for v in variants for s in SCENARIOS]
        # Warm-up, not counted: also spends the flooder's first bucket in the rate-limited variant.
        warm = argparse.Namespace(**{**vars(args), "seconds": 1, "settle": 0.5})
        for variant, scenario in order:
            scenario_run(variant, scenario, warm)
        for round_index in range(args.rounds):
            # Interleaved, and each round in another order, so that drift in the machine's load spreads evenly.
            shift = round_index % len(order)
            for variant, scenario in order[shift:] + order[:shift]:
                results[(variant, scenario)].append(scenario_run(variant, scenario, args))
            unlimited = "no rate limit"
            for name, request in costs.items():
                cost_results[name].append(cost_per_request(edges[unlimited], tasks[unlimited], COST_SOURCE, request,
                                                           args.cost_requests))
            for name, request in over_rate_limit.items():
                spend_bucket(edges[limited], COST_SOURCE, forged(small))
                cost_results[name].append(cost_per_request(edges[limited], tasks[limited], COST_SOURCE, request,
                                                           args.cost_requests))
            print(f"round {round_index + 1}/{args.rounds} done", file=sys.stderr)
    finally:
        for edge in served:
            edge.close()
        for envoy in envoys:
            envoy.cleanup()
        cp.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return report(args, variants, results, cost_results, rate_limit[1])


def spread(values: list[float], fmt: str) -> str:
    return f"{format(min(values), fmt)}..{format(max(values), fmt)}"


def describe(route_config: dict) -> str:
    """The buckets of a route's local rate limit config, in words."""
    return "; ".join(
        f"{'+'.join(e['key'] + ('=' + e['value'] if 'value' in e else '=each') for e in d['entries'])}: "
        f"{d['tokenBucket']['maxTokens']} per {d['tokenBucket']['fillInterval']}"
        for d in route_config["descriptors"])


def report(args, variants: dict, results: dict, cost_results: dict, route_config: dict) -> int:
    print(f"\nhookgate flood benchmark: Envoy 1 worker, filter at the default bodyLimit ({DEFAULT_BODY_LIMIT} bytes); "
          f"wrk 1 thread x {args.connections} connections from 127.0.0.1 on the plain route; flooder "
          f"{args.flood_connections} keep-alive connections from {FLOOD_SOURCE}, forged 1 MiB deliveries; genuine "
          f"8 KiB deliveries every {args.genuine_interval * 1000:.0f} ms from {GENUINE_FIRST_SOURCE} onwards, "
          f"fresh connection each; {args.rounds} rounds x {args.seconds}s, medians (min..max over rounds); "
          f"nproc={os.cpu_count()}, load average before the run's end {os.getloadavg()[0]:.2f}")
    print(f"rate limit: Envoy Gateway's translation of {EXAMPLE.relative_to(MANIFESTS.parent)}'s BackendTrafficPolicy, "
          f"in front of the filter: {describe(route_config)}")
    print(f"{'variant':30s} {'scenario':15s} {'plain req/s':>12s} {'worker busy':>11s} {'genuine p50/p99 ms':>19s} "
          f"{'flood req/s':>11s} {'flooder CPU':>11s}  answers to the flood / genuine")
    unexpected = []
    for variant in variants:
        for scenario in SCENARIOS:
            rounds = results[(variant, scenario)]
            rps = [r["rps"] for r in rounds]
            busy = statistics.median(r["worker_busy"] for r in rounds)
            p50 = statistics.median(r["genuine_p50"] for r in rounds)
            p99 = statistics.median(r["genuine_p99"] for r in rounds)
            genuine_answers: dict[str, int] = {}
            for r in rounds:
                for status, n in r["genuine_statuses"].items():
                    genuine_answers[status] = genuine_answers.get(status, 0) + n
            if set(genuine_answers) != {"200"} or any(r["plain_non2xx"] for r in rounds):
                unexpected.append(f"{variant}, {scenario}")
            flood_rate, flood_cpu, flood_answers = "-", "-", "-"
            if scenario != "baseline":
                floods = [r["flood"] for r in rounds]
                flood_rate = f"{statistics.median(f['sent'] / f['seconds'] for f in floods):.0f}"
                flood_cpu = f"{statistics.median(f['cpu'] / f['seconds'] for f in floods) * 100:.0f}%"
                totals: dict[str, int] = {}
                for f in floods:
                    for what, n in f["counts"].items():
                        totals[what] = totals.get(what, 0) + n
                flood_answers = " ".join(f"{n} {what}" for what, n in sorted(totals.items()))
            genuine_text = " ".join(f"{n} {s}" for s, n in sorted(genuine_answers.items()))
            print(f"{variant:30s} {scenario:15s} {statistics.median(rps):12.0f} {busy * 100:10.0f}% "
                  f"{p50:9.2f}/{p99:<9.2f} {flood_rate:>11s} {flood_cpu:>11s}  {flood_answers} / {genuine_text}")
    print("targets (plain route under flood >= 90% of its baseline; genuine p99 under flood < 100 ms); the flood "
          "on a twin shows what the machine's load alone takes:")
    judged = args.rounds >= 3

    def verdict(met: bool) -> str:
        return ("met" if met else "NOT met") if judged else "not judged (fewer than 3 rounds)"

    for variant in variants:
        baseline_rounds = results[(variant, "baseline")]
        baseline = statistics.median(r["rps"] for r in baseline_rounds)
        for scenario in SCENARIOS[1:]:
            rounds = results[(variant, scenario)]
            ratios = [r["rps"] / b["rps"] * 100 for r, b in zip(rounds, baseline_rounds)]
            ratio = statistics.median(r["rps"] for r in rounds) / baseline
            p99 = statistics.median(r["genuine_p99"] for r in rounds)
            line = (f"  {variant:30s} {scenario:15s} throughput {ratio * 100:5.1f}% (rounds {spread(ratios, '.0f')}%), "
                    f"genuine p99 {p99:6.2f} ms (rounds {spread([r['genuine_p99'] for r in rounds], '.1f')})")
            if scenario == "flood":
                line += f": throughput {verdict(ratio >= 0.9)}, p99 {verdict(p99 < 100)}"
            print(line)
    print("Envoy worker per request, one at a time (keep-alive while Envoy keeps the connection), medians:")
    print(f"  {'request':46s} {'CPU ms':>8s} {'latency ms':>11s}  answers")
    for name, rounds in cost_results.items():
        cpu = statistics.median(r[1] for r in rounds)
        latency = statistics.median(r[0] for r in rounds)
        answers = " | ".join(sorted({r[2] for r in rounds}))
        print(f"  {name:46s} {cpu:8.2f} {latency:11.2f}  {answers} (per round)")
    if unexpected:
        print("unexpected answers (genuine not all 200, or plain route not all 2xx) in: " + ", ".join(unexpected))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
