"""`make bench`: the edge filter's cost, measured side by side in one run.

One Envoy (one worker) built like Envoy Gateway's, in front of a fast upstream (another Envoy answering
directly), loaded with wrk on loopback. Besides hookgate's route and the route without any filter, the same
Envoy has the floors any edge verifier is bound by, each on its own route: Envoy's own `buffer` filter, and
a minimal proxy-wasm module (`bench/wasm-floor`, built here) that holds the headers and buffers the body,
with and without one HMAC-SHA256 over it. Each scenario runs ROUNDS times, interleaved, and the median is
reported; ratios compare each scenario with the route without a filter and with the Wasm HMAC floor of the
same body size, round by round. The edge Envoy's CPU time per request (all its threads) is printed too: on a
shared machine it moves less than throughput.

hookgate's filter takes its receiver from the controller, as on a cluster: a Receiver object and its Secret
in a real kube-apiserver, the controller serving them (tests/served.py).

Then the memory part: Envoy's resident set (VmRSS) after warm-up traffic, without a Wasm filter, with
hookgate and with the Wasm floor, at 1, 2 and 4 workers. Envoy runs one VM per worker (and one on the main
thread): a module's cost grows by the slope per worker, from a part paid once per Envoy (the compiled
module, the main thread's VM).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import signers  # noqa: E402
from gitops import seeded_control_plane  # noqa: E402
from harness import ROOT, WASM, Envoy, envoy_bootstrap, free_port  # noqa: E402
from served import ServedEdge, receiver, secret  # noqa: E402

SECRET = "bench-secret-0123456789abcdef"
KEY = "bench-attestation-key-0123456789abcdef"
NAMESPACE = "bench"
OBJECTS = [receiver("webapp", NAMESPACE, {"type": "github", "secretRef": {"name": "webapp-token"},
                                          "bodyLimit": 2 * 1024 * 1024,
                                          "targets": [{"kind": "GitRepository", "name": "webapp"}]}),
           secret("webapp-token", NAMESPACE, {"token": SECRET})]
HOOK = signers.flux_path(SECRET, "webapp", NAMESPACE)
FLOOR_PACKAGE = "hookgate-bench-floor"
FLOOR_WASM = ROOT / "target/wasm32-wasip1/release/hookgate_bench_floor.wasm"
BUFFER_LIMIT = 4 * 1024 * 1024
ROUTER = "envoy.filters.http.router"
# HTTP filter of each floor -> the route that enables it (off everywhere else)
FLOOR_ROUTES = {
    "buffer": "/buffer/",
    "wasm-floor-buffer": "/floor-buffer/",
    "wasm-floor-hmac": "/floor-hmac/",
    "wasm-floor-hmac-chunks": "/floor-hmac-chunks/",
}
PLAIN_ROUTE = "/plain/"
SMALL, LARGE = 8 * 1024, 1024 * 1024
COMPARE_HEADER = "x-bench-compared-module"
# Target ratios against the Wasm HMAC floor (issue 11).
TARGET_VALID, TARGET_REJECTED = 0.95, 1.00
MIN_ROUNDS_FOR_A_VERDICT = 3


def push_body(size: int) -> bytes:
    """A GitHub push payload with enough commits to reach about `size` bytes."""
    commit = {"id": "b" * 40, "message": "x" * 200, "added": ["deploy/app.yaml"]}
    count = max(0, size // len(json.dumps(commit)) - 1)
    return json.dumps({"ref": "refs/heads/main", "after": "a" * 40, "commits": [commit] * count}).encode()


def build_floor() -> Path:
    """Builds the Wasm floor module with the workspace's release profile (the filter's)."""
    subprocess.run(["cargo", "build", "--quiet", "--release", "-p", FLOOR_PACKAGE, "--target", "wasm32-wasip1"],
                   cwd=ROOT, check=True)
    return FLOOR_WASM


def direct_upstream(port: int, admin: int) -> dict:
    return {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin}}},
        "static_resources": {"listeners": [{
            "name": "upstream",
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
            "per_connection_buffer_limit_bytes": BUFFER_LIMIT,
            "filter_chains": [{"filters": [{
                "name": "envoy.filters.network.http_connection_manager",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                    "stat_prefix": "upstream",
                    "route_config": {"virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [
                        {"match": {"prefix": "/"}, "direct_response": {"status": 200, "body": {"inline_string": "{\"ok\":true}"}}}]}]},
                    # Read the whole request before answering: a direct response sent before the body is
                    # consumed makes Envoy close the connection, and every request would pay a new one.
                    "http_filters": [buffer_filter("envoy.filters.http.buffer"), router_filter()],
                }}]}],
        }]},
    }


def buffer_filter(name: str) -> dict:
    return {"name": name, "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer",
        "max_request_bytes": BUFFER_LIMIT}}


def router_filter() -> dict:
    return {"name": ROUTER, "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}


def http_connection_manager(bootstrap: dict) -> dict:
    return bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]


def hookgate_wasm_filter(bootstrap: dict) -> dict:
    return next(f for f in http_connection_manager(bootstrap)["http_filters"]
                if f["name"].startswith("envoy.filters.http.wasm/"))


def floor_wasm_filter(hookgate: dict, name: str, module: Path, mode: str) -> dict:
    """The floor module configured like hookgate's filter (same runtime, headers held, off unless a route
    enables it), in `mode`."""
    floor = copy.deepcopy(hookgate)
    floor["name"] = name
    config = floor["typed_config"]["config"]
    config.update(name=name, root_id=name)
    config["vm_config"].update(vm_id=name, code={"local": {"filename": str(module)}})
    config["vm_config"].pop("environment_variables", None)
    config["configuration"]["value"] = mode
    return floor


def with_floors(bootstrap: dict, floor_module: Path) -> dict:
    """`bootstrap` plus one route per floor, each enabling its own filter (disabled elsewhere), placed
    where hookgate's filter is in the chain."""
    bootstrap = copy.deepcopy(bootstrap)
    manager = http_connection_manager(bootstrap)
    hookgate = hookgate_wasm_filter(bootstrap)
    floors = [{**buffer_filter("buffer"), "disabled": True},
              floor_wasm_filter(hookgate, "wasm-floor-buffer", floor_module, "buffer"),
              floor_wasm_filter(hookgate, "wasm-floor-hmac", floor_module, "hmac"),
              floor_wasm_filter(hookgate, "wasm-floor-hmac-chunks", floor_module, "hmac-chunks")]
    filters = manager["http_filters"]
    at = filters.index(hookgate) + 1
    filters[at:at] = floors
    routes = manager["route_config"]["virtual_hosts"][0]["routes"]
    plain = next(r for r in routes if r["match"].get("prefix") == PLAIN_ROUTE)
    for name, prefix in FLOOR_ROUTES.items():
        routes.append({**copy.deepcopy(plain), "name": f"bench/{name}", "match": {"prefix": prefix},
                       "typed_per_filter_config": {
                           name: {"@type": "type.googleapis.com/envoy.config.route.v3.FilterConfig", "config": {}}}})
    return bootstrap


def with_compared_module(bootstrap: dict, module: Path, configuration: str) -> dict:
    """`bootstrap` plus a second hookgate filter running `module` with its own plugin `configuration`,
    enabled instead of the first on requests carrying COMPARE_HEADER: an A/B of two builds of the filter in
    the same Envoy and the same rounds."""
    bootstrap = copy.deepcopy(bootstrap)
    manager = http_connection_manager(bootstrap)
    hookgate = hookgate_wasm_filter(bootstrap)
    compared = copy.deepcopy(hookgate)
    compared["name"] = hookgate["name"] + "/compared"
    config = compared["typed_config"]["config"]
    config["vm_config"].update(vm_id=config["vm_config"]["vm_id"] + "/compared",
                               code={"local": {"filename": str(module)}})
    config["configuration"]["value"] = configuration
    filters = manager["http_filters"]
    filters.insert(filters.index(hookgate) + 1, compared)
    routes = manager["route_config"]["virtual_hosts"][0]["routes"]
    hook = next(r for r in routes if hookgate["name"] in r.get("typed_per_filter_config", {}))
    switch = hook["typed_per_filter_config"][hookgate["name"]]
    routes.insert(0, {**copy.deepcopy(hook), "name": "bench/compared",
                      "match": {**hook["match"], "headers": [{"name": COMPARE_HEADER, "present_match": True}]},
                      "typed_per_filter_config": {compared["name"]: switch}})
    return bootstrap


def without_wasm(bootstrap: dict) -> dict:
    """`bootstrap` without hookgate's filter and its per-route switch: the same Envoy, no Wasm VM."""
    bootstrap = copy.deepcopy(bootstrap)
    manager = http_connection_manager(bootstrap)
    hookgate = hookgate_wasm_filter(bootstrap)
    manager["http_filters"].remove(hookgate)
    for route in manager["route_config"]["virtual_hosts"][0]["routes"]:
        route.get("typed_per_filter_config", {}).pop(hookgate["name"], None)
    return bootstrap


def with_module(bootstrap: dict, module: Path, configuration: str) -> dict:
    """`bootstrap` with `module` in hookgate's filter's place, configured with `configuration`."""
    bootstrap = copy.deepcopy(bootstrap)
    config = hookgate_wasm_filter(bootstrap)["typed_config"]["config"]
    config["vm_config"]["code"] = {"local": {"filename": str(module)}}
    config["configuration"]["value"] = configuration
    return bootstrap


def wrk_script(workdir: Path, name: str, path: str, headers: dict, body: bytes) -> Path:
    body_file = workdir / f"{name}.body"
    body_file.write_bytes(body)
    lines = ['wrk.method = "POST"', f'wrk.path = "{path}"',
             f'local f = io.open("{body_file}", "rb"); wrk.body = f:read("*a"); f:close()']
    lines += [f'wrk.headers["{k}"] = "{v}"' for k, v in headers.items()]
    script = workdir / f"{name}.lua"
    script.write_text("\n".join(lines) + "\n")
    return script


def to_ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def cpu_ns(pid: int) -> int:
    """On-CPU time so far of every thread of process `pid`, in nanoseconds (schedstat)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (FileNotFoundError, ProcessLookupError):
            pass  # a thread that ended meanwhile
    return total


def run_wrk(port: int, script: Path, seconds: int, connections: int, pid: int | None = None) -> dict:
    """wrk's figures, and with `pid` the CPU time that process spent per request (less sensitive than
    throughput to other work on a shared machine)."""
    before = cpu_ns(pid) if pid else 0
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script), f"http://127.0.0.1:{port}"],
        check=True, capture_output=True, text=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p99 = to_ms(re.search(r"\s99%\s+(\S+)", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    total = int(re.search(r"(\d+) requests in", out).group(1))
    cpu_us = (cpu_ns(pid) - before) / 1000 / total if pid else None
    return {"rps": rps, "p99": p99, "non2xx": int(non2xx.group(1)) if non2xx else 0, "total": total, "cpu_us": cpu_us}


def rss_kib(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"^VmRSS:\s+(\d+) kB", status, re.M).group(1))


def per_round_ratios(results: dict[str, list[dict]], name: str, reference: str) -> list[float]:
    """The ratio of `name` to `reference` in each round (interleaved, so both saw the same machine)."""
    return [a["rps"] / b["rps"] for a, b in zip(results[name], results[reference])]


def verdict(ratios: list[float], target: float) -> str:
    if len(ratios) < MIN_ROUNDS_FOR_A_VERDICT:
        return f"not judged (fewer than {MIN_ROUNDS_FOR_A_VERDICT} rounds)"
    return "met" if statistics.median(ratios) >= target else "NOT met"


def throughput(args, cp, workdir: Path, floor_module: Path) -> bool:
    hook = HOOK
    bodies = {SMALL: push_body(SMALL), LARGE: push_body(LARGE)}
    json_headers = {"Content-Type": "application/json"}
    good_small = signers.github(SECRET, bodies[SMALL])
    bad_small = {**good_small, "X-Hub-Signature-256": "sha256=" + "0" * 64}
    missing = {k: v for k, v in good_small.items() if not k.startswith("X-Hub-Signature")}
    plain = {size: f"plain route, {label}" for size, label in ((SMALL, "8 KiB"), (LARGE, "1 MiB"))}
    floor = {size: f"Wasm floor hold+HMAC, {label}" for size, label in ((SMALL, "8 KiB"), (LARGE, "1 MiB"))}
    # name -> (path, headers, body size, expected status class)
    scenarios = {
        plain[SMALL]: (PLAIN_ROUTE + "bench", json_headers, SMALL, "2xx"),
        "Envoy buffer filter, 8 KiB": (FLOOR_ROUTES["buffer"] + "bench", json_headers, SMALL, "2xx"),
        "Wasm floor hold+buffer, 8 KiB": (FLOOR_ROUTES["wasm-floor-buffer"] + "bench", json_headers, SMALL, "2xx"),
        floor[SMALL]: (FLOOR_ROUTES["wasm-floor-hmac"] + "bench", json_headers, SMALL, "2xx"),
        "hookgate, valid 8 KiB push": (hook, good_small, SMALL, "2xx"),
        "hookgate, bad signature": (hook, bad_small, SMALL, "401"),
        "hookgate, missing signature": (hook, missing, SMALL, "401"),
        plain[LARGE]: (PLAIN_ROUTE + "bench", json_headers, LARGE, "2xx"),
        floor[LARGE]: (FLOOR_ROUTES["wasm-floor-hmac"] + "bench", json_headers, LARGE, "2xx"),
        # Whether hashing each chunk as it arrives beats one read and hash at the end (issue 11).
        "Wasm floor, HMAC per chunk, 1 MiB": (FLOOR_ROUTES["wasm-floor-hmac-chunks"] + "bench", json_headers, LARGE,
                                              "2xx"),
        "hookgate, valid 1 MiB push": (hook, signers.github(SECRET, bodies[LARGE]), LARGE, "2xx"),
    }
    if args.compare_wasm:
        compared = {COMPARE_HEADER: "1"}
        scenarios |= {
            "compared, valid 8 KiB push": (hook, {**good_small, **compared}, SMALL, "2xx"),
            "compared, bad signature": (hook, {**bad_small, **compared}, SMALL, "401"),
            "compared, missing signature": (hook, {**missing, **compared}, SMALL, "401"),
            "compared, valid 1 MiB push": (hook, {**signers.github(SECRET, bodies[LARGE]), **compared}, LARGE, "2xx"),
        }
    if args.scenario:  # with the references of their body sizes: every ratio needs them
        chosen = {name: s for name, s in scenarios.items() if any(part in name for part in args.scenario)}
        references = {ref[size] for _, _, size, _ in chosen.values() for ref in (plain, floor)}
        scenarios = {name: s for name, s in scenarios.items() if name in chosen or name in references}
    upstream_port = free_port()
    results: dict[str, list[dict]] = {name: [] for name in scenarios}
    def adjust(bootstrap: dict) -> dict:
        if args.compare_wasm:
            bootstrap = with_compared_module(bootstrap, args.compare_wasm, args.compare_config.read_text())
        return with_floors(bootstrap, floor_module)

    with Envoy(direct_upstream(upstream_port, free_port()), {}), \
         ServedEdge(cp, workdir / "throughput", OBJECTS, upstream_port=upstream_port, attestation_key=KEY,
                    buffer_limit=BUFFER_LIMIT, log_level=args.log_level, adjust=adjust) as served:
        edge = served.envoy
        scripts = {name: wrk_script(workdir, f"s{i}", path, headers, bodies[size])
                   for i, (name, (path, headers, size, _)) in enumerate(scenarios.items())}
        for name, script in scripts.items():  # warm-up
            run_wrk(edge.port, script, 1, args.connections)
        for _ in range(args.rounds):
            for name, script in scripts.items():
                results[name].append(run_wrk(edge.port, script, args.seconds, args.connections, edge.proc.pid))

    print(f"\nhookgate edge benchmark: Envoy 1 worker (log level {args.log_level}), wrk 1 thread x {args.connections} "
          f"connections, {args.rounds} interleaved rounds x {args.seconds}s, medians (of per-round ratios too); "
          f"nproc={os.cpu_count()}, load average before: {args.load}")
    print(f"{'scenario':32s} {'req/s':>9s} {'p99 ms':>8s} {'vs plain':>9s} {'vs HMAC floor':>14s} "
          f"{'Envoy CPU us/req':>16s}  answers")
    failures = []
    for name, (_, _, size, expected) in scenarios.items():
        rps = statistics.median(r["rps"] for r in results[name])
        p99 = statistics.median(r["p99"] for r in results[name])
        non2xx = sum(r["non2xx"] for r in results[name])
        total = sum(r["total"] for r in results[name])
        answers = f"{total - non2xx} 2xx / {non2xx} other (expected {expected})"
        if (expected == "2xx") != (non2xx == 0):
            failures.append(name)
        vs_plain = statistics.median(per_round_ratios(results, name, plain[size]))
        vs_floor = statistics.median(per_round_ratios(results, name, floor[size]))
        cpu = statistics.median(r["cpu_us"] for r in results[name])
        print(f"{name:32s} {rps:9.0f} {p99:8.2f} {vs_plain:8.2f}x {vs_floor:13.2f}x {cpu:16.1f}  {answers}")
    size = WASM.stat().st_size
    print(f"{'hookgate module size':32s} {size / 1024:8.0f} KiB (target < 1 MiB); "
          f"Wasm floor module {floor_module.stat().st_size / 1024:.0f} KiB")
    if not {"hookgate, valid 8 KiB push", "hookgate, bad signature", "hookgate, missing signature"} <= set(scenarios):
        return not failures
    valid = per_round_ratios(results, "hookgate, valid 8 KiB push", floor[SMALL])
    rejected = [min(a, b) for a, b in zip(per_round_ratios(results, "hookgate, bad signature", floor[SMALL]),
                                          per_round_ratios(results, "hookgate, missing signature", floor[SMALL]))]
    spread = lambda ratios: f"rounds {min(ratios):.2f}-{max(ratios):.2f}"  # noqa: E731
    print(f"targets: valid 8 KiB >= {TARGET_VALID:.2f}x of the Wasm HMAC floor: {verdict(valid, TARGET_VALID)} "
          f"({spread(valid)}); bad and missing signature >= {TARGET_REJECTED:.2f}x of it: "
          f"{verdict(rejected, TARGET_REJECTED)} ({spread(rejected)}); "
          f"module < 1 MiB: {'met' if size < 1024 * 1024 else 'NOT met'}")
    if failures:
        print("unexpected answers in: " + ", ".join(failures))
    return not failures


def memory(args, cp, workdir: Path, floor_module: Path) -> None:
    """Envoy's VmRSS after warm-up traffic through the variant's filter, per worker count; medians of
    interleaved rounds. hookgate's filter is served by the controller; the other variants run the same
    bootstrap (a cluster for the controller included) without it."""
    hook = HOOK
    body = push_body(SMALL)
    # variant -> (bootstrap transformation, warm-up path, headers)
    variants = {
        "no Wasm filter": (without_wasm, PLAIN_ROUTE + "warm", {"Content-Type": "application/json"}),
        "hookgate": (lambda b: b, hook, signers.github(SECRET, body)),
        "Wasm floor (hmac)": (lambda b: with_module(b, floor_module, "hmac"), hook, {"Content-Type": "application/json"}),
    }
    scripts = {name: wrk_script(workdir, f"m{i}", path, headers, body)
               for i, (name, (_, path, headers)) in enumerate(variants.items())}
    rss: dict[tuple[str, int], list[int]] = {}
    upstream_port = free_port()
    with Envoy(direct_upstream(upstream_port, free_port()), {}):
        for _ in range(args.memory_rounds):
            for workers in args.workers:
                for name, (transform, _, _) in variants.items():
                    with edge_for(name, transform, cp, workdir / f"m-{name}-{workers}", upstream_port, workers,
                                  args.log_level) as edge:
                        # Enough connections that every worker serves some (the kernel spreads them).
                        run = run_wrk(edge.port, scripts[name], args.memory_warmup, 4 * workers)
                        if run["non2xx"]:
                            raise RuntimeError(f"memory warm-up of {name}: {run['non2xx']} non-2xx answers")
                        rss.setdefault((name, workers), []).append(rss_kib(edge.proc.pid))

    print(f"\nEnvoy memory: VmRSS in MiB after {args.memory_warmup}s of 8 KiB traffic through the filter, median of "
          f"{args.memory_rounds} interleaved rounds; a module's cost is (with - without)")
    print(f"{'workers':>7s} " + " ".join(f"{name:>18s}" for name in variants)
          + f" {'hookgate cost':>14s} {'floor cost':>11s}")
    mib = lambda name, workers: statistics.median(rss[(name, workers)]) / 1024  # noqa: E731
    cost = {name: [mib(name, w) - mib("no Wasm filter", w) for w in args.workers] for name in variants}
    for i, workers in enumerate(args.workers):
        row = " ".join(f"{mib(name, workers):18.1f}" for name in variants)
        print(f"{workers:7d} {row} {cost['hookgate'][i]:14.1f} {cost['Wasm floor (hmac)'][i]:11.1f}")
    if len(set(args.workers)) > 1:
        # Envoy runs one VM per worker besides the main thread's: the slope of the cost over the worker count
        # is what each worker's VM adds, the intercept what the module costs once per Envoy.
        for name in ("hookgate", "Wasm floor (hmac)"):
            slope, intercept = statistics.linear_regression(args.workers, cost[name])
            print(f"{name}: {slope:.2f} MiB per worker VM, {intercept:.1f} MiB once per Envoy (least squares over "
                  f"{', '.join(map(str, args.workers))} workers)")


@contextlib.contextmanager
def edge_for(variant: str, transform, cp, workdir: Path, upstream_port: int, workers: int, log_level: str):
    """The edge Envoy of a memory variant: hookgate served by the controller, or the bootstrap transformed."""
    options = {"concurrency": workers, "log_level": log_level}
    if variant == "hookgate":
        with ServedEdge(cp, workdir, OBJECTS, upstream_port=upstream_port, attestation_key=KEY,
                        buffer_limit=BUFFER_LIMIT, **options) as served:
            yield served.envoy
        return
    bootstrap = envoy_bootstrap(listen_port=free_port(), admin_port=free_port(), upstream_port=upstream_port,
                                filter_config={}, controller_port=free_port(), buffer_limit=BUFFER_LIMIT)
    with Envoy(transform(bootstrap), {}, **options) as edge:
        yield edge


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=5, help="duration of one round of one scenario")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--log-level", default="warn",
                        help="Envoy's log level; warn is Envoy Gateway's default, info logs every accepted delivery")
    parser.add_argument("--memory-rounds", type=int, default=2)
    parser.add_argument("--memory-warmup", type=int, default=2, help="seconds of traffic before reading RSS")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4], help="worker counts of the memory part")
    parser.add_argument("--scenario", action="append",
                        help="run only the scenarios whose name contains this (repeatable), besides the references")
    parser.add_argument("--compare-wasm", type=Path,
                        help="another build of the filter, run in the same Envoy and rounds (scenarios `compared, ...`)")
    parser.add_argument("--compare-config", type=Path,
                        help="the compared build's plugin configuration (JSON), with --compare-wasm: a build from "
                             "before receivers were objects reads its receivers there (secrets `inline`, the "
                             "attestation key as `attestationKey`)")
    parts = parser.add_mutually_exclusive_group()
    parts.add_argument("--only-throughput", action="store_true")
    parts.add_argument("--only-memory", action="store_true")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk not found: `make bench` installs it (apt-get install wrk)")
    args.load = " ".join(f"{x:.2f}" for x in os.getloadavg())

    if bool(args.compare_wasm) != bool(args.compare_config):
        sys.exit("--compare-wasm and --compare-config go together")
    floor_module = build_floor()
    workdir = Path(tempfile.mkdtemp(prefix="hookgate-bench-"))
    cp = seeded_control_plane()
    ok = True
    try:
        if not args.only_memory:
            ok = throughput(args, cp, workdir, floor_module)
        if not args.only_throughput:
            memory(args, cp, workdir, floor_module)
    finally:
        cp.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
