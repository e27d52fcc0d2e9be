"""What `fleetwatch query` says at the end about a campaign's cost and truncation: p50, p95
and max of wall time and memory over the answers, and which cap kept rows out (the
campaign's `max_rows` / `max_bytes`, or the server's per-host and per-campaign caps)."""

from __future__ import annotations

from typing import Any

#: Why a result or campaign was truncated, as a person reads it (`truncated_reason`).
TRUNCATION_CAUSES = {
    "max_rows": "the campaign's max_rows",
    "max_bytes": "the campaign's max_bytes",
    "rows_per_host": "the server's rows per host (live_query_max_rows_per_host)",
    "result_bytes": "the server's bytes per answer (live_query_max_result_bytes)",
    "rows_per_campaign": "the server's rows per campaign (live_query_max_rows_per_campaign)",
}


def _amount(value: Any, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "bytes":
        for size, name in ((1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")):
            if value >= size:
                return f"{value / size:.1f} {name}"
        return f"{value} B"
    return f"{value} ms"


def cost_lines(campaign: dict[str, Any], results: list[dict[str, Any]]) -> list[str]:
    """The campaign's cost and, when rows were kept out, which cap did it."""
    lines = []
    cost = campaign.get("cost") or {}
    if cost.get("samples"):
        parts = []
        for field, label, unit in (
            ("wall_time_ms", "wall time", "ms"),
            ("memory", "memory", "bytes"),
        ):
            measure = cost.get(field) or {}
            parts.append(
                f"{label} p50 {_amount(measure.get('p50'), unit)}, "
                f"p95 {_amount(measure.get('p95'), unit)}, max {_amount(measure.get('max'), unit)}"
            )
        lines.append(f"cost over {cost['samples']} answers: " + "; ".join(parts))
    reason = campaign.get("truncated_reason")
    if campaign.get("truncated"):
        limit = (campaign.get("limits") or {}).get(reason or "")
        shown = f" ({limit})" if limit is not None else ""
        lines.append(
            f"truncated: {TRUNCATION_CAUSES.get(reason or '', reason)}{shown} was reached; "
            "no host was asked after that, and later answers were counted but their rows not "
            "stored"
        )
    hosts: dict[str, int] = {}
    for result in results:
        if result.get("truncated"):
            key = str(result.get("truncated_reason"))
            hosts[key] = hosts.get(key, 0) + 1
    for key, count in sorted(hosts.items()):
        if key != reason or not campaign.get("truncated"):
            lines.append(
                f"truncated: {count} host answer(s) cut by {TRUNCATION_CAUSES.get(key, key)}"
            )
    return lines
