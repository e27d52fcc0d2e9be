"""Group commit: the requests that arrive while one batch is being written go in the next.

Under load one transaction then carries many requests' writes, instead of each request
paying a transaction (and, on SQLite, a turn at the single write lock) of its own; with no
load a batch is one request and nothing waits. The document index commits its writes the
same way.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


@dataclass
class _Queued(Generic[T, R]):
    item: T
    future: asyncio.Future[R]


class GroupCommit(Generic[T, R]):
    """Runs `handler` on batches of submitted items, one batch at a time, in order.

    `handler` returns one result per item; if it raises, every item of the batch gets the
    exception.
    """

    def __init__(
        self,
        handler: Callable[[Sequence[T]], Awaitable[Sequence[R]]],
        *,
        max_batch: int = 500,
        name: str = "group-commit",
    ) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self._handler = handler
        self._max_batch = max_batch
        self._name = name
        self._queue: list[_Queued[T, R]] = []
        self._drainer: asyncio.Task[None] | None = None
        #: Batches handled and items in them (for tests and benchmarks).
        self.batches = 0
        self.items = 0

    @property
    def backlog(self) -> int:
        """Items waiting for the next batch."""
        return len(self._queue)

    async def submit(self, item: T) -> R:
        """Queue `item` and wait for its batch's result."""
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._queue.append(_Queued(item, future))
        if self._drainer is None or self._drainer.done():
            self._drainer = asyncio.create_task(self._drain(), name=self._name)
        return await future

    def _fail_queued(self, exc: BaseException) -> None:
        queued, self._queue = self._queue, []
        for q in queued:
            if not q.future.done():
                q.future.set_exception(exc)

    async def _drain(self) -> None:
        while self._queue:
            batch = self._queue[: self._max_batch]
            del self._queue[: self._max_batch]
            try:
                results = await self._handler([q.item for q in batch])
                if len(results) != len(batch):
                    raise RuntimeError(f"{self._name}: {len(results)} results for {len(batch)}")
            except BaseException as exc:  # the batch failed as a whole: tell every caller
                for q in batch:
                    if not q.future.done():
                        q.future.set_exception(exc)
                if isinstance(exc, asyncio.CancelledError):
                    self._fail_queued(exc)
                    raise
                continue
            self.batches += 1
            self.items += len(batch)
            for q, result in zip(batch, results, strict=True):
                if not q.future.done():
                    q.future.set_result(result)
