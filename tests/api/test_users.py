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
            json={
                "email": "obs@example.com",
                "password": "observer-pw-12",
                "global_role": "observer",
            },
        )
        assert created.status_code == 201, created.text
        user = created.json()["user"]
        assert user["global_role"] == "observer"
        dup = client.post(
            "/api/v1/fleet/users", json={"email": "OBS@example.com", "password": "another-password"}
        )
        assert dup.status_code == 409 and "already exists" in dup.json()["error"]
        listed = client.get("/api/v1/fleet/users").json()["users"]
        assert [u["email"] for u in listed] == ["admin@example.com", "obs@example.com"]
        changed = client.patch(
            f"/api/v1/fleet/users/{user['id']}", json={"global_role": "maintainer"}
        )
        assert changed.json()["user"]["global_role"] == "maintainer"
        # the new user logs in; a non-admin cannot manage users
        token = login(live_server, "obs@example.com", "observer-pw-12")
        other = {"Authorization": f"Bearer {token}"}
        forbidden = client.get("/api/v1/fleet/users", headers=other)
        assert forbidden.status_code == 403 and "admin" in forbidden.json()["error"]
        # a user may change their own password, which revokes their tokens
        mine = client.patch(
            f"/api/v1/fleet/users/{user['id']}",
            json={"password": "new-password", "old_password": "observer-pw-12"},
            headers=other,
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
            ({"email": "not-an-email", "password": "long-enough-pw"}, "not an email"),
            ({"email": "a@b.c", "password": "short"}, "at least 12"),
            ({"email": "a@b.c", "password": "long-enough-pw", "global_role": "god"}, "global_role"),
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
            json={"email": "t@example.com", "password": "user-password-1", "teams": nowhere},
        )
        assert unknown.status_code == 400 and "teams[0].id: no team" in unknown.json()["error"]
        made = client.post(
            "/api/v1/fleet/users",
            json={"email": "t@example.com", "password": "user-password-1", "global_role": None,
                  "teams": [{"id": one, "role": "observer"}]},
        )  # fmt: skip
        assert made.status_code == 201, made.text
        user_id = made.json()["user"]["id"]
        # team roles without a global_role: a team user, not also a global observer
        implied = client.post(
            "/api/v1/fleet/users",
            json={"email": "u@example.com", "password": "user-password-1",
                  "teams": [{"id": one, "role": "observer"}]},
        )  # fmt: skip
        assert implied.status_code == 201, implied.text
        assert implied.json()["user"]["global_role"] is None
        team_only = {
            "Authorization": f"Bearer {login(live_server, 'u@example.com', 'user-password-1')}"
        }
        assert client.get(f"/api/v1/fleet/teams/{two}", headers=team_only).status_code == 404
        own = {"Authorization": f"Bearer {login(live_server, 't@example.com', 'user-password-1')}"}
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


def test_changing_ones_own_password_needs_the_current_one_and_logs_out_everywhere(
    live_server: RunningServer, admin_token: str
) -> None:
    admin = {"Authorization": f"Bearer {admin_token}"}
    with httpx.Client(base_url=live_server.url) as client:
        body = {"email": "me@example.com", "password": "my-first-passphrase"}
        user_id = client.post("/api/v1/fleet/users", json=body, headers=admin).json()["user"]["id"]
        sessions = [login(live_server, "me@example.com", "my-first-passphrase") for _ in range(2)]
        mine = {"Authorization": f"Bearer {sessions[0]}"}
        script = client.post(
            "/api/v1/fleet/me/tokens",
            json={"name": "ci", "password": "my-first-passphrase"},
            headers=mine,
        )
        tokens = [*sessions, script.json()["token"]]
        url = f"/api/v1/fleet/users/{user_id}"
        new = {"password": "my-second-passphrase"}
        for extra, message in (
            ({}, "old_password: send your current password"),
            ({"old_password": "not-my-passphrase"}, "old_password is not your current password"),
        ):
            refused = client.patch(url, json={**new, **extra}, headers=mine)
            assert refused.status_code == 400 and message in refused.json()["error"]
        assert client.get("/api/v1/fleet/me", headers=mine).status_code == 200  # unchanged
        weak = client.patch(
            url, json={"password": "aaaaaaaa", "old_password": "my-first-passphrase"}, headers=mine
        )
        assert weak.status_code == 400 and "at least 12 characters" in weak.json()["error"]
        changed = client.patch(
            url, json={**new, "old_password": "my-first-passphrase"}, headers=mine
        )
        assert changed.status_code == 200, changed.text
        for token in tokens:  # every session and API token, this request's too
            gone = client.get("/api/v1/fleet/me", headers={"Authorization": f"Bearer {token}"})
            assert gone.status_code == 401
        assert login(live_server, "me@example.com", "my-second-passphrase")
        # An admin changing their own password needs theirs too ...
        own = client.patch("/api/v1/fleet/users/1", json=new, headers=admin)
        assert own.status_code == 400 and "old_password" in own.json()["error"]
        # ... but resets another user's without it, which logs that user out everywhere.
        theirs = login(live_server, "me@example.com", "my-second-passphrase")
        reset = client.patch(url, json={"password": "reset-by-the-admin"}, headers=admin)
        assert reset.status_code == 200, reset.text
        after = client.get("/api/v1/fleet/me", headers={"Authorization": f"Bearer {theirs}"})
        assert after.status_code == 401
        assert client.get("/api/v1/fleet/me", headers=admin).status_code == 200


def test_weak_passwords_are_refused_naming_the_rule(
    live_server: RunningServer, admin_token: str
) -> None:
    auth = {"Authorization": f"Bearer {admin_token}"}
    with httpx.Client(base_url=live_server.url, headers=auth) as client:
        for password, message in (
            ("aaaaaaaa", "password must be at least 12 characters"),
            ("LeaveMeAlone", "password is on the list of commonly used passwords"),
        ):
            reply = client.post(
                "/api/v1/fleet/users", json={"email": "w@example.com", "password": password}
            )
            assert reply.status_code == 400 and message in reply.json()["error"], reply.text
        made = client.post(
            "/api/v1/fleet/users", json={"email": "w@example.com", "password": "unusual-enough-1"}
        )
        assert made.status_code == 201
        reset = client.patch(
            f"/api/v1/fleet/users/{made.json()['user']['id']}", json={"password": "qwerty123456"}
        )
        assert reset.status_code == 400 and "commonly used" in reset.json()["error"]


def test_a_new_password_cancels_the_users_running_query_tasks(
    live_server: RunningServer, admin_token: str
) -> None:
    """One's own new password and an admin's reset both cancel the user's running tasks
    (a stolen session's webhooks stop with it), with the reason; others' tasks run on."""
    from tests.query.task_client import TASKS, TaskClient, kind_query, task_body, user_client

    admin = TaskClient(live_server, admin_token)
    observer, user_id = user_client(admin, "observer@example.com", "observer")
    continuous = task_body(kind_query("docs:p"), "CONTINUOUS")
    admins = admin.create(continuous)["documentSelfLink"]
    mine = observer.create(continuous)["documentSelfLink"]
    changed = observer.http.patch(
        f"/api/v1/fleet/users/{user_id}",
        json={"password": "another-password-2", "old_password": "user-password-1"},
    )
    assert changed.status_code == 200, changed.text
    info = admin.get(mine)["taskInfo"]
    assert info["stage"] == "CANCELLED", info
    assert info["failure"] == {"message": "the user's password changed"}
    observer.close()
    observer = TaskClient(
        live_server, login(live_server, "observer@example.com", "another-password-2")
    )
    again = observer.create(continuous)["documentSelfLink"]
    reset = admin.http.patch(
        f"/api/v1/fleet/users/{user_id}", json={"password": "reset-password-3"}
    )
    assert reset.status_code == 200, reset.text
    assert admin.get(again)["taskInfo"]["stage"] == "CANCELLED"
    assert admin.get(admins)["taskInfo"]["stage"] == "STARTED"
    assert observer.http.get(TASKS).status_code == 401  # the reset revoked the session
    observer.close()
    admin.close()
