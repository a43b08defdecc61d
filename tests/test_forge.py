"""A real forge in the loop (issue 21): `git push` to a Gitea repository makes Gitea deliver its own signed
webhook to the real Envoy with the compiled filter, which verifies it; the controller annotates the target in
the real kube-apiserver. Gitea's own record of each delivery shows what the edge answered."""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from gitops import FLUX, RFC3339_NANOS, annotations, git_repository
from served import ServedEdge, receiver, secret

SECRET = "forge-webhook-secret-0123456789abcdef"
TARGET = ("source.toolkit.fluxcd.io/v1", "GitRepository", "flux-system", "forge-app")
REFS = {"branches": ["main"], "tags": ["v*"]}


def forge_receiver(name: str, provider: str) -> dict:
    return receiver(name, "flux-system", {
        "type": provider, "path": f"/hook/{name}", "events": ["push"], "refs": REFS,
        "secretRef": {"name": "forge-webhook"}, "targets": [{"kind": "GitRepository", "name": TARGET[3]}]})


OBJECTS = [forge_receiver("forge", "gitea"), forge_receiver("forge-github", "github"),
           secret("forge-webhook", "flux-system", {"token": SECRET}), git_repository(TARGET[3])]
PUSHES = 5


@pytest.fixture(scope="module")
def edge(cp, tmp_path_factory):
    with ServedEdge(cp, tmp_path_factory.mktemp("forge"), OBJECTS) as served:
        yield served


@dataclass
class Repository:
    clone: Path
    hook: int


@pytest.fixture(scope="module")
def repositories(gitea, edge) -> dict[str, Repository]:
    """One repository per receiver, its Gitea webhook pointing at that receiver's path. The `gitea` one also
    sends Gitea's `delete` events, which the receiver does not accept."""
    out = {}
    for name, events in [("forge", ("push", "delete")), ("forge-github", ("push",))]:
        clone = gitea.create_repository(name)
        hook = gitea.add_webhook(name, f"http://127.0.0.1:{edge.port}/hook/{name}", SECRET, events)
        gitea.push(clone)  # main exists before the cases; its delivery is not theirs
        gitea.delivery_of(hook, "push", ref="refs/heads/main")
        out[name] = Repository(clone, hook)
    return out


def requested_at(cp) -> str | None:
    return annotations(cp, *TARGET).get(FLUX)


def wait_for_change(cp, before: str | None, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = requested_at(cp)
        if value != before:
            return value
        time.sleep(0.01)
    raise AssertionError(f"{TARGET} not annotated within {timeout}s")


def test_a_git_push_reconciles_the_target_through_giteas_own_webhook(cp, gitea, repositories):
    repo = repositories["forge"]
    took, pushing = [], []
    for _ in range(PUSHES):
        before = requested_at(cp)
        started = time.monotonic()
        commit = gitea.push(repo.clone)
        pushing.append(time.monotonic() - started)
        after = wait_for_change(cp, before)
        took.append(time.monotonic() - started)
        assert RFC3339_NANOS.match(after), after
        delivery = gitea.delivery_of(repo.hook, "push", after=commit)
        assert (delivery.succeeded, delivery.status) == (True, 200), delivery
        reply = json.loads(delivery.body)
        # The controller's reply, as Gitea recorded it, names this push's delivery and the value it wrote.
        assert (reply["receiver"], reply["deliveryId"], reply["annotated"]) == ("flux-system/forge", delivery.uuid, 1)
        assert [t.get("requestedAt") for t in reply["targets"]] == [after], reply
    print(f"\ncommit + git push -> annotation over {PUSHES} pushes: median {statistics.median(took) * 1000:.0f} ms, "
          f"min {min(took) * 1000:.0f} ms, max {max(took) * 1000:.0f} ms "
          f"(git commit + push alone: median {statistics.median(pushing) * 1000:.0f} ms)")


def push(ref: str):
    def act(gitea, clone) -> tuple[str, dict]:
        return "push", {"ref": ref, "after": gitea.push(clone, ref)}
    return act


def delete_branch(branch: str):
    def act(gitea, clone) -> tuple[str, dict]:
        gitea.push(clone, f"refs/heads/{branch}")
        gitea.delete(clone, f"refs/heads/{branch}")
        return "delete", {"ref": branch, "ref_type": "branch"}
    return act


# (case, receiver, what is done in its repository, status Gitea records, its reply's reason when ignored).
CASES = [
    ("the github type, on the GitHub-style headers Gitea also sends", "forge-github",
     push("refs/heads/main"), 200, None),
    ("a push to a branch outside refs", "forge", push("refs/heads/feature/x"), 202, "ref not accepted"),
    ("a tag inside refs", "forge", push("refs/tags/v1.2.0"), 200, None),
    ("a tag outside refs", "forge", push("refs/tags/nightly"), 202, "ref not accepted"),
    # Gitea sends no push for a deleted branch, only its `delete` event.
    ("a branch deletion", "forge", delete_branch("scratch"), 202, "event not accepted"),
]


@pytest.mark.parametrize("case,name,act,status,reason", CASES, ids=[c[0] for c in CASES])
def test_real_pushes_are_answered_as_docs_receivers_says(cp, gitea, edge, repositories, case, name, act,
                                                          status, reason):
    repo = repositories[name]
    before, answered = requested_at(cp), edge.controller.requests_answered()
    event, fields = act(gitea, repo.clone)
    delivery = gitea.delivery_of(repo.hook, event, **fields)
    assert delivery.status == status, delivery
    reply = json.loads(delivery.body)
    if reason:
        assert reply == {"status": "ignored", "reason": reason}
        assert (requested_at(cp), edge.controller.requests_answered()) == (before, answered)
    else:
        assert (reply["receiver"], reply["deliveryId"]) == (f"flux-system/{name}", delivery.uuid)
        assert requested_at(cp) == reply["targets"][0]["requestedAt"] != before
        assert edge.controller.requests_answered() == answered + 1


def test_a_hook_with_the_wrong_secret_is_refused_and_changes_nothing(cp, gitea, edge):
    clone = gitea.create_repository("wrong-secret")
    hook = gitea.add_webhook("wrong-secret", f"http://127.0.0.1:{edge.port}/hook/forge", "not-the-receivers-secret")
    version = cp.get(*TARGET[:3], TARGET[3])["metadata"]["resourceVersion"]
    answered = edge.controller.requests_answered()
    delivery = gitea.delivery_of(hook, "push", after=gitea.push(clone))
    assert (delivery.succeeded, delivery.status) == (False, 401), delivery
    assert cp.get(*TARGET[:3], TARGET[3])["metadata"]["resourceVersion"] == version
    assert edge.controller.requests_answered() == answered
