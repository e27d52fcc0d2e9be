"""`fleetwatch query`: run a live query, show its progress, print every host's answer; re-run
a campaign on some of its hosts (`--rerun ID --hosts non_responders`); compare two runs
(`--diff ID1 ID2`).

The answers print as one table over all hosts (host column first, sized to the terminal:
long cells are cut with an ellipsis) once the campaign ends, or one JSON line per host as
each arrives (`--format json`), or CSV. Progress goes to stderr: a bar on a terminal, else
one line per change, so a pipe or a log file shows it too. The command ends by the
campaign's timeout whatever the stream does, and names the hosts that did not answer.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from collections.abc import Iterator
from types import TracebackType
from typing import Any

import httpx
import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from fleetwatch.cli.api_client import CaFileOpt, ServerOpt, TokenOpt, api_client, fail, request
from fleetwatch.cli.campaign_cost import cost_lines
from fleetwatch.cli.root import app
from fleetwatch.live.result_csv import csv_records, csv_writer, safe_record

#: Exit status: every host the campaign waited for answered.
EXIT_ALL_ANSWERED = 0
#: Exit status: no host answered.
EXIT_NONE_ANSWERED = 1
#: Exit status: some hosts answered, others it waited for did not (they are named on stderr).
EXIT_SOME_SILENT = 3
#: Seconds past the campaign's timeout to wait for the server to say it expired.
DEADLINE_GRACE = 5.0
#: Hosts named one by one (hostname and id) on stderr; past this only a count.
MAX_NAMED_HOSTS = 50


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


def _events(client: httpx.Client, campaign_id: int, silence: float) -> Iterator[Any]:
    """The stream's messages; None for a keep-alive (so the caller can check its clock).

    A stream silent for `silence` seconds ends (the caller's deadline has passed by then).
    """
    timeout = httpx.Timeout(30, read=silence)
    path = f"/api/v1/fleet/campaigns/{campaign_id}/events"
    try:
        with client.stream("GET", path, timeout=timeout) as response:
            if response.status_code >= 400:
                raise fail(f"cannot stream the campaign (HTTP {response.status_code})")
            for line in response.iter_lines():
                if line.startswith("data: "):
                    yield json.loads(line[6:])
                elif line.startswith(":"):
                    yield None
    except httpx.ReadTimeout:
        return


class CampaignProgress:
    """Answered/targeted and elapsed time on stderr: a bar on a terminal, else a line per
    change (no carriage-return animation in a pipe or a log file)."""

    def __init__(self, console: Console, campaign_id: int, totals: dict[str, Any]) -> None:
        self.console = console
        self.campaign_id = campaign_id
        self.started = time.monotonic()
        self.totals = dict(totals)
        self.last_line: str | None = None
        self.bar: Progress | None = None
        if console.is_terminal:
            self.bar = Progress(
                TextColumn(f"[bold]campaign {campaign_id}"),
                BarColumn(),
                TextColumn(
                    "{task.completed}/{task.total} answered, {task.fields[online]} online, "
                    "{task.fields[failed]} failed, {task.fields[rows]} rows"
                ),
                TimeElapsedColumn(),
                console=console,
            )
            self.task = self.bar.add_task("answers", total=totals["targeted"], **self._fields())

    def _fields(self) -> dict[str, Any]:
        t = self.totals
        return {"online": t["online"], "failed": t.get("failed", 0), "rows": t.get("rows", 0)}

    def __enter__(self) -> CampaignProgress:
        if self.bar is not None:
            self.bar.start()
        else:
            self._line()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self.bar is not None:
            self.bar.stop()

    def update(self, totals: dict[str, Any]) -> None:
        """New totals from the stream."""
        self.totals.update(totals)
        if self.bar is not None:
            self.bar.update(self.task, completed=totals["responded"], **self._fields())
        else:
            self._line()

    def _line(self) -> None:
        t = self.totals
        state = ", ".join(
            [
                f"{t.get('responded', 0)}/{t['targeted']} answered",
                f"{t['online']} online",
                f"{t.get('failed', 0)} failed",
                f"{t.get('rows', 0)} rows",
            ]
        )
        if state == self.last_line:
            return
        self.last_line = state
        elapsed = time.monotonic() - self.started
        self.console.print(
            f"campaign {self.campaign_id}: {state}, {elapsed:.1f}s elapsed",
            highlight=False,
            soft_wrap=True,
        )


#: `--hosts` of a re-run: which of the campaign's targets to ask again.
RERUN_SUBSETS = ("non_responders", "failed", "all", "remaining")


def _sample(value: str | None) -> dict[str, float | int] | None:
    """`--sample 10%` (a percentage) or `--sample 5` (a count of hosts)."""
    if value is None:
        return None
    text = value.strip()
    try:
        if text.endswith("%"):
            return {"percent": float(text[:-1])}
        return {"count": int(text)}
    except ValueError:
        raise fail(
            f"--sample must be a percentage such as 10% or a count such as 5, not {value!r}", 2
        ) from None


@app.command()
def query(
    sql: str | None = typer.Option(None, "--sql", help="One SELECT statement (osquery's SQLite)."),
    hosts: list[str] | None = typer.Option(
        None,
        "--hosts",
        help="Host ids or names, comma-separated; with --rerun, which of its targets: "
        "non_responders (the default), failed, all or remaining.",
    ),
    labels: list[str] | None = typer.Option(None, "--labels", help="Label ids or names."),
    teams: list[str] | None = typer.Option(None, "--teams", help="Team ids (0: no team)."),
    all_hosts: bool = typer.Option(False, "--all", help="Target every host."),
    output: str = typer.Option(
        "table",
        "--format",
        help="table (one table over all hosts, once the campaign ends), json (one line per "
        "host as it answers) or csv.",
    ),
    timeout: float = typer.Option(
        60.0, "--timeout", help="Seconds to wait for answers (greater than 0, at most 86400)."
    ),
    exit_when_done: bool = typer.Option(
        False,
        "--exit",
        help="Exit as soon as every online target answered (else at the timeout at the latest).",
    ),
    sample: str | None = typer.Option(
        None, "--sample", help="A canary: ask a random 10% (or 5) of the targets."
    ),
    rerun: int | None = typer.Option(
        None, "--rerun", help="Re-run this campaign's SQL on some of its targets (see --hosts)."
    ),
    diff: tuple[int, int] | None = typer.Option(
        None, "--diff", help="Compare campaign ID1 with ID2 (same SQL): rows added and removed."
    ),
    max_rows: int | None = typer.Option(
        None,
        "--max-rows",
        min=1,
        help="Rows the whole campaign stores at most; once reached no host is asked any more "
        "(default: the server's campaign_max_rows; a re-run keeps the original's).",
    ),
    max_bytes: int | None = typer.Option(
        None,
        "--max-bytes",
        min=1,
        help="Bytes of row data the whole campaign stores at most (as --max-rows).",
    ),
    server: str | None = ServerOpt,
    token: str | None = TokenOpt,
    ca_file: str | None = CaFileOpt,
) -> None:
    """Ask hosts a SQL question; print their answers, with progress on stderr.

    Waits for the hosts online when the query starts, until they all answered (--exit) or
    the timeout passed; then names on stderr, by hostname and id, those that did not, and
    prints the campaign's cost (p50, p95 and max wall time and memory over the answers) and
    any truncation (which cap kept rows out).
    Exit status: 0 when every host it waited for answered, 1 when no host answered, 3 when
    some answered and others did not.
    """
    if output not in ("table", "json", "csv"):
        raise fail("--format must be table, json or csv", 2)
    if sum(x is not None for x in (sql, rerun, diff)) != 1:
        raise fail("give one of --sql, --rerun ID or --diff ID1 ID2", 2)
    client = api_client(server, token, ca_file)
    limits = {
        key: value
        for key, value in (("max_rows", max_rows), ("max_bytes", max_bytes))
        if value is not None
    }
    if diff is not None:
        _print_diff(client, diff[0], diff[1], output)
        return
    if rerun is not None:
        subset = _split(hosts) or ["non_responders"]
        if len(subset) != 1 or subset[0] not in RERUN_SUBSETS:
            raise fail(f"with --rerun, --hosts is one of {', '.join(RERUN_SUBSETS)}", 2)
        started = request(
            client,
            "POST",
            f"/api/v1/fleet/campaigns/{rerun}/rerun",
            json={"hosts": subset[0], "timeout": timeout, **limits},
        )
        _follow(client, started, output, timeout, exit_when_done)
        return
    targets: list[dict[str, Any]] = []
    if all_hosts:
        targets.append({"type": "all"})
    targets += [{"type": "host", "id": i} for i in _host_ids(client, _split(hosts))]
    targets += [{"type": "label", "id": i} for i in _label_ids(client, _split(labels))]
    targets += [{"type": "team", "id": int(t)} for t in _split(teams) if t.isdigit()]
    if not targets:
        raise fail("no targets: give --hosts, --labels, --teams or --all", 2)
    body: dict[str, Any] = {"query": sql, "targets": targets, "timeout": timeout, **limits}
    if sample is not None:
        body["sample"] = _sample(sample)
    started = request(client, "POST", "/api/v1/fleet/queries/run", json=body)
    _follow(client, started, output, timeout, exit_when_done)


def _follow(
    client: httpx.Client,
    started: dict[str, Any],
    output: str,
    timeout: float,
    exit_when_done: bool,
) -> None:
    """Stream a started campaign's answers, print a summary, exit 0 if any host answered."""
    campaign_id = int(started["campaign_id"])
    err = Console(stderr=True)
    out = Console(width=shutil.get_terminal_size().columns)
    begun = started["campaign"]
    if begun.get("rerun_of"):
        err.print(f"campaign {campaign_id}: a re-run of campaign {begun['rerun_of']}")
    if begun.get("sample"):
        picked = begun["sample"]
        err.print(
            f"campaign {campaign_id}: a sample of {picked['chosen']} of {picked['of']} targets"
        )
    results: list[dict[str, Any]] = []
    # the server expires the campaign at its timeout; this clock is the backstop
    deadline = time.monotonic() + timeout + DEADLINE_GRACE
    with CampaignProgress(err, campaign_id, started["campaign"]["totals"]) as progress:
        live = done = False
        try:
            for message in _events(client, campaign_id, timeout + DEADLINE_GRACE):
                if message is not None:
                    kind, data = message["type"], message["data"]
                    if kind == "totals":
                        progress.update(data)
                    elif kind == "result":
                        results.append(data)
                        if output == "json":
                            _print_json(data, out)
                    elif kind == "current":
                        # caught up: everything up to seq is printed; live from here
                        live = True
                        err.print(f"[dim]live (caught up to {message['seq']})[/dim]")
                        if done:
                            break
                    elif kind == "status" and (
                        data["status"] in ("expired", "stopped")
                        or (exit_when_done and data["status"] != "running")
                    ):
                        # over (without --exit a finished campaign may still get answers
                        # from hosts that come online). A campaign already over sends its
                        # status among the initial results: still take them all, up to
                        # the `current` marker
                        done = True
                        if live:
                            break
                    elif kind == "error":
                        err.print(f"[red]{data.get('error')}")
                if time.monotonic() > deadline:
                    break
        except KeyboardInterrupt:
            err.print("interrupted; the campaign keeps its results on the server")
    if output == "table":
        _print_table(results, out, err)
    elif output == "csv":
        csv_writer(sys.stdout).writerows(csv_records(results))
    final = request(client, "GET", f"/api/v1/fleet/campaigns/{campaign_id}")["campaign"]
    t = final["totals"]
    err.print(
        f"campaign {campaign_id} {final['status']}: {t['responded']}/{t['targeted']} answered "
        f"({t['online']} online, {t['failed']} failed, {t['rows']} rows)",
        highlight=False,
        soft_wrap=True,
    )
    for line in cost_lines(final, results):
        err.print(line, highlight=False, soft_wrap=True)
    silent = [int(h) for h in final.get("non_responders") or ()]
    if silent:
        err.print(
            f"no answer from {len(silent)} host(s): {_named(client, silent)}",
            highlight=False,
            soft_wrap=True,
        )
    if not results:
        raise typer.Exit(EXIT_NONE_ANSWERED)
    raise typer.Exit(EXIT_SOME_SILENT if silent else EXIT_ALL_ANSWERED)


def _print_diff(client: httpx.Client, campaign_id: int, against: int, output: str) -> None:
    """`--diff ID1 ID2`: per host, the rows ID1 has and ID2 lacks (+) and the reverse (-)."""
    found = request(
        client, "GET", f"/api/v1/fleet/campaigns/{campaign_id}/diff", params={"against": against}
    )
    if output == "json":
        print(json.dumps(found), flush=True)
        return
    if output == "csv":
        writer = csv_writer(sys.stdout)
        writer.writerow(["host_id", "hostname", "change", "row"])
        for host in found["hosts"]:
            for change, rows in (("added", host["added"]), ("removed", host["removed"])):
                for row in rows:
                    # hostnames come from agents: defused as the API's CSV export does
                    record = (host["host_id"], host["hostname"], change, json.dumps(row))
                    writer.writerow(safe_record(record))
        return
    out = Console()
    for host in found["hosts"]:
        # Text, not markup: row values may hold brackets; one line per row, never wrapped
        title = f"{host['hostname'] or host['host_id']} (host {host['host_id']})"
        out.print(Text(title, style="bold"), soft_wrap=True)
        for sign, style, rows in (("+", "green", host["added"]), ("-", "red", host["removed"])):
            for row in rows:
                out.print(Text(f"{sign} {json.dumps(row)}", style=style), soft_wrap=True)
    err = Console(stderr=True)
    err.print(
        f"{len(found['hosts'])} hosts answered differently; answered only campaign "
        f"{campaign_id}: {_ids(found['only_in_campaign'])}; only campaign {against}: "
        f"{_ids(found['only_in_other'])}"
    )


def _ids(ids: list[int]) -> str:
    return ", ".join(map(str, ids)) or "none"


def _write_csv(results: list[dict[str, Any]]) -> None:
    csv_writer(sys.stdout).writerows(csv_records(results))


def _named(client: httpx.Client, host_ids: list[int]) -> str:
    """`hostname (id N)` for each host, the first MAX_NAMED_HOSTS of them."""
    names = []
    for host_id in host_ids[:MAX_NAMED_HOSTS]:
        reply = client.get(f"/api/v1/fleet/hosts/{host_id}")
        host = reply.json().get("host", {}) if reply.status_code == 200 else {}
        names.append(f"{host.get('hostname') or '?'} (id {host_id})")
    more = len(host_ids) - MAX_NAMED_HOSTS
    return ", ".join(names) + (f" and {more} more" if more > 0 else "")


def _print_json(result: dict[str, Any], console: Console) -> None:
    if sys.stdout.isatty():
        console.print_json(json.dumps(result))
    else:
        print(json.dumps(result), flush=True)


def _cell(value: Any) -> Text:
    # Text, not a str: a value is data, never rich markup; one line per row
    text = "" if value is None else str(value)
    return Text(text.replace("\r", " ").replace("\n", " "))


def fit_widths(natural: list[int], available: int) -> list[int]:
    """Column widths within `available` cells: narrow columns keep their width, the widest
    share what is left equally (one cap on all of them), none below 1."""
    if sum(natural) <= available:
        return natural
    remaining = max(available, len(natural))
    ordered = sorted(natural)
    cap = 1
    for i, width in enumerate(ordered):
        share = remaining // (len(ordered) - i)
        if width > share:
            cap = max(share, 1)
            break
        remaining -= width
    return [min(width, cap) for width in natural]


def results_table(results: list[dict[str, Any]], width: int) -> Table:
    """One table over all hosts' rows, at most `width` cells wide: the host column first,
    then the query's columns in the order they first appear; every cell on one line, cut
    with an ellipsis when its column had to be narrowed."""
    columns: list[str] = []
    for result in results:
        rows = result.get("rows") or []
        for name in result.get("columns") or (list(rows[0]) if rows else []):
            if name not in columns:
                columns.append(name)
    headers = ["host", *columns]
    body = [
        [_cell(result.get("hostname")), *(_cell(row.get(c)) for c in columns)]
        for result in sorted(results, key=lambda r: (str(r.get("hostname")), r.get("host_id", 0)))
        for row in result.get("rows") or []
    ]
    natural = [
        max([len(name), *(row[i].cell_len for row in body)]) for i, name in enumerate(headers)
    ]
    # each column has one cell of padding either side and a rule between it and the next
    widths = fit_widths(natural, width - 3 * len(headers) + 1)
    table = Table(show_edge=False)
    for name, column_width in zip(headers, widths, strict=True):
        table.add_column(name, width=column_width, no_wrap=True, overflow="ellipsis")
    for row in body:
        table.add_row(*row)
    return table


def _print_table(results: list[dict[str, Any]], out: Console, err: Console) -> None:
    """The rows on stdout as one table; hosts that failed or sent no rows on stderr."""
    if any(r.get("rows") for r in results):
        out.print(results_table(results, out.width))
    failed = [r for r in results if r.get("status") == "error"]
    for result in failed[:MAX_NAMED_HOSTS]:
        err.print(
            Text(f"{result.get('hostname')} (id {result.get('host_id')}): ")
            + Text(str(result.get("error")), style="red"),
            soft_wrap=True,
        )
    if len(failed) > MAX_NAMED_HOSTS:
        err.print(f"and {len(failed) - MAX_NAMED_HOSTS} more failed", highlight=False)
    empty = sorted(
        str(r.get("hostname")) for r in results if r.get("status") != "error" and not r.get("rows")
    )
    if empty:
        more = len(empty) - MAX_NAMED_HOSTS
        names = ", ".join(empty[:MAX_NAMED_HOSTS]) + (f" and {more} more" if more > 0 else "")
        err.print(f"no rows from {names}", highlight=False, soft_wrap=True)
