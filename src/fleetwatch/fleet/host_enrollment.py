"""Host enrollment: the rows a batch of enrollments inserts or updates (see
`HostService.enroll` for who keeps a host and who gets a new one).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from fleetwatch.fleet.host_inventory import COLUMN_DEFAULTS, INVENTORY_COLUMNS
from fleetwatch.storage.schema import hosts


@dataclass
class Enrollment:
    host_identifier: str
    uuid: str
    team_id: int | None
    inventory: dict[str, Any]
    key_hash: str


def distinct_identities(requests: Sequence[Enrollment]) -> list[list[int]]:
    """Split a batch (by position) into parts in which no two enrollments share a
    host_identifier or uuid, in order: a repeat is written after the first one's row."""
    parts: list[list[int]] = []
    seen: list[set[str]] = []
    for i, request in enumerate(requests):
        keys = {"i:" + request.host_identifier}
        if request.uuid:
            keys.add("u:" + request.uuid)
        # after the last part holding any of these keys
        at = max((n + 1 for n, used in enumerate(seen) if used & keys), default=0)
        if at == len(parts):
            parts.append([])
            seen.append(set())
        parts[at].append(i)
        seen[at] |= keys
    return parts


async def write_enrollments(
    conn: AsyncConnection,
    requests: Sequence[Enrollment],
    now: float,
    distributed_interval: int,
) -> list[Any]:
    """Insert or update the rows of enrollments with distinct identities; their rows."""
    identifiers = sorted({r.host_identifier for r in requests})
    uuids = sorted({r.uuid for r in requests if r.uuid})
    match = [hosts.c.host_identifier.in_(identifiers)]
    if uuids:
        match.append(hosts.c.uuid.in_(uuids))
    # Identities are per team: a secret of one team never reaches another team's host
    # (see `enroll`).
    by_identifier: dict[tuple[int | None, str], int] = {}
    by_uuid: dict[tuple[int | None, str], int] = {}
    known: dict[int, Mapping[str, Any]] = {}
    for r in await conn.execute(
        select(
            hosts.c.id,
            hosts.c.host_identifier,
            hosts.c.uuid,
            hosts.c.team_id,
            hosts.c.inventory,
        ).where(or_(*match))
    ):
        known[int(r.id)] = r.inventory if isinstance(r.inventory, Mapping) else {}
        team = None if r.team_id is None else int(r.team_id)
        by_identifier.setdefault((team, r.host_identifier), int(r.id))
        if r.uuid:
            by_uuid.setdefault((team, r.uuid), int(r.id))
    out: list[Any] = [None] * len(requests)
    inserts: list[tuple[int, dict[str, Any]]] = []
    for i, request in enumerate(requests):
        columns = {k: request.inventory[k] for k in INVENTORY_COLUMNS if k in request.inventory}
        host_id = by_identifier.get((request.team_id, request.host_identifier))
        if host_id is None and request.uuid:
            host_id = by_uuid.get((request.team_id, request.uuid))
        if host_id is not None:
            # A host enrolling again keeps its id and team; its old key stops working.
            # What it does not tell this time (an enroll without host_details) is kept.
            told = {k: v for k, v in request.inventory.items() if v not in ("", 0, None)}
            result = await conn.execute(
                update(hosts)
                .where(hosts.c.id == host_id)
                .values(
                    node_key_hash=request.key_hash,
                    host_identifier=request.host_identifier,
                    seen_time=now,
                    detail_updated_at=None,
                    inventory={**known.get(host_id, {}), **told},
                    **{k: v for k, v in columns.items() if k in told},
                )
                .returning(*hosts.c)
            )
            out[i] = result.one()._mapping
        else:
            inserts.append(
                (
                    i,
                    {
                        "node_key_hash": request.key_hash,
                        "host_identifier": request.host_identifier,
                        "team_id": request.team_id,
                        "enrolled_at": now,
                        "seen_time": now,
                        "detail_updated_at": None,
                        "label_updated_at": None,
                        "distributed_interval": distributed_interval,
                        "config_tls_refresh": 0,
                        "inventory": request.inventory,
                        **{k: columns.get(k, COLUMN_DEFAULTS[k]) for k in INVENTORY_COLUMNS},
                    },
                )
            )
    if inserts:
        result = await conn.execute(
            insert(hosts).returning(*hosts.c, sort_by_parameter_order=True),
            [values for _, values in inserts],
        )
        for (i, _), row in zip(inserts, result.all(), strict=True):
            out[i] = row._mapping
    return out
