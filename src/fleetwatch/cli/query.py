"""`fleetwatch query`: run a live query and stream the answers as they arrive."""

from __future__ import annotations

import csv
import json
import sys
import time
from typing import Any

import httpx
import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn
from rich.table import Table

from fleetwatch.cli import app
from fleetwatch.cli.api_client import CaFileOpt, ServerOpt, TokenOpt, api_client, fail, request


def _split(values: list[str] | None) -> list[str]:
    out: list[str] = []
    for value in values or []:
        out.extend(v.strip() for v in value.split(",") if v.strip())
    return out


def _host_ids(client: httpx.Client, names: list[str]) -> list[int]:
    ids = []
    for name in names:
        if name.isdigit():
            ids.append(int(name))
            continue
        found = request(client, "GET", "/api/v1/fleet/hosts", params={"query": name})["hosts"]
        exact = [h for h in found if name in (h["hostname"], h["uuid"], h.get("hardware_serial"))]
        if len(exact) != 1:
            raise fail(f"host {name!r} matches {len(exact)} hosts; give its id instead")
        ids.append(int(exact[0]["id"]))
    return ids


def _label_ids(client: httpx.Client, names: list[str]) -> list[int]:
    if all(n.isdigit() for n in names):
        return [int(n) for n in names]
    labels = request(client, "GET", "/api/v1/fleet/labels")["labels"]
    by_name = {str(label["name"]): int(label["id"]) for label in labels}
    missing = [n for n in names if not n.isdigit() and n not in by_name]
    if missing:
        raise fail(f"no label named {', '.join(missing)}")
    return [int(n) if n.isdigit() else by_name[n] for n in names]


def _events(client: httpx.Client, campaign_id: int) -> Any:
    with client.stream("GET", f"/api/v1/fleet/campaigns/{campaign_id}/events") as response:
        if response.status_code >= 400:
            raise fail(f"cannot stream the campaign (HTTP {response.status_code})")
        for line in response.iter_lines():
            if line.startswith("data: "):
                yield json.loads(line[6:])


@app.command()
def query(
    sql: str = typer.Option(..., "--sql", help="One SELECT statement (osquery's SQLite)."),
    hosts: list[str] | None = typer.Option(
        None, "--hosts", help="Host ids or names, comma-separated."
    ),
    labels: list[str] | None = typer.Option(None, "--labels", help="Label ids or names."),
    teams: list[str] | None = typer.Option(None, "--teams", help="Team ids (0: no team)."),
    all_hosts: bool = typer.Option(False, "--all", help="Target every host."),
    output: str = typer.Option("table", "--format", help="table, json (one line per host) or csv."),
    timeout: float = typer.Option(60.0, "--timeout", help="Seconds to wait for answers."),
    exit_when_done: bool = typer.Option(
        False, "--exit", help="Exit as soon as every online target answered."
    ),
    server: str | None = ServerOpt,
    token: str | None = TokenOpt,
    ca_file: str | None = CaFileOpt,
) -> None:
    """Ask hosts a SQL question and print each answer as it arrives.

    Exits 0 when at least one host answered, 1 when none did.
    """
    if output not in ("table", "json", "csv"):
        raise fail("--format must be table, json or csv", 2)
    client = api_client(server, token, ca_file)
    targets: list[dict[str, Any]] = []
    if all_hosts:
        targets.append({"type": "all"})
    targets += [{"type": "host", "id": i} for i in _host_ids(client, _split(hosts))]
    targets += [{"type": "label", "id": i} for i in _label_ids(client, _split(labels))]
    targets += [{"type": "team", "id": int(t)} for t in _split(teams) if t.isdigit()]
    if not targets:
        raise fail("no targets: give --hosts, --labels, --teams or --all", 2)
    started = request(
        client,
        "POST",
        "/api/v1/fleet/queries/run",
        json={"query": sql, "targets": targets, "timeout": timeout},
    )
    campaign_id = int(started["campaign_id"])
    totals = started["campaign"]["totals"]
    err = Console(stderr=True)
    out = Console()
    results: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    progress = Progress(
        TextColumn("[bold]campaign {task.fields[cid]}"),
        BarColumn(),
        TextColumn(
            "{task.completed}/{task.total} answered, {task.fields[online]} online, "
            "{task.fields[failed]} failed, {task.fields[rows]} rows"
        ),
        console=err,
        transient=False,
    )
    with progress:
        bar = progress.add_task(
            "answers",
            total=totals["targeted"],
            cid=campaign_id,
            online=totals["online"],
            failed=0,
            rows=0,
        )
        try:
            for message in _events(client, campaign_id):
                kind, data = message["type"], message["data"]
                if kind == "totals":
                    progress.update(
                        bar,
                        completed=data["responded"],
                        online=data["online"],
                        failed=data["failed"],
                        rows=data["rows"],
                    )
                elif kind == "result":
                    results.append(data)
                    _print_result(data, output, out)
                elif kind == "status" and data["status"] != "running" and exit_when_done:
                    break
                elif kind == "error":
                    err.print(f"[red]{data.get('error')}")
                if time.monotonic() > deadline:
                    break
        except KeyboardInterrupt:
            err.print("interrupted; the campaign keeps its results on the server")
    if output == "csv":
        _write_csv(results)
    final = request(client, "GET", f"/api/v1/fleet/campaigns/{campaign_id}")["campaign"]
    t = final["totals"]
    err.print(
        f"campaign {campaign_id} {final['status']}: {t['responded']}/{t['targeted']} answered "
        f"({t['online']} online, {t['failed']} failed, {t['rows']} rows)"
    )
    if final.get("non_responders"):
        err.print(f"no answer from host ids {', '.join(map(str, final['non_responders']))}")
    raise typer.Exit(0 if results else 1)


def _print_result(result: dict[str, Any], output: str, console: Console) -> None:
    if output == "json":
        console.print_json(json.dumps(result)) if sys.stdout.isatty() else print(
            json.dumps(result), flush=True
        )
        return
    if output != "table":
        return
    if result["status"] == "error":
        console.print(f"[red]{result['hostname']}: {result['error']}")
        return
    rows = result["rows"]
    if not rows:
        console.print(f"[dim]{result['hostname']}: no rows")
        return
    columns = result.get("columns") or list(rows[0])
    table = Table(title=result["hostname"], title_justify="left", show_edge=False)
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*(str(row.get(c, "")) for c in columns))
    console.print(table)


def _write_csv(results: list[dict[str, Any]]) -> None:
    columns: list[str] = []
    for result in results:
        order = result.get("columns") or [k for row in result["rows"] for k in row]
        columns += [k for k in order if k not in columns]
    writer = csv.writer(sys.stdout)
    writer.writerow(["host_id", "hostname", "status", "error", *columns])
    for result in results:
        base = [result["host_id"], result["hostname"], result["status"], result["error"] or ""]
        for row in result["rows"] or [{}]:
            writer.writerow(base + [row.get(c, "") for c in columns])
