"""An ordered map over a stream of items, on every core, in bounded memory.

Indexing does the same self-contained work for each file of a source (read it, run the
safety checks and the secret scan, chunk it, tokenise the chunks), and one core does
not reach "searchable within a minute" on a large repository. `ordered_map` runs that
work in worker processes, a batch of items per task, and hands the results back in the
order of the items, so what is built from them (segments, manifest) is the same as on
one core. At most `ahead` batches are in flight: memory does not grow with the stream.
A short stream, or one worker, runs in this process (starting processes costs seconds).
"""

from __future__ import annotations

from collections import deque
from itertools import chain, islice
from typing import Callable, Iterable, Iterator

_work: tuple[Callable, object] | None = None   # a worker's (function, context), set once at its start


def _init_worker(fn: Callable, context: object) -> None:
    global _work
    _work = (fn, context)


def _run_batch(items: list) -> list:
    fn, context = _work
    return [fn(context, item) for item in items]


def ordered_map(fn: Callable, context: object, items: Iterable, *, workers: int, batch: int = 32,
                min_items: int = 256, ahead: int | None = None) -> Iterator:
    """`fn(context, item)` for each item, in order. `fn` must be a module-level function and
    `context` picklable (each worker process receives them once); items are consumed lazily."""
    it = iter(items)
    head = list(islice(it, min_items))
    if workers <= 1 or len(head) < min_items:
        for item in chain(head, it):
            yield fn(context, item)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    ahead = ahead or 2 * workers + 2
    stream = chain(head, it)
    # spawn, not fork: the indexing process may hold threads (torch, tqdm, sqlite)
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_init_worker, initargs=(fn, context))
    try:
        pending: deque = deque()
        while True:
            while len(pending) < ahead:
                chunk = list(islice(stream, batch))
                if not chunk:
                    break
                pending.append(pool.submit(_run_batch, chunk))
            if not pending:
                return
            yield from pending.popleft().result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
