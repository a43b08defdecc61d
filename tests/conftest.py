import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


import pytest  # noqa: E402


@pytest.fixture(scope="session")
def cp():
    """One real control plane for the session (started on first use), seeded with Flux and Argo CD objects."""
    from gitops import seeded_control_plane

    plane = seeded_control_plane()
    yield plane
    plane.stop()


@pytest.fixture(scope="module")
def gitea():
    """A headless Gitea (tests/forge.py) for one test module."""
    from forge import Gitea
    with Gitea() as forge:
        yield forge


def _leftover_processes() -> list[str]:
    """Processes this test session started (Envoy, Envoy Gateway, etcd, kube-apiserver, the registry, Gitea, the
    controller) still running."""
    import os
    from pathlib import Path

    from harness import CONTROLLER

    # The binaries build.sh caches and the venv's Envoy by path: the processes of tests/kubeprovider.py run
    # them from a root of their own, with no test directory in their arguments.
    markers = ("hookgate-cp-", "hookgate-envoy-", "hookgate-eg-", "hookgate-registry-", "hookgate-forge-",
               str(CONTROLLER), "/.cache/hookgate/bin/", "/envoy/_bin/envoy")
    leftovers = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            if any(m in cmdline for m in markers) and os.getppid() != int(proc.name):
                # Only children of this session: their parent is this process.
                status = (proc / "status").read_text()
                ppid = int(next(line.split()[1] for line in status.splitlines() if line.startswith("PPid:")))
                if ppid == os.getpid():
                    leftovers.append(f"{proc.name}: {cmdline[:160]}")
        except (OSError, ValueError, StopIteration):
            continue
    return leftovers


def pytest_sessionfinish(session, exitstatus):
    """Every real part a test started must be gone when the session ends, passed or failed."""
    leftovers = _leftover_processes()
    if leftovers:
        print("\nprocesses left running by the tests:\n  " + "\n  ".join(leftovers))
        session.exitstatus = 1
