"""`within` and `Deadlines`: a request answers 503 on time even when its work is slow to
unwind."""

from __future__ import annotations

import asyncio

import pytest
from starlette.responses import Response

from switchboard.api.common import Deadlines, within
from switchboard.errors import StoreUnavailable


async def test_answers_the_work_when_it_finishes_in_time() -> None:
    async def work() -> Response:
        await asyncio.sleep(0)
        return Response(b"ok", status_code=202)

    response = await within(1.0, work())
    assert response.status_code == 202 and response.body == b"ok"


async def test_errors_of_the_work_pass_through() -> None:
    async def work() -> Response:
        raise ValueError("bad field")

    with pytest.raises(ValueError, match="bad field"):
        await within(1.0, work())


async def test_answers_503_without_waiting_for_a_cleanup_that_ignores_cancellation() -> None:
    """Like asyncpg releasing a connection in a silent partition: the cleanup is shielded, so
    `asyncio.wait_for` would only return once it ends."""
    release = asyncio.Event()
    unwound = asyncio.Event()

    async def work() -> Response:
        try:
            await asyncio.sleep(60)
        finally:
            await asyncio.shield(release.wait())  # a cleanup no cancellation interrupts
            unwound.set()
        return Response(b"never")

    with pytest.raises(StoreUnavailable, match=r"did not confirm within 0\.05 s"):
        await within(0.05, work())
    assert not unwound.is_set(), "the answer waited for the cleanup"
    release.set()
    await asyncio.wait_for(unwound.wait(), 5)  # the abandoned work still unwinds


async def test_a_cancelled_request_cancels_its_work() -> None:
    started = asyncio.Event()
    cancelled = asyncio.Event()

    async def work() -> Response:
        started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return Response(b"never")

    request = asyncio.ensure_future(within(30.0, work()))
    await started.wait()
    request.cancel()
    with pytest.raises(asyncio.CancelledError):
        await request
    await asyncio.wait_for(cancelled.wait(), 5)


async def test_a_deadline_answers_without_waiting_for_a_cleanup_that_ignores_cancellation() -> None:
    deadlines = Deadlines(0.05)
    release, unwound, answered = asyncio.Event(), asyncio.Event(), asyncio.Event()

    async def answer() -> None:
        answered.set()

    async def request() -> None:
        late = deadlines.enter(answer)
        try:
            try:
                await asyncio.sleep(60)
            finally:
                await asyncio.shield(release.wait())  # a cleanup no cancellation interrupts
                unwound.set()
        finally:
            deadlines.leave(late)

    task = asyncio.ensure_future(request())
    await asyncio.wait_for(answered.wait(), 5)
    assert not unwound.is_set(), "the answer waited for the cleanup"
    release.set()
    with pytest.raises(asyncio.CancelledError):  # the work was cancelled at its deadline
        await task
    assert unwound.is_set()


async def test_only_requests_still_running_at_their_deadline_are_answered_late() -> None:
    deadlines = Deadlines(0.05)
    late_ones: list[str] = []
    cancelled: list[str] = []

    async def request(name: str, seconds: float) -> None:
        async def answer() -> None:
            late_ones.append(name)

        late = deadlines.enter(answer)
        try:
            await asyncio.sleep(seconds)
        except asyncio.CancelledError:
            cancelled.append(name)
        finally:
            deadlines.leave(late)
        assert late.fired == (name in late_ones or name in cancelled)

    async def later(name: str, start: float, seconds: float) -> None:
        await asyncio.sleep(start)
        await request(name, seconds)

    await asyncio.gather(
        request("quick", 0),
        request("slow", 30),
        later("second-quick", 0.01, 0.01),
        later("second-slow", 0.02, 30),
        later("after-the-first-deadline", 0.2, 0.01),
    )
    await asyncio.sleep(0)  # the last answer's task runs
    assert sorted(cancelled) == ["second-slow", "slow"]
    assert sorted(late_ones) == ["second-slow", "slow"]
    assert not deadlines._waiting  # nothing left waiting, and no timer for nothing
    await asyncio.sleep(0.1)
    assert deadlines._timer is None
