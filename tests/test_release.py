"""`make release` as a user runs it, against a real OCI registry (distribution) on loopback: the controller image
index (linux/amd64 and linux/arm64, static binaries, entrypoint and user) and the filter's artifact pushed with
oras, the Kustomize component pinning both by digest, the README's overlay rendered with it, and the real Envoy
Gateway loading the module with the component's pin and verifying deliveries."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import re
import shutil
import subprocess
import tarfile

import pytest
import yaml

from deploy import deploy, policy_keys, wait_translated
from gateway import EnvoyGateway, render
from harness import ROOT, WASM, free_port
from registry import Registry, request

VERSION = "0.1.0-test"
NAMESPACE = "hookgate"  # the registry path the artifacts go under: REGISTRY=<host>/hookgate
INDEX = "application/vnd.oci.image.index.v1+json"
MANIFEST = "application/vnd.oci.image.manifest.v1+json"
# Image platform architecture → ELF e_machine of its binary.
ELF_MACHINE = {"amd64": 62, "arm64": 183}
PT_INTERP = 3


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    """`make release` into a copy of the README's layout: `checkout/manifests` and the release output in
    `checkout/target/hookgate-release`, where the README's overlay finds them. Yields the registry, the
    checkout and what make printed."""
    checkout = tmp_path_factory.mktemp("release") / "checkout"
    shutil.copytree(ROOT / "manifests", checkout / "manifests")
    with Registry() as registry:
        out = subprocess.run(["make", "--no-print-directory", "release", f"REGISTRY={registry.host}/{NAMESPACE}",
                              f"VERSION={VERSION}", f"RELEASE_OUT={checkout / 'target/hookgate-release'}"],
                             cwd=ROOT, capture_output=True, text=True)
        assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
        yield registry, checkout, out.stdout


def printed_digest(release, name: str) -> str:
    registry, _, stdout = release
    found = re.search(rf"^{re.escape(f'{registry.host}/{NAMESPACE}/{name}:{VERSION}')} (sha256:[0-9a-f]{{64}})$",
                      stdout, re.MULTILINE)
    assert found, stdout
    return found.group(1)


def fetch(registry, name: str, reference: str, accept: str) -> tuple[str, dict]:
    """A manifest or index from the registry: its digest (as the registry reports it) and its document."""
    _, headers, body = request("GET", f"{registry.url}/v2/{NAMESPACE}/{name}/manifests/{reference}",
                               headers={"Accept": accept})
    assert headers["Content-Type"] == accept
    assert headers["Docker-Content-Digest"] == f"sha256:{hashlib.sha256(body).hexdigest()}"
    return headers["Docker-Content-Digest"], json.loads(body)


def blob(registry, name: str, digest: str) -> bytes:
    _, _, body = request("GET", f"{registry.url}/v2/{NAMESPACE}/{name}/blobs/{digest}")
    assert f"sha256:{hashlib.sha256(body).hexdigest()}" == digest
    return body


def layer_files(data: bytes) -> dict[str, tuple[int, bytes]]:
    """The regular files of a gzipped layer: name → (mode, content)."""
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(data))) as tar:
        return {m.name: (m.mode, tar.extractfile(m).read()) for m in tar.getmembers() if m.isfile()}


def elf_machine_and_interpreter(binary: bytes) -> tuple[int, bool]:
    """An ELF64 little-endian file's e_machine, and whether it asks for a program interpreter (a dynamic
    loader): a static binary has no PT_INTERP program header."""
    assert binary[:4] == b"\x7fELF" and binary[4] == 2 and binary[5] == 1
    machine = int.from_bytes(binary[18:20], "little")
    phoff = int.from_bytes(binary[32:40], "little")
    phentsize, phnum = int.from_bytes(binary[54:56], "little"), int.from_bytes(binary[56:58], "little")
    types = [int.from_bytes(binary[phoff + i * phentsize:phoff + i * phentsize + 4], "little") for i in range(phnum)]
    return machine, PT_INTERP in types


def controller_image(release, architecture: str) -> tuple[dict, dict[str, tuple[int, bytes]]]:
    """The config and layer files of the controller image for `architecture`, read through the index."""
    registry = release[0]
    _, index = fetch(registry, "hookgate-controller", VERSION, INDEX)
    [entry] = [m for m in index["manifests"] if m["platform"] == {"architecture": architecture, "os": "linux"}]
    _, manifest = fetch(registry, "hookgate-controller", entry["digest"], MANIFEST)
    config = json.loads(blob(registry, "hookgate-controller", manifest["config"]["digest"]))
    [layer] = manifest["layers"]
    return config, layer_files(blob(registry, "hookgate-controller", layer["digest"]))


def readme_overlay() -> str:
    """The overlay the README's install step writes as deploy/kustomization.yaml."""
    readme = (ROOT / "README.md").read_text()
    found = re.search(r"`deploy/kustomization\.yaml`[^`]*```yaml\n(.*?)```", readme, re.DOTALL)
    assert found, "README: no deploy/kustomization.yaml block"
    return re.sub(r"^ {3}", "", found.group(1), flags=re.MULTILINE)


@pytest.fixture(scope="module")
def rendered(release):
    """The README's overlay, written where the README says, rendered with kustomize."""
    _, checkout, _ = release
    (checkout / "deploy").mkdir(exist_ok=True)
    (checkout / "deploy/kustomization.yaml").write_text(readme_overlay())
    return render(checkout / "deploy")


def test_the_readme_runs_make_release_as_the_makefile_takes_it():
    readme = (ROOT / "README.md").read_text()
    assert "make release REGISTRY=ghcr.io/you VERSION=0.1.0" in readme
    usage = subprocess.run(["make", "--no-print-directory", "release", "REGISTRY="], cwd=ROOT,
                           capture_output=True, text=True)
    assert usage.returncode != 0 and "usage: make release REGISTRY=ghcr.io/you VERSION=0.1.0" in usage.stderr


def test_the_controller_image_is_an_index_of_amd64_and_arm64(release):
    digest, index = fetch(release[0], "hookgate-controller", VERSION, INDEX)
    assert digest == printed_digest(release, "hookgate-controller")
    assert sorted((m["platform"]["os"], m["platform"]["architecture"], m["mediaType"]) for m in index["manifests"]) \
        == [("linux", "amd64", MANIFEST), ("linux", "arm64", MANIFEST)]


@pytest.mark.parametrize("architecture", sorted(ELF_MACHINE))
def test_each_image_runs_the_static_binary_as_the_non_root_user(release, architecture):
    config, files = controller_image(release, architecture)
    assert (config["architecture"], config["os"]) == (architecture, "linux")
    assert config["config"]["Entrypoint"] == ["/hookgate"] and config["config"]["Cmd"] == ["serve"]
    # The Deployment's runAsUser.
    assert config["config"]["User"] == "65532:65532"
    mode, binary = files["hookgate"]
    assert mode == 0o755
    assert elf_machine_and_interpreter(binary) == (ELF_MACHINE[architecture], False)
    assert b"BEGIN CERTIFICATE" in files["etc/ssl/certs/ca-certificates.crt"][1]


def test_the_amd64_binary_from_the_registry_runs_here(release, tmp_path):
    _, files = controller_image(release, "amd64")
    binary = tmp_path / "hookgate"
    binary.write_bytes(files["hookgate"][1])
    binary.chmod(0o755)
    token = subprocess.run([str(binary), "token"], capture_output=True, text=True)
    assert token.returncode == 0 and re.fullmatch(r"[0-9a-f]{64}\n", token.stdout), token.stderr
    help_text = subprocess.run([str(binary), "serve", "--help"], capture_output=True, text=True).stdout
    assert "--attestation-key-file" in help_text


def test_the_filter_artifact_holds_the_compiled_module(release):
    digest, manifest = fetch(release[0], "hookgate-filter", VERSION, MANIFEST)
    assert digest == printed_digest(release, "hookgate-filter")
    [layer] = manifest["layers"]
    assert layer_files(blob(release[0], "hookgate-filter", layer["digest"]))["plugin.wasm"][1] == WASM.read_bytes()


def test_the_readmes_overlay_pins_both_artifacts_by_digest(release, rendered):
    registry = release[0]
    [deployment] = [d for d in rendered if d["kind"] == "Deployment"]
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == \
        f"{registry.host}/{NAMESPACE}/hookgate-controller@{printed_digest(release, 'hookgate-controller')}"
    [policy] = [d for d in rendered if d["kind"] == "EnvoyExtensionPolicy"]
    assert policy["spec"]["wasm"][0]["code"] == {"type": "Image", "image": {
        "url": f"{registry.host}/{NAMESPACE}/hookgate-filter@{printed_digest(release, 'hookgate-filter')}",
        "sha256": printed_digest(release, "hookgate-filter").removeprefix("sha256:")}}


def test_nothing_a_user_applies_holds_a_placeholder_digest(rendered):
    text = yaml.safe_dump_all(rendered)
    assert "0" * 64 not in text and ".invalid" not in text
    for example in (ROOT / "manifests").rglob("*.yaml"):
        assert "0" * 64 not in example.read_text(), example


def test_envoy_gateway_loads_the_released_module_and_verifies_deliveries(cp, release, rendered, tmp_path):
    registry = release[0]
    [policy] = [d for d in rendered if d["kind"] == "EnvoyExtensionPolicy"]
    gateway = EnvoyGateway({})
    try:
        example = deploy("homelab-github", cp, gateway, workdir=tmp_path, gateway_port=free_port(),
                         wasm_code=policy["spec"]["wasm"][0]["code"], source="127.0.4.2")
        try:
            wait_translated(example)
            for kind, key in policy_keys(example):
                assert gateway.conditions(kind, key)["Accepted"]["status"] == "True", (kind, key)
            # Envoy runs exactly the module that was pushed (Envoy Gateway hands it over with its sha256).
            assert hashlib.sha256(WASM.read_bytes()).hexdigest() in json.dumps(gateway.config_dump())
            # By digest: nothing else here asks for the filter's manifest by its digest.
            assert f"GET /v2/{NAMESPACE}/hookgate-filter/manifests/{printed_digest(release, 'hookgate-filter')}" \
                in registry.log()
            receiver = example.receivers[0]
            status, body = example.send(example.delivery(receiver))
            assert status == 200 and json.loads(body)["failed"] == 0, body
            status, body = example.send(example.delivery(receiver, forged=True))
            assert status == 401, body
        finally:
            example.stop()
    finally:
        gateway.cleanup()
