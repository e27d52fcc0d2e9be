"""What a lean host says and understands on the wire (pure; tested in tests/bench/test_fleet.py):
the osquery endpoints, requests built as bytes as osquery's TLS transport sends them, a
response parser, and the bodies of enroll, detail query answers and live query answers
(reference: /work/shared/reference/osquery-remote-api.md). The identity tables are those of
`fleetwatch.sim.canned_host`, shared with the protocol tests' agent.
"""

from __future__ import annotations

from typing import Any, cast

from fleetwatch.sim import canned_host
from fleetwatch.sim.profile import OSQUERY_VERSION

ENROLL_PATH = b"/api/v1/osquery/enroll"
CONFIG_PATH = b"/api/v1/osquery/config"
READ_PATH = b"/api/v1/osquery/distributed/read"
WRITE_PATH = b"/api/v1/osquery/distributed/write"
LIVE_PREFIX = "fleet_distributed_query_"
DETAIL_PREFIX = "fleet_detail_query_"
#: osquery's hard-coded request timeout (reference §0.1).
REQUEST_TIMEOUT_S = 16.0
#: Check-in period while `accelerate` lasts (kDistributedAccelerationInterval).
ACCELERATE_INTERVAL_S = 5.0
#: `distributed_tls_max_attempts`: sleeps i*i s after failed attempt i, then the interval.
MAX_ATTEMPTS = 3
#: What a failed live query says (osquery's message for a missing table).
FAILED_MESSAGE = "no such table: lean_fleet_missing"
#: `stats` of a live query answer (osquery 5.8+: uint64 deltas of the process).
CANNED_STATS: dict[str, int] = {"wall_time_ms": 2, "user_time": 1, "system_time": 0, "memory": 0}


def build_request(path: bytes, host_header: bytes, body: bytes, node_key: str | None) -> bytes:
    """A POST as osquery's TLS transport sends it (HTTP/1.1, keep-alive, JSON both ways)."""
    head = [
        b"POST " + path + b" HTTP/1.1",
        b"Host: " + host_header,
        b"User-Agent: osquery/" + OSQUERY_VERSION.encode(),
        b"Accept: application/json",
        b"Content-Type: application/json",
    ]
    if node_key is not None:
        head.append(b"Authorization: NodeKey " + node_key.encode())
    head.append(b"Content-Length: " + str(len(body)).encode())
    return b"\r\n".join(head) + b"\r\n\r\n" + body


class ResponseParser:
    """HTTP/1.1 responses from a byte stream: `feed(data)` returns the complete ones."""

    __slots__ = ("buffer",)

    def __init__(self) -> None:
        self.buffer = b""

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        """(status code, body) of every response completed by `data`."""
        buffer = self.buffer + data if self.buffer else data
        out: list[tuple[int, bytes]] = []
        while True:
            head_end = buffer.find(b"\r\n\r\n")
            if head_end < 0:
                break
            head = buffer[:head_end].lower()
            at = head.find(b"\r\ncontent-length:")
            if at < 0:
                raise ValueError(f"response without content-length: {head[:200]!r}")
            line_end = head.find(b"\r\n", at + 2)
            length = int(head[at + 17 : line_end if line_end >= 0 else None])
            end = head_end + 4 + length
            if len(buffer) < end:
                break
            out.append((int(head[9:12]), buffer[head_end + 4 : end]))
            buffer = buffer[end:]
        self.buffer = buffer
        return out


def host_identifier(index: int) -> str:
    return f"lean-{index:06d}"


def host_uuid(index: int) -> str:
    return f"00000000-0000-4000-8000-{index:012d}"


def enroll_body(index: int, secret: str) -> dict[str, Any]:
    """The enroll request of host `index` (no node key; every detail value a string)."""
    return {
        "enroll_secret": secret,
        "host_identifier": host_identifier(index),
        "platform_type": canned_host.PLATFORM_TYPE,
        "host_details": host_details(index),
    }


def host_details(index: int) -> dict[str, dict[str, str]]:
    """Host `index`'s identity tables (fleetwatch.sim.canned_host), by table name."""
    return canned_host.host_details(
        hostname=host_identifier(index),
        uuid=host_uuid(index),
        serial=f"PF{index:08d}",
        pid=str(1000 + index % 30000),
        instance_id=f"10000000-0000-4000-8000-{index:012d}",
    )


def detail_rows(name: str, index: int, interval: int) -> list[dict[str, str]]:
    """Canned rows for a `fleet_detail_query_<name>` (the table's real columns, strings)."""
    match name:
        case "os_version" | "osquery_info" | "system_info":
            return [host_details(index)[name]]
        case "uptime":
            return [
                {
                    "days": "0",
                    "hours": "1",
                    "minutes": "2",
                    "seconds": "3",
                    "total_seconds": "3723",
                }
            ]
        case "network_interface":
            address = f"10.{index >> 16 & 255}.{index >> 8 & 255}.{index & 255}"
            mac = f"02:00:00:{index >> 16 & 255:02x}:{index >> 8 & 255:02x}:{index & 255:02x}"
            return [{"interface": "eth0", "address": address, "mac": mac}]
        case "osquery_flags":
            # The lean host has no config refresh and no logger thread: osquery's defaults.
            return [
                {"name": "distributed_interval", "value": str(interval)},
                {"name": "config_tls_refresh", "value": "0"},
                {"name": "config_refresh", "value": "0"},
                {"name": "logger_tls_period", "value": "4"},
            ]
    return []


def live_row(index: int) -> dict[str, str]:
    """The canned answer row of a live query."""
    return {"hostname": host_identifier(index), "uuid": host_uuid(index)}


def write_body(
    node_key: str, queries: dict[str, str], index: int, interval: int, fail_live: bool
) -> dict[str, Any]:
    """The distributed/write answering every offered query (reference §1.5)."""
    rows: dict[str, list[dict[str, str]]] = {}
    statuses: dict[str, int] = {}
    messages: dict[str, str] = {}
    stats: dict[str, dict[str, int]] = {}
    for name in queries:
        if name.startswith(LIVE_PREFIX):
            if fail_live:
                rows[name], statuses[name], messages[name], stats[name] = [], 1, FAILED_MESSAGE, {}
                continue
            rows[name] = [live_row(index)]
        elif name.startswith(DETAIL_PREFIX):
            rows[name] = detail_rows(name[len(DETAIL_PREFIX) :], index, interval)
        else:
            rows[name] = []  # labels and anything else: canned "no row"
        statuses[name], messages[name], stats[name] = 0, "", CANNED_STATS
    return {
        "node_key": node_key,
        "queries": rows,
        "statuses": statuses,
        "messages": messages,
        "stats": stats,
    }


def offered_queries(doc: dict[str, Any]) -> dict[str, str]:
    """The `queries` of a read reply; ValueError for what osquery would reject (§1.4)."""
    queries = doc.get("queries")
    if queries is None:
        return {}
    if not isinstance(queries, dict):
        raise ValueError("queries is not an object")
    for name, sql in queries.items():
        if not name or not isinstance(sql, str) or not sql:
            raise ValueError(f"Distributed query {name!r} is not a string")
    discovery = doc.get("discovery") or {}
    if not isinstance(discovery, dict) or not all(
        isinstance(v, str) and v for v in discovery.values()
    ):
        raise ValueError("a discovery query is not a string")
    return cast(dict[str, str], queries)
