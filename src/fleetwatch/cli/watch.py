"""`fleetwatch watch`: a continuous query, streamed to the terminal.

The query is a QueryTask JSON file or the short form `--kind K --where FIELD OP VALUE ...`
where OP is `=` (TERM; a value with `*` or `?` is a WILDCARD), `!=` (not equal), `~`
(PREFIX: the value starts with), or `<`, `<=`, `>`, `>=` (a numeric range: the value must be
a number; it matches numbers and numeric-looking strings, such as osquery's "93.5"). The task
asks for CONTINUOUS_STOP_MATCH too, so a row that leaves the result set (deleted, expired or no
longer matching) is reported and leaves the view. On a terminal the view is one table kept
current in place; piped, the initial results print as a table, then one line per change;
`--json` prints every message as one JSON line instead. The stream is Server-Sent Events (or
`--transport ws`); a broken connection or a resync resumes from the last sequence seen, so no
change is skipped. The task is deleted on any exit (Ctrl-C, SIGTERM, SIGHUP, a closed
stream, an error) unless `--keep`.

`--group-by FIELD` watches live group counts instead (GROUP_BY + COUNT + CONTINUOUS on FIELD):
the view is a table of groups and their counts, largest first, kept current from each
change's `groupCounts`; piped, one line per change with the groups it moved. A task file
with GROUP_BY and COUNT shows the same table.
"""

from __future__ import annotations

import json
import re
import signal
import time
from collections import Counter, deque
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import httpx
import typer
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text
from websockets.exceptions import WebSocketException

from fleetwatch.cli.api_client import CaFileOpt, ServerOpt, TokenOpt, api_client, fail, request
from fleetwatch.cli.root import app

#: Lifetime given to the task the command creates; renewed while it runs.
TASK_TTL_SECONDS = 600
#: Columns shown in the initial table besides the link.
MAX_COLUMNS = 8
#: Changes listed under the live table on a terminal.
RECENT_CHANGES = 5
#: Signals that stop the command like Ctrl-C does (its task is deleted on the way out).
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
#: Options every watch task has: without CONTINUOUS_STOP_MATCH a row that stops matching
#: would never be reported and would stay in the view.
LEAVE_OPTION = "CONTINUOUS_STOP_MATCH"
#: The results field of group counts (GROUP_BY + COUNT).
GROUP_COUNTS = "groupCounts"
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


def short_form_task(
    kind: str | None, where: list[str], group_by: str | None = None
) -> dict[str, Any]:
    """The QueryTask of `--kind` and `--where` (CONTINUOUS, EXPAND_CONTENT), or with
    `--group-by` its live group counts (GROUP_BY, COUNT, CONTINUOUS)."""
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
    if group_by is not None:
        return {
            "taskInfo": {"isDirect": False},
            "querySpec": {
                "query": {"occurance": "MUST_OCCUR", "booleanClauses": clauses},
                "options": ["CONTINUOUS", LEAVE_OPTION, "GROUP_BY", "COUNT"],
                "groupByTerm": {"propertyName": group_by},
            },
        }
    return {
        "taskInfo": {"isDirect": False},
        "querySpec": {
            "query": {"occurance": "MUST_OCCUR", "booleanClauses": clauses},
            "options": ["CONTINUOUS", LEAVE_OPTION, "EXPAND_CONTENT"],
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
    if isinstance(options, list):
        if not {"CONTINUOUS", LEAVE_OPTION} & set(options):
            options.append("CONTINUOUS")
        if LEAVE_OPTION not in options:
            options.append(LEAVE_OPTION)
    return task


def _value(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"))


def leaves(message: dict[str, Any]) -> bool:
    """Whether a change takes its document out of the result set: a delete (an expiry is
    one, with reason "expired") or a document that no longer matches."""
    return bool(message.get("stopMatch")) or message.get("documentUpdateAction") == "DELETE"


def change_line(message: dict[str, Any]) -> Text:
    """One change as a line: seq, what happened, link, fields (and why a row left); for
    group counts, the groups it moved and their new counts."""
    results = message.get("results", {})
    if GROUP_COUNTS in results:
        moved = " ".join(f"{g}={n}" for g, n in results[GROUP_COUNTS].items())
        return Text.assemble((f"{message.get('seq')} ", "dim"), ("COUNTS", "bold"), f" {moved}")
    links = results.get("documentLinks", [])
    link = links[0] if links else "?"
    doc = results.get("documents", {}).get(link, {})
    what = "LEFT" if message.get("stopMatch") else str(message.get("documentUpdateAction", "?"))
    fields = " ".join(f"{k}={_value(v)}" for k, v in doc.items() if k not in _BUILTIN)
    why = f" ({message['reason']})" if leaves(message) and message.get("reason") else ""
    count = f" count={results['documentCount']}" if "documentCount" in results else ""
    line = Text.assemble(
        (f"{message.get('seq')} ", "dim"), (f"{what:<6}", "bold"), f" {link} {fields}{count}"
    )
    line.rstrip()
    line.append(why)
    return line


class ResultView:
    """The task's current result set, kept in step with its messages."""

    def __init__(self) -> None:
        self.documents: dict[str, Any] = {}
        self.count: int | None = None
        #: Group counts (a GROUP_BY + COUNT task), else None.
        self.groups: dict[str, int] | None = None
        self.recent: deque[Text] = deque(maxlen=RECENT_CHANGES)

    def _count_groups(self, counts: dict[str, Any]) -> None:
        groups = self.groups if self.groups is not None else {}
        for group, n in counts.items():
            if int(n):
                groups[group] = int(n)
            else:
                groups.pop(group, None)  # emptied
        self.groups = groups

    def add_initial(self, results: dict[str, Any]) -> None:
        """A chunk of the initial results."""
        if GROUP_COUNTS in results:
            self._count_groups(results[GROUP_COUNTS])
        documents = results.get("documents", {})
        for link in results.get("documentLinks", []):
            self.documents[link] = documents.get(link, {})
        if "documentCount" in results:
            self.count = int(results["documentCount"])

    def apply(self, message: dict[str, Any]) -> None:
        """A change: the row is added, updated, or removed when it left the results (for
        group counts: the groups it moved take their new counts)."""
        results = message.get("results", {})
        if GROUP_COUNTS in results:
            self._count_groups(results[GROUP_COUNTS])
            if "documentCount" in results:
                self.count = int(results["documentCount"])
            self.recent.append(change_line(message))
            return
        for link in results.get("documentLinks", []):
            if leaves(message):
                self.documents.pop(link, None)
            else:
                self.documents[link] = results.get("documents", {}).get(link, {})
        if "documentCount" in results:
            self.count = int(results["documentCount"])
        self.recent.append(change_line(message))

    def group_table(self, status: str = "") -> Table:
        """The group counts, largest first."""
        groups = self.groups or {}
        total = sum(groups.values()) if self.count is None else self.count
        title = f"{total} matching in {len(groups)} groups" + (f" · {status}" if status else "")
        # as wide as its title: two narrow columns would wrap it
        table = Table(title=title, title_justify="left", min_width=len(title))
        table.add_column("group", no_wrap=True)
        table.add_column("count", justify="right")
        for group, n in sorted(groups.items(), key=lambda item: (-item[1], item[0])):
            table.add_row(Text(group), Text(str(n)))
        return table

    def table(self, status: str = "") -> Table:
        """The current results as a table of the most common fields (or the groups')."""
        if self.groups is not None:
            return self.group_table(status)
        fields: Counter[str] = Counter()
        for doc in self.documents.values():
            fields.update(k for k in doc if k not in _BUILTIN)
        columns = [name for name, _ in fields.most_common(MAX_COLUMNS)]
        count = len(self.documents) if self.count is None else self.count
        title = f"{count} matching" + (f" · {status}" if status else "")
        table = Table(title=title, title_justify="left")
        table.add_column("documentSelfLink", no_wrap=True)
        for name in columns:
            table.add_column(name)
        for link, doc in self.documents.items():
            table.add_row(Text(link), *(Text(_value(doc.get(name, ""))) for name in columns))
        return table

    def screen(self, status: str) -> RenderableType:
        """What a terminal shows: the table, then the latest changes."""
        return Group(self.table(status), *self.recent)


class _Stop(BaseException):
    """A stop signal arrived (SIGTERM, SIGHUP): leave like Ctrl-C does (a BaseException, as
    KeyboardInterrupt is, so no `except Exception` on the way swallows it)."""


def _stop(signum: int, frame: FrameType | None) -> None:
    raise _Stop(signal.Signals(signum).name)


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
        None,
        "--where",
        help="FIELD OP VALUE, repeatable (all must hold). OP: = equal (* and ? in the value are "
        "wildcards), != not equal, ~ prefix (the value starts with: path~/usr/local), "
        "< <= > >= a numeric range (it also matches numeric-looking strings, such as "
        'osquery\'s "93.5": cpu>90)',
    ),
    group_by: str | None = typer.Option(
        None,
        "--group-by",
        help="Show live group counts by this field instead of the rows (GROUP_BY + COUNT), "
        "e.g. --kind fleet:host --group-by osquery_version",
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
    """Run a continuous query: show the current results, then every change as it happens.

    On a terminal the results are one table kept current: a row that leaves the result set
    (deleted, expired, or no longer matching) disappears, and the latest changes show below.
    Piped, the initial results print as a table, then one line per change (LEFT or DELETE
    with the reason for a row that left). With --group-by the table holds live group counts
    (group, count), kept current the same way. Ctrl-C, SIGTERM or SIGHUP stops it; on any
    exit the task it created is deleted, unless --keep.
    """
    if transport not in ("sse", "ws"):
        raise fail("--transport must be sse or ws", 2)
    if task_file is not None:
        if kind or where or group_by:
            raise fail("give either a QueryTask file or --kind/--where/--group-by, not both", 2)
        body = _load_file(task_file)
    else:
        try:
            body = short_form_task(kind, where or [], group_by)
        except ValueError as exc:
            raise fail(str(exc), 2) from exc
    body["documentExpirationTimeMicros"] = time.time_ns() // 1000 + TASK_TTL_SECONDS * 1_000_000
    client = api_client(server, token, ca_file)
    previous = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS}
    for signum in STOP_SIGNALS[1:]:
        signal.signal(signum, _stop)
    link: str | None = None
    try:
        task = request(client, "POST", "/core/local-query-tasks", json=body)
        link = str(task["documentSelfLink"])
        keep = _follow(client, link, transport, json_lines, max_changes) or keep
    except (KeyboardInterrupt, _Stop):
        pass
    finally:
        # a second signal must not cut the cleanup short
        for signum in STOP_SIGNALS:
            signal.signal(signum, signal.SIG_IGN)
        try:
            if link is not None and not keep:
                try:
                    client.delete(link, timeout=10)
                except httpx.HTTPError:
                    pass
            client.close()
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)


def _follow(
    client: httpx.Client, link: str, transport: str, json_lines: bool, max_changes: int | None
) -> bool:
    """Stream the task's messages until done; True when the task is already gone."""
    out = Console()
    err = Console(stderr=True)
    stream = _sse if transport == "sse" else _ws
    live: Live | None = None
    if out.is_terminal and not json_lines:
        live = Live(console=out, auto_refresh=False, vertical_overflow="ellipsis")
    since: int | None = None
    view = ResultView()
    changes = 0
    status = "loading…"
    renew_at = time.monotonic() + TASK_TTL_SECONDS / 2
    try:
        if live is not None:
            live.start()
        while True:
            resume = False
            if since is None:  # (re)connecting before the initial results completed
                view = ResultView()
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
                        view.add_initial(message.get("results", {}))
                        if message.get("last"):
                            since = int(message["seq"])
                            if live is None and not json_lines:
                                out.print(view.table())
                    elif kind_of == "current":
                        # caught up: what was shown is everything up to seq; live from here
                        since = int(message["seq"])
                        status = f"live (caught up to {since})"
                        if live is None and not json_lines:
                            err.print(f"[dim]{status}[/dim]")
                    elif kind_of == "change":
                        since = int(message["seq"])
                        view.apply(message)
                        if live is None and not json_lines:
                            out.print(view.recent[-1], highlight=False)
                        changes += 1
                    elif kind_of == "resync":
                        since = int(message["seq"])
                        resume = True
                        break
                    elif kind_of == "closed":
                        err.print(f"fleetwatch: the task ended: {message.get('reason')}")
                        return True  # nothing left to delete
                    if live is not None:
                        live.update(view.screen(status), refresh=True)
                    if max_changes is not None and changes >= max_changes:
                        return False
            except (httpx.TransportError, OSError, WebSocketException) as exc:
                err.print(f"fleetwatch: connection lost ({exc}); resuming after {since}")
                time.sleep(1)
                resume = True
            if not resume:
                raise fail("the server closed the stream")
    finally:
        if live is not None:
            live.stop()
