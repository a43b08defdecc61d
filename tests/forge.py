"""Gitea as a real forge on loopback for tests: `gitea` built from its Go module (tests/control-plane/build.sh),
run headless (SQLite, no SSH, webhooks delivered at once and allowed to loopback) in a temporary directory,
with an admin user and its API token. Helpers create repositories and webhooks through Gitea's API, push
commits with the `git` CLI over HTTP, and read Gitea's own record of a hook's deliveries (REFERENCE.md §6)."""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import sqlite3
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from cluster import build_binaries
from harness import free_port, stop_process, wait_for_http

USER = "hookgate"


def app_ini(workdir: Path, port: int, static: str, webhook_proxy: tuple[str, str] | None = None) -> str:
    """Everything Gitea would otherwise write on first start (its installer, its generated secrets) set here, so
    it never rewrites the file. With `webhook_proxy` (proxy URL, host name), webhooks to that host name go
    through that HTTP proxy, which stands in for the DNS that would resolve the name."""
    # Gitea matches PROXY_HOSTS against the URL's host with its port.
    proxy_section = (f"\n[webhook]\nPROXY_URL = {webhook_proxy[0]}\nPROXY_HOSTS = {webhook_proxy[1]},{webhook_proxy[1]}:*\n"
                     if webhook_proxy else "")
    jwt_secret = base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()
    return f"""\
APP_NAME = hookgate tests
RUN_MODE = prod
WORK_PATH = {workdir}
I_AM_BEING_UNSAFE_RUNNING_AS_ROOT = true

[server]
HTTP_ADDR = 127.0.0.1
HTTP_PORT = {port}
ROOT_URL = http://127.0.0.1:{port}/
APP_DATA_PATH = {workdir}/data
STATIC_ROOT_PATH = {static}
DISABLE_SSH = true
START_SSH_SERVER = false
LFS_START_SERVER = false
OFFLINE_MODE = true

[database]
DB_TYPE = sqlite3
PATH = {workdir}/data/gitea.db

[repository]
ROOT = {workdir}/repositories
DEFAULT_BRANCH = main

[security]
INSTALL_LOCK = true
SECRET_KEY = {secrets.token_hex(32)}
INTERNAL_TOKEN = {secrets.token_hex(32)}
; Webhooks may reach the edge on 127.0.0.1 (v1.27 reads this here; [webhook] is its deprecated place).
ALLOWED_HOST_LIST = loopback{"," + webhook_proxy[1] if webhook_proxy else ""}

[oauth2]
JWT_SECRET = {jwt_secret}

[queue]
; Deliveries go out as soon as the push is processed, not from a persistent queue.
TYPE = channel

[service]
DISABLE_REGISTRATION = true

[session]
PROVIDER = memory

[actions]
ENABLED = false

[mailer]
ENABLED = false
{proxy_section}
[log]
MODE = console
LEVEL = warn
"""


@dataclass
class Delivery:
    """One of Gitea's records of a webhook delivery (its `hook_task` row)."""
    uuid: str  # the X-Gitea-Delivery header
    event: str
    payload: dict
    succeeded: bool
    status: int
    body: str  # the reply's body as Gitea stored it


class Gitea:
    """A running Gitea at `url` with an admin `USER` whose API token is `token`; stop() (or the context
    manager) ends it and removes its directory."""

    def __init__(self, webhook_proxy: tuple[str, str] | None = None) -> None:
        binaries = build_binaries()
        self.binary = binaries["GITEA"]
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        # The prefix marks its processes for tests/conftest.py's leftover check.
        self.workdir = Path(tempfile.mkdtemp(prefix="hookgate-forge-"))
        self.config = self.workdir / "app.ini"
        self.config.write_text(app_ini(self.workdir, self.port, binaries["GITEA_STATIC"], webhook_proxy))
        self.env = {"PATH": os.environ["PATH"], "HOME": str(self.workdir), "GITEA_WORK_DIR": str(self.workdir),
                    "GIT_CONFIG_NOSYSTEM": "1"}
        self.log_path = self.workdir / "gitea.log"
        self._log = open(self.log_path, "wb")
        self.proc = None
        try:
            self._gitea("migrate")
            created = self._gitea("admin", "user", "create", "--admin", "--username", USER, "--email",
                                  f"{USER}@example.test", "--random-password", "--must-change-password=false",
                                  "--access-token")
            self.token = created.rsplit("Access token was successfully created... ", 1)[1].split()[0]
            self.proc = subprocess.Popen([self.binary, "web", "--config", str(self.config)], env=self.env,
                                         stdout=self._log, stderr=subprocess.STDOUT, cwd=self.workdir)
            wait_for_http(self.proc, f"{self.url}/api/healthz", 60, "gitea", self.log)
        except BaseException:
            self.stop()
            raise

    def _gitea(self, *args: str) -> str:
        out = subprocess.run([self.binary, *args, "--config", str(self.config)], env=self.env, cwd=self.workdir,
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, f"gitea {args[0]}: {out.stdout}{out.stderr}"
        return out.stdout

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def api(self, method: str, path: str, body: dict | None = None) -> dict:
        request = urllib.request.Request(f"{self.url}/api/v1{path}", method=method,
                                         data=None if body is None else json.dumps(body).encode(),
                                         headers={"Authorization": f"token {self.token}",
                                                  "Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            text = response.read()
        return json.loads(text) if text else {}

    def create_repository(self, name: str) -> Path:
        """An empty repository `USER/name` on the forge, and a local clone of it to commit and push from."""
        self.api("POST", "/user/repos", {"name": name, "default_branch": "main"})
        clone = self.workdir / "clones" / name
        clone.mkdir(parents=True)
        self._git(clone, "init", "--quiet", "--initial-branch", "main")
        self._git(clone, "remote", "add", "origin", f"{self.url}/{USER}/{name}.git")
        return clone

    def add_webhook(self, repository: str, url: str, secret: str, events: tuple[str, ...] = ("push",),
                    branch_filter: str = "*") -> int:
        """A Gitea-type webhook with a JSON body signed with `secret`; returns its id."""
        hook = self.api("POST", f"/repos/{USER}/{repository}/hooks", {
            "type": "gitea", "active": True, "events": list(events), "branch_filter": branch_filter,
            "config": {"url": url, "content_type": "json", "secret": secret}})
        return hook["id"]

    def hooks(self, repository: str) -> list[dict]:
        """The repository's webhooks, as Gitea's API lists them (never with their secrets), every page of them:
        Gitea serves at most 50 a page."""
        hooks, page = [], 1
        while listed := self.api("GET", f"/repos/{USER}/{repository}/hooks?limit=50&page={page}"):
            hooks, page = hooks + listed, page + 1
        return hooks

    def push(self, clone: Path, ref: str = "refs/heads/main") -> str:
        """A new commit pushed to `ref` (a branch, or a tag made on it) with `git push`; returns its id."""
        self._git(clone, "commit", "--quiet", "--allow-empty", "-m", f"change {secrets.token_hex(4)}")
        self._git(clone, "push", "--quiet", "origin", f"HEAD:{ref}")
        return self._git(clone, "rev-parse", "HEAD").strip()

    def delete(self, clone: Path, ref: str) -> None:
        self._git(clone, "push", "--quiet", "origin", f":{ref}")

    def _git(self, clone: Path, *args: str) -> str:
        env = {**self.env, "GIT_AUTHOR_NAME": USER, "GIT_AUTHOR_EMAIL": f"{USER}@example.test",
               "GIT_COMMITTER_NAME": USER, "GIT_COMMITTER_EMAIL": f"{USER}@example.test",
               # The token as the basic-auth password, given to git by a credential helper (never in a URL or log).
               "GITEA_TOKEN": self.token, "GIT_TERMINAL_PROMPT": "0"}
        helper = f'credential.helper=!f() {{ echo username={USER}; echo "password=$GITEA_TOKEN"; }}; f'
        out = subprocess.run(["git", "-c", helper, *args], cwd=clone, env=env, capture_output=True, text=True,
                             timeout=60)
        assert out.returncode == 0, f"git {args[0]}: {out.stderr}"
        return out.stdout

    def deliveries(self, hook_id: int) -> list[Delivery]:
        """The hook's deliveries that have their outcome, from Gitea's database: its API does not list them.
        Gitea marks a task delivered before sending it, and stores the reply after."""
        db = sqlite3.connect(f"file:{self.workdir}/data/gitea.db?mode=ro", uri=True, timeout=10)
        try:
            rows = db.execute("SELECT uuid, event_type, payload_content, is_succeed, response_content FROM hook_task "
                              "WHERE hook_id = ? AND response_content <> '' ORDER BY id", (hook_id,)).fetchall()
        finally:
            db.close()
        out = []
        for uuid, event, payload, succeeded, response in rows:
            reply = json.loads(response)
            out.append(Delivery(uuid, event, json.loads(payload), bool(succeeded), reply["status"], reply["body"]))
        return out

    def delivery_of(self, hook_id: int, event: str, timeout: float = 30, **fields: str) -> Delivery:
        """The hook's delivery of `event` whose payload has `fields` (a push's `ref` and `after`, a deletion's
        `ref` and `ref_type`), once Gitea has its reply."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [d for d in self.deliveries(hook_id)
                     if d.event == event and all(d.payload.get(k) == v for k, v in fields.items())]
            if found:
                return found[0]
            time.sleep(0.05)
        raise AssertionError(f"no {event} {fields} by hook {hook_id} within {timeout}s:\n{self.log()[-3000:]}")

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
        self._log.close()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> "Gitea":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
