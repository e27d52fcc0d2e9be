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


def test_team_roles_are_changed_by_admins_only(
    live_server: RunningServer, admin_token: str
) -> None:
    auth = {"Authorization": f"Bearer {admin_token}"}
    with httpx.Client(base_url=live_server.url, headers=auth) as client:
        one = client.post("/api/v1/fleet/teams", json={"name": "one"}).json()["team"]["id"]
        two = client.post("/api/v1/fleet/teams", json={"name": "two"}).json()["team"]["id"]
        nowhere = [{"id": 999, "role": "observer"}]
        unknown = client.post(
            "/api/v1/fleet/users",
            json={"email": "t@example.com", "password": "password-1", "teams": nowhere},
        )
        assert unknown.status_code == 400 and "teams[0].id: no team" in unknown.json()["error"]
        made = client.post(
            "/api/v1/fleet/users",
            json={"email": "t@example.com", "password": "password-1", "global_role": None,
                  "teams": [{"id": one, "role": "observer"}]},
        )  # fmt: skip
        assert made.status_code == 201, made.text
        user_id = made.json()["user"]["id"]
        own = {"Authorization": f"Bearer {login(live_server, 't@example.com', 'password-1')}"}
        assert client.get(f"/api/v1/fleet/teams/{two}", headers=own).status_code == 404
        moved = client.patch(
            f"/api/v1/fleet/users/{user_id}", json={"teams": [{"id": two, "role": "maintainer"}]}
        )
        assert moved.status_code == 200, moved.text
        assert moved.json()["user"]["teams"] == [{"id": two, "role": "maintainer"}]
        # the same token sees the new team at once, and no longer the old one
        assert client.get(f"/api/v1/fleet/teams/{two}", headers=own).status_code == 200
        assert client.get(f"/api/v1/fleet/teams/{one}", headers=own).status_code == 404
        for body, status, message in (
            ({"teams": [{"id": one, "role": "admin"}]}, 403, "admin"),  # not by themselves
        ):
            reply = client.patch(f"/api/v1/fleet/users/{user_id}", json=body, headers=own)
            assert reply.status_code == status and message in reply.json()["error"]
        for body, message in (
            ({"teams": [{"id": 999, "role": "observer"}]}, "no team with id 999"),
            ({"teams": [{"id": one, "role": "boss"}]}, "team role must be one of"),
            ({"teams": [{"id": one, "role": "observer"}, {"id": one, "role": "admin"}]}, "once"),
        ):
            reply = client.patch(f"/api/v1/fleet/users/{user_id}", json=body)
            assert reply.status_code == 400 and message in reply.json()["error"], reply.text
        feed = client.get("/api/v1/fleet/activities").json()["activities"]
        edits = [a for a in feed if a["type"] == "edited_user"]
        assert edits[0]["details"] == {"user_id": user_id, "changed": ["teams"]}
