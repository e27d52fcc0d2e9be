"""Helpers for end-to-end query task tests: QueryTask bodies, a client, WS and SSE readers."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
from websockets.sync.client import ClientConnection, connect

from tests.server import RunningServer

FAR_FUTURE = 2**63 - 1
TASKS = "/core/local-query-tasks"
JsonObject = dict[str, Any]


def term(name: str, value: str, occurance: str = "MUST_OCCUR", match: str = "TERM") -> JsonObject:
    return {
        "occurance": occurance,
        "term": {"propertyName": name, "matchValue": value, "matchType": match},
    }


def query(*clauses: JsonObject) -> JsonObject:
    return {"occurance": "MUST_OCCUR", "booleanClauses": list(clauses)}


def kind_query(kind: str, **equals: str) -> JsonObject:
    return query(term("documentKind", kind), *(term(k, v) for k, v in equals.items()))


def task_body(
    q: JsonObject,
    *options: str,
    link: str | None = None,
    expiration: int | None = FAR_FUTURE,
    direct: bool = False,
    **spec: Any,
) -> JsonObject:
    body: JsonObject = {
        "taskInfo": {"isDirect": direct},
        "querySpec": {"query": q, "options": list(options), **spec},
    }
    if link is not None:
        body["documentSelfLink"] = link
    if expiration is not None:
        body["documentExpirationTimeMicros"] = expiration
    return body


class TaskClient:
    """An authenticated HTTP client of a running server."""

    def __init__(self, server: RunningServer, token: str) -> None:
        self.server = server
        self.token = token
        self.http = httpx.Client(
            base_url=server.url, headers={"authorization": f"Bearer {token}"}, timeout=30
        )

    def close(self) -> None:
        self.http.close()

    def create(self, body: JsonObject, factory: str = TASKS) -> JsonObject:
        reply = self.http.post(factory, json=body)
        assert reply.status_code in (200, 202), reply.text
        result: JsonObject = reply.json()
        return result

    def get(self, link: str) -> JsonObject:
        reply = self.http.get(link)
        assert reply.status_code == 200, reply.text
        result: JsonObject = reply.json()
        return result

    def doc(self, method: str, path: str, body: JsonObject | None = None) -> JsonObject:
        reply = self.http.request(method, path, json=body)
        assert reply.status_code == 200, reply.text
        result: JsonObject = reply.json()
        return result

    def stats(self) -> JsonObject:
        return self.get("/core/document-index/stats")

    def wait_stats(self, key: str, value: int, timeout: float = 20.0) -> JsonObject:
        deadline = time.monotonic() + timeout
        while True:
            stats = self.stats()
            if stats[key] == value or time.monotonic() > deadline:
                return stats
            time.sleep(0.05)

    @contextmanager
    def websocket(self, link: str, since: int | None = None) -> Iterator[WsReader]:
        url = self.server.url.replace("http://", "ws://") + f"{link}/stream"
        if since is not None:
            url += f"?since={since}"
        with connect(url, additional_headers={"authorization": f"Bearer {self.token}"}) as ws:
            yield WsReader(ws)


def user_client(
    admin: TaskClient,
    email: str,
    global_role: str | None,
    teams: list[JsonObject] | None = None,
) -> tuple[TaskClient, int]:
    """A new user made by the admin through the API, logged in: (its client, its id)."""
    from tests.conftest import login

    made = admin.http.post(
        "/api/v1/fleet/users",
        json={
            "email": email,
            "password": "user-password-1",
            "global_role": global_role,
            "teams": teams or [],
        },
    )
    assert made.status_code == 201, made.text
    user_id: int = made.json()["user"]["id"]
    return TaskClient(admin.server, login(admin.server, email, "user-password-1")), user_id


class WsReader:
    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        #: The seqs of the `current` markers read so far (`next` passes over them).
        self.currents: list[int] = []

    def next(self, timeout: float = 20.0) -> JsonObject:
        """The next message that is not a `current` marker."""
        while True:
            message = self.raw(timeout)
            if message["type"] != "current":
                return message
            self.currents.append(message["seq"])

    def raw(self, timeout: float = 20.0) -> JsonObject:
        """The next message, markers included."""
        message: JsonObject = json.loads(self.ws.recv(timeout=timeout))
        return message

    def take(self, n: int, timeout: float = 20.0) -> list[JsonObject]:
        return [self.next(timeout) for _ in range(n)]

    def initial(self) -> tuple[list[str], dict[str, Any], int]:
        """Read the initial results: (links, documents, seq)."""
        links: list[str] = []
        docs: dict[str, Any] = {}
        while True:
            message = self.raw()
            assert message["type"] == "initial", message
            links.extend(message["results"].get("documentLinks", []))
            docs.update(message["results"].get("documents", {}))
            if message["last"]:
                marker = self.raw()  # caught up: the marker follows the initial results
                assert marker == {**marker, "type": "current", "seq": message["seq"]}, marker
                self.currents.append(marker["seq"])
                return links, docs, message["seq"]

    def quiet(self, timeout: float = 0.5) -> bool:
        """True if nothing but `current` markers arrives within `timeout`."""
        try:
            while self.raw(timeout)["type"] == "current":
                pass
        except TimeoutError:
            return True
        return False


def sse_events(
    response: httpx.Response, skip_current: bool = True
) -> Iterator[tuple[str | None, JsonObject | None]]:
    """(id, data) per SSE event; (None, None) for a comment line. `current` markers are
    passed over unless `skip_current` is False."""
    event_id: str | None = None
    data: list[str] = []
    for line in response.iter_lines():
        if line.startswith(":"):
            yield None, None
        elif line.startswith("id: "):
            event_id = line[4:]
        elif line.startswith("data: "):
            data.append(line[6:])
        elif line == "" and data:
            message = json.loads("\n".join(data))
            if not skip_current or message.get("type") != "current":
                yield event_id, message
            event_id, data = None, []
