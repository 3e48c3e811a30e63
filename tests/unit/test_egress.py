"""The egress policy: every denied range, the IPv6 forms that reach them, allow/deny precedence."""

from __future__ import annotations

import socket

import pytest

from switchboard.config import Settings
from switchboard.egress import EgressDenied, Policy, denied_in
from switchboard.errors import ConfigError

pytestmark = pytest.mark.security

DENIED = [
    "0.0.0.0",
    "0.1.2.3",
    "10.0.0.1",
    "10.255.255.255",
    "100.64.0.1",
    "100.127.255.254",
    "127.0.0.1",
    "127.255.255.254",
    "169.254.169.254",
    "169.254.0.1",
    "172.16.0.1",
    "172.31.255.255",
    "192.0.0.8",
    "192.0.2.1",
    "192.88.99.1",
    "192.168.1.1",
    "198.18.0.1",
    "198.51.100.7",
    "203.0.113.9",
    "224.0.0.1",
    "239.255.255.250",
    "240.0.0.1",
    "255.255.255.255",
    "::",
    "::1",
    "::127.0.0.1",  # IPv4-compatible
    "::ffff:127.0.0.1",  # IPv4-mapped
    "::ffff:7f00:1",  # the same, written in hex
    "::ffff:169.254.169.254",
    "::ffff:10.0.0.1",
    "::ffff:0.0.0.0",
    "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
    "2002:7f00:1::1",  # 6to4 of 127.0.0.1
    "2002:a00:1::1",  # 6to4 of 10.0.0.1
    "2001:db8::1",
    "2001::1",  # Teredo
    "fc00::1",
    "fd12:3456::1",
    "fe80::1",
    "fe80::1%1",  # with a scope id, as link-local socket addresses come
    "fec0::1",
    "ff02::1",
    "100::1",
]

ALLOWED = ["8.8.8.8", "1.1.1.1", "93.184.216.34", "172.32.0.1", "100.128.0.1", "2606:4700::1111"]


@pytest.mark.parametrize("address", DENIED)
def test_default_policy_denies_every_internal_range(address: str) -> None:
    assert not Policy().address_allowed(address)
    assert not Policy().address_allowed(address, "example.com")


@pytest.mark.parametrize("address", ALLOWED)
def test_default_policy_allows_public_addresses(address: str) -> None:
    assert Policy().address_allowed(address)


def test_allowing_loopback_covers_its_mapped_forms_and_nothing_else() -> None:
    policy = Policy.parse("127.0.0.0/8")
    for address in ("127.0.0.1", "127.9.9.9", "::ffff:127.0.0.1", "2002:7f00:1::1"):
        assert policy.address_allowed(address), address
    for address in ("10.0.0.1", "169.254.169.254", "::ffff:10.0.0.1", "::1", "0.0.0.0"):
        assert not policy.address_allowed(address), address


def test_deny_wins_over_allow_and_names_work_both_ways() -> None:
    policy = Policy.parse(
        allow="10.0.0.0/8, smtp.corp.example, *.hooks.corp.example",
        deny="10.9.0.0/16, 8.8.8.8, blocked.example, *.evil.example",
    )
    assert policy.address_allowed("10.1.2.3")
    assert not policy.address_allowed("10.9.1.1")  # denied inside an allowed range
    assert not policy.address_allowed("::ffff:10.9.1.1")
    assert not policy.address_allowed("8.8.8.8")  # a public address the operator denied
    # an allowed name may resolve into a denied range (the operator vouches for it) ...
    assert policy.address_allowed("192.168.3.4", "smtp.corp.example")
    assert policy.address_allowed("192.168.3.4", "SMTP.Corp.Example.")
    assert policy.address_allowed("192.168.3.4", "a.hooks.corp.example")
    assert not policy.address_allowed("192.168.3.4", "hooks.corp.example.attacker.io")
    assert not policy.address_allowed("192.168.3.4", "other.example")
    # ... but never into a denied CIDR, and a denied name is refused wherever it points
    assert not policy.address_allowed("10.9.0.1", "smtp.corp.example")
    assert not policy.address_allowed("1.1.1.1", "blocked.example")
    assert not policy.address_allowed("1.1.1.1", "x.evil.example")


def test_host_problem_refuses_literals_and_denied_names_only() -> None:
    policy = Policy.parse(deny="blocked.example")
    for host in (
        "127.0.0.1",
        "[::ffff:127.0.0.1]",
        "::1",
        "0.0.0.0",
        "169.254.169.254",
        "10.0.0.1",
    ):
        assert policy.host_problem(host), host
    for legacy in ("127.1", "0x7f.1", "2130706433", "017700000001"):  # what resolvers read
        assert policy.host_problem(legacy), legacy
    assert policy.host_problem("blocked.example")
    assert policy.host_problem("cafe.example") is None  # hex letters, but a name
    assert policy.host_problem("localhost") is None  # a name: checked when it is connected to
    assert policy.host_problem("8.8.8.8") is None
    assert policy.url_problem("http://[::ffff:127.0.0.1]:8080/x")
    assert policy.url_problem("http://hooks.example.com@127.0.0.1:8080/x")  # userinfo trick
    assert policy.url_problem("https://hooks.example.com/x") is None


def test_socket_factory_refuses_before_a_socket_exists() -> None:
    make = Policy().socket_factory()
    info = (socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", ("127.0.0.1", 80))
    with pytest.raises(EgressDenied):
        make(info)
    mapped = (socket.AF_INET6, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", ("::ffff:10.0.0.1", 80))
    with pytest.raises(EgressDenied):
        make(mapped)
    allowed = Policy.parse("127.0.0.0/8").socket_factory()(info)
    allowed.close()


def test_denied_in_finds_the_refusal_inside_wrapping_errors() -> None:
    denied = EgressDenied("localhost", "127.0.0.1")
    try:
        try:
            raise denied
        except OSError as exc:
            raise RuntimeError("wrapped") from exc
    except RuntimeError as outer:
        assert denied_in(outer) is denied
    assert denied_in(OSError("refused")) is None


@pytest.mark.parametrize("bad", ["not a host!", "10.0.0.0/33x", "a..b"])
def test_bad_entries_name_their_variable(bad: str) -> None:
    with pytest.raises(ConfigError, match="SWITCHBOARD_EGRESS_ALLOW"):
        Settings.from_env({"SWITCHBOARD_EGRESS_ALLOW": bad})
    with pytest.raises(ConfigError, match="SWITCHBOARD_EGRESS_DENY"):
        Settings.from_env({"SWITCHBOARD_EGRESS_DENY": bad})
