"""Re-runs and diffs of campaigns end to end over real sockets with agents, on SQLite and
PostgreSQL (the history list and canary runs are in test_live_queries.py, beside the run)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.api.test_live_queries import Fleet, answer, read
from tests.conftest import login
from tests.server import RunningServer


@pytest.fixture
def fleet(live_server: RunningServer, admin_token: str) -> Iterator[Fleet]:
    f = Fleet(live_server, admin_token, 3)
    yield f
    f.close()


def finished(fleet: Fleet, campaign_id: int) -> dict[str, Any]:
    """Wait until the campaign is no longer running; return it."""
    deadline = time.monotonic() + 20
    while (campaign := fleet.campaign(campaign_id))["status"] == "running":
        assert time.monotonic() < deadline, campaign
        time.sleep(0.1)
    return campaign


def rerun(fleet: Fleet, campaign_id: int, **body: Any) -> httpx.Response:
    return fleet.api.post(f"/api/v1/fleet/campaigns/{campaign_id}/rerun", json=body)


def asked(fleet: Fleet, campaign_id: int) -> list[str]:
    """The hostnames whose next distributed/read carries the campaign's query."""
    name = f"fleet_distributed_query_{campaign_id}"
    return [a.hostname for a in fleet.agents if name in read(a)]


def other_user(fleet: Fleet, role: str = "maintainer") -> httpx.Client:
    email = f"{role}-{time.monotonic_ns()}@example.com"
    made = fleet.api.post(
        "/api/v1/fleet/users",
        json={"email": email, "password": "user-password-1", "global_role": role},
    )
    assert made.status_code == 201, made.text
    token = login(fleet.server, email, "user-password-1")
    return httpx.Client(
        base_url=fleet.server.url, headers={"Authorization": f"Bearer {token}"}, timeout=30
    )


def test_rerun_asks_exactly_the_chosen_subset(fleet: Fleet) -> None:
    ids = {a.hostname: i for a, i in zip(fleet.agents, fleet.ids, strict=True)}
    first = fleet.run(query="SELECT 1 AS one", targets=[{"type": "all"}], timeout=1)
    campaign_id = first.json()["campaign_id"]
    assert first.json()["campaign"]["rerun_of"] is None
    # still running: its non-responders are not known yet; nothing is started
    before = fleet.api.get("/api/v1/fleet/campaigns").json()["count"]
    early = rerun(fleet, campaign_id, hosts="non_responders")
    assert early.status_code == 409 and "still running" in early.json()["error"]
    assert "POST /api/v1/fleet/campaigns" in early.json()["error"]  # says what to do instead
    assert fleet.api.get("/api/v1/fleet/campaigns").json()["count"] == before
    answer(fleet.agents[0], campaign_id, [{"one": "1"}])
    answer(fleet.agents[1], campaign_id, error="no such table")
    assert finished(fleet, campaign_id)["status"] == "expired"

    again = rerun(fleet, campaign_id, hosts="non_responders")
    assert again.status_code == 201, again.text
    body = again.json()
    assert body["campaign"]["rerun_of"] == campaign_id
    assert body["campaign"]["query"] == "SELECT 1 AS one"
    assert body["campaign"]["targets"]["hosts"] == [ids["host-2"]]
    assert body["campaign"]["totals"]["targeted"] == 1
    assert body["campaign_id"] == body["campaign"]["id"]
    assert asked(fleet, body["campaign_id"]) == ["host-2"]
    assert fleet.campaign(body["campaign_id"])["rerun_of"] == campaign_id

    failed = rerun(fleet, campaign_id, hosts="failed").json()["campaign"]
    assert failed["targets"]["hosts"] == [ids["host-1"]]
    assert asked(fleet, failed["id"]) == ["host-1"]
    everyone = rerun(fleet, campaign_id, hosts="all").json()["campaign"]
    assert everyone["totals"]["targeted"] == 3
    assert asked(fleet, everyone["id"]) == ["host-0", "host-1", "host-2"]
    activity = fleet.api.get("/api/v1/fleet/activities").json()["activities"][0]
    assert activity["details"]["rerun_of"] == campaign_id
    assert activity["details"]["hosts"] == "all"


def test_rerun_bad_input_changes_nothing(fleet: Fleet) -> None:
    done = fleet.run(query="SELECT 2", targets=[{"type": "all"}], timeout=20)
    campaign_id = done.json()["campaign_id"]
    for agent in fleet.agents:
        answer(agent, campaign_id, [{"two": "2"}])
    assert finished(fleet, campaign_id)["status"] == "finished"
    before = fleet.api.get("/api/v1/fleet/campaigns").json()["count"]
    cases: list[tuple[dict[str, Any], int, str]] = [
        ({"hosts": "non_responders"}, 400, "no targets that did not answer"),
        ({"hosts": "failed"}, 400, "no targets that answered with an error"),
        ({"hosts": "remaining"}, 400, "was not a sample"),
        ({"hosts": "some"}, 400, "hosts must be one of non_responders, failed, all, remaining"),
        ({}, 400, "hosts must be one of"),
        ({"hosts": "all", "timeout": 0}, 400, "timeout must be greater than 0"),
        ({"hosts": "all", "queue_offline": "no"}, 400, "queue_offline"),
        ({"hosts": "all", "max_rows": 0}, 400, "max_rows must be a positive integer"),
        ({"hosts": "all", "max_bytes": -1}, 400, "max_bytes must be a positive integer"),
        ({"hosts": "all", "max_rows": "5"}, 400, "max_rows must be a positive integer"),
        ({"hosts": "all", "destinations": ["siem"]}, 400, "unknown destination 'siem'"),
    ]
    for body, status, message in cases:
        reply = rerun(fleet, campaign_id, **body)
        assert reply.status_code == status, (body, reply.text)
        assert message in reply.json()["error"], (body, reply.text)
    missing = rerun(fleet, 424242, hosts="all")
    assert missing.status_code == 404 and "no campaign with id 424242" in missing.json()["error"]
    assert fleet.api.get("/api/v1/fleet/campaigns").json()["count"] == before
    # a host deleted since is left out; when none is left, the answer says so
    for host_id in fleet.ids:
        assert fleet.api.delete(f"/api/v1/fleet/hosts/{host_id}").status_code == 200
    gone = rerun(fleet, campaign_id, hosts="all")
    assert gone.status_code == 400 and "3 no longer exist" in gone.json()["error"]


def test_a_campaign_the_user_cannot_see_is_404_to_rerun_and_diff(fleet: Fleet) -> None:
    campaign_id = fleet.run(query="SELECT 3", targets=[{"type": "all"}], timeout=0.5).json()[
        "campaign_id"
    ]
    finished(fleet, campaign_id)
    with other_user(fleet) as maintainer:
        own = maintainer.post(
            "/api/v1/fleet/queries/run",
            json={"query": "SELECT 3", "targets": [{"type": "all"}], "timeout": 0.5},
        ).json()["campaign_id"]
        finished(fleet, own)
        for reply in (
            maintainer.post(f"/api/v1/fleet/campaigns/{campaign_id}/rerun", json={"hosts": "all"}),
            maintainer.get(f"/api/v1/fleet/campaigns/{campaign_id}/diff?against={own}"),
            maintainer.get(f"/api/v1/fleet/campaigns/{own}/diff?against={campaign_id}"),
        ):
            assert reply.status_code == 404, reply.text
            assert reply.json() == {"error": f"no campaign with id {campaign_id}"}
        mine = maintainer.post(f"/api/v1/fleet/campaigns/{own}/rerun", json={"hosts": "all"})
        assert mine.status_code == 201, mine.text
        assert mine.json()["campaign"]["user_id"] != fleet.campaign(campaign_id)["user_id"]
    # a global admin sees every campaign
    assert fleet.api.get(f"/api/v1/fleet/campaigns/{own}/diff?against={campaign_id}").is_success


def test_diff_of_two_runs_host_by_host(fleet: Fleet) -> None:
    h0, h1, h2 = fleet.ids
    sql = "SELECT name, pid FROM processes"
    yesterday = fleet.run(query=sql, targets=[{"type": "all"}], timeout=1).json()["campaign_id"]
    answer(fleet.agents[0], yesterday, [{"name": "sshd", "pid": "1"}, {"name": "cron", "pid": "2"}])
    answer(fleet.agents[1], yesterday, [{"name": "sshd", "pid": "1"}])
    answer(fleet.agents[2], yesterday, error="osquery crashed")
    finished(fleet, yesterday)
    today = fleet.run(query=sql, targets=[{"type": "all"}], timeout=1).json()["campaign_id"]
    miner = {"name": "miner", "pid": "9"}
    answer(fleet.agents[0], today, [{"name": "sshd", "pid": "1"}, miner, miner])
    answer(fleet.agents[1], today, [{"pid": "1", "name": "sshd"}])  # same row, keys reordered
    answer(fleet.agents[2], today, [{"name": "init", "pid": "0"}])
    finished(fleet, today)

    reply = fleet.api.get(f"/api/v1/fleet/campaigns/{today}/diff", params={"against": yesterday})
    assert reply.status_code == 200, reply.text
    assert reply.json() == {
        "hosts": [
            {
                "host_id": h0,
                "hostname": "host-0",
                "added": [{"name": "miner", "pid": "9"}, {"name": "miner", "pid": "9"}],
                "removed": [{"name": "cron", "pid": "2"}],
            }
        ],
        # host-2 answered yesterday with an error: it has rows only today
        "only_in_campaign": [h2],
        "only_in_other": [],
    }
    back = fleet.api.get(f"/api/v1/fleet/campaigns/{yesterday}/diff?against={today}").json()
    assert back["hosts"][0]["added"] == [{"name": "cron", "pid": "2"}]
    assert (back["only_in_campaign"], back["only_in_other"]) == ([], [h2])
    assert h1 not in [h["host_id"] for h in back["hosts"]]

    other_sql = fleet.run(query="SELECT 1", targets=[{"type": "all"}], timeout=0.5).json()
    different = fleet.api.get(
        f"/api/v1/fleet/campaigns/{today}/diff", params={"against": other_sql["campaign_id"]}
    )
    assert different.status_code == 400 and "ran different SQL" in different.json()["error"]
    missing = fleet.api.get(f"/api/v1/fleet/campaigns/{today}/diff")
    assert missing.status_code == 400 and "against" in missing.json()["error"]
    unknown = fleet.api.get(f"/api/v1/fleet/campaigns/{today}/diff?against=424242")
    assert unknown.status_code == 404
