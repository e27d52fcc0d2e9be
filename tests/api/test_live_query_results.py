"""Campaign results at scale over real sockets with agents, on SQLite and PostgreSQL:
cursor pages, ordering by osquery's stats, NDJSON and CSV exports, cost and cost limits."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
import pytest
from websockets.sync.client import connect

from tests.api.test_live_queries import Fleet, read, ws_messages, ws_url
from tests.conftest import login
from tests.server import RunningServer

Q = "fleet_distributed_query_"


@pytest.fixture
def fleet6(live_server: RunningServer, admin_token: str) -> Iterator[Fleet]:
    f = Fleet(live_server, admin_token, 6)
    yield f
    f.close()


def answer(fleet: Fleet, i: int, campaign_id: int, rows: int, stats: dict[str, Any]) -> None:
    name = f"{Q}{campaign_id}"
    body = {
        "queries": {name: [{"n": str(j), "host": f"host-{i}"} for j in range(rows)]},
        "statuses": {name: 0},
        "messages": {name: ""},
        "stats": {name: stats},
    }
    assert fleet.agents[i].post("distributed/write", body).json() == {}


def walk(fleet: Fleet | httpx.Client, campaign_id: int, **params: Any) -> list[dict[str, Any]]:
    """Every entry, page after page by cursor, as the fleet's admin (or another client)."""
    api = fleet.api if isinstance(fleet, Fleet) else fleet
    path = f"/api/v1/fleet/campaigns/{campaign_id}/results"
    seen: list[dict[str, Any]] = []
    after = None
    while True:
        query = {**params, **({"after": after} if after else {})}
        reply = api.get(path, params=query)
        assert reply.status_code == 200, reply.text
        body = reply.json()
        seen.extend(body["results"])
        after = body["next"]
        if after is None:
            return seen


@dataclass
class TeamReader:
    """A team maintainer of teams `teams[0]` and `teams[1]` (three hosts each, in `ids`
    order) with a campaign of their own on every host."""

    ids: list[int]
    teams: list[int]
    roles: list[dict[str, Any]]
    user_id: int
    token: str
    client: httpx.Client
    campaign_id: int


@contextmanager
def team_reader(fleet: Fleet, names: str = "ab") -> Iterator[TeamReader]:
    """Teams named by the letters of `names` (hosts 0-2 join the first, 3-5 the second, any
    further team stays empty), their maintainer logged in, and the campaign they started."""
    api = fleet.api
    by_name = {h["hostname"]: h["id"] for h in fleet.hosts()}
    ids = [by_name[f"host-{i}"] for i in range(6)]
    teams = [api.post("/api/v1/fleet/teams", json={"name": n}).json()["team"]["id"] for n in names]
    for team, hosts in ((teams[0], ids[:3]), (teams[1], ids[3:])):
        moved = api.post("/api/v1/fleet/hosts/transfer", json={"team_id": team, "hosts": hosts})
        assert moved.status_code == 200, moved.text
    roles = [{"id": teams[0], "role": "maintainer"}, {"id": teams[1], "role": "maintainer"}]
    made = api.post(
        "/api/v1/fleet/users",
        json={"email": "tm@example.com", "password": "user-password-1", "teams": roles},
    )
    assert made.status_code == 201, made.text
    token = login(fleet.server, "tm@example.com", "user-password-1")
    with httpx.Client(
        base_url=fleet.server.url, headers={"Authorization": f"Bearer {token}"}, timeout=30
    ) as client:
        started = client.post(
            "/api/v1/fleet/queries/run", json={"query": "SELECT 1", "targets": [{"type": "all"}]}
        )
        assert started.status_code == 200, started.text
        user_id, campaign_id = made.json()["user"]["id"], started.json()["campaign_id"]
        yield TeamReader(ids, teams, roles, user_id, token, client, campaign_id)


def test_results_page_by_cursor_sort_by_cost_and_export(fleet6: Fleet) -> None:
    reply = fleet6.run(query="SELECT 1", targets=[{"type": "all"}])
    campaign_id = reply.json()["campaign_id"]
    # osquery sends stats as numbers, or as strings
    walls = [40, 10, None, 30, 20]
    for i, wall in enumerate(walls):
        stats = {} if wall is None else {"wall_time_ms": str(wall), "memory": wall * 1024}
        stats.update({"user_time": 1, "system_time": "2"} if wall is not None else {})
        answer(fleet6, i, campaign_id, 2, stats)
    everyone = walk(fleet6, campaign_id, per_page=2)
    assert [r["host_id"] for r in everyone] == sorted(fleet6.ids)
    assert [r["status"] for r in everyone].count("pending") == 1
    assert everyone[0]["stats"] == {
        "wall_time_ms": 40,
        "user_time": 1,
        "system_time": 2,
        "memory": 40960,
    }
    slowest = walk(
        fleet6, campaign_id, per_page=2, order_key="wall_time_ms", order_direction="desc"
    )
    assert [r["stats"].get("wall_time_ms") for r in slowest] == [40, 30, 20, 10, None]
    smallest = walk(fleet6, campaign_id, per_page=3, order_key="memory")
    assert [r["stats"].get("memory") for r in smallest] == [10240, 20480, 30720, 40960, None]
    # numbered pages keep their contract
    paged = fleet6.api.get(
        f"/api/v1/fleet/campaigns/{campaign_id}/results", params={"page": 1, "per_page": 4}
    ).json()
    assert paged["count"] == 6 and paged["next"] is None
    assert [r["host_id"] for r in paged["results"]] == sorted(fleet6.ids)[4:]
    # the campaign's cost over its answers
    cost = fleet6.campaign(campaign_id)["cost"]
    assert cost["samples"] == 4
    assert cost["wall_time_ms"]["max"] == 40 and cost["memory"]["max"] == 40960
    assert 20 <= cost["wall_time_ms"]["p50"] <= 30 and cost["wall_time_ms"]["p95"] <= 40
    # NDJSON and CSV exports, streamed
    path = f"/api/v1/fleet/campaigns/{campaign_id}/results"
    ndjson = fleet6.api.get(path, params={"format": "ndjson"})
    assert ndjson.headers["content-type"].startswith("application/x-ndjson")
    lines = [orjson.loads(line) for line in ndjson.text.splitlines()]
    assert lines == everyone
    ordered = fleet6.api.get(path, params={"format": "ndjson", "order_key": "wall_time_ms"})
    assert [orjson.loads(x)["stats"].get("wall_time_ms") for x in ordered.text.splitlines()] == [
        10,
        20,
        30,
        40,
        None,
    ]
    exported = fleet6.api.get(path, params={"format": "csv"})
    records = list(csv.reader(io.StringIO(exported.text)))
    assert records[0] == ["host_id", "hostname", "status", "error", "n", "host"]
    assert len(records) == 1 + 5 * 2 + 1  # two rows per answer, one line for the pending host


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"order_key": "rows"}, "order_key must be one of"),
        ({"order_direction": "sideways"}, "order_direction must be asc or desc"),
        ({"after": "garbage"}, "after must be the `next` cursor"),
    ],
)
def test_bad_result_parameters_are_400(fleet6: Fleet, params: dict[str, str], message: str) -> None:
    campaign_id = fleet6.run(query="SELECT 1", targets=[{"type": "all"}]).json()["campaign_id"]
    reply = fleet6.api.get(f"/api/v1/fleet/campaigns/{campaign_id}/results", params=params)
    assert reply.status_code == 400 and message in reply.json()["error"], reply.text


@pytest.mark.parametrize("limit", [{"max_rows": 0}, {"max_bytes": -5}, {"max_rows": "10"}])
def test_non_positive_limits_are_400(fleet6: Fleet, limit: dict[str, Any]) -> None:
    reply = fleet6.run(query="SELECT 1", targets=[{"type": "all"}], **limit)
    assert reply.status_code == 400
    assert "must be a positive integer" in reply.json()["error"]
    assert fleet6.api.get("/api/v1/fleet/campaigns").json()["count"] == 0  # nothing started


def test_max_rows_caps_the_whole_campaign(fleet6: Fleet) -> None:
    reply = fleet6.run(query="SELECT 1", targets=[{"type": "all"}], max_rows=5)
    assert reply.status_code == 200, reply.text
    campaign_id = reply.json()["campaign_id"]
    assert reply.json()["campaign"]["limits"]["max_rows"] == 5
    name = f"{Q}{campaign_id}"
    assert name in read(fleet6.agents[2])  # host-2 has the query before the limit
    answer(fleet6, 0, campaign_id, 3, {"wall_time_ms": 1})
    answer(fleet6, 1, campaign_id, 3, {"wall_time_ms": 2})  # 2 of 3 stored: limit reached
    # no host is asked any more
    for agent in fleet6.agents[3:]:
        assert name not in read(agent)
    # an answer already on its way is counted, not stored
    answer(fleet6, 2, campaign_id, 4, {"wall_time_ms": 3})
    campaign = fleet6.campaign(campaign_id)
    assert campaign["truncated"] is True and campaign["truncated_reason"] == "max_rows"
    assert campaign["totals"]["responded"] == 3 and campaign["totals"]["rows"] == 5
    assert campaign["cost"]["wall_time_ms"]["max"] == 3
    by_host = {r["hostname"]: r for r in walk(fleet6, campaign_id)}
    assert (len(by_host["host-1"]["rows"]), by_host["host-1"]["truncated_reason"]) == (
        2,
        "max_rows",
    )
    assert by_host["host-2"]["rows"] == [] and by_host["host-2"]["rows_count"] == 4
    assert by_host["host-2"]["truncated_reason"] == "max_rows"


def test_a_team_user_reads_only_their_teams_hosts_results_by_their_roles_now(
    fleet6: Fleet, admin_token: str
) -> None:
    """Pages (by host and by a stat), exports and a cursor given out before the reader's
    teams changed: entries of hosts outside the reader's teams are left out, an answer by
    the team its host had when it answered, an unanswered host by its team now."""
    api = fleet6.api
    with team_reader(fleet6) as tr:
        ids, team_a, both = tr.ids, tr.teams[0], tr.roles
        user_id, reader, campaign_id = tr.user_id, tr.client, tr.campaign_id
        for i in (0, 1, 3, 4):  # hosts 2 and 5 stay pending
            answer(fleet6, i, campaign_id, 1, {"wall_time_ms": 10 * (i + 1)})
        path = f"/api/v1/fleet/campaigns/{campaign_id}/results"
        assert [r["host_id"] for r in walk(reader, campaign_id, per_page=2)] == ids
        first = reader.get(path, params={"per_page": 2}).json()
        assert [r["host_id"] for r in first["results"]] == ids[:2] and first["next"]

        # the reader is now on team B only
        changed = api.patch(f"/api/v1/fleet/users/{user_id}", json={"teams": both[1:]})
        assert changed.status_code == 200, changed.text
        # the old cursor goes on under the new scope: no host of team A after it
        rest = reader.get(path, params={"per_page": 2, "after": first["next"]}).json()
        seen = [r["host_id"] for r in rest["results"]]
        while rest["next"]:
            rest = reader.get(path, params={"per_page": 2, "after": rest["next"]}).json()
            seen += [r["host_id"] for r in rest["results"]]
        assert seen == ids[3:]
        assert [r["host_id"] for r in walk(reader, campaign_id, per_page=2)] == ids[3:]
        by_cost = walk(reader, campaign_id, per_page=1, order_key="wall_time_ms")
        assert [r["host_id"] for r in by_cost] == [ids[3], ids[4]]
        ndjson = reader.get(path, params={"format": "ndjson"}).text.splitlines()
        assert [orjson.loads(line)["host_id"] for line in ndjson] == ids[3:]
        records = list(csv.reader(io.StringIO(reader.get(path, params={"format": "csv"}).text)))
        assert sorted({int(r[0]) for r in records[1:]}) == ids[3:]

        # host 3 (answered in team B) and host 5 (pending) move to team A
        api.post(
            "/api/v1/fleet/hosts/transfer", json={"team_id": team_a, "hosts": [ids[3], ids[5]]}
        )
        assert [r["host_id"] for r in walk(reader, campaign_id, per_page=10)] == ids[3:5]
        # a global admin reads every host's entry
        assert [r["host_id"] for r in walk(fleet6, campaign_id, per_page=4)] == ids


def _results(messages: list[dict[str, Any]]) -> list[int]:
    return [m["data"]["host_id"] for m in messages if m["type"] == "result"]


def test_a_team_user_streams_only_their_teams_hosts_answers_by_their_roles_now(
    fleet6: Fleet,
) -> None:
    """The SSE and WebSocket streams scope results as the REST reads do: an answer by the
    team its host had when it answered (a host moved out of the reader's teams before
    answering is left out, in the initial results and live), and by the reader's roles at
    each batch (a team the reader lost stops streaming); totals and status are unchanged."""
    api = fleet6.api

    def transfer(team: int, hosts: list[int]) -> None:
        moved = api.post("/api/v1/fleet/hosts/transfer", json={"team_id": team, "hosts": hosts})
        assert moved.status_code == 200, moved.text

    with team_reader(fleet6, "abc") as tr:
        ids, team_c, both, token = tr.ids, tr.teams[2], tr.roles, tr.token
        user_id, reader, campaign_id = tr.user_id, tr.client, tr.campaign_id
        transfer(team_c, [ids[2]])  # host 2 leaves the reader's teams before answering
        for i in (0, 2, 3):
            answer(fleet6, i, campaign_id, 1, {"wall_time_ms": 1})

        # the initial results, on both streams: host 2's answer (team C) is left out
        url = ws_url(fleet6.server, f"campaign_id={campaign_id}&token={token}")
        with connect(url) as socket:
            initial = ws_messages(socket, "current")
        assert _results(initial) == [ids[0], ids[3]]
        assert initial[0]["type"] == "totals" and initial[0]["data"]["responded"] == 3

        # live on SSE: host 5 moves to team C, then it and host 4 (team B) answer
        path = f"/api/v1/fleet/campaigns/{campaign_id}/events"
        events: list[dict[str, Any]] = []
        with reader.stream("GET", path) as response:
            assert response.status_code == 200
            for line in response.iter_lines():
                if not line.startswith("data: "):
                    continue
                events.append(json.loads(line[6:]))
                if events[-1]["type"] == "current":
                    transfer(team_c, [ids[5]])
                    answer(fleet6, 5, campaign_id, 1, {"wall_time_ms": 1})
                    answer(fleet6, 4, campaign_id, 1, {"wall_time_ms": 1})
                if ids[4] in _results(events):
                    break
        assert _results(events) == [ids[0], ids[3], ids[4]]  # never host 5's

        # live on the WebSocket: the reader loses team A, then host 1 (team A) answers last
        with connect(url) as socket:
            assert _results(ws_messages(socket, "current")) == [ids[0], ids[3], ids[4]]
            changed = api.patch(f"/api/v1/fleet/users/{user_id}", json={"teams": both[1:]})
            assert changed.status_code == 200, changed.text
            answer(fleet6, 1, campaign_id, 1, {"wall_time_ms": 1})
            rest = ws_messages(socket, "status")
        assert _results(rest) == []  # host 1's answer is not streamed
        assert rest[-1]["data"]["status"] == "finished"
        totals = [m for m in rest if m["type"] == "totals"]
        assert totals and totals[-1]["data"]["responded"] == 6  # totals stay the campaign's

        # the streams and the REST reads agree: team B's answers only
        assert [r["host_id"] for r in walk(reader, campaign_id)] == [ids[3], ids[4]]
        with reader.stream("GET", path) as response:
            again: list[dict[str, Any]] = []
            for line in response.iter_lines():
                if line.startswith("data: "):
                    again.append(json.loads(line[6:]))
                    if again[-1]["type"] == "current":
                        break
        assert _results(again) == [ids[3], ids[4]]
