"""The garbage collector tuned for a started process (`serve` and `worker`)."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path

import pytest

from switchboard.api import create_app
from switchboard.config import Settings
from switchboard.hub import GC_GEN0_THRESHOLD, tune_gc
from switchboard.store import migrate as migrations


@pytest.fixture
def thawed() -> Iterator[None]:
    threshold = gc.get_threshold()
    gc.unfreeze()
    yield
    gc.unfreeze()  # the test process's own garbage must stay collectable
    gc.set_threshold(*threshold)


def test_tune_gc_moves_live_objects_out_of_the_collectors_view(thawed: None) -> None:
    kept = [[n] for n in range(1000)]  # lists: objects the collector tracks
    assert gc.get_freeze_count() == 0
    assert any(o is kept[0] for o in gc.get_objects())
    tune_gc()
    assert gc.get_freeze_count() >= len(kept)
    # frozen: in no generation, so no collection looks at it again
    assert not any(o is kept[0] for o in gc.get_objects())
    assert gc.get_threshold()[0] == GC_GEN0_THRESHOLD


@pytest.mark.parametrize("freeze", [True, False])
async def test_the_app_freezes_its_heap_once_started_only_when_asked(
    thawed: None, tmp_path: Path, freeze: bool
) -> None:
    url = f"sqlite:///{tmp_path / 'hub.db'}"
    await migrations.upgrade(url)
    app = create_app(Settings(database_url=url, run_worker=0), freeze=freeze)
    async with app.router.lifespan_context(app):
        assert (gc.get_freeze_count() > 0) is freeze
