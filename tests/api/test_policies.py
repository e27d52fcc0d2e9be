"""Policies end to end over real sockets with agents, on SQLite and PostgreSQL: dispatch on
check-in, answers as `fleet:policy-result` documents, counts that follow a host flipping,
the host detail, hosts by response, team policies and roles, and the bad input."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from fleetwatch.config import Settings
from tests.agent import Agent, wait_for_long_hold
from tests.conftest import login
from tests.query.task_client import TASKS, task_body, term
from tests.server import RunningServer, running_server

PREFIX = "fleet_policy_query_"


EDR = "SELECT 1 FROM processes WHERE name = 'edr'"


def checkin(agent: Agent, answers: dict[int, list[dict[str, str]] | None]) -> dict[str, str]:
    """One read and one write; `answers` maps a policy id to rows (None: an error).

    Every other query the host is given is answered with no rows. Returns the queries."""
    queries: dict[str, str] = agent.post("distributed/read", {}).json()["queries"]
    rows: dict[str, Any] = {}
    statuses: dict[str, int] = {}
    messages: dict[str, str] = {}
    for name in queries:
        given: list[dict[str, str]] | None = []
        if name.startswith(PREFIX) and int(name[len(PREFIX) :]) in answers:
            given = answers[int(name[len(PREFIX) :])]
        rows[name] = given or []
        statuses[name] = 1 if given is None else 0
        messages[name] = "no such table: processes" if given is None else ""
    if queries:
        agent.post(
            "distributed/write", {"queries": rows, "statuses": statuses, "messages": messages}
        )
    return queries


def counts(api: httpx.Client, path: str) -> tuple[int, int, int]:
    policy = api.get(path).json()["policy"]
    return (
        policy["passing_host_count"],
        policy["failing_host_count"],
        policy["unknown_host_count"],
    )


def wait_counts(api: httpx.Client, path: str, wanted: tuple[int, int, int]) -> None:
    """The counts reach `wanted` within a second of the answer (the contract's bound)."""
    deadline = time.monotonic() + 1.0
    while counts(api, path) != wanted and time.monotonic() < deadline:
        time.sleep(0.02)
    assert counts(api, path) == wanted


def test_policy_dispatch_answers_counts_and_documents(
    live_server: RunningServer, admin_token: str
) -> None:
    auth = {"Authorization": f"Bearer {admin_token}"}
    with (
        httpx.Client(base_url=live_server.url, headers=auth) as api,
        httpx.Client(base_url=live_server.url) as agents_client,
    ):
        a, b, c = (Agent(agents_client, "test-enroll-secret", f"p{i}", f"pu{i}") for i in range(3))
        for agent in (a, b, c):
            agent.enroll()
        ids = {h["hostname"]: h["id"] for h in api.get("/api/v1/fleet/hosts").json()["hosts"]}
        made = api.post(
            "/api/v1/fleet/policies",
            json={"name": "EDR running", "query": EDR, "resolution": "install it", "interval": 1},
        )
        assert made.status_code == 201, made.text
        policy = made.json()["policy"]
        assert policy["query"] == EDR and policy["platform"] == "" and policy["interval"] == 1
        assert policy["updated_at"]
        path = f"/api/v1/fleet/policies/{policy['id']}"
        assert (
            policy["passing_host_count"],
            policy["failing_host_count"],
            policy["unknown_host_count"],
        ) == (0, 0, 3)
        name = f"{PREFIX}{policy['id']}"
        assert checkin(a, {policy["id"]: [{"1": "1"}]})[name] == EDR
        assert name in checkin(b, {policy["id"]: []})
        assert name in checkin(c, {policy["id"]: None})
        wait_counts(api, path, (1, 1, 1))
        # the latest answer of each host is a document continuous queries can watch
        doc = live_server.call(
            live_server.services.index.get(f"/fleet/policies/{policy['id']}/hosts/{ids['p2']}")
        )
        assert doc is not None and doc.kind == "fleet:policy-result"
        assert {k: doc.body[k] for k in ("policy_id", "host_id", "hostname", "team_id")} == {
            "policy_id": policy["id"],
            "host_id": ids["p2"],
            "hostname": "p2",
            "team_id": None,
        }
        assert doc.body["response"] == "" and "no such table" in doc.body["error"]
        # the host detail shows each policy's response
        detail = api.get(f"/api/v1/fleet/hosts/{ids['p0']}").json()["host"]
        assert [(p["id"], p["name"], p["response"]) for p in detail["policies"]] == [
            (policy["id"], "EDR running", "pass")
        ]
        by = {
            r: [
                h["hostname"]
                for h in api.get(f"{path}/hosts", params={"response": r}).json()["hosts"]
            ]
            for r in ("pass", "fail", "unknown")
        }
        assert by == {"pass": ["p0"], "fail": ["p1"], "unknown": ["p2"]}
        paged = api.get(f"{path}/hosts", params={"per_page": 2, "page": 1}).json()
        assert paged["count"] == 3 and [h["hostname"] for h in paged["hosts"]] == ["p2"]
        # answered within the interval: not asked again; after it, asked again
        assert name not in checkin(b, {})
        time.sleep(1.05)
        # host b flips fail -> pass -> fail, and the counts follow
        assert name in checkin(b, {policy["id"]: [{"1": "1"}]})
        wait_counts(api, path, (2, 0, 1))
        time.sleep(1.05)
        assert name in checkin(b, {policy["id"]: []})
        wait_counts(api, path, (1, 1, 1))
        # a changed query sets every host back to unknown and asks again at once
        changed = api.patch(path, json={"query": "SELECT 1 FROM processes WHERE name = 'edr2'"})
        assert changed.status_code == 200, changed.text
        assert counts(api, path) == (0, 0, 3)
        assert "edr2" in checkin(a, {policy["id"]: []})[name]
        wait_counts(api, path, (0, 1, 2))
        # deleting removes it, its results and their documents
        assert api.delete(path).status_code == 200
        assert api.get(path).status_code == 404
        assert name not in checkin(c, {})
        assert (
            live_server.call(
                live_server.services.index.get(f"/fleet/policies/{policy['id']}/hosts/{ids['p0']}")
            )
            is None
        )
        assert api.get(f"/api/v1/fleet/hosts/{ids['p0']}").json()["host"]["policies"] == []


def test_platforms_select_hosts(live_server: RunningServer, admin_token: str) -> None:
    auth = {"Authorization": f"Bearer {admin_token}"}
    with (
        httpx.Client(base_url=live_server.url, headers=auth) as api,
        httpx.Client(base_url=live_server.url) as agents_client,
    ):
        agent = Agent(agents_client, "test-enroll-secret", "w0", "wu0")
        agent.enroll()
        checkin(agent, {})  # the details and labels are answered
        darwin = api.post(
            "/api/v1/fleet/policies",
            json={"name": "mac only", "query": "SELECT 1", "platform": "darwin"},
        ).json()["policy"]
        assert darwin["unknown_host_count"] == 0  # the host is Ubuntu: not targeted
        linux = api.post(
            "/api/v1/fleet/policies",
            json={"name": "linux", "query": "SELECT 2", "platform": "linux,darwin"},
        ).json()["policy"]
        assert linux["platform"] == "darwin,linux" and linux["unknown_host_count"] == 1
        queries = checkin(agent, {})
        assert f"{PREFIX}{linux['id']}" in queries and f"{PREFIX}{darwin['id']}" not in queries


def test_a_new_or_changed_policy_wakes_a_held_read(server_settings: Settings) -> None:
    """A held distributed/read answers at once with the new (or changed) policy: without a
    wake-up it would end empty when its hold runs out (the queries are not looked up again)."""
    with running_server(server_settings.model_copy(update={"distributed_hold": 8.0})) as server:
        auth = {"Authorization": f"Bearer {login(server)}"}
        with (
            httpx.Client(base_url=server.url, headers=auth) as api,
            httpx.Client(base_url=server.url, timeout=30) as agents_client,
        ):
            agent = Agent(agents_client, "test-enroll-secret", "h0", "hu0")
            agent.enroll()
            checkin(agent, {})  # the details and labels are answered
            path = ""
            for change in ("create", "change"):
                with ThreadPoolExecutor(1) as pool:
                    # holds are spread over the clock: start the read when it is held long
                    [host] = server.services.hosts.all()
                    interval = host.distributed_interval or server.settings.distributed_interval
                    wait_for_long_hold(host.id, 8.0, interval, 0.5)
                    held = pool.submit(agent.post, "distributed/read", {})
                    deadline = time.monotonic() + 30
                    while server.services.wakeups.waiting == 0:
                        assert not held.done(), f"the read was not held: {held.result().text}"
                        assert time.monotonic() < deadline, "the read was never held"
                        time.sleep(0.01)
                    if change == "create":
                        made = api.post(
                            "/api/v1/fleet/policies", json={"name": "new", "query": "SELECT 1"}
                        ).json()["policy"]
                        path = f"/api/v1/fleet/policies/{made['id']}"
                    else:
                        api.patch(path, json={"query": "SELECT 2"})
                    queries = held.result(timeout=30).json()["queries"]
                assert list(queries.values()) == ["SELECT 1" if change == "create" else "SELECT 2"]
                name = next(iter(queries))
                agent.post("distributed/write", {"queries": {name: []}, "statuses": {name: 0}})
                # The answer is counted as it is stored, just after the write's reply: until
                # then the host's next read is offered the policy again and is not held.
                deadline = time.monotonic() + 30
                while api.get(path).json()["policy"]["failing_host_count"] != 1:
                    assert time.monotonic() < deadline, "the answer was never counted"
                    time.sleep(0.05)


def test_bad_input_is_refused_and_nothing_stored(
    live_server: RunningServer, admin_token: str
) -> None:
    auth = {"Authorization": f"Bearer {admin_token}"}
    with httpx.Client(base_url=live_server.url, headers=auth) as api:
        bad = {
            "empty SQL": {"name": "x", "query": "  "},
            "no SQL": {"name": "x"},
            "invalid SQL": {"name": "x", "query": "SELECT 1 FROM\nWHERE"},
            "a write": {"name": "x", "query": "DELETE FROM users"},
            "no name": {"query": "SELECT 1"},
            "unknown platform": {"name": "x", "query": "SELECT 1", "platform": "beos"},
            "interval under 1": {"name": "x", "query": "SELECT 1", "interval": 0},
        }
        for case, body in bad.items():
            reply = api.post("/api/v1/fleet/policies", json=body)
            assert reply.status_code == 400, (case, reply.text)
            assert reply.json()["error"], case
        invalid = api.post("/api/v1/fleet/policies", json=bad["invalid SQL"]).json()
        assert "syntax error" in invalid["error"] and invalid["line"] == 2
        assert (
            "beos"
            in api.post("/api/v1/fleet/policies", json=bad["unknown platform"]).json()["error"]
        )
        assert api.get("/api/v1/fleet/policies").json()["policies"] == []
        made = api.post("/api/v1/fleet/policies", json={"name": "ok", "query": "SELECT 1"})
        path = f"/api/v1/fleet/policies/{made.json()['policy']['id']}"
        assert made.json()["policy"]["interval"] == 3600
        assert api.patch(path, json={"interval": 0}).status_code == 400
        assert api.patch(path, json={"query": "SELEC 1"}).status_code == 400
        dup = api.post("/api/v1/fleet/policies", json={"name": "ok", "query": "SELECT 2"})
        assert dup.status_code == 409
        policy = api.get(path).json()["policy"]
        assert (policy["interval"], policy["query"]) == (3600, "SELECT 1")
        for url in ("ftp://example.com/x", "not a url", "file:///etc/passwd"):
            hook = api.post(f"{path}/webhooks", json={"url": url})
            assert hook.status_code == 400 and "http" in hook.json()["error"], url
        assert api.get(f"{path}/webhooks").json()["webhooks"] == []
        assert api.get("/api/v1/fleet/policies/999/hosts").status_code == 404
        assert api.get(f"{path}/hosts", params={"response": "maybe"}).status_code == 400


def test_team_policies_and_roles(live_server: RunningServer, admin_token: str) -> None:
    auth = {"Authorization": f"Bearer {admin_token}"}
    with (
        httpx.Client(base_url=live_server.url, headers=auth) as api,
        httpx.Client(base_url=live_server.url) as agents_client,
    ):
        team1 = api.post("/api/v1/fleet/teams", json={"name": "one"}).json()["team"]["id"]
        team2 = api.post("/api/v1/fleet/teams", json={"name": "two"}).json()["team"]["id"]
        secret = api.post(
            f"/api/v1/fleet/teams/{team1}/secrets", json={"secret": "team-one-enroll-secret"}
        )
        assert secret.status_code == 201, secret.text
        one = Agent(agents_client, "team-one-enroll-secret", "t1", "tu1")
        nobody = Agent(agents_client, "test-enroll-secret", "t0", "tu0")
        one.enroll()
        nobody.enroll()
        users = {}
        specs: dict[str, dict[str, Any]] = {
            "maintainer": {"global_role": "maintainer"},
            "observer": {"global_role": "observer"},
            "team_maintainer": {
                "global_role": None,
                "teams": [{"id": team1, "role": "maintainer"}],
            },
            "team_observer": {"global_role": None, "teams": [{"id": team1, "role": "observer"}]},
        }
        for role, spec in specs.items():
            email = f"{role}@example.com"
            made = api.post(
                "/api/v1/fleet/users", json={"email": email, "password": "user-password-1", **spec}
            )
            assert made.status_code == 201, made.text
            users[role] = httpx.Client(
                base_url=live_server.url,
                headers={"Authorization": f"Bearer {login(live_server, email, 'user-password-1')}"},
            )
        try:
            body = {"name": "team check", "query": "SELECT 1"}
            team_path = f"/api/v1/fleet/teams/{team1}/policies"
            assert users["team_observer"].post(team_path, json=body).status_code == 403
            assert users["observer"].post(team_path, json=body).status_code == 403
            assert (
                users["team_maintainer"].post("/api/v1/fleet/policies", json=body).status_code
                == 403
            )
            assert (
                users["team_maintainer"]
                .post(f"/api/v1/fleet/teams/{team2}/policies", json=body)
                .status_code
                == 404
            )
            made = users["team_maintainer"].post(team_path, json=body)
            assert made.status_code == 201, made.text
            policy = made.json()["policy"]
            assert policy["team_id"] == team1 and policy["unknown_host_count"] == 1
            glob = (
                users["maintainer"]
                .post("/api/v1/fleet/policies", json={"name": "global", "query": "SELECT 2"})
                .json()["policy"]
            )
            other = api.post(
                f"/api/v1/fleet/teams/{team2}/policies", json={"name": "two's", "query": "SELECT 3"}
            ).json()["policy"]
            # the team policy runs on the team's host only
            name = f"{PREFIX}{policy['id']}"
            assert name in checkin(one, {policy["id"]: []})
            assert name not in checkin(nobody, {})
            # a policy of another team is missing, for reads and writes, and nothing changes
            for client in (users["team_maintainer"], api):
                assert client.get(f"{team_path}/{other['id']}").status_code == 404
                assert (
                    client.patch(f"{team_path}/{other['id']}", json={"name": "x"}).status_code
                    == 404
                )
                assert client.delete(f"{team_path}/{other['id']}").status_code == 404
            assert (
                users["team_maintainer"].get(f"/api/v1/fleet/policies/{other['id']}").status_code
                == 404
            )
            assert (
                api.get(f"/api/v1/fleet/policies/{other['id']}").json()["policy"]["name"] == "two's"
            )
            # observers read; the team's users see global policies counted over their hosts
            listed = users["team_observer"].get(team_path).json()["policies"]
            assert [(p["name"], p["failing_host_count"]) for p in listed] == [("team check", 1)]
            seen = users["team_observer"].get("/api/v1/fleet/policies").json()["policies"]
            # both hosts answered it (no rows) at their check-ins; t0 is not the team's
            assert [(p["id"], p["failing_host_count"], p["unknown_host_count"]) for p in seen] == [
                (glob["id"], 1, 0)
            ]
            assert counts(api, f"/api/v1/fleet/policies/{glob['id']}") == (0, 2, 0)
            assert users["observer"].get(f"/api/v1/fleet/policies/{glob['id']}").status_code == 200
            assert (
                users["observer"]
                .patch(f"/api/v1/fleet/policies/{glob['id']}", json={"name": "y"})
                .status_code
                == 403
            )
            assert (
                users["team_maintainer"]
                .patch(f"/api/v1/fleet/policies/{glob['id']}", json={"name": "y"})
                .status_code
                == 403
            )
            fail_hosts = (
                users["team_observer"]
                .get(f"/api/v1/fleet/policies/{policy['id']}/hosts", params={"response": "fail"})
                .json()["hosts"]
            )
            assert [h["hostname"] for h in fail_hosts] == ["t1"]
            # an ordinary continuous query watches the results, team-scoped
            results_query = term("documentKind", "fleet:policy-result")
            direct = task_body(results_query, "EXPAND_CONTENT", direct=True)
            seen_docs = users["team_observer"].post(TASKS, json=direct).json()["results"]
            assert sorted(
                (d["hostname"], d["policy_id"], d["response"])
                for d in seen_docs["documents"].values()
            ) == sorted([("t1", policy["id"], "fail"), ("t1", glob["id"], "fail")])
            everything = api.post(TASKS, json=direct).json()["results"]
            assert everything["documentCount"] == 3  # a global admin: t0's answer too
            assert (
                users["team_maintainer"]
                .patch(f"{team_path}/{policy['id']}", json={"interval": 60})
                .json()["policy"]["interval"]
                == 60
            )
        finally:
            for client in users.values():
                client.close()
