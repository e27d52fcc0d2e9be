"""A campaign's cost limits: rows and bytes of row data stored over all its hosts.

`max_rows` / `max_bytes` on `POST /queries/run` (defaults: the `campaign_max_rows` and
`campaign_max_bytes` settings) cap the whole campaign. The answer that reaches a limit is
stored up to it; from then on no host is offered the query, and answers already on their
way are counted (responded, cost, `rows_count`) but their rows are not stored. The results
say so (`truncated_reason` `max_rows` or `max_bytes`), and so does the campaign:
`"truncated": true` with the same `truncated_reason`. Never silent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fleetwatch.fleet.errors import Invalid

#: `truncated_reason` of results (and of the campaign) once `max_rows` is reached.
TRUNCATED_MAX_ROWS = "max_rows"
#: `truncated_reason` of results (and of the campaign) once `max_bytes` is reached.
TRUNCATED_MAX_BYTES = "max_bytes"


@dataclass(frozen=True, slots=True)
class CampaignLimits:
    """Rows and bytes of row data a campaign stores at most, over all its hosts."""

    max_rows: int
    max_bytes: int

    def to_json(self) -> dict[str, int]:
        return {"max_rows": self.max_rows, "max_bytes": self.max_bytes}

    def reached(self, rows: int, size: int) -> str | None:
        """Which limit `rows` rows of `size` bytes stored have reached, or None."""
        if rows >= self.max_rows:
            return TRUNCATED_MAX_ROWS
        if size >= self.max_bytes:
            return TRUNCATED_MAX_BYTES
        return None


def limit_value(body: dict[str, Any], key: str) -> int | None:
    """A positive integer limit from a request body (None when absent); Invalid otherwise."""
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise Invalid(
            f"{key} must be a positive integer (the most the whole campaign may store), "
            f"not {value!r}; leave it out for the server's default"
        )
    return value


def limits_from_document(body: dict[str, Any], default: CampaignLimits) -> CampaignLimits:
    """The limits a campaign document records (`default` for documents written before
    campaigns had them)."""
    stored = body.get("limits")
    if not isinstance(stored, dict):
        return default
    return CampaignLimits(
        int(stored.get("max_rows") or default.max_rows),
        int(stored.get("max_bytes") or default.max_bytes),
    )
