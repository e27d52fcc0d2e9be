"""Outbound calls a user can aim (webhooks): which addresses they may reach, and an HTTP
client that connects only to addresses it checked. Imports nothing else of fleetwatch.

A user who can name a URL the server calls could otherwise make the server reach its own
loopback services, the cloud metadata endpoint or the private network (server-side request
forgery), and read what those answered from failure reasons. `OutboundGuard` refuses
loopback, link-local, private, multicast, unspecified and reserved addresses unless the
operator allows their range (`outbound_allow`); it resolves a name, checks every answer and
connects to the checked address itself, so a second DNS answer (rebinding) cannot redirect
the connection.
"""

from fleetwatch.outbound.addresses import (
    AddressPolicy,
    IPAddress,
    Network,
    OutboundRefused,
    literal_address,
    parse_networks,
)
from fleetwatch.outbound.guard import OutboundGuard, OutboundUnresolved
from fleetwatch.outbound.resolver import Resolver, SystemResolver

__all__ = [
    "AddressPolicy",
    "IPAddress",
    "Network",
    "OutboundGuard",
    "OutboundRefused",
    "OutboundUnresolved",
    "Resolver",
    "SystemResolver",
    "literal_address",
    "parse_networks",
]
