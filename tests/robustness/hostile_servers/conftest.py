"""Fixtures for the hostile-server robustness tests: ``serve(routes, host=..., tls=...)`` starts a
:class:`hostile_server.HostileServer` on loopback that is closed when the test ends;
``tls_server_context`` gives an HTTPS server context and its self-signed certificate."""
import shutil
import ssl
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from hostile_server import HostileServer  # noqa: E402


@pytest.fixture
def serve():
    servers = []

    def start(routes, host="127.0.0.1", tls=None):
        server = HostileServer(routes, host, tls)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


@pytest.fixture(scope="session")
def tls_server_context(tmp_path_factory):
    """(server SSLContext, path of its self-signed certificate for 127.0.0.1)."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a test certificate")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return context, cert
