"""`make demo`: the edge filter doing its job in the real Envoy on this machine.

Starts Envoy with the compiled hookgate filter (configured as Envoy Gateway does) in front of a stand-in
for the controller that prints what it receives, sends a signed GitHub push, a tampered copy and a ping,
and shows what reached the controller. Keeps running until Ctrl-C (or exits at once with --once).
The reconcile controller and the Kubernetes part of the demo arrive with the controller (issue 3).
"""

from __future__ import annotations

import argparse
import http.client
import json
import secrets
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import signers  # noqa: E402
from harness import Envoy, RecordingUpstream, envoy_bootstrap, free_port  # noqa: E402


def post(port: int, path: str, headers: dict, body: bytes) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("POST", path, body=body, headers=headers)
    response = conn.getresponse()
    result = response.status, response.read().decode()
    conn.close()
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--once", action="store_true", help="exit after the sample deliveries")
    parser.add_argument("--port", type=int, default=0, help="listen port for Envoy (default: a free port)")
    args = parser.parse_args()

    token = secrets.token_hex(32)
    env = {"WEBAPP_WEBHOOK_TOKEN": token, "HOOKGATE_ATTESTATION_KEY": secrets.token_hex(32)}
    config = {
        "receivers": [{
            "name": "webapp", "namespace": "flux-system", "type": "github", "events": ["push", "ping"],
            "secrets": [{"env": "WEBAPP_WEBHOOK_TOKEN"}],
            "targets": [{"kind": "GitRepository", "name": "webapp"},
                        {"kind": "Kustomization", "name": "*", "matchLabels": {"app": "webapp"}}],
        }]
    }
    controller = RecordingUpstream()
    port = args.port or free_port()
    print("starting Envoy with the hookgate filter ...", flush=True)
    bootstrap = envoy_bootstrap(listen_port=port, admin_port=free_port(), upstream_port=controller.port,
                                filter_config=config, host_env_keys=sorted(env))
    with Envoy(bootstrap, env) as envoy:
        path = signers.flux_path(token, "webapp", "flux-system")
        url = f"http://127.0.0.1:{port}{path}"
        print(f"\nwebhook URL : {url}\nsecret      : {token}\n")
        push = json.dumps({"ref": "refs/heads/main", "after": "3f786850e387550fdab836ed7e6dc881de23001b"}).encode()
        for label, headers, body in [
            ("signed GitHub push", signers.github(token, push), push),
            ("tampered push", signers.github(token, push), push.replace(b"main", b"evil")),
            ("GitHub ping", signers.github(token, b'{"zen":"hi"}', event="ping"), b'{"zen":"hi"}'),
        ]:
            controller.reset()
            status, reply = post(port, path, headers, body)
            print(f"{label:20s} -> {status} {reply}")
            for request in controller.requests:
                print(f"    controller received {request.method} {request.path}")
                print(f"    x-hookgate-signature: {request.headers['x-hookgate-signature']}")
                print(f"    {json.dumps(json.loads(request.body), indent=2).replace(chr(10), chr(10) + '    ')}")
            if not controller.requests:
                print("    nothing reached the controller")
        if args.once:
            return 0
        print(f"\nEnvoy keeps listening on {url} (sign with the secret above); Ctrl-C stops it.")
        try:
            while True:
                time.sleep(1)
        except KeyboardInterrupt:
            print("stopping")
    return 0


if __name__ == "__main__":
    sys.exit(main())
