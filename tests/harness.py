"""Runs the real parts for tests, the benchmark and the demo: Envoy (from the project's virtual environment)
with the compiled hookgate filter configured the way Envoy Gateway configures it, and a recording upstream.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
WASM = Path(os.environ.get("HOOKGATE_WASM", ROOT / "target/wasm32-wasip1/release/hookgate_filter.wasm"))
ENVOY = os.environ.get("HOOKGATE_ENVOY", str(ROOT / ".venv/bin/envoy"))

# What Envoy Gateway generates for an EnvoyExtensionPolicy `hookgate` in namespace `default` on route
# `hookgate` of listener `http` of Gateway `envoy-gateway-system/hookgate`, run standalone (REFERENCE.md §3): the
# static bootstrap below repeats it, and test_gateway.py proves the two equal.
POLICY = ("default", "hookgate")
LISTENER_NAME = "envoy-gateway-system/hookgate/http"
CLUSTER_NAME = "httproute/default/hookgate/rule/0"
# The cluster of the controller serving the filter its receivers, when the route's upstream is not it.
CONTROLLER_CLUSTER = "hookgate-controller"
LOCAL_RATELIMIT = "envoy.filters.http.local_ratelimit"


def wasm_filter_name(namespace: str, name: str, index: int = 0) -> str:
    """The HTTP filter name standalone Envoy Gateway gives a policy's Wasm entry (on Kubernetes the kind,
    `envoyextensionpolicy`, stands between the two slashes)."""
    return f"envoy.filters.http.wasm//{namespace}/{name}/wasm/{index}"


FORWARD_PATH = "/hook/v1/reconcile"


def stop_process(proc: subprocess.Popen, timeout: float = 15, group: bool = False) -> int:
    """SIGTERM (to the process group with `group`), then SIGKILL after `timeout`; returns the exit code.
    With `group`, returns only once every process of the group is gone (a child such as the Envoy that
    envoy-gateway starts can outlive its parent)."""
    def send(sig: int) -> bool:
        try:
            os.killpg(proc.pid, sig) if group else proc.send_signal(sig)
            return True
        except ProcessLookupError:
            return False

    if proc.poll() is None or group:
        send(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        try:
            proc.wait(timeout)
            while group and send(0) and time.monotonic() < deadline:
                time.sleep(0.05)
        except subprocess.TimeoutExpired:
            pass
        if (proc.poll() is None) or (group and send(0)):
            send(signal.SIGKILL)
            proc.wait()
    return proc.returncode


def wait_for_http(proc: subprocess.Popen, url: str, timeout: float, name: str, log) -> None:
    """Waits until `url` answers 200; if `proc` exits or time runs out, stops it and raises with its log."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with {proc.returncode}:\n{log()}")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.05)
    stop_process(proc)
    raise RuntimeError(f"{name} not ready within {timeout}s:\n{log()}")


# Ports this process has handed out: the listener binds later, often in another process.
_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A port free on every address, for a listener bound later. It comes from below the kernel's ephemeral
    range, which outgoing connections draw from: a port the kernel picks there can be taken by any client
    socket before the listener binds it (seen in CI: Envoy Gateway's listener refused, "Address already
    in use")."""
    ephemeral_low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    for _ in range(1000):
        port = random.randrange(10000, ephemeral_low)
        if port in _HANDED_OUT:
            continue
        with socket.socket() as s:
            try:
                s.bind(("0.0.0.0", port))
            except OSError:
                continue
        _HANDED_OUT.add(port)
        return port
    raise RuntimeError("no free port below the ephemeral range")


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class RecordingUpstream:
    """A small HTTP/1.1 server that records every connection, every byte and every parsed request."""

    port: int = field(default_factory=free_port)
    connections: int = 0
    raw_bytes: int = 0
    requests: list[Recorded] = field(default_factory=list)
    status: int = 200
    response_body: bytes = b'{"ok":true}'

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", self.port))
        self._sock.listen(64)
        self._stop = False
        self._last_activity = 0.0  # time.monotonic() of the last connection or byte
        threading.Thread(target=self._accept, daemon=True).start()

    def reset(self) -> None:
        with self._lock:
            self.connections = 0
            self.raw_bytes = 0
            self.requests = []

    def wait_until_quiet(self, quiet: float, limit: float = 10) -> None:
        """Returns once no connection and no byte has reached this upstream for `quiet` seconds since the call
        (a request still arriving is waited for), or after `limit` seconds of continuing activity."""
        start = time.monotonic()
        deadline = start + limit
        while True:
            now = time.monotonic()
            with self._lock:
                idle = now - max(self._last_activity, start)
            if idle >= quiet or now >= deadline:
                return
            time.sleep(min(quiet - idle, deadline - now))

    def close(self) -> None:
        self._stop = True
        self._sock.close()

    def _accept(self) -> None:
        while not self._stop:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
                self._last_activity = time.monotonic()
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        buf = b""
        with conn:
            while True:
                while b"\r\n\r\n" not in buf:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    self._count(len(chunk))
                    buf += chunk
                head, buf = buf.split(b"\r\n\r\n", 1)
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                headers = {}
                for line in lines[1:]:
                    k, v = line.split(":", 1)
                    headers[k.strip().lower()] = v.strip()
                if headers.get("transfer-encoding", "").lower() == "chunked":
                    body, buf = self._read_chunked(conn, buf)
                else:
                    length = int(headers.get("content-length", "0"))
                    while len(buf) < length:
                        chunk = conn.recv(65536)
                        if not chunk:
                            return
                        self._count(len(chunk))
                        buf += chunk
                    body, buf = buf[:length], buf[length:]
                with self._lock:
                    self.requests.append(Recorded(method, path, headers, body))
                reply = (
                    f"HTTP/1.1 {self.status} X\r\ncontent-type: application/json\r\n"
                    f"content-length: {len(self.response_body)}\r\n\r\n"
                ).encode() + self.response_body
                conn.sendall(reply)

    def _read_chunked(self, conn: socket.socket, buf: bytes) -> tuple[bytes, bytes]:
        body = b""
        while True:
            while b"\r\n" not in buf:
                buf += self._recv(conn)
            size_line, buf = buf.split(b"\r\n", 1)
            size = int(size_line.split(b";")[0], 16)
            while len(buf) < size + 2:
                buf += self._recv(conn)
            body, buf = body + buf[:size], buf[size + 2 :]
            if size == 0:
                return body, buf

    def _recv(self, conn: socket.socket) -> bytes:
        chunk = conn.recv(65536)
        if not chunk:
            raise ConnectionError("upstream connection closed mid-body")
        self._count(len(chunk))
        return chunk

    def _count(self, n: int) -> None:
        with self._lock:
            self.raw_bytes += n
            self._last_activity = time.monotonic()


def proxy_stats_config() -> dict:
    """The stats_config the manifests' EnvoyProxy merges into Envoy Gateway's bootstrap: the tag extractors
    that make the filter's counter names labels."""
    proxy = yaml.safe_load((ROOT / "manifests/base/gateway/proxy/envoyproxy.yaml").read_text())
    return yaml.safe_load(proxy["spec"]["bootstrap"]["value"])["stats_config"]


def envoy_bootstrap(
    *,
    listen_port: int,
    admin_port: int,
    upstream_port: int,
    filter_config: dict | str,
    host_env_keys: list[str] = (),
    controller_port: int | None = None,
    buffer_limit: int = 4 * 1024 * 1024,
    hold_headers: bool = True,
    policy: tuple[str, str] = POLICY,
) -> dict:
    """An Envoy bootstrap shaped like Envoy Gateway's output for an HTTPRoute with an EnvoyExtensionPolicy
    and the manifests' EnvoyProxy, ClientTrafficPolicy and EnvoyPatchPolicy: the local rate limit in front
    of the Wasm filter, the Wasm filter disabled in the connection manager and switched on per route,
    holding headers. The rate limit has no bucket here (Envoy Gateway adds one per route; its behaviour is
    tested through Envoy Gateway itself). A second route, `/plain/`, reaches the same cluster without the
    filter (the benchmark's baseline). With `controller_port`, a cluster `hookgate-controller` reaches the
    controller that serves the filter its receivers, when the route's own upstream is another server."""
    config_text = filter_config if isinstance(filter_config, str) else json.dumps(filter_config)
    filter_name = wasm_filter_name(*policy)
    enable_filter = {
        filter_name: {"@type": "type.googleapis.com/envoy.config.route.v3.FilterConfig", "config": {}}
    }
    wasm_config = {
        "name": "hookgate",
        "root_id": "hookgate",
        "vm_config": {
            "vm_id": filter_name.removeprefix("envoy.filters.http.wasm/"),
            "runtime": "envoy.wasm.runtime.v8",
            "code": {"local": {"filename": str(WASM)}},
            "environment_variables": {"host_env_keys": list(host_env_keys)},
        },
        "configuration": {"@type": "type.googleapis.com/google.protobuf.StringValue", "value": config_text},
        "fail_open": False,
    }
    if hold_headers:
        # Not exposed by Envoy Gateway yet; set by the manifests' EnvoyPatchPolicy.
        wasm_config["allow_on_headers_stop_iteration"] = True
    clusters = [static_cluster(CLUSTER_NAME, upstream_port)]
    if controller_port is not None:
        clusters.append(static_cluster(CONTROLLER_CLUSTER, controller_port))
    return {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin_port}}},
        "stats_config": proxy_stats_config(),
        "static_resources": {
            "listeners": [
                {
                    "name": LISTENER_NAME,
                    "address": {"socket_address": {"address": "127.0.0.1", "port_value": listen_port}},
                    "per_connection_buffer_limit_bytes": buffer_limit,
                    "filter_chains": [
                        {
                            "filters": [
                                {
                                    "name": "envoy.filters.network.http_connection_manager",
                                    "typed_config": {
                                        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                                        "stat_prefix": "http-10080",
                                        "route_config": {
                                            "name": LISTENER_NAME,
                                            "virtual_hosts": [
                                                {
                                                    "name": f"{LISTENER_NAME}/webhooks",
                                                    "domains": ["*"],
                                                    "routes": [
                                                        {
                                                            "name": f"{CLUSTER_NAME}/match/0/webhooks",
                                                            "match": {"path_separated_prefix": "/hook"},
                                                            "route": {"cluster": CLUSTER_NAME, "timeout": "15s"},
                                                            "typed_per_filter_config": enable_filter,
                                                        },
                                                        {
                                                            "name": "httproute/default/plain/rule/0/match/0/webhooks",
                                                            "match": {"prefix": "/plain/"},
                                                            "route": {"cluster": CLUSTER_NAME, "timeout": "15s"},
                                                        },
                                                    ],
                                                }
                                            ],
                                        },
                                        "http_filters": [
                                            {
                                                "name": LOCAL_RATELIMIT,
                                                "typed_config": {
                                                    "@type": "type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit",
                                                    "stat_prefix": "http_local_rate_limiter",
                                                },
                                            },
                                            {
                                                "name": filter_name,
                                                "disabled": True,
                                                "typed_config": {
                                                    "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
                                                    "config": wasm_config,
                                                },
                                            },
                                            {
                                                "name": "envoy.filters.http.router",
                                                "typed_config": {
                                                    "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
                                                },
                                            },
                                        ],
                                    },
                                }
                            ]
                        }
                    ],
                }
            ],
            "clusters": clusters,
        },
    }


def static_cluster(name: str, port: int) -> dict:
    """A cluster of one endpoint on loopback."""
    endpoint = {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": port}}}}
    return {"name": name, "type": "STATIC", "connect_timeout": "2s",
            "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [endpoint]}]}}


class Envoy:
    """A running Envoy; stop() (or the context manager) always ends the process."""

    def __init__(self, bootstrap: dict, env: dict[str, str], concurrency: int = 1, log_level: str = "info") -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix="hookgate-envoy-"))
        self.config_path = self.workdir / "envoy.json"
        self.config_path.write_text(json.dumps(bootstrap))
        self.log_path = self.workdir / "envoy.log"
        self.admin_port = bootstrap["admin"]["address"]["socket_address"]["port_value"]
        self.port = bootstrap["static_resources"]["listeners"][0]["address"]["socket_address"]["port_value"]
        full_env = {"PATH": os.environ.get("PATH", ""), **env}
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [ENVOY, "-c", str(self.config_path), "--concurrency", str(concurrency), "--log-level", log_level,
             "--base-id", str(self.admin_port)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=full_env,
        )
        wait_for_http(self.proc, f"http://127.0.0.1:{self.admin_port}/ready", 60, "envoy", self.log)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stats_prometheus(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.admin_port}/stats/prometheus", timeout=5) as r:
            return r.read().decode()

    def stop(self) -> None:
        stop_process(self.proc)
        self._log.close()

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> "Envoy":
        return self

    def __exit__(self, *exc) -> None:
        self.cleanup()


CONTROLLER = Path(os.environ.get("HOOKGATE_BIN", ROOT / "target/release/hookgate"))


class Controller:
    """The hookgate controller binary, serving on loopback (or on `host`, an address of this machine)."""

    def __init__(self, env: dict[str, str], args: list[str] | None = None, port: int | None = None,
                 host: str = "127.0.0.1") -> None:
        self.host, self.port = host, port or free_port()
        self.workdir = Path(tempfile.mkdtemp(prefix="hookgate-controller-"))
        self.log_path = self.workdir / "controller.log"
        self._log = open(self.log_path, "wb")
        self._env = {"PATH": os.environ.get("PATH", ""), "RUST_LOG": "info", **env}
        self._argv = [str(CONTROLLER), "serve", "--listen", f"{host}:{self.port}", *(args or [])]
        self._start()

    def _start(self) -> None:
        self.proc = subprocess.Popen(self._argv, stdout=self._log, stderr=subprocess.STDOUT, env=self._env)
        wait_for_http(self.proc, f"http://{self.host}:{self.port}/healthz", 30, "controller", self.log)

    def restart(self, down: float = 0) -> None:
        """Stops the process (SIGTERM: it drains) and starts it again `down` seconds after it exited: same
        environment, arguments, port and log."""
        stop_process(self.proc)
        time.sleep(down)
        self._start()

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://{self.host}:{self.port}{path}", timeout=10) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def requests_answered(self) -> int:
        """Requests the controller has answered, whatever their outcome, from its own metrics."""
        status, text = self.get("/metrics")
        assert status == 200
        return sum(int(float(line.rsplit(" ", 1)[1])) for line in text.splitlines()
                   if line.startswith("hookgate_requests_total"))

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> int:
        code = stop_process(self.proc)
        self._log.close()
        return code

    def __enter__(self) -> "Controller":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)
