"""Fixtures for the hostile-server robustness tests: ``serve(routes, host=...)`` starts a
:class:`hostile_server.HostileServer` on loopback that is closed when the test ends."""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from hostile_server import HostileServer  # noqa: E402


@pytest.fixture
def serve():
    servers = []

    def start(routes, host="127.0.0.1"):
        server = HostileServer(routes, host)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()
