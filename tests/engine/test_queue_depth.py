"""The engine's queue depth comes from vLLM's scheduler stats (a stat logger), so the
queue-depth gauge and its alert can move. Stand-in AsyncLLM here; under load with the real
engine in test_engine.py and the metrics integration test."""

from __future__ import annotations

import asyncio

import pytest

pytest.importorskip("vllm")

from vllm.v1.metrics.loggers import StatLoggerBase  # noqa: E402
from vllm.v1.metrics.stats import SchedulerStats  # noqa: E402

from codetailor.config import EngineConfig  # noqa: E402
from engine.loop_thread import LoopThread  # noqa: E402
from engine.resolver import AdapterResolver  # noqa: E402
from engine.vllm_engine import SchedulerCounts, VllmEngine, _counts_logger  # noqa: E402


class Busy:
    tokenizer = None
    errored = False

    def __init__(self, unfinished: int):
        self.unfinished = unfinished

    async def check_health(self):
        pass

    async def list_loras(self):
        return set()

    def get_num_unfinished_requests(self):
        return self.unfinished

    def shutdown(self):
        pass


def test_the_stat_logger_keeps_the_schedulers_counts_and_health_reports_them(tmp_path):
    counts = SchedulerCounts()
    factory = _counts_logger(counts)
    logger = factory(None, 0)   # how vLLM builds a per-engine logger
    assert isinstance(logger, StatLoggerBase)
    logger.record(SchedulerStats(num_running_reqs=8, num_waiting_reqs=5, num_skipped_waiting_reqs=1), None)
    logger.record(None, None)   # steps without scheduler stats change nothing
    assert (counts.running, counts.waiting) == (8, 6)

    llm = Busy(unfinished=14)
    eng = VllmEngine(llm, LoopThread(), AdapterResolver(tmp_path), EngineConfig(enable_lora=False), tmp_path, counts)
    h = asyncio.run(eng.health())
    assert (h.ok, h.running_requests, h.waiting_requests) == (True, 8, 6)
    llm.unfinished = 0          # idle: no step reported the queue emptied
    h = asyncio.run(eng.health())
    assert (h.running_requests, h.waiting_requests) == (0, 0)
    asyncio.run(eng.shutdown())
