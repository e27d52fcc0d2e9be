"""Destinations end to end over real sockets with agents, on SQLite and PostgreSQL: a campaign
naming destinations sends each stored row, as an event with its campaign, SQL, host, team,
row and change seq, to real local receivers speaking Splunk HEC, the Elasticsearch bulk API
and NDJSON, and to a rotated file; a saved query's destinations apply to its runs and a
re-run keeps them; GET /api/v1/fleet/destinations shows the state (admins and maintainers);
unknown names are 400 listing the known ones, with nothing created."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from fleetwatch.config import Settings
from fleetwatch.destinations import DestinationSettings
from tests.api.test_live_queries import Fleet, answer
from tests.conftest import login
from tests.receiver import BULK, HEC, NDJSON, Receiver, running_receiver
from tests.server import RunningServer, running_server


@pytest.fixture
def receivers() -> Iterator[tuple[Receiver, Receiver, Receiver]]:
    with (
        running_receiver(HEC) as hec,
        running_receiver(BULK) as bulk,
        running_receiver(NDJSON) as lines,
    ):
        yield hec, bulk, lines


@pytest.fixture
def dest_server(
    server_settings: Settings,
    tmp_path: Path,
    receivers: tuple[Receiver, Receiver, Receiver],
) -> Iterator[RunningServer]:
    hec, bulk, lines = receivers
    hec.authorization["siem"] = "Splunk hec-token"
    fast = {"interval": 0.05, "batch_size": 3}
    settings = server_settings.model_copy(
        update={
            "outbound_allow": "127.0.0.0/8",
            "destinations": {
                "siem": DestinationSettings(
                    type="splunk_hec",
                    url=hec.endpoint("siem"),
                    token="hec-token",
                    index="osquery",
                    **fast,
                ),
                "es": DestinationSettings(
                    type="elasticsearch", url=bulk.endpoint("es"), index="fleet", **fast
                ),
                "lines": DestinationSettings(type="http", url=lines.endpoint("lines"), **fast),
                "archive": DestinationSettings(
                    type="file", path=tmp_path / "archive" / "rows.log", **fast
                ),
            },
        }
    )
    with running_server(settings) as server:
        yield server


@pytest.fixture
def fleet(dest_server: RunningServer) -> Iterator[Fleet]:
    f = Fleet(dest_server, login(dest_server), 3)
    yield f
    f.close()


def rows(host: int, n: int) -> list[dict[str, str]]:
    return [{"pid": str(j), "host": f"host-{host}"} for j in range(n)]


def state(fleet: Fleet) -> dict[str, dict[str, Any]]:
    reply = fleet.api.get("/api/v1/fleet/destinations")
    assert reply.status_code == 200, reply.text
    return {d["name"]: d for d in reply.json()["destinations"]}


def test_campaign_rows_reach_every_named_destination(
    fleet: Fleet, receivers: tuple[Receiver, Receiver, Receiver], tmp_path: Path
) -> None:
    hec, bulk, lines = receivers
    reply = fleet.run(
        query="SELECT pid FROM processes",
        targets=[{"type": "all"}],
        destinations=["siem", "es", "lines", "archive"],
    )
    assert reply.status_code == 200, reply.text
    campaign = reply.json()["campaign"]
    assert campaign["destinations"] == ["siem", "es", "lines", "archive"]
    campaign_id = campaign["id"]
    for i, agent in enumerate(fleet.agents):
        answer(agent, campaign_id, rows(i, 2) if i < 2 else None, None if i < 2 else "no table")
    hosts = {h["hostname"]: h for h in fleet.hosts()}

    events = [e["event"] for e in hec.wait_records("siem", 4)]
    assert len(events) == 4  # the error answer has no rows: nothing to send
    for event in events:
        host = hosts[event["hostname"]]
        assert event["campaign_id"] == campaign_id and event["sql"] == "SELECT pid FROM processes"
        assert event["host_id"] == host["id"] and event["team_id"] == host["team_id"]
        assert event["row"] == {"pid": str(event["row_index"]), "host": event["hostname"]}
        assert isinstance(event["seq"], int) and event["seq"] > 0
    assert [hec_event["sourcetype"] for hec_event in hec.records("siem")] == [
        "fleetwatch:campaign"
    ] * 4
    # per host, rows in order; one seq per stored result
    by_host: dict[int, list[dict[str, Any]]] = {}
    for event in events:
        by_host.setdefault(event["host_id"], []).append(event)
    assert all([e["row_index"] for e in got] == [0, 1] for got in by_host.values())
    assert all(len({e["seq"] for e in got}) == 1 for got in by_host.values())

    bulk.wait_records("es", 4)
    documents = bulk.documents("es")
    assert sorted(documents) == sorted(
        f"{campaign_id}-{e['host_id']}-{e['row_index']}" for e in events
    )
    assert lines.wait_records("lines", 4) and sorted(
        (e["host_id"], e["row_index"]) for e in lines.records("lines")
    ) == sorted((e["host_id"], e["row_index"]) for e in events)
    archive = tmp_path / "archive" / "rows.log"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and (
        not archive.exists() or len(archive.read_text().splitlines()) < 4
    ):
        time.sleep(0.05)
    assert len([json.loads(line) for line in archive.read_text().splitlines()]) == 4

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(d["sent"] < 4 for d in state(fleet).values()):
        time.sleep(0.05)
    shown = state(fleet)
    assert sorted(shown) == ["archive", "es", "lines", "siem"]
    siem = shown["siem"]
    assert (siem["sent"], siem["queued"], siem["failed"], siem["dropped"]) == (4, 0, 0, 0)
    assert siem["type"] == "splunk_hec" and siem["index"] == "osquery"
    assert "hec-token" not in json.dumps(shown)  # tokens are never shown


def test_saved_query_destinations_and_reruns(
    fleet: Fleet, receivers: tuple[Receiver, Receiver, Receiver]
) -> None:
    _hec, _bulk, lines = receivers
    saved = fleet.api.post(
        "/api/v1/fleet/queries",
        json={"name": "procs", "query": "SELECT 1 AS one", "destinations": ["lines"]},
    )
    assert saved.status_code == 201, saved.text
    assert saved.json()["query"]["destinations"] == ["lines"]
    query_id = saved.json()["query"]["id"]
    run = fleet.run(query_id=query_id, targets=[{"type": "host", "id": fleet.ids[0]}])
    campaign_id = run.json()["campaign_id"]
    assert run.json()["campaign"]["destinations"] == ["lines"]
    answer(fleet.agents[0], campaign_id, [{"one": "1"}])
    [first] = lines.wait_records("lines", 1)
    assert (first["campaign_id"], first["query_id"], first["row"]) == (
        campaign_id,
        query_id,
        {"one": "1"},
    )
    # a run naming none sends nowhere; a re-run keeps the original's destinations
    quiet = fleet.run(query_id=query_id, targets=[{"type": "all"}], destinations=[])
    assert quiet.json()["campaign"]["destinations"] == []
    fleet.api.post(f"/api/v1/fleet/campaigns/{campaign_id}/stop")
    again = fleet.api.post(f"/api/v1/fleet/campaigns/{campaign_id}/rerun", json={"hosts": "all"})
    assert again.status_code == 201, again.text
    assert again.json()["campaign"]["destinations"] == ["lines"]


@pytest.mark.parametrize(
    "path, body",
    [
        ("/api/v1/fleet/queries/run", {"query": "SELECT 1", "targets": [{"type": "all"}]}),
        ("/api/v1/fleet/queries", {"name": "bad", "query": "SELECT 1"}),
    ],
)
def test_unknown_destinations_are_400_listing_the_known(
    fleet: Fleet, path: str, body: dict[str, Any]
) -> None:
    before = fleet.api.get("/api/v1/fleet/campaigns").json()["count"]
    queries = len(fleet.api.get("/api/v1/fleet/queries").json()["queries"])
    for wrong, said in (
        (["siem", "splunk"], "unknown destination 'splunk'"),
        ("siem", "must be a list of destination names"),
    ):
        reply = fleet.api.post(path, json={**body, "destinations": wrong})
        assert reply.status_code == 400, reply.text
        error = reply.json()["error"]
        assert said in error
        assert "the known destinations are archive, es, lines, siem" in error
    assert fleet.api.get("/api/v1/fleet/campaigns").json()["count"] == before
    assert len(fleet.api.get("/api/v1/fleet/queries").json()["queries"]) == queries


def test_a_server_without_destinations_says_so(live_server: RunningServer) -> None:
    token = login(live_server)
    with httpx.Client(
        base_url=live_server.url, headers={"Authorization": f"Bearer {token}"}
    ) as api:
        assert api.get("/api/v1/fleet/destinations").json() == {"destinations": []}
        reply = api.post(
            "/api/v1/fleet/queries/run",
            json={"query": "SELECT 1", "targets": [{"type": "all"}], "destinations": ["siem"]},
        )
        assert reply.status_code == 400
        assert "this server has no destinations" in reply.json()["error"]


def test_log_forwarding_lanes_are_not_campaign_destinations(
    server_settings: Settings, tmp_path: Path
) -> None:
    settings = server_settings.model_copy(
        update={
            "log_forward_dir": tmp_path / "forwarded",
            "destinations": {"archive": DestinationSettings(type="file", path=tmp_path / "a.log")},
        }
    )
    with (
        running_server(settings) as server,
        httpx.Client(
            base_url=server.url, headers={"Authorization": f"Bearer {login(server)}"}
        ) as api,
    ):
        reply = api.post(
            "/api/v1/fleet/queries/run",
            json={
                "query": "SELECT 1",
                "targets": [{"type": "all"}],
                "destinations": ["log_forward_dir"],
            },
        )
        assert reply.status_code == 400, reply.text
        error = reply.json()["error"]
        assert "unknown destination 'log_forward_dir'" in error
        assert "the known destinations are archive" in error
        shown = {d["name"]: d for d in api.get("/api/v1/fleet/destinations").json()["destinations"]}
        assert sorted(shown) == ["archive", "log_forward_dir"]  # both shown
        assert "cursor" in shown["archive"]  # it follows the change log for campaign rows
        assert "cursor" not in shown["log_forward_dir"]  # it follows nothing
    assert sorted(server.services.ops.destinations.followers) == ["archive"]
