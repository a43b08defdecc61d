"""Rotation end to end with a real forge (issue 21, item 4), by the documented commands of docs/operations.md
("Rotating a secret without downtime", the Gitea steps): the new secret is added beside the old one in the
receiver's Secret and is live at the proxy, a second Gitea hook with the new secret is added and the old hook
deleted (Gitea's API cannot change a hook's secret), a delivery verifies with the new secret, and the old
secret is removed. A commit is pushed with `git` every 200 ms throughout; Gitea's own record of every push's
delivery shows the edge accepted each one."""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import statistics
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from cluster import kubectl_directory
from forge import USER, Delivery, Gitea
from gateway import wait
from gitops import git_repository
from harness import CONTROLLER, ROOT
from served import ServedEdge, receiver, secret

import signers

NAMESPACE, NAME, SECRET_NAME = "flux-system", "forge-rotating", "forge-rotating"
# Pinned, so the URL the hooks are registered with does not change with the secret.
PATH = "/hook/forge-rotating"
OLD, NEW = secrets.token_hex(20), secrets.token_hex(20)
OBJECTS = [
    receiver(NAME, NAMESPACE, {"type": "gitea", "path": PATH, "events": ["push"],
                               "secretRef": {"name": SECRET_NAME, "keys": ["token", "next"]},
                               "targets": [{"kind": "GitRepository", "name": "rotation-app"}]}),
    secret(SECRET_NAME, NAMESPACE, {"token": OLD}), git_repository("rotation-app")]
PUSH_INTERVAL = 0.2
PUSHERS = 3


@pytest.fixture(scope="module")
def edge(cp, tmp_path_factory):
    with ServedEdge(cp, tmp_path_factory.mktemp("forge-rotation"), OBJECTS) as served:
        yield served


# The commands of docs/operations.md for the receiver's Secret ("Rotating a secret without downtime"), run as written.
ADD_NEXT = r'kubectl -n "$NS" patch secret "$SECRET" --type merge -p "{\"stringData\":{\"next\":\"$NEW\"}}"'
LIVE_CHECK = r'hookgate send --type "$TYPE" --event ping --url "$URL" --secret-env NEW'
PROMOTE_NEXT = r'''kubectl -n "$NS" patch secret "$SECRET" --type json -p "[{\"op\":\"replace\",\"path\":\"/data/token\",
  \"value\":\"$(printf %s "$NEW" | base64 -w0)\"},{\"op\":\"remove\",\"path\":\"/data/next\"}]"'''


def test_the_secret_commands_run_here_are_the_documented_ones():
    documented = (ROOT / "docs/operations.md").read_text()
    section = documented[documented.index("## Rotating a secret without downtime"):]
    assert all(command in section for command in (ADD_NEXT, LIVE_CHECK, PROMOTE_NEXT))


def run_documented(cp, workdir: Path, command: str, url: str = "", check: bool = True) -> subprocess.CompletedProcess:
    # HOME for kubectl's cache, which would otherwise land in the working directory.
    # hookgate and kubectl (build.sh's) as the README's commands name them.
    env = {"PATH": f"{CONTROLLER.parent}:{kubectl_directory()}:{os.environ['PATH']}", "HOME": str(workdir),
           "NS": NAMESPACE, "SECRET": SECRET_NAME, "NEW": NEW, "TYPE": "gitea", "URL": url,
           "KUBECONFIG": str(cp.kubeconfig(cp.admin_token, workdir / "kubeconfig"))}
    out = subprocess.run(["bash", "-c", command], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 or not check, f"{command}: {out.stdout}{out.stderr}"
    return out


def secret_keys(cp) -> dict[str, str]:
    data = cp.ok("GET", cp.resource_path("v1", "Secret", NAMESPACE, SECRET_NAME))["data"]
    return {key: base64.b64decode(value).decode() for key, value in data.items()}


class Prober:
    """Gitea-style push deliveries signed here with a chosen secret, to see which secrets the edge accepts;
    counts the ones it refused, so the edge's own count of refusals can be matched against them."""

    def __init__(self, port: int) -> None:
        self.port, self.refused = port, 0

    def status(self, secret_value: str) -> int:
        body = json.dumps({"ref": "refs/heads/main", "after": secrets.token_hex(20)}).encode()
        headers = {**signers.gitea(secret_value, body), "X-Gitea-Delivery": f"probe-{secrets.token_hex(8)}"}
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}{PATH}", data=body, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=10) as reply:
                status = reply.status
        except urllib.error.HTTPError as error:
            status = error.code
        self.refused += status == 401
        return status

    def until_sent(self, send, what: str) -> float:
        """Seconds until `hookgate send` (run by `send`) is answered 200; it prints the status first."""
        def answered() -> bool:
            status = int(send().stdout.split(" ", 1)[0])
            self.refused += status == 401
            return status == 200
        start = time.monotonic()
        wait(answered, 30, what)
        return time.monotonic() - start

    def until(self, secret_value: str, status: int, what: str) -> float:
        """Seconds until a delivery signed with `secret_value` is answered `status`."""
        start = time.monotonic()
        wait(lambda: self.status(secret_value) == status, 30, what)
        return time.monotonic() - start


class Pusher:
    """A commit pushed with `git push` every PUSH_INTERVAL until stop(). A push takes longer than that here
    (commit, push, Gitea's hooks), so the pushes are made in turn from `clones`, each to its own branch; a
    clone that falls behind pushes back to back. Keeps each commit id with its push's start time."""

    def __init__(self, gitea: Gitea, clones: list[Path]) -> None:
        self.gitea = gitea
        self.pushes: list[tuple[str, float]] = []
        self.durations: list[float] = []
        self.errors: list[BaseException] = []
        self.stopping = threading.Event()
        self.in_flight: dict[int, float] = {}  # by clone: the start of the push it is making
        self.start = time.monotonic()
        self.workers = [threading.Thread(target=self.push_from, args=(i, clone), daemon=True)
                        for i, clone in enumerate(clones)]
        for worker in self.workers:
            worker.start()

    def push_from(self, index: int, clone: Path) -> None:
        turn = index
        try:
            while not self.stopping.wait(max(0.0, self.start + turn * PUSH_INTERVAL - time.monotonic())):
                started = self.in_flight[index] = time.monotonic()
                self.pushes.append((self.gitea.push(clone, f"refs/heads/pusher-{index}"), started))
                self.durations.append(time.monotonic() - started)
                del self.in_flight[index]
                turn += len(self.workers)
        except BaseException as error:  # reported by the test, not lost in the thread
            self.errors.append(error)

    def stop(self) -> None:
        self.stopping.set()
        for worker in self.workers:
            worker.join(60)
        assert not self.errors, self.errors

    def done_before(self, moment: float) -> bool:
        """Whether every push started before `moment` has ended."""
        return all(started >= moment for started in list(self.in_flight.values()))

    def since(self, moment: float) -> list[str]:
        return [commit for commit, started in self.pushes if started >= moment]


class Records:
    """Gitea's delivery records of the hooks, kept by delivery id: Gitea deletes a hook's records with the
    hook, so the old hook's are read while it exists."""

    def __init__(self, gitea: Gitea) -> None:
        self.gitea = gitea
        self.by_hook: dict[int, dict[str, Delivery]] = {}

    def read(self, hook: int) -> dict[str, Delivery]:
        """The hook's records, keyed by the commit each push delivered."""
        known = self.by_hook.setdefault(hook, {})
        for delivery in self.gitea.deliveries(hook):
            if delivery.event == "push":
                known[delivery.payload["after"]] = delivery
        return known

    def until_delivered(self, hook: int, commits: list[str], what: str) -> None:
        wait(lambda: set(commits) <= set(self.read(hook)), 30, what,
             lambda: f"missing: {set(commits) - set(self.read(hook))}\n{self.gitea.log()[-2000:]}")


def refused_at_edge(edge: ServedEdge) -> int:
    """The filter's own count of this receiver's refused deliveries (every reason)."""
    url = (f"http://127.0.0.1:{edge.envoy.admin_port}/stats?format=json"
           f"&filter=hookgate_deliveries_total.namespace.{NAMESPACE}.receiver.{NAME}.outcome.rejected")
    with urllib.request.urlopen(url, timeout=5) as reply:
        return sum(int(s.get("value", 0)) for s in json.load(reply)["stats"])


def report(pusher: Pusher, old: dict, new: dict, commits: list[str], answers: list[int]) -> str:
    gaps = [b - a for (_, a), (_, b) in zip(pusher.pushes, pusher.pushes[1:])]
    both = sum(1 for c in commits if c in old and c in new)
    return (f"\nrotation under pushes: {len(commits)} pushes over {pusher.pushes[-1][1] - pusher.pushes[0][1]:.1f} s"
            f" (started {statistics.mean(gaps) * 1000:.0f} ms apart on average, {max(gaps) * 1000:.0f} ms at most;"
            f" a push took {statistics.median(pusher.durations) * 1000:.0f} ms median), {len(answers)} deliveries:"
            f" {sum(c in old for c in commits)} by the old hook, {sum(c in new for c in commits)} by the new,"
            f" {both} pushes by both; answers { {s: answers.count(s) for s in sorted(set(answers))} }")


def test_rotating_a_gitea_hooks_secret_under_a_push_every_200ms_refuses_no_delivery(cp, gitea, edge, tmp_path):
    clone = gitea.create_repository("rotating")
    url = f"http://127.0.0.1:{edge.port}{PATH}"
    old_hook = gitea.add_webhook("rotating", url, OLD)
    records, prober = Records(gitea), Prober(edge.port)
    records.until_delivered(old_hook, [gitea.push(clone)], "the first push delivered with the old secret")
    refused_before = refused_at_edge(edge)
    # More clones of the repository, to push from in turn.
    clones = [clone] + [Path(shutil.copytree(clone, f"{clone}-{i}")) for i in range(1, PUSHERS)]
    pusher = Pusher(gitea, clones)
    try:
        time.sleep(1)
        # 1. The new secret beside the old one, live at the proxy.
        run_documented(cp, tmp_path, ADD_NEXT)
        assert secret_keys(cp) == {"token": OLD, "next": NEW}
        new_live = prober.until_sent(lambda: run_documented(cp, tmp_path, LIVE_CHECK, url, check=False),
                                     "the new secret live at the edge (a ping)")
        # 2. The provider switched: a second hook with the new secret, checked, then the old hook deleted.
        new_hook = gitea.add_webhook("rotating", url, NEW)
        added = time.monotonic()  # Gitea sends every push from now on to both hooks
        wait(lambda: pusher.since(added), 30, "a push after the new hook")
        records.until_delivered(new_hook, pusher.since(added)[:1], "a delivery with the new secret")
        # The old hook's records of the pushes only it was sent, read before deleting it deletes them.
        wait(lambda: pusher.done_before(added), 30, "the pushes before the new hook")
        records.until_delivered(old_hook, [c for c, t in pusher.pushes if t < added], "the old hook's deliveries")
        gitea.api("DELETE", f"/repos/{USER}/rotating/hooks/{old_hook}")
        deleted = time.monotonic()
        assert gitea.deliveries(old_hook) == []  # Gitea deleted its records with it
        # 3. A delivery after the switch verifies with the new secret.
        wait(lambda: pusher.since(deleted), 30, "a push after the old hook's deletion")
        records.until_delivered(new_hook, pusher.since(deleted)[:1], "a delivery after the switch")
        # 4. The old secret removed: the new one moves to `token`, ready for the next rotation.
        run_documented(cp, tmp_path, PROMOTE_NEXT)
        assert secret_keys(cp) == {"token": NEW}
        old_refused = prober.until(OLD, 401, "the old secret refused at the edge")
        time.sleep(1)
    finally:
        pusher.stop()
    pusher.pushes.sort(key=lambda push: push[1])
    commits = [c for c, _ in pusher.pushes]
    after_new_hook = pusher.since(added)
    records.until_delivered(new_hook, after_new_hook, "every push since the new hook delivered by it")
    old, new = records.by_hook[old_hook], records.read(new_hook)
    undelivered = [c for c in commits if c not in old and c not in new]
    answers = [d.status for d in [*old.values(), *new.values()] if d.payload["after"] in commits]
    print(report(pusher, old, new, commits, answers) + f"; new secret live after {new_live:.2f} s, "
          f"old secret refused after {old_refused:.2f} s")
    assert not undelivered, f"pushes without a delivery record: {undelivered}"
    assert answers and set(answers) == {200}, answers
    assert any(c in old and c in new for c in commits), "no push while both hooks were active"
    # Deliveries whose record Gitea deleted with the old hook were not refused either: the filter's count of
    # refusals for this receiver is exactly the probes that were meant to be refused.
    assert refused_at_edge(edge) - refused_before == prober.refused
