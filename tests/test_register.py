"""`hookgate register` (issue 21, item 3): a Receiver's webhook created or updated at its provider through the
provider's API, then tested.

Live against the real Gitea (tests/forge.py), with the Receiver served by the real Envoy with the compiled filter
and the controller on the real kube-apiserver (tests/served.py): register creates the hook, Gitea's own delivery
of a real `git push` is verified at the edge and annotates the target, a second run changes nothing, a changed
`spec.events` updates the hook, a rotation moves the hook to the `next` key (`--secret-key next
--replace-secret`: on Gitea a new hook, its API cannot change a hook's secret), a secret changed under the hook
is reported as not confirmed until `--replace-secret`, the token is never printed, and a wrong token is a clear
error.

GitHub and GitLab cannot be reached here: the requests register would send them (`--dry-run`) are checked against
each provider's published API description: the method and path exist, the query parameters are declared, and
the bodies validate against the request schemas, with no property the schema does not name."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

import jsonschema
import pytest
import yaml

from forge import USER
from gateway import wait
from gitops import FLUX, annotations, git_repository
from harness import CONTROLLER, ROOT
from served import ServedEdge, receiver, secret

NAMESPACE = "flux-system"
SECRET_NAME = "register-webhook"
SECRET = "register-webhook-secret-0123456789abcdef"
TARGET = ("source.toolkit.fluxcd.io/v1", "GitRepository", NAMESPACE, "register-app")
REPOSITORY = "registered"


def registered_receiver(name: str, provider: str, events: list[str], path: bool = True) -> dict:
    spec = {"type": provider, "events": events, "secretRef": {"name": SECRET_NAME, "keys": ["token", "next"]},
            "targets": [{"kind": "GitRepository", "name": TARGET[3]}]}
    if path:
        spec["path"] = f"/hook/{name}"
    return receiver(name, NAMESPACE, spec)


GITEA = registered_receiver("register-gitea", "gitea", ["push"])
# Flux-style paths (derived from the secret) for the two providers checked against their descriptions.
OBJECTS = [GITEA, registered_receiver("register-github", "github", ["push", "package"], path=False),
           registered_receiver("register-gitlab", "gitlab", ["Push Hook", "Tag Push Hook"], path=False),
           secret(SECRET_NAME, NAMESPACE, {"token": SECRET}), git_repository(TARGET[3])]


@pytest.fixture(scope="module")
def edge(cp, tmp_path_factory):
    with ServedEdge(cp, tmp_path_factory.mktemp("register"), OBJECTS) as served:
        yield served


@dataclass
class Repository:
    clone: Path
    head: str


@pytest.fixture(scope="module")
def repository(gitea, edge) -> Repository:
    """The repository the hook is registered on, with a first commit (Gitea's test push sends its head). Gitea
    processes a push after `git push` returns, and delivers it to the hooks there are by then: a hook added at
    once could get it. A hook of its own shows when Gitea is done with it, and is removed."""
    clone = gitea.create_repository(REPOSITORY)
    observer = gitea.add_webhook(REPOSITORY, f"http://127.0.0.1:{edge.port}/hook/none", "unused-secret")
    head = gitea.push(clone)
    gitea.delivery_of(observer, "push", after=head)
    gitea.api("DELETE", f"/repos/{USER}/{REPOSITORY}/hooks/{observer}")
    return Repository(clone, head)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("register-cli")


def register(cp, workdir: Path, *args: str, token: str | None = None, env: dict | None = None,
             check: bool = True) -> subprocess.CompletedProcess:
    """`hookgate register` with the cluster's kubeconfig and the Gitea token in GITEA_TOKEN. Neither the token
    nor the receiver's secrets may appear in what it prints, whatever happens."""
    env = {"PATH": os.environ["PATH"], "HOME": str(workdir),
           "KUBECONFIG": str(cp.kubeconfig(cp.admin_token, workdir / "kubeconfig")),
           **({"GITEA_TOKEN": token} if token else {}), **(env or {})}
    out = subprocess.run([str(CONTROLLER), "register", *args], env=env, capture_output=True, text=True, timeout=120)
    printed = out.stdout + out.stderr
    for value in [token, SECRET, NEXT_SECRET, NEW_SECRET, *(v for k, v in env.items() if "TOKEN" in k)]:
        assert not value or value not in printed, f"a secret was printed:\n{printed}"
    assert out.returncode == 0 or not check, f"register {args}: {out.returncode}\n{printed}"
    return out


def gitea_args(gitea, edge, *extra: str, repository: str = REPOSITORY) -> list[str]:
    return ["--receiver", f"{NAMESPACE}/{GITEA['metadata']['name']}", "--repo", f"{USER}/{repository}",
            "--api-url", f"{gitea.url}/api/v1", "--token-env", "GITEA_TOKEN",
            "--base-url", f"http://127.0.0.1:{edge.port}", *extra]


def hook_url(edge) -> str:
    return f"http://127.0.0.1:{edge.port}/hook/{GITEA['metadata']['name']}"


def hooks_at_url(gitea, edge) -> list[dict]:
    return [h for h in gitea.hooks(REPOSITORY) if h["config"]["url"] == hook_url(edge)]


def requested_at(cp) -> str | None:
    return annotations(cp, *TARGET).get(FLUX)


def test_register_creates_the_hook_and_giteas_delivery_of_a_real_push_is_verified(cp, gitea, edge, repository,
                                                                                    workdir):
    assert hooks_at_url(gitea, edge) == []
    out = register(cp, workdir, *gitea_args(gitea, edge), token=gitea.token)
    [hook] = hooks_at_url(gitea, edge)
    assert (hook["type"], hook["active"], hook["events"], hook["config"]["content_type"]) == \
        ("gitea", True, ["push"], "json"), hook
    assert f"created hook {hook['id']}: {hook_url(edge)} (push)" in out.stdout
    # Its test push reached the controller, which annotated the target: what register reports.
    assert "verified: the edge accepted gitea's test push and the controller annotated GitRepository " \
           f"{NAMESPACE}/{TARGET[3]}" in out.stdout, out.stdout
    # Gitea's record of it: its test push of the head (before and after the same commit), accepted.
    [tested] = gitea.deliveries(hook["id"])
    assert (tested.event, tested.status, tested.payload["before"], tested.payload["after"]) == \
        ("push", 200, repository.head, repository.head), tested
    # A real push: Gitea's own signed delivery is verified at the edge and annotates the target.
    before = requested_at(cp)
    commit = gitea.push(repository.clone)
    delivery = gitea.delivery_of(hook["id"], "push", after=commit)
    assert (delivery.succeeded, delivery.status) == (True, 200), delivery
    reply = json.loads(delivery.body)
    assert (reply["receiver"], reply["deliveryId"]) == (f"{NAMESPACE}/{GITEA['metadata']['name']}", delivery.uuid)
    assert requested_at(cp) == reply["targets"][0]["requestedAt"] != before


def test_a_second_register_changes_nothing_and_says_so(cp, gitea, edge, repository, workdir):
    # Gitea records each delivery's outcome on its hook, which changes `updated_at` (kept in seconds): the
    # hooks once the last delivery's outcome is in, and no test push in this run.
    before = None
    for _ in range(10):
        time.sleep(1.1)
        before, settled = gitea.hooks(REPOSITORY), before
        if before == settled:
            break
    out = register(cp, workdir, *gitea_args(gitea, edge, "--no-test"), token=gitea.token)
    [hook] = hooks_at_url(gitea, edge)
    assert f"unchanged: hook {hook['id']} already delivers push to {hook_url(edge)}" in out.stdout, out.stdout
    # Nothing written: the same hooks, down to their update times.
    assert gitea.hooks(REPOSITORY) == before
    out = register(cp, workdir, *gitea_args(gitea, edge), token=gitea.token)
    assert f"unchanged: hook {hook['id']}" in out.stdout and "verified:" in out.stdout, out.stdout
    assert [h["id"] for h in hooks_at_url(gitea, edge)] == [hook["id"]]


def test_a_changed_events_spec_updates_the_hook_in_place(cp, gitea, edge, repository, workdir):
    [before] = hooks_at_url(gitea, edge)
    cp.apply(registered_receiver("register-gitea", "gitea", ["push", "create"]))
    try:
        out = register(cp, workdir, *gitea_args(gitea, edge, "--no-test"), token=gitea.token)
        [hook] = hooks_at_url(gitea, edge)
        assert hook["id"] == before["id"] and sorted(hook["events"]) == ["create", "push"], hook
        assert f"updated hook {hook['id']}: {hook_url(edge)} (create, push)" in out.stdout, out.stdout
        again = register(cp, workdir, *gitea_args(gitea, edge, "--no-test"), token=gitea.token)
        assert f"unchanged: hook {hook['id']}" in again.stdout, again.stdout
    finally:
        cp.apply(GITEA)
    out = register(cp, workdir, *gitea_args(gitea, edge, "--no-test"), token=gitea.token)
    assert f"updated hook {before['id']}" in out.stdout and hooks_at_url(gitea, edge)[0]["events"] == ["push"]


def test_register_finds_its_hook_past_the_first_page_of_hooks(cp, gitea, edge, workdir):
    """Gitea lists at most 50 hooks a page (`[api] MAX_RESPONSE_ITEMS`), with no `Link` header for a repository's
    hooks: behind 50 others, the receiver's hook is on the second page, where a second register must find it
    instead of adding another."""
    name = "registered-crowded"
    gitea.create_repository(name)
    for n in range(50):
        gitea.add_webhook(name, f"http://127.0.0.1:9/elsewhere/{n}", "another-secret")
    args = gitea_args(gitea, edge, "--no-test", repository=name)
    created = register(cp, workdir, *args, token=gitea.token)
    assert "created hook" in created.stdout, created.stdout
    again = register(cp, workdir, *args, token=gitea.token)
    assert "unchanged: hook" in again.stdout, again.stdout
    every_hook = gitea.hooks(name)
    assert len(every_hook) == 51 and [h["config"]["url"] for h in every_hook].count(hook_url(edge)) == 1


NEXT_SECRET = "register-next-secret-00112233445566778899"
NEW_SECRET = "register-rotated-secret-fedcba9876543210"


def edge_answers(edge, secret_value: str) -> int:
    """The status the edge gives a Gitea ping signed with `secret_value` (`hookgate send`)."""
    out = subprocess.run([str(CONTROLLER), "send", "--type", "gitea", "--event", "ping", "--url", hook_url(edge),
                          "--secret-env", "SECRET"], env={"SECRET": secret_value}, capture_output=True, text=True,
                         timeout=30)
    return int(out.stdout.split()[0])


def test_a_rotation_moves_the_hook_to_the_next_key(cp, gitea, edge, repository, workdir):
    """The README's rotation with register as the provider's step: the new secret as `next` beside `token`,
    `register --secret-key next --replace-secret` puts it on the hook (on Gitea a new hook, the old one
    deleted) and the test push verifies; once `next` has become `token` alone, register finds the hook
    unchanged and verified."""
    [old] = hooks_at_url(gitea, edge)
    cp.apply(secret(SECRET_NAME, NAMESPACE, {"token": SECRET, "next": NEXT_SECRET}))
    try:
        wait(lambda: edge_answers(edge, NEXT_SECRET) == 200, 30, "the next secret live at the edge")
        out = register(cp, workdir, *gitea_args(gitea, edge, "--secret-key", "next", "--replace-secret"),
                       token=gitea.token)
        [new] = hooks_at_url(gitea, edge)
        assert new["id"] != old["id"], new
        assert f"(Secret {NAMESPACE}/{SECRET_NAME} key next)" in out.stdout, out.stdout
        assert f"replaced hook {old['id']} by hook {new['id']}" in out.stdout, out.stdout
        assert "verified: the edge accepted gitea's test push" in out.stdout, out.stdout
        # `next` becomes `token`, in one write, as the README does it.
        path = cp.resource_path("v1", "Secret", NAMESPACE, SECRET_NAME)
        cp.ok("PATCH", path, json.dumps([
            {"op": "replace", "path": "/data/token", "value": base64.b64encode(NEXT_SECRET.encode()).decode()},
            {"op": "remove", "path": "/data/next"}]), content_type="application/json-patch+json")
        wait(lambda: edge_answers(edge, SECRET) == 401 and edge_answers(edge, NEXT_SECRET) == 200, 30,
             "the old secret refused at the edge")
        out = register(cp, workdir, *gitea_args(gitea, edge), token=gitea.token)
        assert f"unchanged: hook {new['id']}" in out.stdout and "verified:" in out.stdout, out.stdout
    finally:
        cp.apply(secret(SECRET_NAME, NAMESPACE, {"token": SECRET}))


def test_a_rotated_secret_is_replaced_on_gitea_by_a_new_hook(cp, gitea, edge, repository, workdir):
    """Gitea's API cannot change a hook's secret, nor show it: after the receiver's secret changes (its path is
    pinned, so the URL stays), register finds the hook unchanged and cannot confirm the test push, which Gitea
    records as refused; --replace-secret adds a hook with the new secret and deletes the old one."""
    [old] = hooks_at_url(gitea, edge)
    cp.apply(secret(SECRET_NAME, NAMESPACE, {"token": NEW_SECRET}))
    try:
        wait(lambda: edge_answers(edge, NEW_SECRET) == 200 and edge_answers(edge, SECRET) == 401, 30,
             "the new secret alone live at the edge")
        out = register(cp, workdir, *gitea_args(gitea, edge, "--wait", "3"), token=gitea.token)
        assert f"unchanged: hook {old['id']}" in out.stdout, out.stdout
        assert "not confirmed: no target annotated within 3s of the test push" in out.stdout, out.stdout
        assert "--replace-secret" in out.stdout
        assert gitea.deliveries(old["id"])[-1].status == 401
        out = register(cp, workdir, *gitea_args(gitea, edge, "--replace-secret"), token=gitea.token)
        [new] = hooks_at_url(gitea, edge)
        assert new["id"] != old["id"], new
        assert f"replaced hook {old['id']} by hook {new['id']} with the receiver's secret" in out.stdout, out.stdout
        assert "verified: the edge accepted gitea's test push" in out.stdout, out.stdout
        assert [d.status for d in gitea.deliveries(new["id"])] == [200]
    finally:
        cp.apply(secret(SECRET_NAME, NAMESPACE, {"token": SECRET}))


def test_the_token_can_come_from_a_file(cp, gitea, edge, repository, workdir):
    token_file = workdir / "gitea-token"
    token_file.write_text(gitea.token + "\n")  # as `echo` writes it
    args = [a for a in gitea_args(gitea, edge, "--no-test") if a not in ("--token-env", "GITEA_TOKEN")]
    out = register(cp, workdir, *args, "--token-file", str(token_file))
    assert "unchanged: hook" in out.stdout and gitea.token not in out.stdout + out.stderr


# (case, how the token is given, the environment, the start of the error on stderr)
ERRORS = [
    ("a wrong token", ["--token-env", "GITEA_TOKEN"], {"GITEA_TOKEN": "0123456789abcdef0123456789abcdef01234567"},
     "Error: gitea API: GET {api}/repos/hookgate/registered/hooks?limit=50&page=1 answered 401: the provider refused "
     "the token (wrong or expired); it said: "),
    ("an unset variable", ["--token-env", "NOT_SET"], {}, "Error: --token-env: environment variable NOT_SET is not set"),
    ("an empty file", ["--token-file", "/dev/null"], {}, "Error: the provider's token is empty"),
]


@pytest.mark.parametrize("case,token_args,env,error", ERRORS, ids=[c[0] for c in ERRORS])
def test_a_token_the_provider_refuses_is_a_clear_error(cp, gitea, edge, repository, workdir, case, token_args, env,
                                                        error):
    args = [a for a in gitea_args(gitea, edge) if a not in ("--token-env", "GITEA_TOKEN")]
    before = gitea.hooks(REPOSITORY)
    out = register(cp, workdir, *args, *token_args, env=env, check=False)
    assert out.returncode == 1, out
    assert any(line.startswith(error.format(api=f"{gitea.url}/api/v1")) for line in out.stderr.splitlines()), \
        out.stderr
    assert gitea.hooks(REPOSITORY) == before


# --- GitHub and GitLab, against their published API descriptions ------------------------------------------------

OCTOKIT_OPENAPI = "23.0.2"
CACHE = Path(os.environ.get("HOOKGATE_CACHE", Path.home() / ".cache/hookgate"))
GITLAB_DESCRIPTION = ROOT / "tests/fixtures/gitlab-openapi/project-hooks.yaml"


def github_description() -> dict:
    """GitHub's REST API description for api.github.com (OpenAPI 3.0), from the npm package
    @octokit/openapi, fetched once into the cache by `npm pack`."""
    directory = CACHE / f"octokit-openapi-{OCTOKIT_OPENAPI}"
    described = directory / "api.github.com.json"
    if not described.exists():
        directory.mkdir(parents=True, exist_ok=True)
        subprocess.run(["npm", "pack", "--silent", f"@octokit/openapi@{OCTOKIT_OPENAPI}", "--pack-destination",
                        str(directory)], check=True, capture_output=True, timeout=600)
        package = directory / f"octokit-openapi-{OCTOKIT_OPENAPI}.tgz"
        partial = described.with_suffix(".partial")
        with tarfile.open(package) as tar, open(partial, "wb") as out:
            shutil.copyfileobj(tar.extractfile("package/generated/api.github.com.json"), out)
        partial.rename(described)
        package.unlink()
    return json.loads(described.read_text())


def gitlab_description() -> dict:
    return yaml.safe_load(GITLAB_DESCRIPTION.read_text())


# provider: (its description, the prefix of its paths there, the receiver)
PROVIDERS = {"github": (github_description, "", "register-github"),
             "gitlab": (gitlab_description, "/api/v4", "register-gitlab")}
# GitLab's description types the project `id` of the hook test as an integer (its other hook operations take
# the URL-encoded path too): a project's numeric id fits all of them.
REPOS = {"github": "group/project", "gitlab": "4242"}


@pytest.fixture(scope="module")
def described(cp, edge, workdir):
    """Each provider's description and the requests `register --dry-run` prints for its receiver, by step."""
    out = {}
    for provider, (load, prefix, name) in PROVIDERS.items():
        printed = register(cp, workdir, "--receiver", f"{NAMESPACE}/{name}", "--repo", REPOS[provider],
                           "--dry-run", "--base-url", "https://hooks.example.com")
        requests = {r["step"]: r for r in map(json.loads, printed.stdout.splitlines())}
        out[provider] = (load(), prefix, requests)
    return out


class Refused(Exception):
    pass


def matching_path(description: dict, path: str) -> tuple[str, dict]:
    """The description's path template that `path` fills, and the values of its parameters."""
    for template in description["paths"]:
        pattern = "^" + re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(template)) + "$"
        found = re.match(pattern, path)
        if found:
            return template, found.groupdict()
    raise Refused(f"no path {path} in the description")


def strict(schema):
    """`schema` refusing properties it does not name, wherever it names some (a misspelt field would otherwise
    pass); OpenAPI 3.0's `nullable` as JSON Schema's null type."""
    if isinstance(schema, list):
        return [strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: strict(v) for k, v in schema.items()}
    if "properties" in out and "additionalProperties" not in out:
        out["additionalProperties"] = False
    if out.pop("nullable", False) and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    return out


def resolve(description: dict, node):
    """What a local reference (`#/components/...`) names; anything else as it is."""
    while isinstance(node, dict) and "$ref" in node:
        ref = node["$ref"]
        assert ref.startswith("#/"), ref
        node = description
        for part in ref[2:].split("/"):
            node = node[part]
    return node


def parameter_schema(parameter: dict) -> dict:
    """A parameter's schema: OpenAPI 3's `schema`, or Swagger 2.0's type keywords on the parameter itself."""
    if "schema" in parameter:
        return parameter["schema"]
    return {k: parameter[k] for k in ("type", "enum", "items", "minimum", "maximum") if k in parameter}


def body_schema(description: dict, operation: dict) -> tuple[dict | None, bool]:
    """The JSON request body's schema and whether a body is required: OpenAPI 3's `requestBody`, or Swagger
    2.0's `in: body` parameter."""
    if "openapi" in description:
        body = resolve(description, operation.get("requestBody", {}))
        return body.get("content", {}).get("application/json", {}).get("schema"), bool(body.get("required"))
    for parameter in operation.get("parameters", []):
        if parameter.get("in") == "body":
            return parameter["schema"], bool(parameter.get("required"))
    return None, False


def check_request(description: dict, prefix: str, request: dict) -> None:
    """Raises Refused when the description has no such operation, or its parameters or body do not fit."""
    path, _, query = request["path"].replace("{hook_id}", "7").partition("?")
    template, values = matching_path(description, prefix + path)
    item = description["paths"][template]
    operation = item.get(request["method"].lower())
    if operation is None:
        raise Refused(f"no {request['method']} {template} in the description")
    parameters = [resolve(description, p) for p in item.get("parameters", []) + operation.get("parameters", [])]
    declared = {(p["in"], p["name"]): p for p in parameters}
    for name, value in values.items():
        schema = parameter_schema(declared[("path", name)])
        typed = int(value) if value.isdigit() and "integer" in json.dumps(schema) else value
        try:
            jsonschema.validate(typed, strict(schema))
        except jsonschema.ValidationError as e:
            raise Refused(f"path parameter {name}={value}: {e.message}") from e
    for pair in filter(None, query.split("&")):
        name = pair.split("=")[0]
        if ("query", name) not in declared:
            raise Refused(f"query parameter {name} is not declared for {request['method']} {template}")
    schema, required = body_schema(description, operation)
    if "body" not in request:
        if required:
            raise Refused(f"{request['method']} {template} requires a body")
        return
    if schema is None:
        raise Refused(f"{request['method']} {template} takes no JSON body")
    try:
        jsonschema.validate(request["body"], strict(resolve_all(description, schema)))
    except jsonschema.ValidationError as e:
        raise Refused(f"body: {e.message} at {list(e.absolute_path)}") from e


def resolve_all(description: dict, schema):
    """`schema` with every local reference replaced by what it names."""
    if isinstance(schema, list):
        return [resolve_all(description, s) for s in schema]
    if isinstance(schema, dict):
        return {k: resolve_all(description, v) for k, v in resolve(description, schema).items()}
    return schema


# (provider, step): every request register sends each provider.
STEPS = [("github", "list"), ("github", "create"), ("github", "update"), ("github", "test"),
         ("github", "deliveries"), ("gitlab", "list"), ("gitlab", "create"), ("gitlab", "update"),
         ("gitlab", "test")]


@pytest.mark.parametrize("provider,step", STEPS, ids=[f"{p} {s}" for p, s in STEPS])
def test_requests_fit_the_providers_published_description(described, provider, step):
    description, prefix, requests = described[provider]
    assert {s for p, s in STEPS if p == provider} == set(requests), requests
    request = requests[step]
    check_request(description, prefix, request)
    if "body" in request:
        assert SECRET not in json.dumps(request) and "<redacted>" in json.dumps(request["body"])


def altered(request: dict, **changes) -> dict:
    out = json.loads(json.dumps(request))
    for key, value in changes.items():
        if key == "path":
            out["path"] = value
        else:
            target = out["body"]
            *parents, last = key.split("__")
            for parent in parents:
                target = target[parent]
            target[last] = value
    return out


# (case, provider, step, the change): requests the descriptions must refuse, so that the checks above can fail.
MISFITS = [
    ("github: events as a string", "github", "create", {"events": "push"}),
    ("github: a misspelt config field", "github", "create", {"config__content-type": "json"}),
    ("github: no such endpoint", "github", "test", {"path": "/repos/group/project/hooks/{hook_id}/ping"}),
    ("github: an undeclared query parameter", "github", "list", {"path": "/repos/group/project/hooks?limit=50"}),
    ("gitlab: an event flag as a string", "gitlab", "create", {"push_events": "yes"}),
    ("gitlab: an unknown test trigger", "gitlab", "test", {"path": "/projects/4242/hooks/{hook_id}/test/push"}),
    ("gitlab: a misspelt field", "gitlab", "update", {"push_event": True}),
]


@pytest.mark.parametrize("case,provider,step,change", MISFITS, ids=[c[0] for c in MISFITS])
def test_the_descriptions_refuse_a_misfit(described, case, provider, step, change):
    description, prefix, requests = described[provider]
    with pytest.raises(Refused):
        check_request(description, prefix, altered(requests[step], **change))
