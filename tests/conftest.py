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
