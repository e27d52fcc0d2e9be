"""A resolver that answers from a table, so no test sends a DNS query."""

from __future__ import annotations

from ipaddress import ip_address

from fleetwatch.outbound import IPAddress


class StubResolver:
    """Answers `answers[host]` (changeable between calls); records every lookup."""

    def __init__(self, answers: dict[str, list[str]] | None = None) -> None:
        self.answers: dict[str, list[str]] = dict(answers or {})
        self.calls: list[str] = []

    async def resolve(self, host: str, port: int) -> list[IPAddress]:
        self.calls.append(host)
        try:
            return [ip_address(a) for a in self.answers[host]]
        except KeyError:
            raise OSError(f"stub resolver: no answer for {host}") from None
