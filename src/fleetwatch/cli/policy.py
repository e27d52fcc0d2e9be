"""`fleetwatch policy list|create|show`: policies and their counts from the command line.

`--watch` keeps the output current: it runs a continuous query over the policies'
`fleet:policy-result` documents (the same engine as `fleetwatch watch`) and prints the
counts again each time an answer changes, instead of polling.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import typer
from rich.console import Console
from rich.table import Table

from fleetwatch.cli.api_client import CaFileOpt, ServerOpt, TokenOpt, api_client, fail, request
from fleetwatch.cli.root import app

policy_app = typer.Typer(
    help="Policies: yes/no questions every host answers.", no_args_is_help=True
)
app.add_typer(policy_app, name="policy")

TeamOpt = typer.Option(None, "--team", help="A team's policies (team id) instead of global ones.")
WatchOpt = typer.Option(False, "--watch", help="Keep printing the counts as answers change.")
JsonOpt = typer.Option(False, "--json", help="Print JSON instead of a table.")


def _base(team: int | None) -> str:
    return "/api/v1/fleet/policies" if team is None else f"/api/v1/fleet/teams/{team}/policies"


def _counts(policy: dict[str, Any]) -> str:
    return (
        f"pass {policy['passing_host_count']}  fail {policy['failing_host_count']}  "
        f"unknown {policy['unknown_host_count']}"
    )


def _print_list(console: Console, policies: list[dict[str, Any]], as_json: bool) -> None:
    if as_json:
        print(json.dumps(policies), flush=True)
        return
    table = Table(show_edge=False)
    for column in ("id", "name", "platform", "interval", "pass", "fail", "unknown"):
        table.add_column(column)
    for p in policies:
        table.add_row(
            str(p["id"]),
            p["name"],
            p["platform"] or "all",
            f"{p['interval']}s",
            str(p["passing_host_count"]),
            str(p["failing_host_count"]),
            str(p["unknown_host_count"]),
        )
    console.print(table)


def _print_policy(
    console: Console, policy: dict[str, Any], failing: list[dict[str, Any]], as_json: bool
) -> None:
    if as_json:
        print(json.dumps({"policy": policy, "failing_hosts": failing}), flush=True)
        return
    console.print(
        f"[bold]{policy['id']} {policy['name']}[/bold]  {_counts(policy)}", highlight=False
    )
    console.print(f"  query: {policy['query']}", highlight=False, markup=False)
    if policy.get("resolution"):
        console.print(f"  resolution: {policy['resolution']}", highlight=False, markup=False)
    names = ", ".join(h["hostname"] for h in failing) or "none"
    console.print(f"  failing hosts: {names}", highlight=False, markup=False)


def _changes(client: httpx.Client, policy_id: int | None) -> Iterator[None]:
    """Yields once now and once after every change of the watched results (a continuous
    query over `fleet:policy-result`, deleted when the command ends)."""
    clauses: list[dict[str, Any]] = [
        {
            "occurance": "MUST_OCCUR",
            "term": {"propertyName": "documentKind", "matchValue": "fleet:policy-result"},
        }
    ]
    if policy_id is not None:
        clauses.append(
            {
                "occurance": "MUST_OCCUR",
                "term": {"propertyName": "policy_id", "matchValue": str(policy_id)},
            }
        )
    body = {
        "taskInfo": {"isDirect": False},
        "querySpec": {
            "query": {"occurance": "MUST_OCCUR", "booleanClauses": clauses},
            "options": ["CONTINUOUS", "CONTINUOUS_STOP_MATCH", "COUNT"],
        },
    }
    task = request(client, "POST", "/core/local-query-tasks", json=body)
    link = str(task["documentSelfLink"])
    try:
        yield None
        since: int | None = None
        while True:
            params = {} if since is None else {"since": since}
            with client.stream("GET", f"{link}/events", params=params) as response:
                if response.status_code >= 400:
                    response.read()
                    raise fail(f"cannot watch: HTTP {response.status_code}: {response.text[:200]}")
                for line in response.iter_lines():
                    if not line.startswith("data: "):
                        continue
                    message = json.loads(line[6:])
                    kind = message.get("type")
                    if "seq" in message:
                        since = int(message["seq"])
                    if kind == "change":
                        yield None
                    elif kind == "closed":
                        return
    finally:
        try:
            client.delete(link)
        except httpx.HTTPError:
            pass


@policy_app.command("list")
def list_policies(
    team: int | None = TeamOpt,
    watch: bool = WatchOpt,
    as_json: bool = JsonOpt,
    server: str | None = ServerOpt,
    token: str | None = TokenOpt,
    ca_file: str | None = CaFileOpt,
) -> None:
    """List policies with their passing, failing and unknown host counts."""
    client = api_client(server, token, ca_file)
    console = Console()
    try:
        updates = _changes(client, None) if watch else iter([None])
        for _ in updates:
            _print_list(console, request(client, "GET", _base(team))["policies"], as_json)
    except KeyboardInterrupt:
        pass
    finally:
        client.close()


@policy_app.command("create")
def create_policy(
    name: str = typer.Option(..., "--name", help="What the policy checks."),
    query: str = typer.Option(..., "--query", help="SQL: a row means the host passes."),
    description: str | None = typer.Option(None, "--description"),
    resolution: str | None = typer.Option(None, "--resolution", help="How to fix a failing host."),
    platform: str | None = typer.Option(
        None, "--platform", help="darwin, windows, linux (comma-separated); all by default."
    ),
    interval: int | None = typer.Option(
        None, "--interval", help="Seconds between a host's runs (default 3600)."
    ),
    team: int | None = TeamOpt,
    as_json: bool = JsonOpt,
    server: str | None = ServerOpt,
    token: str | None = TokenOpt,
    ca_file: str | None = CaFileOpt,
) -> None:
    """Create a policy; every host it applies to answers it at its next check-in."""
    body = {
        "name": name,
        "query": query,
        "description": description,
        "resolution": resolution,
        "platform": platform,
        "interval": interval,
    }
    client = api_client(server, token, ca_file)
    try:
        made = request(
            client, "POST", _base(team), json={k: v for k, v in body.items() if v is not None}
        )
    finally:
        client.close()
    policy = made["policy"]
    if as_json:
        print(json.dumps(policy), flush=True)
    else:
        typer.echo(f"created policy {policy['id']} {policy['name']}")


@policy_app.command("show")
def show_policy(
    policy_id: int = typer.Argument(..., help="The policy's id."),
    watch: bool = WatchOpt,
    as_json: bool = JsonOpt,
    server: str | None = ServerOpt,
    token: str | None = TokenOpt,
    ca_file: str | None = CaFileOpt,
) -> None:
    """Show a policy, its counts and its failing hosts."""
    client = api_client(server, token, ca_file)
    console = Console()
    path = f"/api/v1/fleet/policies/{policy_id}"
    try:
        updates = _changes(client, policy_id) if watch else iter([None])
        for _ in updates:
            policy = request(client, "GET", path)["policy"]
            failing = request(
                client, "GET", f"{path}/hosts", params={"response": "fail", "per_page": 1000}
            )["hosts"]
            _print_policy(console, policy, failing, as_json)
    except KeyboardInterrupt:
        pass
    finally:
        client.close()
