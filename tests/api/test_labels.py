"""Labels end to end: built-ins, dynamic labels answered by hosts, manual labels, targeting,
membership on hosts and in fleet:host documents, and the bad cases."""

from __future__ import annotations

from typing import Any

import httpx

from tests.agent import Agent
from tests.server import RunningServer


def checkin(agent: Agent, answers: dict[str, list[dict[str, str]] | None]) -> dict[str, str]:
    """One read and one write; `answers` maps a query-name prefix to rows (None: fail)."""
    queries: dict[str, str] = agent.post("distributed/read", {}).json()["queries"]
    rows: dict[str, Any] = {}
    statuses: dict[str, int] = {}
    messages: dict[str, str] = {}
    for name in queries:
        answer: list[dict[str, str]] | None = []
        for prefix, given in answers.items():
            if name.startswith(prefix):
                answer = given
        rows[name] = answer or []
        statuses[name] = 1 if answer is None else 0
        messages[name] = "no such table: x" if answer is None else ""
    if queries:
        agent.post(
            "distributed/write", {"queries": rows, "statuses": statuses, "messages": messages}
        )
    return queries


def test_builtin_and_dynamic_labels(live_server: RunningServer, admin_token: str) -> None:
    auth = {"Authorization": f"Bearer {admin_token}"}
    with (
        httpx.Client(base_url=live_server.url, headers=auth) as api,
        httpx.Client(base_url=live_server.url) as agents_client,
    ):
        builtins = {lab["name"]: lab for lab in api.get("/api/v1/fleet/labels").json()["labels"]}
        assert {"All Hosts", "macOS", "MS Windows", "Ubuntu Linux", "All Linux"} <= set(builtins)
        assert all(lab["label_type"] == "builtin" for lab in builtins.values())
        bad = api.post("/api/v1/fleet/labels", json={"name": "x", "query": "SELEC 1"})
        assert bad.status_code == 400 and "syntax error" in bad.json()["error"]
        deep = "SELECT 1 WHERE " + "(" * 500 + "1" + ")" * 500
        nested = api.post("/api/v1/fleet/labels", json={"name": "x", "query": deep})
        assert nested.status_code == 400 and "too deeply" in nested.json()["error"]
        created = api.post(
            "/api/v1/fleet/labels",
            json={"name": "has sshd", "query": "SELECT 1 FROM processes WHERE name = 'sshd'"},
        )
        assert created.status_code == 201, created.text
        label = created.json()["label"]
        assert label["label_membership_type"] == "dynamic" and label["host_count"] == 0
        a, b, c = (Agent(agents_client, "test-enroll-secret", f"l{i}", f"lu{i}") for i in range(3))
        for agent in (a, b, c):
            agent.enroll()
        name = f"fleet_label_query_{label['id']}"
        # a new host gets every label query, the new label's among them, at once
        assert name in checkin(a, {name: [{"1": "1"}], "fleet_label_query_": [{"1": "1"}]})
        checkin(b, {name: []})
        checkin(c, {name: None})  # failed: membership unknown, not false
        assert api.get(f"/api/v1/fleet/labels/{label['id']}").json()["label"]["host_count"] == 1
        members = api.get(f"/api/v1/fleet/labels/{label['id']}/hosts").json()["hosts"]
        assert [h["hostname"] for h in members] == ["l0"]
        hosts = {h["hostname"]: h for h in api.get("/api/v1/fleet/hosts").json()["hosts"]}
        assert {"id": label["id"], "name": "has sshd"} in hosts["l0"]["labels"]
        assert all(lab["name"] != "has sshd" for lab in hosts["l1"]["labels"])
        # the host's document carries its labels, so a continuous query can watch them
        host_doc = live_server.call(
            live_server.services.index.get(f"/fleet/hosts/{hosts['l0']['id']}")
        )
        assert host_doc is not None
        assert {"id": label["id"], "name": "has sshd"} in host_doc.body["labels"]
        # label queries are not sent again until the label interval passes
        assert not any(n.startswith("fleet_label_query_") for n in checkin(a, {}))
        # targeting the label selects its members
        run = api.post(
            "/api/v1/fleet/queries/run",
            json={"query": "SELECT 1", "targets": [{"type": "label", "id": label["id"]}]},
        )
        assert run.json()["campaign"]["totals"]["targeted"] == 1
        empty = api.post(
            "/api/v1/fleet/labels", json={"name": "nobody", "query": "SELECT 1 WHERE 0"}
        ).json()["label"]
        zero = api.post(
            "/api/v1/fleet/queries/run",
            json={"query": "SELECT 1", "targets": [{"type": "label", "id": empty["id"]}]},
        )
        assert zero.status_code == 400 and "select no hosts" in zero.json()["error"]
        # deleting a label used by a running campaign leaves the campaign its hosts
        campaign_id = run.json()["campaign_id"]
        assert api.delete(f"/api/v1/fleet/labels/{label['id']}").status_code == 200
        assert (
            api.get(f"/api/v1/fleet/campaigns/{campaign_id}").json()["campaign"]["totals"][
                "targeted"
            ]
            == 1
        )
        assert f"fleet_distributed_query_{campaign_id}" in checkin(a, {})
        assert api.get(f"/api/v1/fleet/labels/{label['id']}").status_code == 404
        # built-ins cannot be changed
        all_hosts = builtins["All Hosts"]["id"]
        assert api.delete(f"/api/v1/fleet/labels/{all_hosts}").status_code == 400
        assert api.patch(f"/api/v1/fleet/labels/{all_hosts}", json={"name": "x"}).status_code == 400


def test_manual_labels(live_server: RunningServer, admin_token: str) -> None:
    auth = {"Authorization": f"Bearer {admin_token}"}
    with (
        httpx.Client(base_url=live_server.url, headers=auth) as api,
        httpx.Client(base_url=live_server.url) as agents_client,
    ):
        for i in range(3):
            Agent(agents_client, "test-enroll-secret", f"m{i}", f"mu{i}").enroll()
        ids = [h["id"] for h in api.get("/api/v1/fleet/hosts").json()["hosts"]]
        made = api.post("/api/v1/fleet/labels", json={"name": "pets", "hosts": ids[:2]})
        assert made.status_code == 201, made.text
        label = made.json()["label"]
        assert label["label_membership_type"] == "manual" and label["host_count"] == 2
        changed = api.patch(f"/api/v1/fleet/labels/{label['id']}", json={"hosts": [ids[2]]})
        assert changed.json()["label"]["host_count"] == 1
        unknown = api.patch(f"/api/v1/fleet/labels/{label['id']}", json={"hosts": [9999]})
        assert unknown.status_code == 400 and "no host with id 9999" in unknown.json()["error"]
        dup = api.post("/api/v1/fleet/labels", json={"name": "pets", "hosts": []})
        assert dup.status_code == 409
        both = api.post(
            "/api/v1/fleet/labels", json={"name": "odd", "hosts": [], "query": "SELECT 1"}
        )
        assert both.status_code == 400
        assert (
            api.post(
                "/api/v1/fleet/labels", json={"name": "p", "query": "SELECT 1", "platform": "beos"}
            ).status_code
            == 400
        )
