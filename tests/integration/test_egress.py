"""The egress guard against real connections: a hub with the default policy (as `serve` runs it)
must never reach a service inside the operator's network, whatever a tenant writes.

The "internal service" is a real HTTP server (and a real aiosmtpd server) on 127.0.0.1 that
counts every connection; it answers a secret, which must never show up in an attempt.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.abc import AbstractResolver, ResolveResult
from aiosmtpd.controller import Controller

from switchboard.channels import Destination
from switchboard.channels.webhook import post
from switchboard.config import Settings
from switchboard.egress import EgressDenied, GuardedResolver, Policy
from switchboard.envelope import now_us
from switchboard.signing import generate_secret
from tests.conftest import Api, fresh_database, serve
from tests.integration.conftest import worker_for

pytestmark = pytest.mark.security

SECRET = "internal-service-secret-answer"


@dataclass
class Internal:
    """An HTTP service only the hub's own network can reach; counts connections."""

    port: int = 0
    connections: int = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            await reader.readexactly(length)
            body = SECRET.encode()
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n"
                + f"Content-Length: {len(body)}\r\n\r\n".encode()
                + body
            )
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@pytest.fixture
async def internal() -> AsyncIterator[Internal]:
    service = Internal()
    server = await asyncio.start_server(service.handle, "127.0.0.1", 0)
    service.port = server.sockets[0].getsockname()[1]
    yield service
    server.close()
    await server.wait_closed()


@dataclass
class SmtpSeen:
    greeted: int = 0
    envelopes: list[Any] = field(default_factory=list)

    async def handle_EHLO(
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        self.greeted += 1
        session.host_name = hostname
        return responses

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.envelopes.append(envelope)
        return "250 accepted"


@dataclass
class Smtp:
    port: int
    seen: SmtpSeen


@pytest.fixture
def smtp() -> Iterator[Smtp]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    seen = SmtpSeen()
    controller = Controller(seen, hostname="127.0.0.1", port=port)
    controller.start()
    yield Smtp(port, seen)
    controller.stop()


@pytest.fixture(params=["sqlite", "postgres"])
async def guarded(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Api]:
    """A hub with the default egress policy (no SWITCHBOARD_EGRESS_ALLOW), worker driven here."""
    async with fresh_database(request.param, tmp_path) as url:
        settings = Settings(database_url=url, key_rate=0, tenant_rate=0, run_worker=0)
        assert getattr(settings, "egress_allow", "") == ""  # what `serve` runs with
        async with serve(settings) as api:
            yield api


def mail(host: str, port: int) -> dict[str, Any]:
    return {"host": host, "port": port, "security": "none", "from": "a@example.com", "to": "b@x.co"}


def gateway(base_url: str) -> dict[str, Any]:
    return {
        "provider": "gateway",
        "base_url": base_url,
        "channel": "c1",
        "to": "5511987654321",
        "template": "hi",
    }


async def test_literal_internal_addresses_are_refused_when_saved(
    guarded: Api, internal: Internal
) -> None:
    api = guarded
    _, key = await api.tenant()
    port = internal.port
    cases = [
        ("webhook", {"url": f"http://127.0.0.1:{port}/x"}, "/config/url"),
        ("webhook", {"url": f"http://0.0.0.0:{port}/x"}, "/config/url"),
        ("webhook", {"url": f"http://[::ffff:127.0.0.1]:{port}/x"}, "/config/url"),
        ("webhook", {"url": f"http://[::1]:{port}/x"}, "/config/url"),
        ("webhook", {"url": "http://169.254.169.254/latest/meta-data/"}, "/config/url"),
        ("webhook", {"url": "http://10.0.0.1/x"}, "/config/url"),
        ("webhook", {"url": "http://100.64.0.1/x"}, "/config/url"),
        ("webhook", {"url": "https://192.168.0.1/x"}, "/config/url"),
        ("slack", {"url": f"http://127.0.0.1:{port}/services/x"}, "/config/url"),
        ("discord", {"url": f"http://127.0.0.1:{port}/api/webhooks/1/t"}, "/config/url"),
        ("whatsapp", gateway(f"http://127.0.0.1:{port}"), "/config/base_url"),
        (
            "whatsapp",
            {**gateway(""), "provider": "zapi", "instance": "i", "base_url": "http://10.0.0.1"},
            "/config/base_url",
        ),
        ("email", mail("127.0.0.1", port), "/config/host"),
        ("email", mail("169.254.169.254", 25), "/config/host"),
    ]
    for n, (kind, config, path) in enumerate(cases):
        status, body, _ = await api.call(
            "POST", "/v1/destinations", key, {"name": f"d{n}", "kind": kind, "config": config}
        )
        assert status == 422, (config, body)
        assert path in [d["path"] for d in body["error"]["details"]], body
        assert "denied" in body["error"]["message"]
    # an update is checked the same way
    status, _, _ = await api.call(
        "POST",
        "/v1/destinations",
        key,
        {"name": "ok", "kind": "webhook", "config": {"url": "https://hooks.example.com/x"}},
    )
    assert status == 201
    status, body, _ = await api.call(
        "PATCH", "/v1/destinations/ok", key, {"config": {"url": f"http://127.0.0.1:{port}/x"}}
    )
    assert status == 422 and body["error"]["details"][0]["path"] == "/config/url", body
    assert internal.connections == 0


async def _refused_everywhere(api: Api, key: str, names: list[str]) -> None:
    """Route every event to `names`, send one, and check each delivery died on its first attempt
    with egress_denied, nothing stored as an answer, and the DLQ showing why."""
    status, body, _ = await api.call(
        "POST", "/v1/routes", key, {"name": "all", "types": ["*"], "destinations": names}
    )
    assert status == 201, body
    status, body, _ = await api.call("POST", "/v1/events", key, [{"type": "a.b", "data": {}}])
    assert status == 202, body
    await worker_for(api).drain()
    _, dead, _ = await api.call("GET", "/v1/dlq", key)
    assert len(dead["data"]) == len(names), dead
    for d in dead["data"]:
        assert d["status"] == "dead" and d["attempts"] == 1, d  # not retried
        assert d["last_error"].startswith("egress_denied"), d
        _, attempts, _ = await api.call("GET", f"/v1/deliveries/{d['id']}/attempts", key)
        [attempt] = attempts["data"]
        assert attempt["error"] == "egress_denied", attempt
        assert attempt["response"] is None and attempt["status_code"] is None, attempt
        assert not attempt["request_headers"], attempt  # nothing was sent
        assert SECRET not in str(attempt)


async def test_a_name_resolving_to_loopback_is_refused_at_connect(
    guarded: Api, internal: Internal
) -> None:
    """`localhost` passes the check on save (it is a name); the resolver hook refuses it."""
    api = guarded
    _, key = await api.tenant()
    status, body, _ = await api.call(
        "POST",
        "/v1/destinations",
        key,
        {
            "name": "hook",
            "kind": "webhook",
            "config": {"url": f"http://localhost:{internal.port}/x"},
        },
    )
    assert status == 201, body
    await _refused_everywhere(api, key, ["hook"])
    assert internal.connections == 0


async def test_stored_internal_destinations_of_every_channel_are_refused_at_the_socket(
    guarded: Api, internal: Internal, smtp: Smtp
) -> None:
    """Destinations saved before the guard (or written around the API): the connect hooks still
    refuse them, literal addresses included (aiohttp never asks the resolver about those)."""
    api = guarded
    tenant, key = await api.tenant()
    port = internal.port
    configs = {
        "loopback": ("webhook", {"url": f"http://127.0.0.1:{port}/x"}),
        "any": ("webhook", {"url": f"http://0.0.0.0:{port}/x"}),
        "mapped": ("webhook", {"url": f"http://[::ffff:127.0.0.1]:{port}/x"}),
        "slack": ("slack", {"url": f"http://127.0.0.1:{port}/services/T/B/x"}),
        "discord": ("discord", {"url": f"http://localhost:{port}/api/webhooks/1/t"}),
        "gateway": ("whatsapp", gateway(f"http://127.0.0.1:{port}")),
        "zapi": ("whatsapp", {**gateway(f"http://[::ffff:7f00:1]:{port}"), "provider": "zapi"}),
        "smtp": ("email", mail("127.0.0.1", smtp.port)),
        "smtp-name": ("email", mail("localhost", smtp.port)),
    }
    configs["zapi"][1]["instance"] = "i1"
    for name, (kind, config) in configs.items():
        dest = Destination(
            id=f"dst_{name}",
            tenant_id=tenant,
            name=name,
            kind=kind,
            config=config,
            secrets=(generate_secret() if kind == "webhook" else "gw-token-0123456789",),
        )
        await api.hub.deliveries.put_destination(dest, now_us())
    await _refused_everywhere(api, key, list(configs))
    assert internal.connections == 0
    assert smtp.seen.greeted == 0 and smtp.seen.envelopes == []


class Rebinding(AbstractResolver):
    """A DNS rebinding: `answers` in turn (the last one repeated), as a name whose owner changes
    its answer between a check and the connection would give them. Only resolves: nothing here
    connects to the public address."""

    def __init__(self, *answers: str) -> None:
        self.answers = list(answers)

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        ip = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        return [
            {
                "hostname": host,
                "host": ip,
                "port": port,
                "family": socket.AF_INET,
                "proto": 0,
                "flags": 0,
            }
        ]

    async def close(self) -> None:
        return None


async def test_every_lookup_is_checked_so_a_rebinding_name_is_refused() -> None:
    resolver = GuardedResolver(Policy(), Rebinding("93.184.216.34", "127.0.0.1"))
    [first] = await resolver.resolve("rebind.test", 80)
    assert first["host"] == "93.184.216.34"
    with pytest.raises(EgressDenied):
        await resolver.resolve("rebind.test", 80)


async def test_the_socket_hook_alone_refuses_the_address_connected_to(internal: Internal) -> None:
    """Even behind a resolver that checks nothing (the answer changed after a check), the socket
    factory sees the final address and refuses it: the internal service gets no connection."""
    connector = aiohttp.TCPConnector(
        resolver=Rebinding("127.0.0.1"), socket_factory=Policy().socket_factory()
    )
    async with aiohttp.ClientSession(connector=connector) as session:
        result = await post(session, f"http://rebind.test:{internal.port}/x", b"{}", {}, 5.0)
    assert result.error == "egress_denied" and not result.response, result
    assert internal.connections == 0
