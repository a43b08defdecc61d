"""`make bench`: the edge filter's cost, measured side by side in one run.

One Envoy (one worker) built like Envoy Gateway's, in front of a fast upstream (another Envoy answering
directly), loaded with wrk on loopback. Each scenario runs ROUNDS times, interleaved, and the median is
reported; ratios compare the scenarios against the route without the filter in the same run.
"""

from __future__ import annotations

import argparse
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
from harness import WASM, Envoy, envoy_bootstrap, free_port  # noqa: E402

SECRET = "bench-secret-0123456789abcdef"
KEY = "bench-attestation-key-0123456789abcdef"
TARGETS = [{"kind": "GitRepository", "name": "webapp"}]


def push_body(size: int) -> bytes:
    """A GitHub push payload with enough commits to reach about `size` bytes."""
    commit = {"id": "b" * 40, "message": "x" * 200, "added": ["deploy/app.yaml"]}
    count = max(0, size // len(json.dumps(commit)) - 1)
    return json.dumps({"ref": "refs/heads/main", "after": "a" * 40, "commits": [commit] * count}).encode()


def direct_upstream(port: int, admin: int) -> dict:
    return {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin}}},
        "static_resources": {"listeners": [{
            "name": "upstream",
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
            "per_connection_buffer_limit_bytes": 4 * 1024 * 1024,
            "filter_chains": [{"filters": [{
                "name": "envoy.filters.network.http_connection_manager",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                    "stat_prefix": "upstream",
                    "route_config": {"virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [
                        {"match": {"prefix": "/"}, "direct_response": {"status": 200, "body": {"inline_string": "{\"ok\":true}"}}}]}]},
                    # Read the whole request before answering: a direct response sent before the body is
                    # consumed makes Envoy close the connection, and every request would pay a new one.
                    "http_filters": [
                        {"name": "envoy.filters.http.buffer", "typed_config": {
                            "@type": "type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer",
                            "max_request_bytes": 4 * 1024 * 1024}},
                        {"name": "envoy.filters.http.router", "typed_config": {
                            "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}],
                }}]}],
        }]},
    }


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


def run_wrk(port: int, script: Path, seconds: int, connections: int) -> dict:
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script), f"http://127.0.0.1:{port}"],
        check=True, capture_output=True, text=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p99 = to_ms(re.search(r"\s99%\s+(\S+)", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    total = int(re.search(r"(\d+) requests in", out).group(1))
    return {"rps": rps, "p99": p99, "non2xx": int(non2xx.group(1)) if non2xx else 0, "total": total}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=5, help="duration of one round of one scenario")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--log-level", default="warn",
                        help="Envoy's log level; warn is Envoy Gateway's default, info logs every accepted delivery")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk not found: `make bench` installs it (apt-get install wrk)")

    workdir = Path(tempfile.mkdtemp(prefix="hookgate-bench-"))
    config = {"receivers": [{"name": "webapp", "namespace": "flux-system", "type": "github",
                             "secrets": [{"env": "BENCH_SECRET"}], "bodyLimit": 2 * 1024 * 1024,
                             "targets": TARGETS}]}
    env = {"BENCH_SECRET": SECRET, "HOOKGATE_ATTESTATION_KEY": KEY}
    hook = signers.flux_path(SECRET, "webapp", "flux-system")
    small, large = push_body(8 * 1024), push_body(1024 * 1024)
    good_small = signers.github(SECRET, small)
    bad_small = {**good_small, "X-Hub-Signature-256": "sha256=" + "0" * 64}
    missing = {k: v for k, v in good_small.items() if not k.startswith("X-Hub-Signature")}
    # name -> (path, headers, body, expected status class, connections)
    scenarios = {
        "no filter, 8 KiB": ("/plain/bench", {"Content-Type": "application/json"}, small, "2xx"),
        "filter, valid 8 KiB push": (hook, good_small, small, "2xx"),
        "filter, bad signature": (hook, bad_small, small, "401"),
        "filter, missing signature": (hook, missing, small, "401"),
        "filter, valid 1 MiB push": (hook, signers.github(SECRET, large), large, "2xx"),
    }
    upstream_port = free_port()
    results: dict[str, list[dict]] = {name: [] for name in scenarios}
    with Envoy(direct_upstream(upstream_port, free_port()), {}), \
         Envoy(envoy_bootstrap(listen_port=free_port(), admin_port=free_port(), upstream_port=upstream_port,
                               filter_config=config, host_env_keys=sorted(env)), env,
               log_level=args.log_level) as edge:
        scripts = {name: wrk_script(workdir, f"s{i}", path, headers, body)
                   for i, (name, (path, headers, body, _)) in enumerate(scenarios.items())}
        for name, script in scripts.items():  # warm-up
            run_wrk(edge.port, script, 1, args.connections)
        for _ in range(args.rounds):
            for name, script in scripts.items():
                results[name].append(run_wrk(edge.port, script, args.seconds, args.connections))
    shutil.rmtree(workdir, ignore_errors=True)

    baseline = statistics.median(r["rps"] for r in results["no filter, 8 KiB"])
    print(f"\nhookgate edge benchmark: Envoy 1 worker (log level {args.log_level}), wrk 1 thread x {args.connections} connections, "
          f"{args.rounds} rounds x {args.seconds}s, medians; nproc={os.cpu_count()}")
    print(f"{'scenario':30s} {'req/s':>10s} {'p99 ms':>8s} {'vs no filter':>13s}  answers")
    failures = []
    for name, (_, _, _, expected) in scenarios.items():
        rps = statistics.median(r["rps"] for r in results[name])
        p99 = statistics.median(r["p99"] for r in results[name])
        non2xx = sum(r["non2xx"] for r in results[name])
        total = sum(r["total"] for r in results[name])
        answers = f"{total - non2xx} 2xx / {non2xx} other (expected {expected})"
        if (expected == "2xx") != (non2xx == 0):
            failures.append(name)
        print(f"{name:30s} {rps:10.0f} {p99:8.2f} {rps / baseline:12.2f}x  {answers}")
    size = WASM.stat().st_size
    print(f"{'filter module size':30s} {size / 1024:9.0f} KiB (target < 500 KiB)")
    ratio_valid = statistics.median(r["rps"] for r in results["filter, valid 8 KiB push"]) / baseline
    ratio_bad = statistics.median(r["rps"] for r in results["filter, bad signature"]) / baseline
    ratio_missing = statistics.median(r["rps"] for r in results["filter, missing signature"]) / baseline
    print(f"targets: valid 8 KiB >= 0.90x: {'met' if ratio_valid >= 0.9 else 'NOT met'}; "
          f"rejections >= 1.00x: {'met' if min(ratio_bad, ratio_missing) >= 1.0 else 'NOT met'}; "
          f"module < 500 KiB: {'met' if size < 500 * 1024 else 'NOT met'}")
    if failures:
        print("unexpected answers in: " + ", ".join(failures))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
