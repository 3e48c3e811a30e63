"""What `/metrics` costs ingest: the 1 event/request figure with the counters off
(`SWITCHBOARD_METRICS=0`) and on while a scraper reads `/metrics` every second (Prometheus
usually scrapes every 15-60 s), in alternating pairs on fresh databases.

    python -m benchmarks.metrics_cost [--pairs 3] [--duration 5] [--backend sqlite]

Prints one line per run and a JSON summary: the median of the pairs' on/off ratios.
"""

from __future__ import annotations

import argparse
import json
import statistics
import threading
import urllib.request
from pathlib import Path
from typing import Any

from benchmarks import harness as h
from benchmarks.ingest import _checked, _stored_events


def _scrape(url: str, key: str, stop: threading.Event, sizes: list[int]) -> None:
    """Read /metrics every second (the text format: not JSON, so not `h.http`)."""
    while not stop.wait(1.0):
        auth = {"Authorization": f"Bearer {key}"}
        req = urllib.request.Request(url + "/metrics", headers=auth)  # noqa: S310 - 127.0.0.1
        with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310 - 127.0.0.1 only
            sizes.append(len(resp.read()))


def one_run(work: Path, kind: str, run: int, on: bool, duration: float) -> dict[str, Any]:
    name = f"metrics{'on' if on else 'off'}_{kind}_{run}"
    with h.fresh_database(kind, work, name) as db:
        key = h.provision(db)
        admin = h.admin_key(db)
        with h.hub(work, db, name=f"hub-{name}", SWITCHBOARD_METRICS="1" if on else "0") as (
            url,
            _,
        ):
            h.run_wrk(url, key, batch=1, connections=64, duration=1, tag=f"warm{name}")
            before = _stored_events(url, admin)
            stop, scrapes = threading.Event(), []  # type: ignore[var-annotated]
            scraper = threading.Thread(target=_scrape, args=(url, admin, stop, scrapes))
            if on:
                scraper.start()
            try:
                summary = h.run_wrk(url, key, batch=1, connections=64, duration=duration, tag=name)
            finally:
                stop.set()
                if on:
                    scraper.join()
            rate = _checked(summary, name)
            if _stored_events(url, admin) - before < summary["events"]:
                raise RuntimeError(f"{name}: fewer events stored than acknowledged")
    return {"value": rate, "scrapes": len(scrapes)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--backend", default="sqlite", choices=["sqlite", "postgres"])
    args = parser.parse_args()
    h.ensure_wrk()
    ratios, offs, ons = [], [], []
    with h.workdir() as tmp:
        work = Path(tmp)
        for run in range(args.pairs):
            # the order alternates, so a machine slowing down does not favour one side
            order = (False, True) if run % 2 == 0 else (True, False)
            got = {on: one_run(work, args.backend, run, on, args.duration) for on in order}
            off, on = got[False]["value"], got[True]["value"]
            offs.append(off)
            ons.append(on)
            ratios.append(on / off)
            h.say(
                f"pair {run + 1}: off {off:,.0f}/s, on {on:,.0f}/s "
                f"({got[True]['scrapes']} scrapes), ratio {on / off:.3f}"
            )
    print(
        json.dumps(
            {
                "backend": args.backend,
                "duration": args.duration,
                "off": offs,
                "on": ons,
                "ratios": ratios,
                "median_ratio": statistics.median(ratios),
            }
        )
    )


if __name__ == "__main__":
    main()
