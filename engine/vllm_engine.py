"""`VllmEngine`: the EngineClient on vLLM's in-process AsyncLLM.

One base model, many tenant LoRA adapters, continuous batching across tenants.
The engine core runs with `distributed_executor_backend="uni"`, so the model worker
lives inside vLLM's EngineCore process instead of one more process below it: faster
start and ~500 MiB less memory.
AsyncLLM always runs that core as a child process (`VLLM::EngineCore`);
VLLM_ENABLE_V1_MULTIPROCESSING=0 does not change that, so this process (tokenising,
detokenising, callers' event loops) and the core share the machine's cores.

The engine keeps its own event loop on a thread (engine.loop_thread): callers
may await it from any loop, e.g. several `asyncio.run` calls on one engine.

Adapters arrive as `AdapterRef`s; only engine.resolver turns one into a
LoRARequest. A missing or corrupt adapter raises AdapterLoadError (serving falls
back to the base model); a dead engine raises EngineDead; a request vLLM
refuses (prompt longer than max_model_len, bad parameters) raises RequestRejected.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import gc
import json
import logging
import os
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, AsyncIterator

from codetailor.config import EngineConfig, Settings
from codetailor.hardware import Choice, child_processes, choose_dtypes, detect, openmp_env
from codetailor.home import Home
from engine.kv_budget import KvPlan, available_memory, bytes_per_token, plan_kv_cache
from engine.protocol import (
    AdapterLoadError,
    AdapterRef,
    EngineClient,
    EngineDead,
    EngineError,
    EngineHealth,
    GenerationRequest,
    GenerationResult,
    RequestRejected,
)
from engine.loop_thread import LoopThread
from engine.resolver import AdapterResolver

if TYPE_CHECKING:
    from vllm.v1.engine.async_llm import AsyncLLM

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class EnginePlan:
    """What the engine is started with, resolved from the config and this machine."""

    dtype: Choice
    kv: KvPlan

    def as_dict(self) -> dict:
        return {"dtype": dataclasses.asdict(self.dtype), "kv_cache": self.kv.as_dict()}


def plan_engine(cfg: EngineConfig, model_path: Path, seq_tokens: int | None = None) -> EnginePlan:
    """The dtype (an "auto" resolved by codetailor/hardware.py, never passed on to vLLM) and the KV
    cache sized for `seq_tokens` per sequence (default max_model_len)."""
    dtype = choose_dtypes(detect(), engine=cfg.dtype).engine
    try:
        model_config = json.loads((model_path / "config.json").read_text())
        per_token = bytes_per_token(model_config, dtype.value)
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise EngineError(f"cannot read the model config at {model_path}: {e}") from None
    requested = 0 if cfg.kv_cache_gib == "auto" else cfg.kv_cache_gib
    kv = plan_kv_cache(bytes_per_token=per_token, seq_tokens=seq_tokens or cfg.max_model_len,
                       max_model_len=cfg.max_model_len, max_num_seqs=cfg.max_num_seqs,
                       available_bytes=available_memory(), requested_gib=requested)
    return EnginePlan(dtype, kv)


def _engine_env(cfg: EngineConfig, plan: EnginePlan) -> None:
    # vLLM reads these lazily from the environment when the engine is built; the OpenMP ones are
    # read by the runtime when the engine-core process vLLM spawns next loads torch.
    os.environ["VLLM_CPU_KVCACHE_SPACE"] = str(plan.kv.gib)
    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
    if cfg.threads:
        os.environ["OMP_NUM_THREADS"] = str(cfg.threads)
    for key, value in openmp_env().items():
        os.environ.setdefault(key, value)
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
    # vLLM logs to stdout by default, which would corrupt `--json` output: keep stdout for results.
    os.environ.setdefault("VLLM_LOGGING_STREAM", "ext://sys.stderr")


def sequence_tokens(settings: Settings) -> int:
    """Tokens one sequence may need: the prompt budget plus the longest completion asked for."""
    longest = max(settings.serving.max_tokens_limit, settings.evaluation.max_new_tokens)
    return min(settings.engine.max_model_len, settings.prompt.budget_tokens + longest)


class VllmEngine(EngineClient):
    def __init__(self, llm: "AsyncLLM", loop: LoopThread, resolver: AdapterResolver, config: EngineConfig,
                 model_path: Path, counts: "SchedulerCounts | None" = None):
        self._llm = llm
        self._counts = counts or SchedulerCounts()
        self._loop = loop
        self.resolver = resolver
        self.config = config
        self.model_path = model_path
        self._tokenizer = llm.tokenizer
        self._registered: set[int] = set()  # lora ids add_lora has accepted
        self._live: dict[str, set[str]] = {}  # caller's request id -> the engine ids running under it
        self._prefix_index = None  # token healing's vocabulary index, built on first use
        self._closed = False
        self.plan: EnginePlan | None = None   # set by start()

    # -- construction -----------------------------------------------------------
    @classmethod
    def start(
        cls,
        settings_or_config: Settings | EngineConfig,
        model_path: Path | str,
        *,
        home: Home | Path | None = None,
    ) -> "VllmEngine":
        """Build the engine (≈ 20–35 s for SmolLM2 on 2 cores). `home` is where
        adapters are resolved; it defaults to the settings' home. The KV cache is sized for
        the settings' prompt budget plus the longest completion (else for max_model_len)."""
        seq_tokens = None
        if isinstance(settings_or_config, Settings):
            cfg = settings_or_config.engine
            home = home if home is not None else Home(settings_or_config.home)
            seq_tokens = sequence_tokens(settings_or_config)
        else:
            cfg = settings_or_config
            if home is None:
                raise EngineError("VllmEngine.start needs `home` when given an EngineConfig")
        model_path = Path(model_path)
        if not (model_path / "config.json").is_file():
            raise EngineError(f"no model checkpoint at {model_path} (config.json missing)")
        plan = plan_engine(cfg, model_path, seq_tokens)
        _engine_env(cfg, plan)
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.v1.engine.async_llm import AsyncLLM

        args = AsyncEngineArgs(
            model=str(model_path),
            dtype=plan.dtype.value,
            max_model_len=cfg.max_model_len,
            enable_lora=cfg.enable_lora,
            max_loras=cfg.max_loras,
            max_lora_rank=cfg.max_lora_rank,
            max_cpu_loras=max(cfg.max_cpu_loras, cfg.max_loras),
            max_num_seqs=plan.kv.max_num_seqs,
            seed=cfg.seed,
            distributed_executor_backend="uni",
            disable_log_stats=False,
        )
        counts = SchedulerCounts()

        async def build():
            return AsyncLLM.from_engine_args(args, stat_loggers=[_counts_logger(counts)])

        from engine.process_guard import engine_core_pids, kill_engine_cores

        running = engine_core_pids()  # other engines of this process, spared if this start is interrupted
        loop = LoopThread()
        try:
            llm = loop.run(build())
        except Exception as e:  # vLLM raises many types; the message is what matters
            loop.stop()
            raise EngineError(f"the vLLM engine failed to start for {model_path}: {type(e).__name__}: {e}") from e
        except BaseException:  # interrupted (Ctrl-C, SIGTERM) while the core starts: nothing owns it yet
            kill_engine_cores(spare=running)
            loop.stop()
            raise
        home = home if isinstance(home, Home) else Home(Path(home))
        engine = cls(llm, loop, AdapterResolver(home, cfg.max_lora_rank), cfg, model_path, counts)
        engine.plan = plan
        return engine

    def process_report(self) -> list[dict]:
        """The engine-core process(es) vLLM spawned for this engine and the OpenMP runtime each loaded
        (vLLM rewrites LD_PRELOAD for them, so it may differ from this process's)."""
        return [p for p in child_processes() if "EngineCore" in p["name"] or "VLLM" in p["name"]]

    async def _call(self, coro):
        """Run one of our coroutines on the engine's own loop."""
        if self._closed:
            coro.close()
            raise EngineDead("the engine is shut down")
        return await self._loop.call(coro)

    # -- adapters -------------------------------------------------------------------
    async def _lora(self, ref: AdapterRef | None):
        if ref is None:
            return None
        if not self.config.enable_lora:
            raise AdapterLoadError("this engine was started with enable_lora=false")
        req = self.resolver.lora_request(ref)  # raises AdapterLoadError for bad files
        if req.lora_int_id not in self._registered:
            try:
                await self._llm.add_lora(req)
            except Exception as e:
                self._raise_if_dead()
                raise AdapterLoadError(f"adapter {ref.tenant}/{ref.version} failed to load: {e}") from e
            self._registered.add(req.lora_int_id)
        return req

    async def add_adapter(self, adapter: AdapterRef) -> None:
        await self._call(self._lora(adapter))

    async def remove_adapter(self, adapter: AdapterRef) -> None:
        await self._call(self._remove(adapter))

    async def _remove(self, adapter: AdapterRef) -> None:
        lora_id = self.resolver.int_id(adapter)
        self._registered.discard(lora_id)
        try:
            await self._llm.remove_lora(lora_id)
        except Exception as e:
            self._raise_if_dead()
            raise EngineError(f"could not remove adapter {adapter.tenant}/{adapter.version}: {e}") from e

    async def loaded_adapter_ids(self) -> set[int]:
        """Ids vLLM holds in its CPU cache (for tests and health)."""
        return set(await self._call(self._llm.list_loras()))

    # -- generation ------------------------------------------------------------------
    def _params(self, request: GenerationRequest, delta: bool):
        from vllm.sampling_params import RequestOutputKind, SamplingParams

        try:
            return SamplingParams(
                max_tokens=request.max_tokens,
                temperature=request.temperature,
                stop=list(request.stop) or None,
                stop_token_ids=list(request.stop_token_ids) or None,
                seed=request.seed,
                output_kind=RequestOutputKind.DELTA if delta else RequestOutputKind.FINAL_ONLY,
            )
        except Exception as e:
            if _is_client_error(e):
                raise RequestRejected(f"invalid generation parameters: {e}") from None
            raise

    def _raise_if_dead(self) -> None:
        if self._closed:
            raise EngineDead("the engine is shut down")
        if self._llm.errored:
            raise EngineDead(f"the vLLM engine died: {self._llm.dead_error}")

    async def _run(self, request: GenerationRequest, delta: bool) -> AsyncIterator[GenerationResult]:
        self._raise_if_dead()
        params = self._params(request, delta)
        lora = await self._lora(request.adapter)
        # vLLM keys requests (and abort) by id in one namespace for every tenant: it gets an id
        # made here, never the client's, so one tenant cannot cancel or collide with another's
        # request by reusing its id. The client's id stays on results and in logs.
        request_id = request.request_id or uuid.uuid4().hex
        engine_id = uuid.uuid4().hex
        self._live.setdefault(request_id, set()).add(engine_id)
        t0 = time.perf_counter()
        prompt, head, head_ids = self._salted({"prompt": request.prompt}, request), "", []
        finished = False
        try:
            if request.heal:
                prompt, head, head_ids = await self._heal(request, lora, engine_id)
                left = request.max_tokens - len(head_ids)
                if left <= 0:  # the healing steps used the whole budget (the word is spelled out anyway)
                    finished = True
                    yield GenerationResult(request_id, head, "length", len(prompt["prompt_token_ids"]) - len(head_ids),
                                           len(head_ids), request.adapter,
                                           generation_ms=(time.perf_counter() - t0) * 1000)
                    return
                params = self._params(dataclasses.replace(request, max_tokens=left), delta)
            prompt_tokens, completion_tokens = 0, len(head_ids)
            async for out in self._llm.generate(prompt, params, engine_id, lora_request=lora):
                c = out.outputs[0]
                prompt_tokens = len(out.prompt_token_ids or ()) - len(head_ids)
                completion_tokens = (completion_tokens + len(c.token_ids)) if delta else len(head_ids) + len(c.token_ids)
                finished = out.finished
                text = head + c.text
                if delta:
                    head = ""  # sent with the first chunk
                yield GenerationResult(
                    request_id=request_id,
                    text=text,
                    finish_reason=c.finish_reason if out.finished else None,
                    prompt_tokens=prompt_tokens,
                    completion_tokens=completion_tokens,
                    adapter=request.adapter,
                    queue_ms=_queue_ms(out),
                    generation_ms=(time.perf_counter() - t0) * 1000,
                )
        except EngineError:
            raise
        except asyncio.CancelledError:
            raise
        except Exception as e:
            self._raise_if_dead()
            if _is_client_error(e):  # vLLM's input validation (too long, bad ids, ...)
                raise RequestRejected(f"request rejected by the engine: {e}") from None
            raise EngineError(f"generation failed: {type(e).__name__}: {e}") from e
        finally:
            ids = self._live.get(request_id)
            if ids is not None:
                ids.discard(engine_id)
                if not ids:
                    del self._live[request_id]
            if not finished:  # the caller closed the stream early, or an error: free the KV cache
                with contextlib.suppress(Exception):
                    await self._llm.abort(engine_id)

    async def _heal(self, request: GenerationRequest, lora, engine_id: str) -> tuple[dict, str, list[int]]:
        """Generate, one constrained token at a time, the first tokens that spell `request.heal`
        (engine/token_healing.py). Returns the prompt to continue from (token ids), the text
        those tokens add beyond `heal`, and their ids. Short: one or two engine steps."""
        from vllm.sampling_params import RequestOutputKind, SamplingParams

        if self._prefix_index is None:
            from engine.token_healing import TokenPrefixIndex

            self._prefix_index = TokenPrefixIndex(self._hf_tokenizer())
        index = self._prefix_index
        ids = self._tokenizer.encode(request.prompt, add_special_tokens=False)
        rest, out = request.heal, []
        while rest:
            allowed = index.allowed(rest)
            if not allowed:  # no token agrees (cannot happen with byte-level BPE): spell it out
                out.extend(self._tokenizer.encode(rest, add_special_tokens=False))
                break
            params = SamplingParams(max_tokens=1, temperature=request.temperature, seed=request.seed,
                                    allowed_token_ids=allowed, output_kind=RequestOutputKind.FINAL_ONLY)
            token = None
            async for o in self._llm.generate(self._salted({"prompt_token_ids": ids + out}, request), params,
                                              f"{engine_id}-heal{len(out)}", lora_request=lora):
                if o.finished and o.outputs[0].token_ids:
                    token = o.outputs[0].token_ids[0]
            if token is None:
                raise EngineError("token healing: the engine returned no token")
            out.append(token)
            rest = index.consume(rest, token)
        spelled = "".join(index.text_of.get(t, "") for t in out)
        head = spelled[len(request.heal):] if spelled.startswith(request.heal) else ""
        return self._salted({"prompt_token_ids": ids + out}, request), head, out

    @staticmethod
    def _salted(prompt: dict, request: GenerationRequest) -> dict:
        if request.cache_salt:
            prompt["cache_salt"] = request.cache_salt
        return prompt

    def _hf_tokenizer(self):
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(str(self.model_path))

    async def _generate(self, request: GenerationRequest) -> GenerationResult:
        last = None
        async for result in self._run(request, delta=False):
            last = result
        if last is None:
            raise EngineError("the engine returned no output")
        return last

    async def generate(self, request: GenerationRequest) -> GenerationResult:
        return await self._call(self._generate(request))

    async def stream(self, request: GenerationRequest) -> AsyncIterator[GenerationResult]:
        chunks = self._run(request, delta=True)  # iterated on the engine's loop
        try:
            while True:
                try:
                    item = await self._call(chunks.__anext__())
                except StopAsyncIteration:
                    return
                yield item
        finally:
            if not self._closed:
                await self._loop.call(chunks.aclose())

    async def abort(self, request_id: str) -> None:
        """Cancel the requests running under the caller's id `request_id` in this engine.
        Serving never calls this (a cancelled call or a closed stream aborts its own request);
        a caller sharing the engine between tenants must not pass ids another tenant chose."""
        await self._call(self._abort(request_id))

    async def _abort(self, request_id: str) -> None:
        ids = list(self._live.get(request_id, ()))
        if ids:
            await self._llm.abort(ids)

    # -- status -------------------------------------------------------------------------
    async def health(self) -> EngineHealth:
        if self._closed:
            return EngineHealth(ok=False, detail="engine shut down")
        return await self._call(self._health())

    async def _health(self) -> EngineHealth:
        if self._closed or self._llm.errored:
            return EngineHealth(ok=False, detail="engine shut down" if self._closed else str(self._llm.dead_error))
        try:
            await self._llm.check_health()
            loaded = len(await self._llm.list_loras()) if self.config.enable_lora else 0
        except Exception as e:
            return EngineHealth(ok=False, detail=f"{type(e).__name__}: {e}")
        unfinished = self._llm.get_num_unfinished_requests()
        # The scheduler's last step said how many of them wait for a slot; an idle engine has
        # no step to report that the queue emptied.
        waiting = min(self._counts.waiting, unfinished)
        return EngineHealth(ok=True, running_requests=unfinished - waiting, waiting_requests=waiting,
                            loaded_adapters=loaded)

    def count_tokens(self, text: str) -> int:
        return len(self._tokenizer.encode(text, add_special_tokens=False))

    async def shutdown(self) -> None:
        if self._closed:
            return
        self._closed = True

        llm, self._llm = self._llm, _Closed()

        async def stop():
            llm.shutdown()
            for _ in range(3):  # let the cancelled output handler finish on this loop
                await asyncio.sleep(0)

        with contextlib.suppress(Exception):
            await self._loop.call(stop())
        self._loop.stop()
        # Shut down once, here. AsyncLLM.__del__ shuts down again when the last reference goes;
        # if that is at interpreter exit, vLLM's module globals are already None and it prints a
        # TypeError traceback after every CLI command.
        with contextlib.suppress(TypeError):
            llm.__class__ = _without_del(type(llm))
        del llm, stop  # collected now, while the interpreter is whole
        gc.collect()

    def close(self) -> None:
        """Synchronous shutdown (fixtures, atexit); not from inside a running loop."""
        asyncio.run(self.shutdown())


@functools.cache
def _without_del(cls: type) -> type:
    return type(cls.__name__, (cls,), {"__del__": lambda self: None})


@dataclasses.dataclass
class SchedulerCounts:
    """The scheduler's request counts after its latest step (vLLM's stat loggers report them)."""

    running: int = 0
    waiting: int = 0


def _counts_logger(counts: SchedulerCounts):
    """A vLLM stat-logger factory that keeps the scheduler's counts in `counts`."""
    from vllm.v1.metrics.loggers import StatLoggerBase

    class CountsLogger(StatLoggerBase):
        def __init__(self, vllm_config, engine_index: int = 0):
            pass

        def record(self, scheduler_stats, iteration_stats, mm_cache_stats=None, engine_idx: int = 0):
            if scheduler_stats is not None:
                counts.running = scheduler_stats.num_running_reqs
                counts.waiting = scheduler_stats.num_waiting_reqs + scheduler_stats.num_skipped_waiting_reqs

        def log_engine_initialized(self):
            pass

    return CountsLogger


class _Closed:
    """Stands in for the AsyncLLM after shutdown, so late calls fail with EngineDead."""

    errored = True
    dead_error = "the engine is shut down"

    def __getattr__(self, name):
        raise EngineDead("the engine is shut down")


def _is_client_error(e: Exception) -> bool:
    from vllm.exceptions import VLLMClientError

    return isinstance(e, (VLLMClientError, ValueError, TypeError))


def _queue_ms(out) -> float:
    m = getattr(out, "metrics", None)
    queued, scheduled = getattr(m, "queued_ts", 0.0), getattr(m, "scheduled_ts", 0.0)
    return max(0.0, (scheduled - queued) * 1000) if queued and scheduled else 0.0
