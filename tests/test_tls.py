"""HTTPS with a self-signed certificate, verified the way osquery verifies it."""

from __future__ import annotations

import ssl
from pathlib import Path

import httpx
from cryptography import x509

from fleetwatch.config import Settings
from fleetwatch.tls import ensure_self_signed
from tests.agent import Agent
from tests.server import running_server


def test_self_signed_certificate_names_localhost(tmp_path: Path) -> None:
    cert, key = ensure_self_signed(tmp_path, "fleet.example.com")
    parsed = x509.load_pem_x509_certificate(cert.read_bytes())
    names = parsed.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in names.get_values_for_type(x509.DNSName)
    assert "fleet.example.com" in names.get_values_for_type(x509.DNSName)
    assert key.stat().st_mode & 0o077 == 0
    # a second call reuses the same files
    assert ensure_self_signed(tmp_path, "fleet.example.com") == (cert, key)


def test_agent_over_https_with_verification(server_settings: Settings) -> None:
    settings = server_settings.model_copy(update={"tls_self_signed": True})
    with running_server(settings) as server:
        assert server.url.startswith("https://")
        cert = settings.data_dir / "fleetwatch-cert.pem"
        context = ssl.create_default_context(cafile=str(cert))
        context.minimum_version = ssl.TLSVersion.TLSv1_2  # osquery refuses older
        url = server.url.replace("127.0.0.1", "localhost")
        with httpx.Client(base_url=url, verify=context) as client:
            agent = Agent(client, "test-enroll-secret", "tls-host", "tls-uuid")
            assert "node_key" in agent.enroll()
            assert "options" in agent.post("config", {}).json()
            assert (
                agent.post("log", {"log_type": "status", "data": []}, gzip_body=True).json() == {}
            )
            assert "queries" in agent.post("distributed/read", {}).json()
        # an agent without the certificate refuses the server
        with httpx.Client(base_url=url) as untrusting:
            try:
                untrusting.get("/healthz")
                raise AssertionError("an unverified certificate was accepted")
            except httpx.ConnectError as exc:
                assert "CERTIFICATE_VERIFY_FAILED" in str(exc)
