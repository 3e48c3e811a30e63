"""CPU per delivery of the three delivery senders, PostgreSQL only: where a delivery's time goes.

The delivery figure's rate is bounded by one core: each sender is one process with its event loop
busy nearly all the time. This tool says what each spends per delivery, so the gap between the
hub, its durable floor and the raw client can be read in microseconds rather than in ratios:

- ``raw``: ``raw_sender`` (the ceiling: aiohttp, the same signed requests, no database);
- ``bare``: ``bare_worker`` (the floor: the store's claim, the webhook channel, the attempt write);
- ``hub``: ``switchboard worker``.

One queue of N deliveries is built once (a hub on a new database, stopped again), and each drain
runs on a copy of it (``CREATE DATABASE … TEMPLATE``), in turns (raw, bare, hub, raw, …), so the
three see the same machine. Between the receiver's first and last arrival the tool reads
``/proc/<pid>/stat`` of the sender, the receiver and every ``postgres`` process on the machine,
and prints each one's CPU (user + system) per delivery, and the sender's user time alone.

Run: ``python -m benchmarks.drain_cpu [--deliveries 40000] [--rounds 3]``. It needs the same
PostgreSQL server as ``make bench``, drops every database it made, and stops every process it
started.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from contextlib import ExitStack
from pathlib import Path

from benchmarks import harness as h
from benchmarks.delivery import _NO_INTERNAL, _preload, _wire
from switchboard.signing import generate_secret

_TICK = os.sysconf("SC_CLK_TCK")
_CONCURRENCY = 64


def _stat(path: Path) -> list[str]:
    """The fields of a `/proc/<pid>/stat` after the command name (which may hold spaces)."""
    return path.read_text().rsplit(")", 1)[1].split()


def _times(pid: int) -> tuple[float, float]:
    """(user, user + system) seconds of a process; zero once it has gone."""
    try:
        fields = _stat(Path(f"/proc/{pid}/stat"))
    except OSError:
        return 0.0, 0.0
    user, system = int(fields[11]) / _TICK, int(fields[12]) / _TICK
    return user, user + system


def _postgres_cpu() -> float:
    """CPU seconds of every process named `postgres` (backends, WAL writer, checkpointer), with
    the children each has reaped: a backend that exits moves its time to the postmaster's."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "comm").read_text().strip() != "postgres":
                continue
            fields = _stat(entry / "stat")
        except OSError:
            continue
        total += sum(int(f) for f in fields[11:15]) / _TICK
    return total


def _drain(kind: str, argv: list[str], env: dict[str, str], work: Path, receiver: str,
           receiver_pid: int, n: int) -> dict[str, float]:  # fmt: skip
    """Run one sender until the receiver has `n` deliveries; its rate and CPU per delivery."""
    h.http("POST", receiver + "/_reset")
    with h.running(f"cpu-{kind}", argv, work, env) as proc:
        h.wait_count(receiver, 1, within=120)
        sender, rec, pg = _times(proc.pid), _times(receiver_pid)[1], _postgres_cpu()
        stats = h.wait_count(receiver, n, within=300)
        sender_end, rec_end, pg_end = _times(proc.pid), _times(receiver_pid)[1], _postgres_cpu()
    count = stats["count"]
    per = 1e6 / count
    return {
        "rate": (count - 1) / (stats["last"] - stats["first"]),
        "sender": (sender_end[1] - sender[1]) * per,
        "sender_user": (sender_end[0] - sender[0]) * per,
        "receiver": (rec_end - rec) * per,
        "postgres": (pg_end - pg) * per,
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.drain_cpu")
    parser.add_argument("--deliveries", type=int, default=40_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    n = args.deliveries
    if not h.pg_available():
        sys.exit(f"no PostgreSQL at {h.PG_ADMIN_URL}")
    results: dict[str, list[dict[str, float]]] = {"raw": [], "bare": [], "hub": []}
    with h.workdir() as tmp, ExitStack() as stack:
        work = Path(tmp)
        receiver, rec_proc = stack.enter_context(h.receiver(work))
        template = stack.enter_context(h.fresh_database("postgres", work, "cpu_queue"))
        key = h.provision(template)
        with h.hub(work, template, name="hub-queue", **_NO_INTERNAL) as (url, _):
            _wire(url, key, receiver, _CONCURRENCY, generate_secret())
            _preload(url, key, n, "cpu")
        h.say(f"queued {n:,} deliveries; {args.rounds} rounds of raw, bare, hub")
        for rnd in range(args.rounds):
            for kind in results:
                if kind == "raw":
                    argv = [sys.executable, "-m", "benchmarks.raw_sender", receiver + "/hook",
                            str(n), str(_CONCURRENCY), generate_secret()]  # fmt: skip
                    r = _drain(kind, argv, {}, work, receiver, rec_proc.pid, n)
                else:
                    with h.fresh_database("postgres", work, "cpu_run", template) as db:
                        env = h.hub_env(db, 0, **_NO_INTERNAL)
                        if kind == "hub":
                            argv = [str(h.BIN / "switchboard"), "worker"]
                        else:
                            argv = [sys.executable, "-m", "benchmarks.bare_worker", db, "bench",
                                    str(n), str(_CONCURRENCY)]  # fmt: skip
                        r = _drain(kind, argv, env, work, receiver, rec_proc.pid, n)
                results[kind].append(r)
                h.say(
                    f"round {rnd + 1} {kind:4s}: {r['rate']:7,.0f}/s  sender {r['sender']:5.1f} "
                    f"(user {r['sender_user']:5.1f})  receiver {r['receiver']:4.1f}  "
                    f"postgres {r['postgres']:5.1f} µs/delivery"
                )
            time.sleep(0.5)
    print(f"\nmedians of {args.rounds} rounds, {n:,} deliveries each (µs of CPU per delivery):")
    print(f"{'':5s} {'deliveries/s':>12s} {'sender':>7s} {'(user)':>7s} {'receiver':>9s} "
          f"{'postgres':>9s}")  # fmt: skip
    for kind, runs in results.items():
        med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        print(
            f"{kind:5s} {med['rate']:12,.0f} {med['sender']:7.1f} {med['sender_user']:7.1f} "
            f"{med['receiver']:9.1f} {med['postgres']:9.1f}"
        )


if __name__ == "__main__":
    main()
