"""Talking to a running server from the command line: URL, token, and errors as messages."""

from __future__ import annotations

import os
from typing import Any

import httpx
import typer

DEFAULT_SERVER = "http://127.0.0.1:8412"

ServerOpt = typer.Option(
    None, "--server", help=f"Server URL (FLEETWATCH_SERVER). [default: {DEFAULT_SERVER}]"
)
TokenOpt = typer.Option(
    None, "--token", help="API token (FLEETWATCH_TOKEN); or FLEETWATCH_EMAIL/_PASSWORD to log in."
)
CaFileOpt = typer.Option(None, "--ca-file", help="CA certificate to verify an HTTPS server.")


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print `fleetwatch: message` on stderr and return the Exit to raise."""
    typer.echo(f"fleetwatch: {message}", err=True)
    return typer.Exit(code)


def api_client(server: str | None, token: str | None, ca_file: str | None = None) -> httpx.Client:
    """An authenticated client for the user API (logging in with email/password if needed)."""
    import ssl

    base = (server or os.environ.get("FLEETWATCH_SERVER") or DEFAULT_SERVER).rstrip("/")
    verify: ssl.SSLContext | bool = True
    if ca_file:
        verify = ssl.create_default_context(cafile=ca_file)
    token = token or os.environ.get("FLEETWATCH_TOKEN")
    client = httpx.Client(base_url=base, timeout=httpx.Timeout(30, read=None), verify=verify)
    if not token:
        email = os.environ.get("FLEETWATCH_EMAIL") or os.environ.get("FLEETWATCH_ADMIN_EMAIL")
        password = os.environ.get("FLEETWATCH_PASSWORD") or os.environ.get(
            "FLEETWATCH_ADMIN_PASSWORD"
        )
        if not (email and password):
            raise fail(
                "no token: pass --token or set FLEETWATCH_TOKEN (or FLEETWATCH_EMAIL "
                "and FLEETWATCH_PASSWORD)",
                2,
            )
        reply = request(
            client, "POST", "/api/v1/fleet/login", json={"email": email, "password": password}
        )
        token = str(reply["token"])
    client.headers["Authorization"] = f"Bearer {token}"
    return client


def request(client: httpx.Client, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
    """Send a request; the JSON reply, or exit with the server's error message."""
    try:
        reply = client.request(method, path, **kwargs)
    except httpx.HTTPError as exc:
        raise fail(f"cannot reach {client.base_url}: {exc}") from exc
    try:
        body = reply.json()
    except ValueError:
        body = {"error": reply.text[:200]}
    if reply.status_code >= 400:
        raise fail(f"{body.get('error', reply.reason_phrase)} (HTTP {reply.status_code})")
    if not isinstance(body, dict):
        raise fail("unexpected reply from the server")
    return body
