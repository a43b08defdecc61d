"""`make dashboard-picture`: docs/dashboard.png, the panels of manifests/observability/hookgate-dashboard.json
drawn from a real Prometheus scraping a real run (tools/observed_run.py: Envoy Gateway, the filter, the
controller against kube-apiserver).

No Grafana can be installed on this machine (not in Debian, no release downloads; a Go-module build lacks
its frontend), so the panels are drawn with matplotlib: the same queries (the dashboard's own, with
`$__rate_interval` set to RATE_INTERVAL), answered by Prometheus's query_range API, one plot per panel,
one line per series, named by the panel's legend format.

The run, about four minutes: a signed delivery to every receiver (`gitops-repo`, `gitops.repo`, the
`rollback` dispatch) each round, forged ones now and then, a phase of probing (many forged), a flood from
one address that the rate limit cuts (from the sending address too, during the probing). The controller
sends the first rollback dispatch and deduplicates the repeats for the same application."""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tools"))

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import observability  # noqa: E402
from observed_run import observed_run, send_deliveries  # noqa: E402

RATE_INTERVAL = "30s"
SCRAPE_INTERVAL = "2s"
ROUND_SECONDS = 4.0


def legend(template: str, labels: dict[str, str]) -> str:
    """A Grafana legend format (`{{label}}`) filled in."""
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), template).strip() or "value"


def drive(run, rounds: int) -> None:
    """The run's story (see the module's documentation), one round every ROUND_SECONDS."""
    for index in range(rounds):
        started = time.monotonic()
        phase = index / rounds
        send_deliveries(run, flood=40 if 0.6 <= phase < 0.75 else 0, forged=6 if 0.2 <= phase < 0.4 else index % 2)
        time.sleep(max(0.0, ROUND_SECONDS - (time.monotonic() - started)))


def draw(run, start: float, end: float, out: Path) -> None:
    panels: dict[str, list[dict]] = {}
    for query in observability.queries(RATE_INTERVAL):
        panels.setdefault(query["panel"], []).append(query)
    plt.style.use("dark_background")
    figure, axes = plt.subplots(3, 2, figsize=(16, 13), dpi=100)
    figure.patch.set_facecolor("#111217")
    for axis, (title, queries) in zip(axes.flat, panels.items()):
        axis.set_facecolor("#181b1f")
        for query in queries:
            for series in run.prometheus.query_range(query["expr"], start, end, step=2):
                times = [float(t) - start for t, _ in series["values"]]
                values = [float(v) for _, v in series["values"]]
                axis.plot(times, values, linewidth=1.6, label=legend(query["legend"], series["metric"]))
        axis.set_title(title, loc="left", fontsize=12, color="#ccccdc")
        axis.set_xlabel("seconds into the run", fontsize=9, color="#8e8e9e")
        axis.set_ylabel({"reqps": "requests / s", "s": "seconds"}.get(queries[0]["unit"], ""), fontsize=9,
                        color="#8e8e9e")
        axis.grid(color="#2c3235", linewidth=0.6)
        axis.tick_params(colors="#8e8e9e", labelsize=8)
        if axis.lines:
            axis.legend(fontsize=7, loc="upper left", framealpha=0.4)
    figure.suptitle("hookgate (manifests/observability/hookgate-dashboard.json) — real Prometheus, real Envoy "
                    "Gateway run, drawn with matplotlib", fontsize=12, color="#ccccdc")
    figure.tight_layout(rect=(0, 0, 1, 0.97))
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, facecolor=figure.get_facecolor())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=60, help=f"rounds of deliveries, {ROUND_SECONDS}s apart")
    parser.add_argument("--out", type=Path, default=ROOT / "docs/dashboard.png")
    args = parser.parse_args()
    from gitops import seeded_control_plane

    cp = seeded_control_plane()
    try:
        with observed_run(cp, scrape_interval=SCRAPE_INTERVAL) as run:
            start = time.time()
            drive(run, args.rounds)
            time.sleep(10)  # the last rounds scraped, Envoy's histograms flushed
            draw(run, start, time.time(), args.out)
    finally:
        cp.stop()
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
