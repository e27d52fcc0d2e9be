"""A real HTTP receiver for tests (webhook deliveries, forwarded logs, destinations): a small
FastAPI app under uvicorn on a free loopback port, recording the bodies sent to
`{prefix}/{name}{suffix}`, each parsed by its kind.

Its behaviour is set per name (and may be changed while it runs: a receiver that recovers):
`ok`, `fail` (the failure status, with the kind's failure body), `hang` (never answers in
time), `flaky:N` (the failure status, no body, for the first N attempts, then ok), and for
`BULK` `busy_items:N` (the first N attempts answer 200 with one item refused 429: the batch
must be sent again) and `reject_items:I,J` (items I and J of every body refused for good,
400). `WEBHOOKS` answers PATCH /hook/{name} (200, or 500 with `INTERNAL_ANSWER`), `LOGS`
POST /logs/{name} (204, or 503), `NDJSON` POST /ndjson/{name} (NDJSON lines), `HEC` POST
/hec/{name} (Splunk HEC: concatenated event JSON; a wrong `Authorization: Splunk <token>`
is 403 as Splunk answers it), `BULK` POST /es/{name}/_bulk (Elasticsearch bulk NDJSON:
(action, document) pairs; the answer lists an item per document).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import uvicorn
from fastapi import FastAPI, Request, Response

from tests.services import free_port

#: The body a failing webhook answers with: an inside service's reply no user may read.
INTERNAL_ANSWER = "internal-service: redis_password=hunter2"


@dataclass(frozen=True)
class Kind:
    """What a receiver listens to and how it answers."""

    method: str
    prefix: str
    ok_status: int
    fail_status: int
    fail_body: str = ""
    #: The body as recorded: one JSON document by default.
    parse: Callable[[bytes], Any] = json.loads
    #: After the name in the path (Elasticsearch's `/_bulk`).
    suffix: str = ""
    #: The answer to an accepted body.
    ok_body: str = ""


def ndjson(body: bytes) -> list[Any]:
    """NDJSON lines, each a JSON document."""
    return [json.loads(line) for line in body.splitlines() if line.strip()]


def concatenated(body: bytes) -> list[Any]:
    """JSON documents one after another, as Splunk HEC takes them."""
    text, decoder, found, at = body.decode(), json.JSONDecoder(), [], 0
    while at < len(text):
        if text[at].isspace():
            at += 1
            continue
        item, at = decoder.raw_decode(text, at)
        found.append(item)
    return found


def bulk_pairs(body: bytes) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """Elasticsearch bulk NDJSON as (action, document) pairs."""
    lines = ndjson(body)
    assert len(lines) % 2 == 0, "a bulk body is action and document lines in pairs"
    return [(lines[i], lines[i + 1]) for i in range(0, len(lines), 2)]


WEBHOOKS = Kind("PATCH", "/hook", 200, 500, INTERNAL_ANSWER)
LOGS = Kind("POST", "/logs", 204, 503)
#: Policy automations POST one event per request (task webhooks PATCH).
EVENTS = Kind("POST", "/hook", 200, 500, INTERNAL_ANSWER)
NDJSON = Kind("POST", "/ndjson", 200, 503, parse=ndjson)
HEC = Kind(
    "POST",
    "/hec",
    200,
    503,
    '{"text":"Server is busy","code":9}',
    parse=concatenated,
    ok_body='{"text":"Success","code":0}',
)
BULK = Kind("POST", "/es", 200, 503, parse=bulk_pairs, suffix="/_bulk")


class Receiver:
    """The recorded bodies, attempts and the behaviour of each name."""

    def __init__(self, kind: Kind) -> None:
        self.kind = kind
        self.url = ""
        self.received: dict[str, list[Any]] = {}
        self.attempts: dict[str, int] = {}
        self.behaviour: dict[str, str] = {}
        #: The `Authorization` header each name must get (403 otherwise), if set.
        self.authorization: dict[str, str] = {}
        self.headers: dict[str, dict[str, str]] = {}
        self.lock = threading.Lock()

    def endpoint(self, name: str, behaviour: str = "ok") -> str:
        """The URL of `name`, behaving as given."""
        self.behaviour[name] = behaviour
        if self.kind is BULK:
            return f"{self.url}{self.kind.prefix}/{name}"  # the sink appends /_bulk
        return f"{self.url}{self.kind.prefix}/{name}{self.kind.suffix}"

    def bodies(self, name: str) -> list[dict[str, Any]]:
        with self.lock:
            return list(self.received.get(name, []))

    def wait_for(self, name: str, count: int, timeout: float = 30.0) -> list[dict[str, Any]]:
        """The bodies received so far, once at least `count` (or the timeout)."""
        deadline = time.monotonic() + timeout
        while len(self.bodies(name)) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.bodies(name)

    def records(self, name: str) -> list[Any]:
        """Every record received (bodies that parse to lists flattened), in arrival order."""
        return [item for body in self.bodies(name) for item in body]

    def wait_records(self, name: str, count: int, timeout: float = 30.0) -> list[Any]:
        """The records received so far, once at least `count` (or the timeout)."""
        deadline = time.monotonic() + timeout
        while len(self.records(name)) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.records(name)

    def wait_lines(self, name: str, count: int, timeout: float = 20.0) -> list[dict[str, Any]]:
        """The log lines (each body's `data`) received so far, once at least `count`."""
        deadline = time.monotonic() + timeout
        while True:
            lines = [line for body in self.bodies(name) for line in body["data"]]
            if len(lines) >= count or time.monotonic() > deadline:
                return lines
            time.sleep(0.02)

    def app(self) -> FastAPI:
        app = FastAPI()
        kind = self.kind

        async def receive(name: str, request: Request) -> Response:
            body = kind.parse(await request.body())
            with self.lock:
                attempt = self.attempts[name] = self.attempts.get(name, 0) + 1
                self.headers[name] = dict(request.headers)
            behaviour = self.behaviour.get(name, "ok")
            expected = self.authorization.get(name)
            if expected is not None and request.headers.get("authorization") != expected:
                return Response(status_code=403, content='{"text":"Invalid token","code":4}')
            if behaviour == "hang":
                await asyncio.sleep(3600)
            if behaviour == "fail":
                return Response(status_code=kind.fail_status, content=kind.fail_body)
            if behaviour.startswith("flaky:") and attempt <= int(behaviour.split(":")[1]):
                return Response(status_code=kind.fail_status)
            if kind is BULK:
                return self._bulk_answer(name, body, behaviour, attempt)
            with self.lock:
                self.received.setdefault(name, []).append(body)
            return Response(status_code=kind.ok_status, content=kind.ok_body)

        app.add_api_route(f"{kind.prefix}/{{name}}{kind.suffix}", receive, methods=[kind.method])
        return app

    def _bulk_answer(
        self,
        name: str,
        pairs: list[tuple[dict[str, Any], dict[str, Any]]],
        behaviour: str,
        attempt: int,
    ) -> Response:
        """Elasticsearch's bulk answer; accepted documents are recorded (an `_id` again
        replaces the earlier document, as an index does)."""
        refused: dict[int, tuple[int, str]] = {}
        if behaviour.startswith("busy_items:") and attempt <= int(behaviour.split(":")[1]):
            refused[0] = (429, "es_rejected_execution_exception")
        if behaviour.startswith("reject_items:"):
            for index in behaviour.split(":")[1].split(","):
                refused[int(index)] = (400, "mapper_parsing_exception")
        items = []
        accepted = []
        for n, (action, document) in enumerate(pairs):
            meta = action["index"]
            if n in refused:
                status, error = refused[n]
                items.append(
                    {"index": {"_id": meta["_id"], "status": status, "error": {"type": error}}}
                )
            else:
                items.append({"index": {"_id": meta["_id"], "status": 201, "result": "created"}})
                accepted.append((action, document))
        with self.lock:
            self.received.setdefault(name, []).append(accepted)
        answer = {"took": 1, "errors": bool(refused), "items": items}
        return Response(status_code=200, content=json.dumps(answer), media_type="application/json")

    def documents(self, name: str) -> dict[str, dict[str, Any]]:
        """The documents an index would hold: by `_id`, the last one sent."""
        return {action["index"]["_id"]: doc for action, doc in self.records(name)}


@contextmanager
def running_receiver(
    kind: Kind = WEBHOOKS, port: int | None = None, receiver: Receiver | None = None
) -> Iterator[Receiver]:
    """Start a receiver on 127.0.0.1 in a thread (on `port`, or a free one; recording into
    `receiver`, or a new one: a receiver that was down and comes back); stop it afterwards."""
    receiver = receiver or Receiver(kind)
    port = port or free_port()
    config = uvicorn.Config(receiver.app(), host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="test-receiver", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test receiver did not start")
        time.sleep(0.02)
    receiver.url = f"http://127.0.0.1:{port}"
    try:
        yield receiver
    finally:
        server.should_exit = True
        server.force_exit = True  # a hanging handler must not hold the shutdown
        thread.join(timeout=10)
