"""`make bench`, receivers as objects (docs/live-configuration.md) at scale, on the real parts: the real
kube-apiserver, the controller run from the manifests' base Deployment, and the real Envoy Gateway
(standalone) whose Envoy's filter takes its receivers from the controller (tests/test_live_receivers.py's
start_live).

1,000 Receivers (and their Secrets) in 100 namespaces: how long until the last one is live at the edge, the
controller's compile of the whole document, the filter's load (open + compile) per VM and Envoy's memory
per VM; then one receiver's Secret rotated 20 times: Secret updated to the new secret verified at the edge."""

from __future__ import annotations

import argparse
import os
import re
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import signers  # noqa: E402
from gateway import wait  # noqa: E402
from gitops import git_repository, seeded_control_plane  # noqa: E402
from test_live_receivers import (Live, receiver, replace_secret, secret_object, start_live,  # noqa: E402
                                 stop_live)


def envoy_rss_kib(live: Live) -> int:
    status = Path(f"/proc/{live.envoy_pid()}/status").read_text()
    return int(re.search(r"^VmRSS:\s+(\d+) kB", status, re.M).group(1))


def metric(text: str, name: str) -> list[tuple[str, float]]:
    """Every sample of `name` in a Prometheus text page: (labels, value)."""
    return [(labels or "", float(value)) for labels, value in
            re.findall(rf"^{re.escape(name)}(\{{[^}}]*\}})? (\S+)$", text, re.M)]


def compile_seconds(live: Live) -> tuple[float, float]:
    """The controller's compile-duration histogram: (sum, count)."""
    text = live.controller.get("/metrics")[1]
    total = sum(v for _, v in metric(text, "hookgate_configuration_compile_duration_seconds_sum"))
    count = sum(v for _, v in metric(text, "hookgate_configuration_compile_duration_seconds_count"))
    return total, count


def many_receivers(live: Live, namespaces: int, per_namespace: int) -> dict:
    cp = live.cp
    rss_before = envoy_rss_kib(live)
    started = time.monotonic()
    last = None
    for n in range(namespaces):
        namespace = f"bench-{n:03d}"
        cp.namespace(namespace)
        cp.apply(git_repository("app", namespace))
        for r in range(per_namespace):
            token = secrets.token_hex(20)
            cp.apply(secret_object(f"token-{r}", namespace, {"token": token}))
            cp.apply(receiver(f"hook-{r}", namespace, f"token-{r}"))
            last = (signers.flux_path(token, f"hook-{r}", namespace), token)
    created = time.monotonic()
    wait(lambda: live.post(*last) == 200, 300, "the last receiver live at the edge")
    edge = time.monotonic()
    total = namespaces * per_namespace

    def ready() -> bool:
        text = live.controller.get("/metrics")[1]
        return sum(v for labels, v in metric(text, "hookgate_receivers") if 'ready="true"' in labels) >= total

    wait(ready, 300, "every receiver Ready")
    # The controller's compile of the whole document, timed over a few changes of one Secret.
    sum0, count0 = compile_seconds(live)
    for i in range(5):
        cp.apply(secret_object("token-0", "bench-000", {"token": secrets.token_hex(20)}))
        wait(lambda: compile_seconds(live)[1] > count0 + i, 60, "a compile")
    sum1, count1 = compile_seconds(live)
    stats = live.gateway.stats()
    loads = [v for _, v in metric(stats, "hookgate_configuration_load_milliseconds")]
    served = [v for _, v in metric(stats, "hookgate_configuration_receivers")]
    rss_after = envoy_rss_kib(live)
    # Envoy Gateway's Envoy here: 2 workers, each with its VM, and the main thread's.
    vms = os.cpu_count() + 1
    return {"receivers": total, "namespaces": namespaces, "create_s": created - started,
            "last_live_after_created_s": edge - created, "compile_ms": 1000 * (sum1 - sum0) / max(1, count1 - count0),
            "filter_load_ms": loads, "served": served, "rss_delta_kib": rss_after - rss_before,
            "rss_per_vm_kib": (rss_after - rss_before) / vms, "vms": vms}


def rotations(live: Live, count: int) -> list[float]:
    """One receiver (pinned path) whose Secret is replaced `count` times: seconds from the Secret's update to
    the first delivery signed with the new secret verified at the edge."""
    cp, namespace, path = live.cp, "bench-000", "/hook/bench-rotating"
    token = secrets.token_hex(20)
    cp.apply(secret_object("rotating", namespace, {"token": token}))
    cp.apply(receiver("rotating", namespace, "rotating", path=path))
    wait(lambda: live.post(path, token) == 200, 60, "the rotating receiver live")
    times = []
    for _ in range(count):
        # Rotations are far apart in life: each starts while the proxies wait in their long poll, not in
        # the second after the previous change.
        time.sleep(2)
        token = secrets.token_hex(20)
        replace_secret(cp, "rotating", namespace, {"token": token}, cp.admin_token)
        updated = time.monotonic()
        wait(lambda: live.post(path, token) == 200, 60, "the rotated secret live")
        times.append(time.monotonic() - updated)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--namespaces", type=int, default=100)
    parser.add_argument("--per-namespace", type=int, default=10)
    parser.add_argument("--rotations", type=int, default=20)
    args = parser.parse_args()
    cp = seeded_control_plane()
    with tempfile.TemporaryDirectory(prefix="hookgate-bench-receivers-") as workdir:
        live = start_live(cp, Path(workdir))
        try:
            scale = many_receivers(live, args.namespaces, args.per_namespace)
            rotated = rotations(live, args.rotations)
        finally:
            stop_live(live)
            cp.stop()
    print(f"\n## Receivers as objects ({os.cpu_count()} cores, load {os.getloadavg()[0]:.1f})")
    print(f"{scale['receivers']} receivers in {scale['namespaces']} namespaces, created through the API in "
          f"{scale['create_s']:.1f} s; the last one live at the edge {scale['last_live_after_created_s']:.2f} s "
          f"after it was created")
    print(f"controller: compile of the whole document {scale['compile_ms']:.0f} ms (mean of 5)")
    print(f"filter: open + compile per VM {scale['filter_load_ms']} ms, serving {scale['served']} receivers")
    print(f"Envoy resident memory +{scale['rss_delta_kib'] / 1024:.1f} MiB for {scale['vms']} VMs "
          f"({scale['rss_per_vm_kib'] / 1024:.1f} MiB per VM)")
    print(f"rotation, Secret updated -> new secret verified at the edge, {len(rotated)} rotations: "
          f"p50 {statistics.median(rotated):.2f} s, max {max(rotated):.2f} s")


if __name__ == "__main__":
    main()
