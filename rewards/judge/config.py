"""Config of the generative reward models the hub serves (`rewards.judge:`).

Pydantic and the standard library only, so a recipe validates without Ray or
vLLM. The judge is any Hugging Face causal LM folder (`model`); None leaves
the folder to whoever starts the hub: a recipe's controller and `asymptote
reward score` pass the project's tiny CPU judge (built on first use).
The prompts both kinds send are rewards.judge_format's.
"""
from __future__ import annotations

from typing import Annotated, ClassVar, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, model_validator

from core.config_marks import Mark, not_recipe, resumable

JUDGE_KINDS = ("genrm", "grm")


class GenRMConfig(BaseModel):
    """GenRM verification (Zhang et al. 2025, arXiv 2504.01005)."""

    model_config = ConfigDict(extra="forbid")
    marks: ClassVar[Mark] = Mark(resume=False, recipe=True)

    verifications: int = Field(
        1, ge=1, le=64,
        description="V: verifications per response; the reward is their mean. With logprobs on, the verdict "
        "is the judge's first token, so V draws would read the same distribution: one request is sent.")
    logprobs: bool = Field(
        True, description="Score = P(Yes) read from the judge's first-token log-probs; False samples V verdicts "
        "at `temperature` and scores the fraction parsed as Yes.")
    normalise: bool = Field(
        True, description="P(Yes) renormalised over the two verdict tokens, p_yes / (p_yes + p_no); False is the "
        "raw softmax probability of the Yes token over the whole vocabulary.")
    temperature: float = Field(1.0, gt=0, description="Sampling temperature of text verdicts (logprobs off).")


class GRMConfig(BaseModel):
    """DeepSeek-GRM pointwise scoring (Liu et al. 2025, arXiv 2504.02495)."""

    model_config = ConfigDict(extra="forbid")
    marks: ClassVar[Mark] = Mark(resume=False, recipe=True)

    k: int = Field(4, ge=1, le=64, description="Judgements sampled per set of responses (voting@k).")
    temperature: float = Field(0.5, gt=0, description="Sampling temperature of the judgements (the paper: 0.5).")
    max_tokens: int = Field(256, ge=8, description="Most tokens one judgement may write.")
    responses_per_prompt: int = Field(
        2, ge=1, le=64,
        description="Responses of a group judged together in one prompt (the group is cut into sets of this "
        "size, in order); the tiny judge is trained for 1 and 2.")
    meta_rm: Literal["off", "logprob"] = Field(
        "off", description="'logprob': keep the top k/2 valid judgements ranked by the judge's own mean token "
        "log-prob (the meta-RM's place when no meta-RM model is set); 'off': vote with every valid one.")


class JudgeConfig(BaseModel):
    """The judge engines (Ray actors running vLLM's async engine) and the two kinds."""

    model_config = ConfigDict(extra="forbid")
    marks: ClassVar[Mark] = Mark(resume=False, recipe=True)

    model: Optional[str] = Field(
        None, description="Hugging Face folder of the judge (e.g. /models/Qwen2.5-7B-Instruct); None: the "
        "project's tiny judge, which a recipe's run builds on first use and passes to the hub.")
    replicas: Annotated[int, resumable] = Field(1, ge=1, le=64, description="Judge engines, each a Ray actor in its own placement group.")
    cpus_per_replica: Annotated[float, resumable] = Field(1.0, gt=0, description="CPUs in each engine's placement-group bundle.")
    gpus_per_replica: Annotated[float, resumable] = Field(
        0.0, ge=0, description="GPUs in each engine's bundle (0 on CPU); at least tensor_parallel on GPU.")
    tensor_parallel: int = Field(1, ge=1, le=64, description="vLLM tensor_parallel_size of each engine.")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="Weight dtype; 'auto' is the checkpoint's.")
    max_model_len: Optional[int] = Field(
        None, gt=0, description="Longest prompt + judgement in tokens; None is the model's own limit. A prompt "
        "that does not fit (after truncating responses) fails with a context-overflow reason.")
    max_num_seqs: Annotated[int, resumable] = Field(64, ge=1, description="Sequences one engine decodes together (continuous batching).")
    kv_cache_gib: Annotated[int, resumable] = Field(1, ge=1, description="CPU only: KV-cache GiB per engine.")
    gpu_memory_utilization: Annotated[float, resumable] = Field(0.8, gt=0, le=1, description="CUDA only: memory fraction vLLM may take.")
    enforce_eager: Annotated[bool, resumable] = Field(True, description="Skip CUDA graphs / torch.compile (faster start).")
    threads_bind: Annotated[str, resumable] = Field(
        "nobind", description="CPU only: VLLM_CPU_OMP_THREADS_BIND ('nobind' leaves OpenMP alone on a shared box).")
    timeout_s: float = Field(
        60.0, gt=0, le=3600, description="Per-request deadline from when the hub sends it; a request past it is "
        "aborted in the engine and its judgement does not count. A sample none of whose judgements counted is asked "
        "once more alone with a fresh deadline; timing out again masks it (details.timeout; "
        "rewards.types has the rule).")
    max_response_chars: int = Field(
        160, ge=16, description="A judged response longer than this is cut to it and marked truncated in the "
        "prompt (160 fits the tiny judge's 512 positions; raise it for a real judge's context).")
    seed: Annotated[int, not_recipe] = Field(0, description="Seed of the response shuffles and of the judges' sampling.")
    genrm: GenRMConfig = Field(default_factory=GenRMConfig, description="The 'genrm' kind.")
    grm: GRMConfig = Field(default_factory=GRMConfig, description="The 'grm' kind.")

    @model_validator(mode="after")
    def _check(self) -> "JudgeConfig":
        if self.gpus_per_replica and self.gpus_per_replica < self.tensor_parallel:
            raise ValueError(f"judge.gpus_per_replica ({self.gpus_per_replica:g}) must be >= "
                             f"judge.tensor_parallel ({self.tensor_parallel})")
        return self
