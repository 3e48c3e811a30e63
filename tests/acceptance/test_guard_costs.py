"""`benchmarks.guard_costs` drives real requests through the guarded and the plain protocol (every
one answered) and times the egress guard's per-attempt and per-connection work."""

from __future__ import annotations

from benchmarks import guard_costs


def test_every_request_is_answered_by_both_protocols_and_each_cost_is_measured() -> None:
    edge = guard_costs.edge_guard(requests=300, rounds=2)  # raises if an answer is missing
    assert edge["rounds"] == 2
    assert edge["plain_us"] > 0 and edge["guarded_us"] > 0
    egress = guard_costs.egress_guard(calls=2000, rounds=2)
    assert egress["per_attempt_us"] > 0 and egress["per_new_connection_us"] > 0


def test_the_benchmark_request_is_one_complete_request() -> None:
    head, _, body = guard_costs.REQUEST.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1])
        for line in head.split(b"\r\n")
        if line.startswith(b"Content-Length")
    )
    assert length == len(body)
