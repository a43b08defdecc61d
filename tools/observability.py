"""The observability manifests' other forms, from their one source in manifests/observability/:

  rules        the PrometheusRule's groups as a plain Prometheus rules file (stdout)
  queries      every query of the Grafana dashboard, one JSON object a line: {"panel", "expr"}

Used by tests/test_observability.py (promtool checks these) and tools/dashboard_picture.py."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml

OBSERVABILITY = Path(__file__).resolve().parent.parent / "manifests/observability"
PROMETHEUS_RULE = OBSERVABILITY / "prometheusrule.yaml"
DASHBOARD = OBSERVABILITY / "hookgate-dashboard.json"
ALERTS_TEST = OBSERVABILITY / "alerts.test.yaml"
# The rules file that ALERTS_TEST names.
RULES_FILE_NAME = "hookgate-rules.yaml"


def rules() -> dict:
    """The PrometheusRule's spec: `groups`, as a rules file has them."""
    return {"groups": yaml.safe_load(PROMETHEUS_RULE.read_text())["spec"]["groups"]}


def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def queries(rate_interval: str = "5m") -> list[dict]:
    """Each panel's queries with Grafana's `$__rate_interval` replaced by `rate_interval`: what Grafana sends
    Prometheus. Returns [{"panel", "legend", "expr", "unit"}]."""
    found = []
    for panel in dashboard()["panels"]:
        for target in panel.get("targets", []):
            found.append({"panel": panel["title"], "legend": target.get("legendFormat", ""),
                          "expr": target["expr"].replace("$__rate_interval", rate_interval),
                          "unit": panel.get("fieldConfig", {}).get("defaults", {}).get("unit", "")})
    return found


def main(argv: list[str]) -> int:
    if argv == ["rules"]:
        sys.stdout.write(yaml.safe_dump(rules(), sort_keys=False))
    elif argv == ["queries"]:
        for query in queries():
            print(json.dumps(query))
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
