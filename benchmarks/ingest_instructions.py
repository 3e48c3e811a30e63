"""Not a figure: instructions per one-event ingest request, counted by valgrind (callgrind) in a
tree's `switchboard serve`, so two trees can be compared on a busy machine.

The server runs under ``valgrind --tool=callgrind --instr-atstart=no`` on a fresh database
provisioned by that tree's own code; a client sends 300 warm-up requests, instrumentation is
switched on (``callgrind_control -i on``), the client sends exactly N requests over C keep-alive
connections and waits for every answer (each must be 202), instrumentation is switched off.
The count covers every thread of the server (the event loop, the SQLite writer, the log
writer), not PostgreSQL. With one connection every request is its own group commit, so the
count repeats closely; with more, the group commits' sizes follow timing and the count with them.

``python -m benchmarks.ingest_instructions TREE KIND [N] [--connections C] [--floor]
[--pii one|known|new]`` (a tree is a folder holding `.venv/`, e.g. this checkout or an older
commit unpacked with its own virtualenv; KIND is sqlite or postgres). With ``--floor`` the server
counted is the tree's `benchmarks.bare_ingest` (the durable floor of the 1 event/request figure)
instead of `switchboard serve`, driven the same way: the hub's count over the floor's is the share
of the floor's work the hub adds, whatever the machine's load. Prints one JSON line. Needs
`valgrind`. About a minute per 1,000 requests.

With ``--pii`` the events are of a catalog type that declares PII (a lead: name, email, phone)
and the hub runs with a master key, so a tree that seals PII at rest does: ``one`` sends every
event about the same subject (as the plain benchmark does), ``known`` spreads them over 100
subjects the warm-up already met (their data keys exist, but under valgrind a subject comes back
only every few seconds), ``new`` gives every event a subject of its own (a data key is made per
request: the worst case).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import aiohttp

from benchmarks import harness as h
from benchmarks.ingest_cpu import _provision
from switchboard.crypto import new_master_key

LEAD_TYPE = {
    "description": "A lead with personal data (benchmark).",
    "pii": ["name", "email", "phone"],
    "versions": [
        {
            "version": "1.0",
            "schema": {
                "type": "object",
                "properties": {
                    "name": {"type": "string"},
                    "email": {"type": "string"},
                    "phone": {"type": "string"},
                    "plan": {"type": "string"},
                },
            },
        }
    ],
}


def _event(i: int, tag: str, pii: str | None) -> dict[str, object]:
    if pii is None:
        return {
            "id": f"{tag}-{i}",
            "type": "order.created",
            "source": "bench",
            "subject": "customer-1",
            "data": {"order_id": i, "total": 12.5, "items": [{"sku": "a", "qty": 1}]},
        }
    n = {"one": 1, "known": i % 100}.get(pii, i)
    return {
        "id": f"{tag}-{i}",
        "type": "lead.created",
        "source": "bench",
        "subject": f"customer-{tag}-{n}" if pii == "new" else f"customer-{n}",
        "data": {
            "name": f"Joana Pereira {n}",
            "email": f"joana.{n}@exemplo.com.br",
            "phone": f"+55 31 9{n:04d}-5432",
            "plan": "gold",
        },
    }


async def _catalog(url: str, key: str) -> None:
    headers = {"authorization": "Bearer " + key, "content-type": "application/json"}
    async with (
        aiohttp.ClientSession() as session,
        session.put(
            url + "/v1/event-types/lead.created", data=json.dumps(LEAD_TYPE), headers=headers
        ) as resp,
    ):
        if resp.status not in (200, 201):
            raise RuntimeError(f"the catalog type was refused: {resp.status} {await resp.text()}")


async def _send(
    url: str, key: str, count: int, connections: int, tag: str, pii: str | None = None
) -> None:
    numbers = iter(range(count))
    refused: list[int] = []
    headers = {"authorization": "Bearer " + key, "content-type": "application/json"}
    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def lane() -> None:
            for i in numbers:
                event = _event(i, tag, pii)
                async with session.post(
                    url + "/v1/events", data=json.dumps(event), headers=headers
                ) as resp:
                    await resp.read()
                    if resp.status != 202:
                        refused.append(resp.status)

        await asyncio.gather(*(lane() for _ in range(connections)))
    if refused:
        raise RuntimeError(f"{len(refused)} requests answered {sorted(set(refused))}")


def callgrind_total(out: Path) -> int:
    """The instructions a callgrind output file counts, in all."""
    report = subprocess.run(
        ["callgrind_annotate", str(out)], check=True, capture_output=True, text=True
    ).stdout
    found = re.search(r"([\d,]+) \(100.0%\)\s+PROGRAM TOTALS", report)
    if found is None:
        raise RuntimeError("callgrind_annotate printed no total")
    return int(found.group(1).replace(",", ""))


def _callgrind(command: str, pid: int) -> None:
    subprocess.run(["callgrind_control", "-i", command, str(pid)], check=True, capture_output=True)


def measure(
    tree: Path,
    kind: str,
    requests: int,
    connections: int,
    floor: bool = False,
    pii: str | None = None,
) -> dict[str, object]:
    with h.workdir() as tmp:
        work = Path(tmp)
        out = work / "callgrind.out"
        with h.fresh_database(kind, work, "instructions") as db:
            key = _provision(tree, db)
            port = h.free_port()
            url = f"http://127.0.0.1:{port}"
            server = (
                ("-m", "benchmarks.bare_ingest", db, "bench", str(port))
                if floor
                else (str(tree / ".venv/bin/switchboard"), "serve")
            )
            argv = [
                *("valgrind", "--tool=callgrind", "--instr-atstart=no"),
                f"--callgrind-out-file={out}",
                *(str(tree / ".venv/bin/python"), *server),
            ]
            with (work / "server.log").open("wb") as log:
                extra = {"SWITCHBOARD_MASTER_KEY": new_master_key()} if pii else {}
                proc = subprocess.Popen(
                    argv,
                    env={**os.environ, **h.hub_env(db, port, **extra)},
                    stdout=log,
                    stderr=log,
                    cwd=tree,
                )
            try:
                deadline = time.monotonic() + 600  # valgrind starts Python slowly
                while True:
                    try:
                        h.http("GET", url + "/health")
                        break
                    except OSError:
                        if proc.poll() is not None or time.monotonic() > deadline:
                            raise
                        time.sleep(1)
                if pii:
                    asyncio.run(_catalog(url, key))
                asyncio.run(_send(url, key, 300, connections, "warm", pii))
                _callgrind("on", proc.pid)
                asyncio.run(_send(url, key, requests, connections, "run", pii))
                _callgrind("off", proc.pid)
            finally:
                proc.send_signal(signal.SIGTERM)
                proc.wait(120)
        total = callgrind_total(out)
    return {
        "tree": str(tree),
        "kind": kind,
        "requests": requests,
        "connections": connections,
        "server": "bare_ingest" if floor else "switchboard serve",
        "pii": pii,
        "instructions_per_request": round(total / requests),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("tree", type=Path)
    parser.add_argument("kind", choices=["sqlite", "postgres"])
    parser.add_argument("requests", type=int, nargs="?", default=1000)
    parser.add_argument("--connections", type=int, default=1)
    parser.add_argument("--floor", action="store_true", help="count benchmarks.bare_ingest")
    parser.add_argument("--pii", choices=["one", "known", "new"], default=None)
    args = parser.parse_args()
    tree = args.tree.resolve()
    print(
        json.dumps(measure(tree, args.kind, args.requests, args.connections, args.floor, args.pii))
    )


if __name__ == "__main__":
    main()
