"""Config of the rollout engine (pydantic and the standard library only).

`EngineConfig` is everything `rollout.engine.Engine` passes to vLLM. It
imports neither torch nor vLLM, so a recipe validates on any laptop; the
"auto" device is resolved by the engine when it starts, not here.
`RolloutConfig` is what each training step generates, including the two
length controls (forced interruption, partial rollouts; docs/rollout.md).
"""
from __future__ import annotations

from typing import Annotated, ClassVar, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, model_validator

from core.config_marks import Mark, not_recipe, resumable

# ScaleRL's forced-interruption text (Khatri et al. 2025, "The Art of Scaling
# RL Compute"): it closes the thinking block so that an answer follows.
SCALERL_INTERRUPTION = "Okay, time is up. Let me stop thinking and formulate a final answer now. </think>"


class EngineConfig(BaseModel):
    """How one vLLM engine is built (one per rollout worker process)."""

    model_config = ConfigDict(extra="forbid")
    marks: ClassVar[Mark] = Mark(resume=False, recipe=True)

    max_model_len: int = Field(256, gt=0, description="Longest prompt + completion in tokens.")
    max_num_seqs: Annotated[int, resumable] = Field(128, gt=0, description="Sequences decoded together in one engine step.")
    kv_cache_gib: Annotated[int, resumable] = Field(
        1, gt=0,
        description="CPU only: KV-cache size in GiB (VLLM_CPU_KVCACHE_SPACE; vLLM reads an integer). "
                    "On CUDA the cache is sized by gpu_memory_utilization instead.")
    dtype: Literal["float32", "bfloat16", "float16"] = Field(
        "float32", description="Weight/activation dtype: float32 for tiny CPU models, bfloat16 on GPU.")
    enforce_eager: Annotated[bool, resumable] = Field(
        True, description="Skip torch.compile / CUDA graphs: faster start, slower decode. "
                          "Turn off on GPU for long runs.")
    seed: Annotated[int, not_recipe] = Field(0, description="Engine seed; requests without their own seed draw from it.")
    threads_bind: Annotated[str, resumable] = Field(
        "auto",
        description="CPU only: VLLM_CPU_OMP_THREADS_BIND. 'auto' (one thread per physical core of "
                    "NUMA node 0), 'nobind' (leave OpenMP alone; best on a shared machine), or a "
                    "core list such as '0-1'.")
    gpu_memory_utilization: Annotated[float, resumable] = Field(
        0.5, gt=0.0, le=1.0, description="CUDA only: fraction of GPU memory vLLM may take (weights + KV).")
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="'auto' picks cuda when torch sees a GPU, else cpu (resolved at engine start).")
    fp32_lm_head: bool = Field(
        False,
        description="Run the LM head in float32 (vLLM hf_overrides head_dtype=float32), as ScaleRL "
                    "does to cut the train-inference log-prob mismatch under bfloat16. "
                    "A no-op when dtype is float32.")
    logprobs_mode: Literal["processed_logprobs", "raw_logprobs"] = Field(
        "processed_logprobs",
        description="Which log-probs sampled tokens carry. 'processed_logprobs' is after temperature "
                    "(and top-p renormalisation), i.e. log pi_T(token): the quantity the learner "
                    "recomputes at the same temperature. 'raw_logprobs' is the T=1 model.")
    prefix_caching: bool = Field(
        False,
        description="Reuse KV of shared prompt prefixes (helps n>1). Off by default: a prefix "
                    "cached under old weights could serve a request added after load_weights; the "
                    "engine clears the cache on each load, but vLLM can only clear it while no "
                    "request is running.")

    @model_validator(mode="after")
    def _threads_bind_form(self) -> "EngineConfig":
        bind = self.threads_bind
        if bind not in ("auto", "nobind"):
            allowed = set("0123456789,-|")
            if not bind or not set(bind) <= allowed:
                raise ValueError(
                    f"threads_bind must be 'auto', 'nobind' or a core list like '0-1', got {bind!r}")
        return self


class InterruptionConfig(BaseModel):
    """Forced interruption (ScaleRL's length control): a response still going
    at a point drawn uniformly in `window` gets `text` appended (never
    trained: the policy did not sample it), then `answer_tokens` more tokens
    to answer. The longest response is window[1] + len(text tokens) +
    answer_tokens, which the engine's max_model_len must hold with the prompt."""

    model_config = ConfigDict(extra="forbid")
    marks: ClassVar[Mark] = Mark(resume=False, recipe=True)

    text: str = Field(
        SCALERL_INTERRUPTION, min_length=1,
        description="Appended at the interruption point, tokenized with the model's tokenizer "
                    "(characters it cannot spell are lost, with a warning; the tiny "
                    "character tokenizer has no capitals).")
    window: tuple[int, int] = Field(
        description="(lo, hi): the interruption point is a response position drawn uniformly in "
                    "[lo, hi], per sample, from the job seed; 1 <= lo <= hi < max_new_tokens.")
    answer_tokens: int = Field(gt=0, description="Tokens the model may sample after the text.")

    @model_validator(mode="after")
    def _window_order(self) -> "InterruptionConfig":
        lo, hi = self.window
        if not 1 <= lo <= hi:
            raise ValueError(f"interruption.window must be 1 <= lo <= hi, got {self.window}")
        return self


class EnvConfig(BaseModel):
    """A multi-turn environment every rollout runs in (rollout/env.py)."""

    model_config = ConfigDict(extra="forbid")
    marks: ClassVar[Mark] = Mark(resume=False, recipe=True)

    name: str = Field(description="A built-in environment (rollout.env.ENVIRONMENTS, e.g. calculator) "
                                  "or 'package.module:Class'.")
    max_turns: int = Field(4, ge=1, description="Model turns per episode; one more tool call ends it as 'length'.")
    options: dict = Field(default_factory=dict, description="Keyword arguments of the environment's constructor.")


class RolloutConfig(BaseModel):
    """How many rollout workers, and what each training step generates."""

    model_config = ConfigDict(extra="forbid")
    marks: ClassVar[Mark] = Mark(resume=False, recipe=True)

    workers: Annotated[int, resumable] = Field(1, ge=1, description="Rollout worker actors, each owning one vLLM engine.")
    cpus_per_worker: Annotated[float, resumable] = Field(1.0, gt=0, description="Ray CPUs reserved for each worker.")
    gpus_per_worker: Annotated[float, resumable] = Field(0.0, ge=0, description="Ray GPUs reserved for each worker (0 on CPU machines).")
    resources: Annotated[dict[str, float], resumable] = Field(
        default_factory=dict,
        description="Custom Ray resources each worker's bundle reserves, e.g. {rollout_node: 1}: ties the "
                    "workers to nodes started with ray start --resources '{\"rollout_node\": N}'.")
    restart_wait_s: Annotated[float, resumable] = Field(
        60.0, gt=0,
        description="How long a replacement for a dead worker may wait for room (a lost node's bundles are "
                    "moved by Ray when another node has the resources); then the run stops with a checkpoint.")
    prompts_per_step: int = Field(16, ge=1, description="Prompts drawn for each learner step.")
    samples_per_prompt: int = Field(8, ge=2, description="Samples per prompt (the group of group-relative advantages).")
    temperature: float = Field(1.0, gt=0, description="Sampling temperature (the learner scores tokens at the same temperature).")
    max_new_tokens: int = Field(64, ge=1, description="Longest response; longer ones are truncated (finish_reason 'length').")
    engine: EngineConfig = Field(default_factory=EngineConfig, description="The vLLM engine of each worker.")
    interruption: Optional[InterruptionConfig] = Field(
        None, description="Forced interruption (ScaleRL length control); None = off.")
    env: Optional[EnvConfig] = Field(
        None, description="A multi-turn environment (tools, games): after each model turn it answers with "
                          "an observation, never trained, or ends the episode. None = one turn.")
    partial_segment_tokens: Optional[int] = Field(
        None, ge=1,
        description="Partial rollouts (Kimi k1.5): tokens each response may sample per iteration; "
                    "an unfinished one is returned as 'partial' and continued in the next iteration "
                    "with newer weights, only its newest segment trained. None = off.")

    @model_validator(mode="after")
    def _lengths_fit(self) -> "RolloutConfig":
        if self.interruption is not None and self.interruption.window[1] >= self.max_new_tokens:
            raise ValueError(f"rollout.interruption.window[1] ({self.interruption.window[1]}) "
                             f"must be < rollout.max_new_tokens ({self.max_new_tokens})")
        if self.partial_segment_tokens is not None and self.partial_segment_tokens >= self.max_new_tokens:
            raise ValueError(f"rollout.partial_segment_tokens ({self.partial_segment_tokens}) must be "
                             f"< rollout.max_new_tokens ({self.max_new_tokens}), or it never cuts a response")
        return self
