"""The audit feed per role: another user's live query (its SQL, targets and campaign) is
redacted for everyone but its actor and global admins, in the REST feed and in query tasks
over `fleet:activity` documents; team-only users do not read the feed."""

from __future__ import annotations

from typing import Any

import httpx

from tests.agent import Agent
from tests.query.task_client import TaskClient, kind_query, task_body, user_client
from tests.server import RunningServer

ADMIN_SQL = "SELECT 'admin-secret-sql' AS s"
MAINTAINER_SQL = "SELECT 'maintainer-own-sql' AS s"


def enroll_one(server: RunningServer) -> None:
    with httpx.Client(base_url=server.url) as agents:
        Agent(agents, "test-enroll-secret", "host-a", "uuid-a").enroll()


def run(client: TaskClient, sql: str) -> int:
    reply = client.http.post(
        "/api/v1/fleet/queries/run", json={"query": sql, "targets": [{"type": "all"}]}
    )
    assert reply.status_code == 200, reply.text
    campaign_id: int = reply.json()["campaign_id"]
    return campaign_id


def live_queries(client: TaskClient) -> dict[int, dict[str, Any]]:
    """The feed's live_query activities, by actor."""
    reply = client.http.get("/api/v1/fleet/activities")
    assert reply.status_code == 200, reply.text
    return {a["actor_id"]: a for a in reply.json()["activities"] if a["type"] == "live_query"}


def test_live_query_activities_are_redacted_for_non_actors_who_are_not_admins(
    live_server: RunningServer, admin_token: str
) -> None:
    enroll_one(live_server)
    admin = TaskClient(live_server, admin_token)
    maintainer, maintainer_id = user_client(admin, "m@example.com", "maintainer")
    observer, _ = user_client(admin, "o@example.com", "observer")
    team = admin.http.post("/api/v1/fleet/teams", json={"name": "t"}).json()["team"]["id"]
    team_admin, _ = user_client(admin, "ta@example.com", None, [{"id": team, "role": "admin"}])
    try:
        admin_id = admin.http.get("/api/v1/fleet/me").json()["user"]["id"]
        run(admin, ADMIN_SQL)
        run(maintainer, MAINTAINER_SQL)
        admin.http.post("/api/v1/fleet/labels", json={"name": "l", "query": "SELECT 1"})

        # a global admin reads every live query in full
        seen = live_queries(admin)
        assert seen[admin_id]["details"]["query"] == ADMIN_SQL
        assert seen[maintainer_id]["details"]["query"] == MAINTAINER_SQL

        # the actor reads its own in full, another's redacted
        seen = live_queries(maintainer)
        assert seen[maintainer_id]["details"]["query"] == MAINTAINER_SQL
        assert "redacted" not in seen[maintainer_id]
        redacted = seen[admin_id]
        assert redacted["redacted"] is True and "details" not in redacted
        assert set(redacted) == {"id", "type", "actor_id", "actor_email", "created_at", "redacted"}

        # a global observer: both redacted; activities that are not private stay whole
        feed = observer.http.get("/api/v1/fleet/activities").json()["activities"]
        assert "admin-secret-sql" not in str(feed) and "maintainer-own-sql" not in str(feed)
        assert all("campaign_id" not in (a.get("details") or {}) for a in feed)
        assert all(a["redacted"] for a in feed if a["type"] == "live_query")
        label = next(a for a in feed if a["type"] == "created_label")
        assert label["details"]["name"] == "l" and "redacted" not in label

        # team-only users do not read the feed at all
        refused = team_admin.http.get("/api/v1/fleet/activities")
        assert refused.status_code == 403 and "error" in refused.json()
    finally:
        for client in (maintainer, observer, team_admin, admin):
            client.close()


def test_query_tasks_over_activities_leave_out_others_live_queries(
    live_server: RunningServer, admin_token: str
) -> None:
    """The document index is another path to the feed: a global observer's task over
    `fleet:activity` must not hand out the SQL the REST feed redacts."""
    enroll_one(live_server)
    admin = TaskClient(live_server, admin_token)
    maintainer, maintainer_id = user_client(admin, "m2@example.com", "maintainer")
    observer, _ = user_client(admin, "o2@example.com", "observer")
    try:
        run(admin, ADMIN_SQL)
        run(maintainer, MAINTAINER_SQL)
        body = task_body(kind_query("fleet:activity"), "EXPAND_CONTENT", direct=True)
        mine = maintainer.create(body)["results"]["documents"].values()
        live = [d for d in mine if d["type"] == "live_query"]
        assert [d["details"]["query"] for d in live] == [MAINTAINER_SQL]
        assert all(d["actor_id"] == maintainer_id for d in live)
        seen = observer.create(body)["results"]["documents"].values()
        assert [d for d in seen if d["type"] == "live_query"] == []
        assert any(d["type"] == "created_user" for d in seen)  # the rest stays visible
        everything = admin.create(body)["results"]["documents"].values()
        queries = {d["details"]["query"] for d in everything if d["type"] == "live_query"}
        assert queries == {ADMIN_SQL, MAINTAINER_SQL}
    finally:
        for client in (maintainer, observer, admin):
            client.close()
