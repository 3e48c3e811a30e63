"""The egress guard: which addresses a delivery may connect to, and the hooks that enforce it.

Tenants name the hosts the hub connects to (webhook URLs, gateway base URLs, SMTP hosts), so an
unguarded hub is a proxy into the operator's network. `Policy` is the pure decision (an address,
and the host name it was reached by, in; allowed or not out). The hooks apply it to the address
actually connected to, on every connection: `GuardedResolver` drops denied answers of a name
lookup, and `socket_factory` refuses the final socket address (aiohttp skips the resolver for
literal IPs, and a name could resolve differently a moment later). SMTP connects through
`connect_checked`, which resolves, checks and connects to the checked address itself.

Precedence, first match wins: `deny` (operator's CIDRs and names) > `allow` (operator's CIDRs and
names) > the built-in denied ranges > allowed.
"""

from __future__ import annotations

import asyncio
import bisect
import contextvars
import functools
import ipaddress
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from switchboard.errors import ConfigError

__all__ = [
    "DENIED_RANGES",
    "HOST",
    "EgressDenied",
    "GuardedResolver",
    "Policy",
    "connect_checked",
    "connector",
    "denied_in",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Never reachable from a delivery unless the operator allows them (RFC 6890 and friends).
DENIED_RANGES: tuple[IPNetwork, ...] = tuple(
    ipaddress.ip_network(n)
    for n in (
        "0.0.0.0/8",  # "this network", 0.0.0.0 reaches the local host
        "10.0.0.0/8",  # private
        "100.64.0.0/10",  # carrier-grade NAT
        "127.0.0.0/8",  # loopback
        "169.254.0.0/16",  # link-local, cloud metadata (169.254.169.254)
        "172.16.0.0/12",  # private
        "192.0.0.0/24",  # IETF protocol assignments
        "192.0.2.0/24",  # documentation
        "192.88.99.0/24",  # 6to4 relay anycast
        "192.168.0.0/16",  # private
        "198.18.0.0/15",  # benchmarking
        "198.51.100.0/24",  # documentation
        "203.0.113.0/24",  # documentation
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",  # reserved, and broadcast 255.255.255.255
        "::/96",  # unspecified, loopback, IPv4-compatible (deprecated)
        "100::/64",  # discard
        "2001::/23",  # IETF protocol assignments (Teredo, benchmarking, ORCHID)
        "2001:db8::/32",  # documentation
        "64:ff9b:1::/48",  # local-use NAT64
        "fc00::/7",  # unique local
        "fe80::/10",  # link-local
        "fec0::/10",  # site-local (deprecated)
        "ff00::/8",  # multicast
    )
)

_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class _Spans:
    """Networks as merged, sorted integer ranges per IP version: a lookup is one bisect."""

    __slots__ = ("ends", "starts")

    def __init__(self, nets: Iterable[IPNetwork]) -> None:
        self.starts: dict[int, list[int]] = {4: [], 6: []}
        self.ends: dict[int, list[int]] = {4: [], 6: []}
        for net in sorted(nets, key=lambda n: (n.version, int(n.network_address))):
            lo, hi = int(net.network_address), int(net.broadcast_address)
            starts, ends = self.starts[net.version], self.ends[net.version]
            if ends and lo <= ends[-1] + 1:
                ends[-1] = max(ends[-1], hi)
            else:
                starts.append(lo)
                ends.append(hi)

    def __contains__(self, ip: IPAddress) -> bool:
        n = int(ip)
        i = bisect.bisect_right(self.starts[ip.version], n) - 1
        return i >= 0 and n <= self.ends[ip.version][i]


_DENIED_SPANS = _Spans(DENIED_RANGES)

# The host name a connection is being made for; `webhook.post` sets it so an allowed *name*
# can be honoured at the socket, where only the address is known. Unset: names are not allowed.
HOST: contextvars.ContextVar[str | None] = contextvars.ContextVar("egress_host", default=None)


class EgressDenied(ConnectionRefusedError):
    """The address is in a range deliveries may not reach (see SWITCHBOARD_EGRESS_ALLOW)."""

    def __init__(self, host: str, address: str) -> None:
        # The same text for every address of one host: aiohappyeyeballs then re-raises this
        # exception itself instead of folding several into a plain OSError.
        super().__init__(f"egress_denied: {host} is in a denied address range")
        self.host = host
        self.address = address


def _unwrap(ip: IPAddress) -> IPAddress:
    """The IPv4 address inside an IPv6 form that reaches it (mapped, NAT64, 6to4)."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return ip.ipv4_mapped
        if ip in _NAT64:
            return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if ip.sixtofour is not None:
            return ip.sixtofour
    return ip


def _name(host: str) -> str:
    return host.strip().rstrip(".").lower()


def _name_matches(host: str, names: Iterable[str]) -> bool:
    """`names` entries are exact names, or ``*.example.com`` for every name below it."""
    host = _name(host)
    for entry in names:
        if entry.startswith("*."):
            if host.endswith(entry[1:]):
                return True
        elif host == entry:
            return True
    return False


def literal_ip(host: str) -> IPAddress | None:
    """The address if `host` is an IP literal (``[::1]`` brackets allowed), else None; the
    legacy IPv4 forms a resolver also reads as addresses count (``127.1``, ``0x7f.1``,
    ``2130706433``)."""
    try:
        return ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        pass
    if host and all(c in "0123456789abcdefxABCDEFX." for c in host):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


@dataclass(frozen=True)
class Policy:
    """Which addresses and names deliveries may reach (pure: no I/O)."""

    allow_nets: tuple[IPNetwork, ...] = ()
    allow_names: tuple[str, ...] = ()
    deny_nets: tuple[IPNetwork, ...] = ()
    deny_names: tuple[str, ...] = ()

    @classmethod
    def parse(cls, allow: str = "", deny: str = "") -> Policy:
        """From the settings' comma-separated lists; a bad entry names its variable."""
        a_nets, a_names = _entries("SWITCHBOARD_EGRESS_ALLOW", allow)
        d_nets, d_names = _entries("SWITCHBOARD_EGRESS_DENY", deny)
        return cls(a_nets, a_names, d_nets, d_names)

    def address_allowed(self, address: str | IPAddress, host: str | None = None) -> bool:
        """May a connection for `host` (the name in the destination) go to `address`?"""
        ip = ipaddress.ip_address(address) if isinstance(address, str) else address
        plain = _unwrap(ip)
        if ip in self._deny or plain in self._deny:
            return False
        if host is not None and self.deny_names and _name_matches(host, self.deny_names):
            return False
        if host is not None and self.allow_names and _name_matches(host, self.allow_names):
            return True
        if ip in self._allow or plain in self._allow:
            return True
        return ip not in _DENIED_SPANS and plain not in _DENIED_SPANS

    @functools.cached_property
    def _deny(self) -> _Spans:
        return _Spans(self.deny_nets)

    @functools.cached_property
    def _allow(self) -> _Spans:
        return _Spans(self.allow_nets)

    def host_problem(self, host: str) -> str | None:
        """Why a destination naming `host` is refused before any lookup, or None.

        Only what is certain without DNS: a denied literal address or a denied name. A name that
        resolves into a denied range is refused when it is connected to.
        """
        if self.deny_names and _name_matches(host, self.deny_names):
            return f"{host} is a denied host name (SWITCHBOARD_EGRESS_DENY)"
        ip = literal_ip(host)
        if ip is not None and not self.address_allowed(ip, host):
            return (
                f"{ip} is in a denied address range (loopback, private, link-local, …); "
                "deliveries may not reach it"
            )
        return None

    def url_problem(self, url: str) -> str | None:
        try:
            host = urlsplit(url).hostname
        except ValueError:
            return None  # the URL check reports it
        return self.host_problem(host) if host else None

    def socket_factory(self) -> Callable[[Any], socket.socket]:
        """For `aiohttp.TCPConnector(socket_factory=…)`: refuse before the socket exists."""

        def make(addr_info: Any) -> socket.socket:
            family, type_, proto, _, sockaddr = addr_info
            if not self.address_allowed(sockaddr[0], HOST.get()):
                raise EgressDenied(HOST.get() or sockaddr[0], sockaddr[0])
            return socket.socket(family=family, type=type_, proto=proto)

        return make


def _entries(var: str, raw: str) -> tuple[tuple[IPNetwork, ...], tuple[str, ...]]:
    nets: list[IPNetwork] = []
    names: list[str] = []
    for item in (part.strip() for part in raw.split(",")):
        if not item:
            continue
        try:
            nets.append(ipaddress.ip_network(item.strip("[]"), strict=False))
            continue
        except ValueError:
            pass
        name = _name(item)
        label = name[2:] if name.startswith("*.") else name
        if (
            not label
            or any(not part or len(part) > 63 for part in label.split("."))
            or any(not (c.isalnum() or c in "-_.") for c in label)
        ):
            raise ConfigError(f"{var}: {item!r} is neither a CIDR nor a host name")
        names.append(name)
    return tuple(nets), tuple(names)


class GuardedResolver(AbstractResolver):
    """Resolves with aiohttp's default resolver and drops every denied answer; with none left,
    raises EgressDenied (so the attempt says why, instead of "connection refused")."""

    def __init__(self, policy: Policy, inner: AbstractResolver | None = None) -> None:
        self.policy = policy
        self.inner = inner or DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        answers = await self.inner.resolve(host, port, family)
        kept = [a for a in answers if self.policy.address_allowed(a["host"], host)]
        if answers and not kept:
            raise EgressDenied(host, answers[0]["host"])
        return kept

    async def close(self) -> None:
        await self.inner.close()


def connector(policy: Policy, **kwargs: Any) -> aiohttp.TCPConnector:
    """A TCPConnector that only ever connects where `policy` allows."""
    return aiohttp.TCPConnector(
        resolver=GuardedResolver(policy), socket_factory=policy.socket_factory(), **kwargs
    )


def denied_in(exc: BaseException) -> EgressDenied | None:
    """The EgressDenied behind an exception aiohttp or aiosmtplib wrapped it in, if any."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, EgressDenied):
            return current
        seen.add(id(current))
        nested = getattr(current, "os_error", None)
        if isinstance(nested, EgressDenied):
            return nested
        current = current.__cause__ or current.__context__
    return None


async def connect_checked(policy: Policy, host: str, port: int) -> socket.socket:
    """A socket connected to an allowed address of `host`, for clients without a connect hook
    (SMTP): the address checked is the address connected to. Raises EgressDenied when every
    address is denied, or the OSError of the last address tried."""
    loop = asyncio.get_running_loop()
    ip = literal_ip(host)  # a literal needs no lookup; getaddrinfo still builds its sockaddr
    infos = await loop.getaddrinfo(str(ip) if ip else host, port, type=socket.SOCK_STREAM)
    allowed = [i for i in infos if policy.address_allowed(str(i[4][0]), host)]
    if not allowed:
        raise EgressDenied(host, str(infos[0][4][0]) if infos else "")
    error: OSError = OSError(f"{host} has no address")
    for family, type_, proto, _, sockaddr in allowed:
        sock = socket.socket(family, type_, proto)
        sock.setblocking(False)
        try:
            await loop.sock_connect(sock, sockaddr)
        except OSError as exc:
            sock.close()
            error = exc
            continue
        except BaseException:
            sock.close()
            raise
        return sock
    raise error
