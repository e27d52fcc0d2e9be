"""The address policy of user-aimed outbound calls, and how a host names an address.

A host may spell an IPv4 address in any form a resolver accepts (`0x7f000001`,
`2130706433`, `127.1`, `0177.0.0.1`); `literal_address` reads them the way the URL
standard and libc's inet_aton do, so the policy judges the address a connection would
really reach. IPv6 forms that carry an IPv4 address (`::ffff:127.0.0.1`, 6to4, NAT64) are
judged by the address they carry as well.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

IPAddress = IPv4Address | IPv6Address
Network = IPv4Network | IPv6Network

#: NAT64's well-known prefix: the last 32 bits are the IPv4 address reached.
NAT64 = IPv6Network("64:ff9b::/96")

_NUMBER = re.compile(r"^(0[xX][0-9a-fA-F]*|[0-9]+)$")


class OutboundRefused(Exception):
    """A call the address policy refuses; the message says why and may be shown to users."""


def parse_networks(text: str | Iterable[str]) -> tuple[Network, ...]:
    """CIDRs, comma-separated or listed (`127.0.0.0/8, ::1/128`); a bare address is a /32
    or /128. ValueError names an entry that is not a network."""
    items = text.split(",") if isinstance(text, str) else list(text)
    networks: list[Network] = []
    for item in items:
        entry = item.strip()
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry, strict=True))
        except ValueError as exc:
            raise ValueError(
                f"{entry!r} is not a CIDR network like 10.0.0.0/8 or ::1/128 ({exc})"
            ) from None
    return tuple(networks)


def _ipv4_number(part: str) -> int:
    if part[:2] in ("0x", "0X"):
        return int(part[2:] or "0", 16)
    if len(part) > 1 and part.startswith("0"):
        return int(part, 8)  # ValueError for 08, as inet_aton refuses it
    return int(part, 10)


def _numeric_ipv4(host: str) -> IPv4Address | None:
    """The IPv4 address of a numeric host in any inet_aton spelling; None for a name."""
    parts = host.split(".")
    if len(parts) > 1 and parts[-1] == "":
        parts.pop()  # one trailing dot is allowed, as in a fully qualified name
    if not _NUMBER.match(parts[-1]):
        return None  # the URL standard: a host is an IPv4 address iff its last label is a number
    if len(parts) > 4 or not all(_NUMBER.match(p) for p in parts):
        raise ValueError(f"host {host!r} is neither a name nor a valid IPv4 address")
    try:
        numbers = [_ipv4_number(p) for p in parts]
    except ValueError:
        raise ValueError(f"host {host!r} is neither a name nor a valid IPv4 address") from None
    *leading, last = numbers
    if any(n > 255 for n in leading) or last >= 256 ** (4 - len(leading)):
        raise ValueError(f"host {host!r} is neither a name nor a valid IPv4 address")
    value = last
    for i, n in enumerate(leading):
        value += n << (8 * (3 - i))
    return IPv4Address(value)


def literal_address(host: str) -> IPAddress | None:
    """The address `host` spells (IPv6 without brackets), or None when it is a name.

    ValueError for a host that is numeric but no valid address, or an IPv6 zone id."""
    if ":" in host:
        if "%" in host:
            raise ValueError(f"host {host!r}: IPv6 zone ids are not allowed")
        try:
            return IPv6Address(host)
        except ValueError:
            raise ValueError(f"host {host!r} is not a valid IPv6 address") from None
    return _numeric_ipv4(host)


def embedded_ipv4(ip: IPAddress) -> IPv4Address | None:
    """The IPv4 address an IPv6 address carries (mapped, 6to4, NAT64), if any."""
    if isinstance(ip, IPv4Address):
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in NAT64:
        return IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def connect_form(ip: IPAddress) -> IPAddress:
    """The address to open a socket to: an IPv4-mapped IPv6 address as plain IPv4."""
    if isinstance(ip, IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def category(ip: IPAddress) -> str | None:
    """Why an address is not public (`loopback`, `private`, ...), or None if it is."""
    checks = (
        ("unspecified", ip.is_unspecified),
        ("loopback", ip.is_loopback),
        ("link-local", ip.is_link_local),
        ("multicast", ip.is_multicast),
        ("private", ip.is_private),
        ("reserved", ip.is_reserved),
        ("site-local", isinstance(ip, IPv6Address) and ip.is_site_local),
        ("not public", not ip.is_global),
    )
    return next((word for word, hit in checks if hit), None)


class AddressPolicy:
    """Public addresses are allowed; others only inside the operator's allowed networks."""

    def __init__(self, allow: Sequence[Network] = ()) -> None:
        self.allow = tuple(allow)

    def refusal(self, ip: IPAddress) -> str | None:
        """Why `ip` may not be called (`loopback`, `private`, ...), or None if it may."""
        target = connect_form(ip)
        if any(target in network for network in self.allow):
            return None
        for candidate in (target, embedded_ipv4(target)):
            if candidate is not None:
                word = category(candidate)
                if word is not None:
                    return word
        return None

    def check(self, ip: IPAddress, host: str | None = None) -> None:
        """Raise OutboundRefused if `ip` may not be called (`host`: the name it came from).

        The message names a literal address but not what a name resolved to: a user
        learns that their name points inside, not the layout of the inside."""
        word = self.refusal(ip)
        if word is None:
            return
        allow = "the operator can allow its range with outbound_allow"
        if host is None:
            raise OutboundRefused(f"address {ip} is {word}; {allow}")
        article = "an" if word[0] in "aeiou" else "a"
        raise OutboundRefused(f"host {host} resolves to {article} {word} address; {allow}")
