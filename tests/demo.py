"""`make demo`: hookgate's whole job on this machine, with real parts.

Starts a real kube-apiserver + etcd with Flux's CRDs, a GitRepository and two Kustomizations labelled for
it; the hookgate controller under the RBAC of manifests/; and Envoy with the compiled filter in front of
it. Prints the webhook URL and secret, sends a signed GitHub push with `hookgate send`, and shows the
reconcile annotation changing; then a tampered push, which changes nothing. Keeps everything running
until Ctrl-C, or exits at once with --once.
"""

from __future__ import annotations

import argparse
import http.client
import json
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import signers  # noqa: E402
from harness import CONTROLLER, Controller, Envoy, envoy_bootstrap, free_port  # noqa: E402

FLUX = "reconcile.fluxcd.io/requestedAt"


def step(text: str) -> None:
    print(f"==> {text}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--once", action="store_true", help="exit after the sample deliveries")
    parser.add_argument("--port", type=int, default=0, help="Envoy's listen port (default: a free port)")
    args = parser.parse_args()

    step("starting kube-apiserver and etcd (the first run builds them from their Go modules: several minutes)")
    from gitops import KEY, controller_env, seeded_control_plane  # noqa: E402  (imports the cluster helpers)

    cp = seeded_control_plane()
    workdir = Path(tempfile.mkdtemp(prefix="hookgate-demo-"))
    token = secrets.token_hex(32)
    targets = [("source.toolkit.fluxcd.io/v1", "GitRepository", "webapp"),
               ("kustomize.toolkit.fluxcd.io/v1", "Kustomization", "webapp-frontend"),
               ("kustomize.toolkit.fluxcd.io/v1", "Kustomization", "webapp-backend")]

    def show_annotations() -> None:
        for api_version, kind, name in targets:
            value = cp.get(api_version, kind, "flux-system", name)["metadata"].get("annotations", {}).get(FLUX, "(not set)")
            print(f"    {kind}/{name:16s} {FLUX}: {value}")

    try:
        step("starting the hookgate controller (ServiceAccount token bound to manifests/base/controller/rbac.yaml)")
        with Controller(controller_env(cp, workdir)) as controller:
            step("starting Envoy with the hookgate filter")
            config = {"receivers": [{
                "name": "webapp", "namespace": "flux-system", "type": "github", "events": ["push", "ping"],
                "secrets": [{"env": "WEBAPP_WEBHOOK_TOKEN"}],
                "targets": [{"kind": "GitRepository", "name": "webapp"},
                            {"kind": "Kustomization", "name": "*", "matchLabels": {"app": "webapp"}}],
            }]}
            env = {"WEBAPP_WEBHOOK_TOKEN": token, "HOOKGATE_ATTESTATION_KEY": KEY}
            port = args.port or free_port()
            bootstrap = envoy_bootstrap(listen_port=port, admin_port=free_port(), upstream_port=controller.port,
                                        filter_config=config, host_env_keys=sorted(env))
            with Envoy(bootstrap, env):
                url = f"http://127.0.0.1:{port}{signers.flux_path(token, 'webapp', 'flux-system')}"
                print(f"\n    webhook URL: {url}\n    secret:      {token}\n")
                step("before")
                show_annotations()
                command = [str(CONTROLLER), "send", "--type", "github", "--url", url, "--secret", token]
                step("a signed GitHub push: " + " ".join(["hookgate", *command[1:-1], "<secret>"]))
                result = subprocess.run(command, capture_output=True, text=True)
                status, _, body = result.stdout.strip().partition(" ")
                print(f"    {status} {json.dumps(json.loads(body)) if body.startswith('{') else body}")
                step("after: the controller set the reconcile annotation; Flux reconciles on it")
                show_annotations()

                step("a tampered push (body changed after signing)")
                push = json.dumps({"ref": "refs/heads/main"}).encode()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                path = url.split(str(port), 1)[1]
                conn.request("POST", path, body=push.replace(b"main", b"evil"), headers=signers.github(token, push))
                response = conn.getresponse()
                print(f"    {response.status} {response.read().decode()}  (refused at the edge; nothing reached the controller)")
                conn.close()
                show_annotations()
                if args.once:
                    return 0
                print(f"\nEverything keeps running. Try:\n    {CONTROLLER} send --type github --url {url} --secret {token}\n"
                      "Ctrl-C stops it.", flush=True)
                while True:
                    time.sleep(1)
    except KeyboardInterrupt:
        print("\nstopping")
    finally:
        cp.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
