"""Bounds every list shares: a `page` past MAX_PAGE is a clear 4xx, never a 500."""

from __future__ import annotations

import httpx

from fleetwatch.api.deps import MAX_PAGE
from tests.server import RunningServer

LISTS = [
    "/api/v1/fleet/hosts",
    "/api/v1/fleet/activities",
    "/api/v1/fleet/campaigns",
    "/api/v1/fleet/campaigns/1/results",
]


def test_a_page_beyond_the_bound_is_refused_saying_so(
    live_server: RunningServer, admin_token: str
) -> None:
    headers = {"Authorization": f"Bearer {admin_token}"}
    with httpx.Client(base_url=live_server.url, headers=headers, timeout=30) as client:
        for path in LISTS:
            # a number past 64 bits: echoed back, it would not fit a JSON encoder's integers
            huge = client.get(path, params={"page": str(2**70)})
            assert huge.status_code in (400, 422), (path, huge.status_code, huge.text)
            assert "page" in huge.text, (path, huge.text)
            assert client.get(path, params={"page": str(MAX_PAGE + 1)}).status_code in (400, 422)
        assert client.get(LISTS[0], params={"page": str(MAX_PAGE)}).status_code == 200
