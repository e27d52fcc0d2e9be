"""Name resolution for outbound calls, behind an interface tests can replace."""

from __future__ import annotations

import asyncio
import socket
from ipaddress import ip_address
from typing import Protocol

from fleetwatch.outbound.addresses import IPAddress


class Resolver(Protocol):
    """Turns a host name into the addresses a connection to it may use."""

    async def resolve(self, host: str, port: int) -> list[IPAddress]:
        """Every address of `host` (raise OSError when it has none)."""
        ...


class SystemResolver:
    """The system's resolver (getaddrinfo in the event loop's executor)."""

    async def resolve(self, host: str, port: int) -> list[IPAddress]:
        """Every TCP address of `host`, deduplicated in the resolver's order."""
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        found: list[IPAddress] = []
        for family, _, _, _, sockaddr in infos:
            if family not in (socket.AF_INET, socket.AF_INET6):
                continue
            address = ip_address(str(sockaddr[0]).split("%", 1)[0])
            if address not in found:
                found.append(address)
        if not found:
            raise OSError(f"{host} has no IP address")
        return found
