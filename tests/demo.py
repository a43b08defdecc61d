"""`make demo`: hookgate's whole job on this machine, with real parts, deployed as a user deploys it.

Starts a real kube-apiserver + etcd with Flux's CRDs; Envoy Gateway (built from its Go module, standalone)
translating manifests/examples/homelab-github through the test-only standalone component, with the public
half of a fresh controller key in its bootstrap; the example's Receiver and its Secret in the API server; the
example's controller Deployment as a process under the example's RBAC, serving that receiver to the filter.
Shows what Envoy Gateway reports for each policy and the receiver's status, prints the webhook URL and
secret, sends a signed GitHub push with `hookgate send` and shows the reconcile annotation changing; then a
real `git push` to a Gitea repository whose own webhook goes through the same edge; then a forged push, refused at the edge, which changes nothing. Keeps everything running until Ctrl-C, or exits at
once with --once.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import signers  # noqa: E402
from harness import CONTROLLER, WASM, free_port  # noqa: E402

EXAMPLE = "homelab-github"


def step(text: str) -> None:
    print(f"==> {text}", flush=True)


def forge_push(example, receiver: dict, secret: str, url: str, port: int, show_annotations) -> bool:
    """The loop with a real forge: a `git push` to a Gitea repository whose webhook is the receiver's URL, and
    Gitea's own delivery, verified at the edge. Gitea reaches the webhook host through the Envoy listener as its
    HTTP proxy, which stands in for the DNS that would resolve the host to the Gateway."""
    from forge import Gitea  # noqa: E402

    step("a real git push: Gitea (built from its Go module) sends its own signed webhook for it")
    with Gitea(webhook_proxy=(f"http://127.0.0.1:{port}", example.host)) as gitea:
        clone = gitea.create_repository("homelab")
        hook = gitea.add_webhook("homelab", url, secret)
        before = example.annotations(receiver)
        started = time.monotonic()
        commit = gitea.push(clone)
        delivery = gitea.delivery_of(hook, "push", after=commit)
        while example.annotations(receiver) == before and time.monotonic() - started < 30:
            time.sleep(0.01)
        took = time.monotonic() - started
        print(f"    git push origin main ({commit[:12]}): Gitea's delivery {delivery.uuid} answered {delivery.status} "
              f"{delivery.body.strip()}\n    push to annotation: {took:.2f} s (git push itself included)")
        show_annotations()
        return delivery.status == 200 and took < 30


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--once", action="store_true", help="exit after the sample deliveries")
    parser.add_argument("--port", type=int, default=0, help="the Gateway listener's port (default: a free port)")
    args = parser.parse_args()

    step("starting kube-apiserver and etcd (the first run builds them and Envoy Gateway from their Go modules)")
    from deploy import RECEIVER_API, deploy, policy_keys, wait_translated  # noqa: E402
    from gateway import EnvoyGateway, ModuleServer, http_code, wait  # noqa: E402
    from gitops import seeded_control_plane  # noqa: E402

    cp = seeded_control_plane()
    workdir = Path(tempfile.mkdtemp(prefix="hookgate-demo-"))
    modules = gateway = example = None
    try:
        modules = ModuleServer(WASM.parent)
        step("starting Envoy Gateway (standalone: file provider, Host infrastructure, the venv's Envoy; no secret "
             "in its environment)")
        gateway = EnvoyGateway({})
        port = args.port or free_port()
        step(f"applying manifests/examples/{EXAMPLE} with controllerKeys set (`hookgate public-key`): the Receiver "
             "and its Secret go to the API server, the controller Deployment runs as a process under the example's "
             "RBAC; Envoy Gateway translates the route, the policies and the EnvoyProxy; the filter takes the "
             "receiver from the controller")
        example = deploy(EXAMPLE, cp, gateway, workdir=workdir, gateway_port=port,
                         wasm_code=http_code(modules.url(WASM.name), WASM))
        wait_translated(example)
        step("what Envoy Gateway reports for each policy")
        for kind, key in policy_keys(example):
            conditions = gateway.conditions(kind, key)
            summary = ", ".join(f"{t}={c['status']}" for t, c in conditions.items())
            message = next((c.get("message", "") for t, c in conditions.items() if t == "Programmed"), "")
            print(f"    {kind:22s} {key:45s} {summary}  {message}")

        receiver = example.receivers[0]
        secret = example.secret(receiver)

        def ready() -> dict:
            found = cp.get(RECEIVER_API, "Receiver", receiver["namespace"], receiver["name"]).get("status", {})
            return next((c for c in found.get("conditions", []) if c["type"] == "Ready"), {})

        # The controller writes the status every 2 s, counting the proxies that serve the receiver.
        wait(lambda: ready().get("status") == "True", 30, "the Receiver Ready")
        condition = ready()
        found = cp.get(RECEIVER_API, "Receiver", receiver["namespace"], receiver["name"])["status"]
        step(f"the Receiver's status (kubectl get receiver -n {receiver['namespace']} {receiver['name']} -o yaml)")
        print(f"    webhookPath: {found.get('webhookPath')}\n    Ready:       {condition['status']} "
              f"{condition.get('reason', '')}: {condition.get('message', '')}")
        url = f"http://{example.host}:{port}{signers.flux_path(secret, receiver['name'], receiver['namespace'])}"
        print(f"\n    webhook URL: {url}  (resolve {example.host} to 127.0.0.1)\n    secret:      {secret}\n")

        def show_annotations() -> None:
            for (kind, namespace, name), value in example.annotations(receiver).items():
                print(f"    {kind}/{namespace}/{name:28s} {value or '(not set)'}")

        step("before")
        show_annotations()
        command = [str(CONTROLLER), "send", "--type", "github", "--url", url, "--resolve", "127.0.0.1",
                   "--secret", secret]
        step("a signed GitHub push: " + " ".join(["hookgate", *command[1:-1], "<secret>"]))
        result = subprocess.run(command, capture_output=True, text=True)
        status, _, body = result.stdout.strip().partition(" ")
        delivered = result.returncode == 0
        print(f"    {status} {json.dumps(json.loads(body)) if body.startswith('{') else body}{result.stderr.strip()}")
        step("after: the controller set the reconcile annotation on the selected objects; Flux reconciles on it")
        show_annotations()

        pushed = forge_push(example, receiver, secret, url, port, show_annotations)

        step("a forged push (signed with another secret)")
        status, body = example.send(example.delivery(receiver, forged=True))
        print(f"    {status} {body}  (refused at the edge; nothing reached the controller)")
        show_annotations()
        step("metrics: the filter's counters on Envoy's admin, the controller's on its own port")
        print(f"    Envoy:      http://{gateway.envoy_admin()}/stats/prometheus  (hookgate_deliveries_total)\n"
              f"    controller: http://127.0.0.1:{example.controller.port}/metrics  (hookgate_requests_total, ...)")
        for line in gateway.stats().splitlines():
            if line.startswith("hookgate_deliveries_total{"):
                print(f"    {line}")
        print("    dashboard and alerts: manifests/observability/ (picture: docs/dashboard.png)")
        if not delivered or not pushed or status != 401:
            print("the demo did not go as shown above: see Envoy Gateway's log", gateway.log_path, file=sys.stderr)
            return 1
        if args.once:
            return 0
        print(f"\nEverything keeps running. Try:\n    {' '.join(command[:-1])} {secret}\n"
              f"Envoy Gateway's log: {gateway.log_path}\nCtrl-C stops it.", flush=True)
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        print("\nstopping")
    finally:
        if example:
            example.stop()
        if gateway:
            gateway.cleanup()
        if modules:
            modules.close()
        cp.stop()
        shutil.rmtree(workdir, ignore_errors=True)  # it holds the secrets and a ServiceAccount token
    return 0


if __name__ == "__main__":
    sys.exit(main())
