"""The server process: garbage collector tuning once start-up is done."""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleetwatch.app import create_app
from fleetwatch.config import Settings
from fleetwatch.server import GC_THRESHOLD, HEAP_TRIMMER, tune_gc, tune_memory


@pytest.fixture
def restored_gc() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


def test_tune_gc_freezes_what_exists_and_raises_the_threshold(restored_gc: None) -> None:
    before = gc.get_freeze_count()
    tune_gc()
    assert gc.get_freeze_count() > before
    assert gc.get_threshold()[0] == GC_THRESHOLD


async def test_the_app_tunes_after_its_services_started(tmp_path: Path, restored_gc: None) -> None:
    app = create_app(Settings(data_dir=tmp_path))
    calls: list[bool] = []

    def record() -> None:
        calls.append(app.state.ready)

    app.state.tune_gc = record
    async with app.router.lifespan_context(app):
        assert app.state.ready
    assert calls == [False]  # once, after start-up, before the server said it was ready


def test_tune_memory_also_starts_the_heap_trimmer(restored_gc: None) -> None:
    tune_memory()
    tune_memory()  # the app may be made twice in one process: still one trimmer
    assert [t.name for t in threading.enumerate()].count("fleetwatch-heap") == 1
    assert gc.get_threshold()[0] == GC_THRESHOLD
    assert HEAP_TRIMMER.interval > 0
