"""Config of the learner group: how many ranks, which collective backend,
the compute precision, and the optimizer."""
from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from core.config_marks import Mark, resumable


class LearnerConfig(BaseModel):
    """FSDP2 learner ranks and their optimizer (AdamW with linear warm-up)."""

    model_config = ConfigDict(extra="forbid")
    marks: ClassVar[Mark] = Mark(resume=False, recipe=True)

    ranks: int = Field(2, ge=1, description="Learner processes in one torch.distributed group (FSDP2 data-parallel shard axis).")
    backend: Literal["auto", "gloo", "nccl"] = Field("auto", description="Collective backend: 'auto' = nccl with GPUs, gloo on CPU.")
    cpus_per_rank: Annotated[float, resumable] = Field(1.0, gt=0, description="Ray CPUs reserved for each rank.")
    gpus_per_rank: Annotated[float, resumable] = Field(0.0, ge=0, description="Ray GPUs reserved for each rank (0 on CPU machines).")
    resources: Annotated[dict[str, float], resumable] = Field(
        default_factory=dict,
        description="Custom Ray resources each rank's bundle reserves, e.g. {learner_node: 1}: ties the "
                    "ranks to nodes started with ray start --resources '{\"learner_node\": N}'.")
    dtype: Literal["float32", "bfloat16"] = Field(
        "float32",
        description="Compute dtype of forward and backward. 'bfloat16': FSDP2 mixed precision (parameters "
                    "gathered in bfloat16, gradients reduced in float32), float32 master weights and "
                    "AdamW state; log-probs are computed in float32 either way. The LM head follows "
                    "model.fp32_lm_head.")
    threads_per_rank: Annotated[int, resumable] = Field(1, ge=1, description="torch intra-op threads per rank on CPU.")
    lr: float = Field(1e-4, gt=0, description="AdamW peak learning rate.")
    weight_decay: float = Field(0.0, ge=0, description="AdamW decoupled weight decay.")
    betas: tuple[float, float] = Field((0.9, 0.99), description="AdamW betas.")
    adam_eps: float = Field(1e-8, gt=0, description="AdamW epsilon (ScaleRL uses 1e-15).")
    warmup_steps: int = Field(5, ge=0, description="Linear warm-up steps from 0 to lr; constant after.")
    grad_clip: float = Field(1.0, gt=0, description="Clip the global gradient norm to this value.")
    micro_batch_tokens: Annotated[int, resumable] = Field(
        4096, gt=0,
        description="Gradient accumulation by token budget, per micro-batch per rank: real tokens of the "
                    "sequences packed into one row (packing on), or rows x longest row (packing off). A "
                    "sequence longer than the budget gets a micro-batch of its own.")
    packing: Annotated[bool, resumable] = Field(
        True,
        description="Padding-free micro-batches: several sequences in one row, positions restarting per "
                    "sequence, attention kept within each (rl/learner/packing.py). false: right-padded rows "
                    "in length-sorted micro-batches.")
    activation_checkpointing: Annotated[bool, resumable] = Field(
        False,
        description="Keep only each decoder layer's input for the backward pass and recompute the layer "
                    "there (about one more forward of compute for a fraction of the activation memory). "
                    "Exact: the same loss and gradients.")
    logprob_head: Annotated[Literal["chunked", "full"], resumable] = Field(
        "chunked",
        description="'chunked': token log-probs computed head_chunk_tokens at a time and recomputed in the "
                    "backward pass, so the (tokens x vocabulary) logits never exist for the whole "
                    "micro-batch (rl/learner/head.py). 'full': the model's logits for every token, then "
                    "log-softmax (the earlier path, kept as a switch).")
    head_chunk_tokens: Annotated[int, resumable] = Field(
        1024, gt=0, description="Tokens per chunk of the chunked head: its logits take chunk x vocabulary x 4 bytes.")
    offload: Annotated[bool, resumable] = Field(
        False,
        description="FSDP2 CPU offload: parameters, gradients and AdamW state stay in host memory between "
                    "uses and are copied to the device per layer (for fewer GPUs than a recipe assumes; "
                    "slower). A no-op on CPU.")
