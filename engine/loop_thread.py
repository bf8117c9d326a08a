"""A private event loop on a daemon thread.

vLLM's AsyncLLM binds its output handler and ZMQ sockets to the event loop it
first runs on. Evaluation, the CLI and tests each call `asyncio.run(...)` (a new
loop every time) against one shared engine, so the engine keeps its own loop
here and every public coroutine hops onto it. Callers may use any loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from typing import Any, Coroutine


class LoopThread:
    def __init__(self, name: str = "codetailor-engine-loop"):
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self._thread.start()

    def submit(self, coro: Coroutine) -> concurrent.futures.Future:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def run(self, coro: Coroutine) -> Any:
        """Run to completion from synchronous code (not from this loop's own thread)."""
        return self.submit(coro).result()

    async def call(self, coro: Coroutine) -> Any:
        """Await `coro` on this loop from any loop; cancelling the caller cancels it."""
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self.loop:
            return await coro
        return await asyncio.wrap_future(self.submit(coro))

    def stop(self) -> None:
        if self.loop.is_running():
            self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        if not self.loop.is_running():
            self.loop.close()
