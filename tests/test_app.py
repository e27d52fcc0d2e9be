"""The app skeleton over a real socket: health, JSON errors for unknown paths."""

from __future__ import annotations

import httpx

from tests.server import RunningServer


def test_healthz_and_json_404(live_server: RunningServer) -> None:
    with httpx.Client(base_url=live_server.url) as client:
        ok = client.get("/healthz")
        assert ok.status_code == 200 and ok.json()["status"] == "ok"
        missing = client.get("/nope")
        assert missing.status_code == 404
        assert missing.headers["content-type"].startswith("application/json")
        assert "no such endpoint" in missing.json()["error"]
