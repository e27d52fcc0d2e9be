"""The address policy: every spelling of an inside address is judged by what it reaches."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address, ip_address

import pytest

from fleetwatch.outbound.addresses import (
    AddressPolicy,
    OutboundRefused,
    literal_address,
    parse_networks,
)


@pytest.mark.parametrize(
    ("host", "address"),
    [
        ("127.0.0.1", "127.0.0.1"),
        ("0x7f000001", "127.0.0.1"),
        ("0X7F000001", "127.0.0.1"),
        ("2130706433", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("127.0.1", "127.0.0.1"),
        ("0177.0.0.1", "127.0.0.1"),
        ("0x7f.0.0.0x1", "127.0.0.1"),
        ("127.0.0.1.", "127.0.0.1"),
        ("0", "0.0.0.0"),
        ("0xa9fea9fe", "169.254.169.254"),
        ("::1", "::1"),
        ("::ffff:127.0.0.1", "::ffff:127.0.0.1"),
    ],
)
def test_numeric_hosts_read_as_a_resolver_would(host: str, address: str) -> None:
    assert literal_address(host) == ip_address(address)


@pytest.mark.parametrize("host", ["example.com", "cafe.be", "127.0.0.1.nip.io", "localhost"])
def test_names_are_not_addresses(host: str) -> None:
    assert literal_address(host) is None


@pytest.mark.parametrize(
    "host", ["08.0.0.1", "1.2.3.4.5", "256.0.0.1", "1.16777216", "a.0x1", "1..2", "fe80::1%eth0"]
)
def test_malformed_numeric_hosts_are_errors(host: str) -> None:
    with pytest.raises(ValueError):
        literal_address(host)


@pytest.mark.parametrize(
    ("address", "word"),
    [
        ("127.0.0.1", "loopback"),
        ("127.255.0.9", "loopback"),
        ("::1", "loopback"),
        ("::ffff:127.0.0.1", "loopback"),
        ("2002:7f00:1::", "loopback"),  # 6to4 of 127.0.0.1
        ("64:ff9b::a00:1", "reserved"),  # NAT64 of 10.0.0.1 (within ::/8)
        ("169.254.169.254", "link-local"),
        ("fe80::1", "link-local"),
        ("10.0.0.1", "private"),
        ("172.16.3.4", "private"),
        ("192.168.1.1", "private"),
        ("fd00::1", "private"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("240.0.0.1", "private"),  # 240.0.0.0/4 is in the private list
        ("4000::1", "reserved"),
        ("100.64.0.1", "not public"),  # carrier-grade NAT
    ],
)
def test_inside_addresses_are_refused(address: str, word: str) -> None:
    ip = ip_address(address)
    assert AddressPolicy().refusal(ip) == word
    with pytest.raises(OutboundRefused, match="outbound_allow"):
        AddressPolicy().check(ip)


@pytest.mark.parametrize("address", ["93.184.216.34", "2606:2800:220:1::1", "8.8.8.8"])
def test_public_addresses_pass(address: str) -> None:
    assert AddressPolicy().refusal(ip_address(address)) is None


def test_allowed_networks_let_inside_addresses_through() -> None:
    policy = AddressPolicy(parse_networks("127.0.0.0/8, ::1/128"))
    assert policy.refusal(IPv4Address("127.0.0.1")) is None
    assert policy.refusal(IPv6Address("::1")) is None
    assert policy.refusal(IPv6Address("::ffff:127.0.0.1")) is None  # the IPv4 it reaches
    assert policy.refusal(IPv4Address("10.0.0.1")) == "private"
    assert policy.refusal(IPv4Address("169.254.169.254")) == "link-local"


def test_refusal_of_a_name_does_not_tell_its_address() -> None:
    with pytest.raises(OutboundRefused) as caught:
        AddressPolicy().check(IPv4Address("10.1.2.3"), "db.internal")
    assert str(caught.value).startswith("host db.internal resolves to a private address")
    assert "10.1.2.3" not in str(caught.value)


def test_parse_networks() -> None:
    assert [str(n) for n in parse_networks("127.0.0.0/8,::1, 10.0.0.0/8,")] == [
        "127.0.0.0/8",
        "::1/128",
        "10.0.0.0/8",
    ]
    assert parse_networks("") == ()
    with pytest.raises(ValueError, match="'10.0.0.1/8' is not a CIDR"):
        parse_networks("10.0.0.1/8")
    with pytest.raises(ValueError, match="'nonsense' is not a CIDR"):
        parse_networks("nonsense")
