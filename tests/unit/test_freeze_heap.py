"""The started process's heap is hidden from the garbage collector (`serve` and `worker`)."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path

import pytest

from switchboard.api import create_app
from switchboard.config import Settings
from switchboard.hub import freeze_heap
from switchboard.store import migrate as migrations


@pytest.fixture
def thawed() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()  # the test process's own garbage must stay collectable


def test_freeze_heap_moves_live_objects_out_of_the_collectors_view(thawed: None) -> None:
    kept = [object() for _ in range(1000)]
    assert gc.get_freeze_count() == 0
    freeze_heap()
    assert gc.get_freeze_count() >= len(kept)


@pytest.mark.parametrize("freeze", [True, False])
async def test_the_app_freezes_its_heap_once_started_only_when_asked(
    thawed: None, tmp_path: Path, freeze: bool
) -> None:
    url = f"sqlite:///{tmp_path / 'hub.db'}"
    await migrations.upgrade(url)
    app = create_app(Settings(database_url=url, run_worker=0), freeze=freeze)
    async with app.router.lifespan_context(app):
        assert (gc.get_freeze_count() > 0) is freeze
