"""The app skeleton over a real socket: health, JSON errors for unknown paths; a shutdown
stops every part even when one fails to stop."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from fleetwatch.app import build_services, start_services, stop_services
from fleetwatch.config import Settings
from tests.server import RunningServer


def test_healthz_and_json_404(live_server: RunningServer) -> None:
    with httpx.Client(base_url=live_server.url) as client:
        ok = client.get("/healthz")
        assert ok.status_code == 200 and ok.json()["status"] == "ok"
        missing = client.get("/nope")
        assert missing.status_code == 404
        assert missing.headers["content-type"].startswith("application/json")
        assert "no such endpoint" in missing.json()["error"]


async def test_a_part_that_fails_to_stop_does_not_stop_the_shutdown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    services = build_services(Settings(data_dir=tmp_path))
    await start_services(services)
    assert services.retention._loop.running

    async def broken(drain_timeout: float = 5.0) -> None:
        raise RuntimeError("a destination's follower died")

    # the destinations stop first; what stops after them must stop all the same
    monkeypatch.setattr(services.ops.destinations, "stop", broken)
    await stop_services(services)
    assert not services.retention._loop.running
    assert not services.expiry._loop.running
    assert "stopping the operations failed" in caplog.text
