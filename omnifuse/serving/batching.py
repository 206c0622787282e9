"""Micro-batching: the samples of requests that wait for the model at the same time run through it as one call."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any


class MicroBatcher:
    """Runs the samples of requests that wait at the same time as one model call.

    A request is queued; the worker takes everything queued (up to ``max_batch``), optionally waits
    ``wait_ms`` for more, and runs ``run_batch`` on one thread (the model is never called concurrently). While a
    batch runs, new requests queue up and form the next one, so a lone request waits for nothing and a crowd is
    served in batches. ``run_batch`` may answer an item with an exception instance: that item's request gets
    the exception, the others their answers.
    """

    def __init__(
        self, run_batch: Callable[[list[Any]], list[Any]], max_batch: int = 64, wait_ms: float = 0.0
    ):
        if max_batch < 1:
            raise ValueError(f"Expected max_batch >= 1. Received: {max_batch}")
        self.run_batch, self.max_batch, self.wait_ms = run_batch, int(max_batch), float(wait_ms)
        self.stats = {"requests": 0, "batches": 0, "largest_batch": 0}
        self._queue: asyncio.Queue | None = None
        self._task: asyncio.Task | None = None
        self._executor: ThreadPoolExecutor | None = None

    async def start(self) -> None:
        self._queue = asyncio.Queue()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="omnifuse-model")
        self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        if self._executor is not None:
            self._executor.shutdown(wait=True)
        self._task = self._executor = None

    async def submit(self, item: Any) -> Any:
        """The answer for ``item``, computed in a batch with whatever else is waiting."""
        if self._queue is None:
            raise RuntimeError("MicroBatcher.submit called before start()")
        future = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((item, future))
        return await future

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self._queue.get()]
            deadline = loop.time() + self.wait_ms / 1000
            while len(batch) < self.max_batch:
                if not self._queue.empty():
                    batch.append(self._queue.get_nowait())
                    continue
                left = deadline - loop.time()
                if left <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(self._queue.get(), left))
                except asyncio.TimeoutError:
                    break
            live = [(item, fut) for item, fut in batch if not fut.done()]  # a client may have gone away
            if not live:
                continue
            self.stats["requests"] += len(live)
            self.stats["batches"] += 1
            self.stats["largest_batch"] = max(self.stats["largest_batch"], len(live))
            try:
                answers = await loop.run_in_executor(self._executor, self.run_batch, [i for i, _ in live])
            except Exception as exc:  # handed to each waiting request; the worker keeps serving
                for _, fut in live:
                    if not fut.done():
                        fut.set_exception(exc)
                continue
            for (_, fut), answer in zip(live, answers):
                if fut.done():
                    continue
                if isinstance(
                    answer, BaseException
                ):  # this item alone failed (run_batch retried it on its own)
                    fut.set_exception(answer)
                else:
                    fut.set_result(answer)
