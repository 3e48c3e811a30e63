"""How big a run is: `--quick` (one run, small counts, under 2 minutes) or full (3 runs)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Config:
    quick: bool
    runs: int  # repetitions of every figure; the table shows the median and min–max
    duration: float  # seconds of each wrk run (after a 1 s warm-up)
    connections: int  # wrk connections, 1 event per request
    batch_connections: int  # wrk connections, 100 events per request
    raw_rows: int  # rows the raw batched insert writes (or fewer, if `duration` runs out)
    deliveries: int  # events pre-loaded for the delivery figure
    delivery_concurrency: int  # the destination's concurrency = the raw client's
    latency_rate: int  # events/s offered in the latency figure
    latency_seconds: float
    scan_events: int  # events stored for the replay scan and the disk figure
    scan_backend: str  # where the replay scan runs
    scan_timeout: float  # seconds one dry run may take before the figure is called failed
    auto_timers: int  # due runs the automation engine fires (against a raw claim+update)
    auto_waiting: int  # runs waiting on the ingested type in the automations' ingest figure
    auto_events: int  # single-event ingests per round of that figure
    auto_seconds: float  # seconds of due timers (lateness) and of triggers (first send)

    @classmethod
    def make(cls, quick: bool) -> Config:
        if quick:
            return cls(
                True, 1, 3, 64, 16, 20_000, 3_000, 64, 1000, 3, 50_000, "sqlite", 30,
                *(1_000, 5_000, 500, 1.0),
            )  # fmt: skip
        return cls(
            False, 3, 10, 64, 16, 200_000, 10_000, 64, 1000, 10, 1_000_000, "postgres", 120,
            *(20_000, 100_000, 5_000, 5.0),
        )  # fmt: skip
