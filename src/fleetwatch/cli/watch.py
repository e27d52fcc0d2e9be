"""`fleetwatch watch`: a continuous query, streamed to the terminal.

The query is a QueryTask JSON file or the short form `--kind K --where FIELD OP VALUE ...`
where OP is `=` (TERM; a value with `*` or `?` is a WILDCARD), `!=` (not equal), `~`
(PREFIX), or `<`, `<=`, `>`, `>=` (a numeric range: the value must be a number). The
initial results print as a table, then one line per change; `--json` prints every message
as one JSON line instead. The stream is Server-Sent Events (or `--transport ws`); a broken
connection or a resync resumes from the last sequence seen, so no change is skipped.
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import typer
from rich.console import Console
from rich.table import Table
from websockets.exceptions import WebSocketException

from fleetwatch.cli import app
from fleetwatch.cli.api_client import CaFileOpt, ServerOpt, TokenOpt, api_client, fail, request

#: Lifetime given to the task the command creates; renewed while it runs.
TASK_TTL_SECONDS = 600
#: Columns shown in the initial table besides the link.
MAX_COLUMNS = 8
_WHERE = re.compile(r"^\s*([A-Za-z0-9_.$@-]+)\s*(!=|<=|>=|=|<|>|~)\s*(.*)$")
_BUILTIN = {
    "documentSelfLink",
    "documentKind",
    "documentVersion",
    "documentUpdateTimeMicros",
    "documentUpdateAction",
    "documentExpirationTimeMicros",
}


def where_clause(expression: str) -> dict[str, Any]:
    """One `--where` expression as a Query clause; ValueError says what is wrong."""
    found = _WHERE.match(expression)
    if found is None:
        raise ValueError(
            f"--where {expression!r}: expected FIELD OP VALUE with OP one of = != ~ < <= > >="
        )
    name, op, value = found.groups()
    if op in ("=", "!="):
        match = "WILDCARD" if ("*" in value or "?" in value) else "TERM"
        occurance = "MUST_NOT_OCCUR" if op == "!=" else "MUST_OCCUR"
        return {
            "occurance": occurance,
            "term": {"propertyName": name, "matchValue": value, "matchType": match},
        }
    if op == "~":
        return {
            "occurance": "MUST_OCCUR",
            "term": {"propertyName": name, "matchValue": value, "matchType": "PREFIX"},
        }
    number: int | float
    try:
        number = int(value)
        kind = "LONG"
    except ValueError:
        try:
            number = float(value)
            kind = "DOUBLE"
        except ValueError:
            raise ValueError(
                f"--where {expression!r}: {op} needs a number (ranges are numeric)"
            ) from None
    rng: dict[str, Any] = {"type": kind}
    if op in ("<", "<="):
        rng.update(max=number, isMaxInclusive=op == "<=")
    else:
        rng.update(min=number, isMinInclusive=op == ">=")
    return {"occurance": "MUST_OCCUR", "term": {"propertyName": name, "range": rng}}


def short_form_task(kind: str | None, where: list[str]) -> dict[str, Any]:
    """The QueryTask of `--kind` and `--where` (CONTINUOUS, EXPAND_CONTENT)."""
    clauses: list[dict[str, Any]] = []
    if kind:
        clauses.append(
            {
                "occurance": "MUST_OCCUR",
                "term": {"propertyName": "documentKind", "matchValue": kind},
            }
        )
    clauses.extend(where_clause(w) for w in where)
    if not clauses:
        raise ValueError("nothing to watch: give a QueryTask file, --kind or --where")
    return {
        "taskInfo": {"isDirect": False},
        "querySpec": {
            "query": {"occurance": "MUST_OCCUR", "booleanClauses": clauses},
            "options": ["CONTINUOUS", "EXPAND_CONTENT"],
        },
    }


def _load_file(path: Path) -> dict[str, Any]:
    try:
        task = json.loads(path.read_text())
    except OSError as exc:
        raise fail(f"cannot read {path}: {exc.strerror}", 2) from exc
    except json.JSONDecodeError as exc:
        raise fail(f"{path} is not JSON: {exc}", 2) from exc
    if not isinstance(task, dict):
        raise fail(f"{path}: expected a QueryTask JSON object", 2)
    spec = task.setdefault("querySpec", {})
    options = spec.setdefault("options", []) if isinstance(spec, dict) else None
    if isinstance(options, list) and not {"CONTINUOUS", "CONTINUOUS_STOP_MATCH"} & set(options):
        options.append("CONTINUOUS")
    return task


def _value(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"))


def print_initial(console: Console, links: list[str], documents: dict[str, Any]) -> None:
    """The initial results as a table of the most common fields."""
    fields: Counter[str] = Counter()
    for doc in documents.values():
        fields.update(k for k in doc if k not in _BUILTIN)
    columns = [name for name, _ in fields.most_common(MAX_COLUMNS)]
    table = Table(title=f"{len(links)} matching", title_justify="left")
    table.add_column("documentSelfLink", no_wrap=True)
    for name in columns:
        table.add_column(name)
    for link in links:
        doc = documents.get(link, {})
        table.add_row(link, *(_value(doc.get(name, "")) for name in columns))
    console.print(table)


def print_change(console: Console, message: dict[str, Any]) -> None:
    """One change as a line: seq, what happened, link, fields."""
    results = message.get("results", {})
    links = results.get("documentLinks", [])
    link = links[0] if links else "?"
    doc = results.get("documents", {}).get(link, {})
    what = "LEFT" if message.get("stopMatch") else message.get("documentUpdateAction", "?")
    fields = " ".join(f"{k}={_value(v)}" for k, v in doc.items() if k not in _BUILTIN)
    extra = f" ({message['reason']})" if message.get("stopMatch") and message.get("reason") else ""
    count = f" count={results['documentCount']}" if "documentCount" in results else ""
    console.print(
        f"[dim]{message.get('seq')}[/dim] [bold]{what:<6}[/bold] {link} {fields}"
        f"{count}{extra}".rstrip(),
        highlight=False,
    )


def _sse(client: httpx.Client, link: str, since: int | None) -> Iterator[dict[str, Any] | None]:
    """Messages of one SSE connection; None for a keep-alive."""
    params = {} if since is None else {"since": since}
    with client.stream("GET", f"{link}/events", params=params) as response:
        if response.status_code >= 400:
            response.read()
            try:
                error = response.json().get("error")
            except ValueError:
                error = response.text[:200]
            raise fail(f"{error} (HTTP {response.status_code})")
        for line in response.iter_lines():
            if line.startswith(":"):
                yield None
            elif line.startswith("data: "):
                yield json.loads(line[6:])


def _ws(client: httpx.Client, link: str, since: int | None) -> Iterator[dict[str, Any] | None]:
    """Messages of one WebSocket connection; None when idle for a while."""
    from websockets.sync.client import connect

    base = str(client.base_url).rstrip("/").replace("http", "ws", 1)
    url = f"{base}{link}/stream" + ("" if since is None else f"?since={since}")
    headers = {"authorization": client.headers["authorization"]}
    with connect(url, additional_headers=headers) as ws:
        while True:
            try:
                raw = ws.recv(timeout=15)
            except TimeoutError:
                yield None
                continue
            message = json.loads(raw)
            if message.get("type") == "error":
                raise fail(str(message.get("error")))
            yield message


@app.command()
def watch(
    task_file: Path | None = typer.Argument(None, help="A QueryTask JSON file to run."),
    kind: str | None = typer.Option(None, "--kind", help="documentKind to watch, e.g. fleet:host"),
    where: list[str] | None = typer.Option(
        None, "--where", help="FIELD OP VALUE, repeatable; OP: = != ~ < <= > >="
    ),
    json_lines: bool = typer.Option(False, "--json", help="Print each message as a JSON line."),
    transport: str = typer.Option("sse", "--transport", help="sse or ws."),
    max_changes: int | None = typer.Option(
        None, "--count", min=1, help="Exit after this many changes."
    ),
    keep: bool = typer.Option(False, "--keep", help="Leave the task running on exit."),
    server: str | None = ServerOpt,
    token: str | None = TokenOpt,
    ca_file: str | None = CaFileOpt,
) -> None:
    """Run a continuous query: print the current results, then every change as it happens."""
    if transport not in ("sse", "ws"):
        raise fail("--transport must be sse or ws", 2)
    if task_file is not None:
        if kind or where:
            raise fail("give either a QueryTask file or --kind/--where, not both", 2)
        body = _load_file(task_file)
    else:
        try:
            body = short_form_task(kind, where or [])
        except ValueError as exc:
            raise fail(str(exc), 2) from exc
    body["documentExpirationTimeMicros"] = time.time_ns() // 1000 + TASK_TTL_SECONDS * 1_000_000
    client = api_client(server, token, ca_file)
    task = request(client, "POST", "/core/local-query-tasks", json=body)
    link = str(task["documentSelfLink"])
    out = Console()
    err = Console(stderr=True)
    stream = _sse if transport == "sse" else _ws
    since: int | None = None
    initial: tuple[list[str], dict[str, Any]] = ([], {})
    changes = 0
    renew_at = time.monotonic() + TASK_TTL_SECONDS / 2
    try:
        while True:
            resume = False
            if since is None:  # (re)connecting before the initial results completed
                initial = ([], {})
            try:
                for message in stream(client, link, since):
                    if time.monotonic() > renew_at:
                        expiry = time.time_ns() // 1000 + TASK_TTL_SECONDS * 1_000_000
                        request(
                            client, "PATCH", link, json={"documentExpirationTimeMicros": expiry}
                        )
                        renew_at = time.monotonic() + TASK_TTL_SECONDS / 2
                    if message is None:
                        continue
                    kind_of = message.get("type")
                    if json_lines:
                        out.print_json(json.dumps(message), indent=None)
                    if kind_of == "initial":
                        results = message.get("results", {})
                        initial[0].extend(results.get("documentLinks", []))
                        initial[1].update(results.get("documents", {}))
                        if message.get("last"):
                            since = int(message["seq"])
                            if not json_lines:
                                print_initial(out, *initial)
                    elif kind_of == "change":
                        since = int(message["seq"])
                        if not json_lines:
                            print_change(out, message)
                        changes += 1
                        if max_changes is not None and changes >= max_changes:
                            return
                    elif kind_of == "resync":
                        since = int(message["seq"])
                        resume = True
                        break
                    elif kind_of == "closed":
                        err.print(f"fleetwatch: the task ended: {message.get('reason')}")
                        keep = True  # nothing left to delete
                        return
            except (httpx.TransportError, OSError, WebSocketException) as exc:
                err.print(f"fleetwatch: connection lost ({exc}); resuming after {since}")
                time.sleep(1)
                resume = True
            if not resume:
                raise fail("the server closed the stream")
    except KeyboardInterrupt:
        pass
    finally:
        if not keep:
            try:
                client.delete(link)
            except httpx.HTTPError:
                pass
        client.close()
