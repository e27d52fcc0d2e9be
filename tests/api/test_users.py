"""Users CRUD: admin only; passwords hashed; roles stored."""

from __future__ import annotations

import httpx

from tests.conftest import login
from tests.server import RunningServer


def test_users_crud(live_server: RunningServer, admin_token: str) -> None:
    auth = {"Authorization": f"Bearer {admin_token}"}
    with httpx.Client(base_url=live_server.url, headers=auth) as client:
        created = client.post(
            "/api/v1/fleet/users",
            json={"email": "obs@example.com", "password": "observer-pw", "global_role": "observer"},
        )
        assert created.status_code == 201, created.text
        user = created.json()["user"]
        assert user["global_role"] == "observer"
        dup = client.post(
            "/api/v1/fleet/users", json={"email": "OBS@example.com", "password": "another-pw"}
        )
        assert dup.status_code == 409 and "already exists" in dup.json()["error"]
        listed = client.get("/api/v1/fleet/users").json()["users"]
        assert [u["email"] for u in listed] == ["admin@example.com", "obs@example.com"]
        changed = client.patch(
            f"/api/v1/fleet/users/{user['id']}", json={"global_role": "maintainer"}
        )
        assert changed.json()["user"]["global_role"] == "maintainer"
        # the new user logs in; a non-admin cannot manage users
        token = login(live_server, "obs@example.com", "observer-pw")
        other = {"Authorization": f"Bearer {token}"}
        forbidden = client.get("/api/v1/fleet/users", headers=other)
        assert forbidden.status_code == 403 and "admin" in forbidden.json()["error"]
        # a user may change their own password, which revokes their tokens
        mine = client.patch(
            f"/api/v1/fleet/users/{user['id']}", json={"password": "new-password"}, headers=other
        )
        assert mine.status_code == 200
        assert client.get("/api/v1/fleet/me", headers=other).status_code == 401
        token = login(live_server, "obs@example.com", "new-password")
        other = {"Authorization": f"Bearer {token}"}
        # ... but not their role
        escalate = client.patch(
            f"/api/v1/fleet/users/{user['id']}", json={"global_role": "admin"}, headers=other
        )
        assert escalate.status_code == 403
        assert client.delete(f"/api/v1/fleet/users/{user['id']}").status_code == 200
        # a token of a deleted user stops working
        assert client.get("/api/v1/fleet/me", headers=other).status_code == 401
        assert client.get(f"/api/v1/fleet/users/{user['id']}").status_code == 404


def test_user_validation(live_server: RunningServer, admin_token: str) -> None:
    auth = {"Authorization": f"Bearer {admin_token}"}
    with httpx.Client(base_url=live_server.url, headers=auth) as client:
        cases = [
            ({"email": "not-an-email", "password": "long-enough"}, "not an email"),
            ({"email": "a@b.c", "password": "short"}, "at least 8"),
            ({"email": "a@b.c", "password": "long-enough", "global_role": "god"}, "global_role"),
            ({"email": "a@b.c"}, "password"),
        ]
        for body, message in cases:
            reply = client.post("/api/v1/fleet/users", json=body)
            assert reply.status_code == 400, reply.text
            assert message in reply.json()["error"]
        self_delete = client.delete("/api/v1/fleet/users/1")
        assert self_delete.status_code == 400
