"""The seed systems' automations end to end, on both stores, with real receivers and a real
`switchboard worker` that is SIGKILLed while every run waits:

- care-integrations: "Solicitacao de feedback com delay de 2h; WhatsApp com botoes de avaliacao;
  Email com link de feedback" — to the WhatsApp gateway test server (rating buttons) and to an
  aiosmtpd server; "Processamento de resposta de botao": the Z-API webhook of a tapped button
  becomes `feedback.received` through an `emit` step.
- legal-practice: "Schedule reminder email in 24h if not completed" — through aiosmtpd, and not
  for the organization that completed its onboarding.
- comms-hub: "Escalonamento automático (se não responder em X horas, notifica supervisor)" — to
  a Slack-shaped HTTP receiver, and not for the thread that was answered.

Time is moved the way a fake clock would move it, without sleeping for hours: while the worker
is dead, the waiting runs' timers (rows) are moved 25 hours earlier, as if the hub had been down
that long; the new worker then finds them due.
"""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
import sqlite3
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import orjson
import pytest
import yaml
from aiohttp import web
from aiosmtpd.controller import Controller

from switchboard.automations import from_yaml
from tests.acceptance.conftest import Client, Cluster, free_port, wait_until
from tests.unit.test_mappings import ZAPI_BUTTON

pytestmark = pytest.mark.fault

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "automations"
HOURS_25 = 25 * 3_600_000_000


class Mailbox:
    def __init__(self) -> None:
        self.messages: list[email.message.EmailMessage] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(msg, email.message.EmailMessage)
        self.messages.append(msg)
        return "250 Message accepted for delivery"


class Http:
    """The WhatsApp gateway (`POST /api/messages`) and Slack (`POST /slack/...`) on one server."""

    def __init__(self) -> None:
        self.whatsapp: list[dict[str, Any]] = []
        self.slack: list[dict[str, Any]] = []
        self.url = ""

    async def messages(self, request: web.Request) -> web.Response:
        assert request.headers["X-Gateway-Secret"] == "gw-secret-123"
        self.whatsapp.append(await request.json())
        return web.json_response({"id": f"true_msg_{len(self.whatsapp)}"})

    async def slack_hook(self, request: web.Request) -> web.Response:
        self.slack.append(await request.json())
        return web.Response(text="ok")


def destinations(folder: str, names: set[str], http: Http, smtp_port: int) -> list[dict[str, Any]]:
    """The example's destinations, pointed at the test's receivers."""
    out = []
    for d in yaml.safe_load((EXAMPLES / folder / "destinations.yaml").read_text())["destinations"]:
        if d["name"] not in names:
            continue
        config = dict(d["config"])
        if d["kind"] == "whatsapp":
            config["base_url"] = http.url
        elif d["kind"] == "email":
            config["port"] = smtp_port
        secret = {"secrets": ["gw-secret-123"]} if d["kind"] == "whatsapp" else {}
        out.append({"name": d["name"], "kind": d["kind"], "config": config, **secret})
    return out


def automations(folder: str, names: set[str]) -> list[dict[str, Any]]:
    docs = yaml.safe_load((EXAMPLES / folder / "automations.yaml").read_text())["automations"]
    return [from_yaml(d) for d in docs if d["name"] in names]


ESCALATION: dict[str, Any] = {
    "name": "unanswered-escalation",
    "on": "chat.message.received",
    "filter": {"data": {"role": ["user"]}},
    "dedupe": {"key": "data.thread_id", "window": "2h"},
    "steps": [
        {
            "id": "answered",
            "wait_for": {
                "type": "chat.message.received",
                "match": "data.thread_id",
                "filter": {"data": {"role": ["assistant"]}},
                "within": "2h",
            },
            "on_event": "stop",
        },
        {"send": {"destination": "slack-supervisor"}},
    ],
}


async def move_timers_back(cluster: Cluster, us: int) -> int:
    """What a fake clock moved `us` ahead would see: every running run's timer (its due time,
    and the wait or deadline in its state) that much earlier. How many runs were moved."""
    rows = await cluster.query(
        "SELECT id, state, due_us FROM automation_runs WHERE status = 'running'"
    )
    updates = []
    for run_id, raw, due in rows:
        state = orjson.loads(raw) if isinstance(raw, str | bytes) else dict(raw)
        for k in ("until_us", "deadline_us"):
            if state.get(k) is not None:
                state[k] -= us
        updates.append((orjson.dumps(state).decode(), due - us, run_id))
    if cluster.backend == "sqlite":
        path = cluster.database_url.removeprefix("sqlite:///")

        def write() -> None:
            with contextlib.closing(sqlite3.connect(path, timeout=15)) as conn:
                conn.executemany(
                    "UPDATE automation_runs SET state = ?, due_us = ? WHERE id = ?", updates
                )
                conn.commit()

        await asyncio.to_thread(write)
    else:
        conn = await asyncpg.connect(cluster.database_url, timeout=10)
        try:
            await conn.executemany(
                "UPDATE automation_runs SET state = $1::jsonb, due_us = $2 WHERE id = $3", updates
            )
        finally:
            await conn.close()
    return len(updates)


async def test_seed_automations_survive_a_worker_sigkill_while_they_wait(
    cluster: Cluster, http: aiohttp.ClientSession
) -> None:
    receivers = Http()
    app = web.Application()
    app.router.add_post("/api/messages", receivers.messages)
    app.router.add_post("/slack/{tail:.*}", receivers.slack_hook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    receivers.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]
    mailbox = Mailbox()
    smtp_port = free_port()
    smtp = Controller(mailbox, hostname="127.0.0.1", port=smtp_port)
    smtp.start()
    try:
        await _run(cluster, http, receivers, mailbox, smtp_port)
    finally:
        smtp.stop()
        await runner.cleanup()


async def _run(
    cluster: Cluster, session: aiohttp.ClientSession, rx: Http, mailbox: Mailbox, smtp_port: int
) -> None:
    api = await cluster.spawn("serve", run_worker=0).ready()
    client = Client(session, api.url, cluster.key)
    dests = [
        *destinations("care-integrations", {"wpp-feedback", "email-feedback"}, rx, smtp_port),
        *destinations("legal-practice", {"email-onboarding-reminder"}, rx, smtp_port),
        {
            "name": "slack-supervisor",
            "kind": "slack",
            "config": {
                "url": f"{rx.url}/slack/supervisor",
                "template": "Cliente {{ data.customer_id }} sem resposta há 2 horas "
                "(conversa {{ data.thread_id }})",
            },
        },
    ]
    for d in dests:
        await client.ok("POST", "/v1/destinations", d)
    docs = [
        *automations("care-integrations", {"service-feedback", "feedback-button-reply"}),
        *automations("legal-practice", {"onboarding-reminder"}),
        ESCALATION,
    ]
    for doc in docs:
        await client.ok("PUT", f"/v1/automations/{doc['name']}", doc)
    source = await client.ok(
        "POST",
        "/v1/sources",
        {"name": "zapi", "preset": "zapi", "secrets": ["tok-zapi-123456"], "mapping": "zapi"},
    )
    worker = await cluster.spawn("worker").ready()

    def svc(n: int) -> dict[str, Any]:
        return {
            "id": f"svc-{n}-done",
            "type": "service.completed",
            "subject": f"patient-{n}",
            "data": {
                "service_id": f"svc_{n}",
                "completed_at": "2026-01-01T00:00:00Z",
                "client_phone": f"+55 31 99876-543{n}",
                "client_email": f"familia{n}@example.com",
            },
        }

    def chat(n: int, thread: str, role: str) -> dict[str, Any]:
        return {
            "id": f"m-{n}",
            "type": "chat.message.received",
            "subject": "cust-1",
            "data": {"thread_id": thread, "customer_id": "cust-1", "role": role, "content": "…"},
        }

    events = [
        svc(1),
        svc(2),
        {"id": "ob-1", "type": "billing.onboarding_started", "subject": "org_abc",
         "data": {"accountId": "acct_1", "email": "owner@abc.example"}},
        {"id": "ob-2", "type": "billing.onboarding_started", "subject": "org_def",
         "data": {"accountId": "acct_2", "email": "owner@def.example"}},
        {"id": "obc-2", "type": "billing.onboarding_completed", "subject": "org_def",
         "data": {"stripeAccountId": "acct_2"}},
        chat(1, "th-1", "user"),
        chat(2, "th-2", "user"),
        chat(3, "th-2", "assistant"),
    ]  # fmt: skip
    answer = await client.ok("POST", "/v1/events", events)
    assert answer["accepted"] == len(events), answer

    # every run that will wait is waiting: its timer is hours away (the answered ones ended)
    async def all_waiting() -> bool:
        rows = await cluster.query(
            "SELECT count(*) FROM automation_runs WHERE status = 'running' AND due_us > "
            "created_us + 3600000000"
        )
        return rows[0][0] == 4  # 2 feedback requests, 1 onboarding reminder, 1 escalation

    await wait_until(all_waiting, 60, "the runs to reach their waits")
    worker.kill()
    assert rx.whatsapp == [] and mailbox.messages == [] and rx.slack == []
    statuses = dict(
        await cluster.query(
            "SELECT automation || ':' || status, count(*) FROM automation_runs "
            "GROUP BY automation, status"
        )
    )
    assert statuses["onboarding-reminder:stopped"] == 1  # org_def completed: no reminder
    assert statuses["unanswered-escalation:stopped"] == 1  # th-2 was answered
    assert await move_timers_back(cluster, HOURS_25) == 4

    worker = await cluster.spawn("worker").ready()

    async def all_sent() -> bool:
        return len(rx.whatsapp) == 2 and len(mailbox.messages) == 3 and len(rx.slack) == 1

    try:
        await wait_until(all_sent, 60, "the feedback, reminder and escalation messages")
    except AssertionError as exc:
        runs = await cluster.query("SELECT automation, status, reason, state FROM automation_runs")
        sent = [(d["status"], d.get("last_error")) for d in await client.deliveries()]
        counts = (len(rx.whatsapp), len(mailbox.messages), len(rx.slack))
        raise AssertionError(f"{exc}: {counts} {runs} {sent}\n{worker.tail()}") from None
    assert sorted(m["to"] for m in rx.whatsapp) == ["5531998765431", "5531998765432"]
    buttons = [b["id"] for b in rx.whatsapp[0]["buttons"]]
    assert buttons[0].startswith("feedback:svc_") and len(buttons) == 3
    subjects = sorted(str(m["subject"]) for m in mailbox.messages)
    assert subjects == [
        "Complete your Blawby setup",
        "Conte como foi o atendimento",
        "Conte como foi o atendimento",
    ]
    reminder = next(m for m in mailbox.messages if "Blawby" in str(m["subject"]))
    assert reminder["to"] == "owner@abc.example"
    assert "th-1" in rx.slack[0]["text"]

    # the patient taps "Excelente" on WhatsApp: Z-API calls the source, the mapped
    # whatsapp.inbound starts feedback-button-reply, which emits feedback.received
    tapped = {
        **ZAPI_BUTTON,
        "buttonsResponseMessage": {"buttonId": "feedback:svc_1:5", "message": "Excelente"},
    }
    async with session.post(
        f"{api.url}/v1/sources/{source['id']}/webhook",
        data=orjson.dumps(tapped),
        headers={"Content-Type": "application/json", "Client-Token": "tok-zapi-123456"},
    ) as resp:
        assert resp.status == 200, await resp.text()
        inbound = (await resp.json())["events"][0]

    async def feedback() -> Any:
        status, page = await client.call("GET", "/v1/events?type=feedback.received")
        return page["data"] if status == 200 and page["data"] else None

    (received,) = await wait_until(feedback, 60, "feedback.received")
    assert received["data"] == {"service_id": "svc_1", "rating": 5, "channel": "whatsapp"}
    assert received["causation_id"] == inbound["id"]
    rows = await cluster.query(
        "SELECT status, count(*) FROM automation_runs WHERE automation = 'service-feedback' "
        "GROUP BY status"
    )
    assert dict(rows) == {"completed": 2}
    worker.kill()
    api.kill()
