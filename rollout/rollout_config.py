"""Config of rollout generation and of the asynchronous pipeline."""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from rollout.config import EngineConfig


class RolloutConfig(BaseModel):
    """How many rollout workers, and what each training step generates."""

    model_config = ConfigDict(extra="forbid")

    workers: int = Field(1, ge=1, description="Rollout worker actors, each owning one vLLM engine.")
    cpus_per_worker: float = Field(1.0, gt=0, description="Ray CPUs reserved for each worker.")
    gpus_per_worker: float = Field(0.0, ge=0, description="Ray GPUs reserved for each worker (0 on CPU machines).")
    prompts_per_step: int = Field(16, ge=1, description="Prompts drawn for each learner step.")
    samples_per_prompt: int = Field(8, ge=2, description="Samples per prompt (the group of group-relative advantages).")
    temperature: float = Field(1.0, gt=0, description="Sampling temperature (the learner scores tokens at the same temperature).")
    max_new_tokens: int = Field(64, ge=1, description="Longest response; longer ones are truncated (finish_reason 'length').")
    engine: EngineConfig = Field(default_factory=EngineConfig, description="The vLLM engine of each worker.")


class PipelineConfig(BaseModel):
    """The generation -> train -> weight-sync pipeline."""

    model_config = ConfigDict(extra="forbid")

    max_off_policy_steps: int = Field(
        1, ge=0,
        description="k: generators run at most k learner steps ahead; no sample is older than k policy versions. 0 = synchronous on-policy.")
    weight_transport: Literal["broadcast", "safetensors"] = Field(
        "broadcast", description="'broadcast': a collective group (gloo on CPU, nccl on GPU) from learner rank 0 to the workers; 'safetensors': bytes through Ray's object store.")
