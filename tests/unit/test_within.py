"""`within`: a request answers 503 on time even when its work is slow to unwind."""

from __future__ import annotations

import asyncio

import pytest
from starlette.responses import Response

from switchboard.api.common import within
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
