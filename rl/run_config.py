"""Config owned by the controller: how long a run is, when it evaluates,
checkpoints and logs, how far generation may run ahead of the learner and how
weights reach the engines (the controller's schedule and fleet read
`pipeline:`), and which Ray cluster it uses."""
from __future__ import annotations

import re
from typing import Annotated, ClassVar, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, field_validator

from core.config_marks import Mark, resumable

_PLAIN_NAME = re.compile(r"[A-Za-z0-9._-]+")


class RunConfig(BaseModel):
    """The training loop's length and bookkeeping."""

    model_config = ConfigDict(extra="forbid")
    marks: ClassVar[Mark] = Mark(resume=True, recipe=False)  # bookkeeping, except seed, steps, deterministic

    name: str = Field("run", min_length=1, description=(
        "Run name (wandb run name, default run-dir name runs/<name>): letters, digits, '.', '_' and '-' only, "
        "so it can only name a folder inside runs/."))
    seed: Annotated[int, Mark(resume=False)] = Field(0, ge=0, description="Seed of every RNG stream of the run.")
    steps: Annotated[int, Mark(recipe=True)] = Field(100, ge=1, description="Learner steps (optimizer updates) to run.")
    checkpoint_every: int = Field(0, ge=0, description="Save a checkpoint every N steps (0: only at the end).")
    keep_checkpoints: int = Field(2, ge=1, description="Most recent checkpoints kept on disk (plus the best by held-out pass rate).")
    async_checkpoint: bool = Field(
        False, description="Write the learner's checkpoint shards in the background while the next step trains "
                           "(DCP async_save; the checkpoint is sealed before the next weight sync). Costs a "
                           "copy of model and optimizer in memory while it writes.")
    checkpoint_checksums: bool = Field(
        True, description="Record and verify a sha256 of every checkpoint file (off: sizes only; for huge models).")
    max_restarts: int = Field(
        0, ge=0, description="When a learner rank dies, restart every actor from the last checkpoint up to this "
                             "many times; 0 stops the run with a message saying how to resume.")
    deterministic: Annotated[bool, Mark(resume=False, recipe=True)] = Field(
        False, description="Bit-reproducible steps (CPU, pipeline.max_off_policy_steps=0): an interrupted and "
                           "resumed run logs the same losses and rewards as an uninterrupted one.")
    wandb_mode: Literal["offline", "online", "disabled", "auto"] = Field(
        "auto", description="'auto': online when WANDB_API_KEY is set, else offline.")
    wandb_project: str = Field("asymptote", description="wandb project.")
    progress: bool = Field(True, description="Show the live progress line on the console.")

    @field_validator("name")
    @classmethod
    def _plain_name(cls, v: str) -> str:
        if not _PLAIN_NAME.fullmatch(v) or v in (".", ".."):
            raise ValueError("a run name is a plain folder name: letters, digits, '.', '_' and '-' "
                             "(no '/', not '.' or '..'); pass --run-dir to put a run elsewhere")
        return v


class EvalConfig(BaseModel):
    """Held-out evaluation with the rollout engines (mean@k pass rate)."""

    model_config = ConfigDict(extra="forbid")
    marks: ClassVar[Mark] = Mark(resume=False, recipe=True)

    every: Annotated[int, resumable] = Field(10, ge=1, description="Evaluate every N learner steps (and at step 0 and the last step).")
    k: int = Field(4, ge=1, description="Samples per validation prompt; the pass rate is mean@k.")
    temperature: float = Field(1.0, gt=0, description="Sampling temperature for evaluation.")
    prompts: Optional[int] = Field(None, ge=1, description="Use only the first N validation prompts (None: all).")
    interleave: Annotated[bool, resumable] = Field(
        False,
        description=("Generate each evaluation while the learner keeps training (up to max_off_policy_steps + 1 "
                     "steps; the engines keep the evaluated weights until it lands) instead of the learner "
                     "waiting for it. Pays where the learner is the bottleneck (docs/performance.md)."))


class PipelineConfig(BaseModel):
    """The generation -> train -> weight-sync pipeline."""

    model_config = ConfigDict(extra="forbid")
    marks: ClassVar[Mark] = Mark(resume=False, recipe=True)

    max_off_policy_steps: int = Field(
        1, ge=0,
        description="k: generators run at most k learner steps ahead; no sample is older than k policy versions. 0 = synchronous on-policy.")
    mode: Literal["pipeline", "ppo"] = Field(
        "pipeline",
        description="'pipeline': PipelineRL-k, generation runs up to max_off_policy_steps ahead and new weights "
                    "enter generations in flight. 'ppo': PPO-off-policy, one job generates ppo_minibatches steps' "
                    "prompts with one set of weights, then the learner takes one step per minibatch (ScaleRL's "
                    "comparison; needs max_off_policy_steps=0).")
    ppo_minibatches: int = Field(
        4, ge=1, description="mode 'ppo': learner steps (minibatches of prompts_per_step prompts) per generated batch.")
    weight_transport: Annotated[Literal["broadcast", "safetensors"], resumable] = Field(
        "broadcast",
        description="'broadcast': a collective group (gloo on CPU, nccl on GPU) in which every learner rank sends its "
                    "own shard of each weight to the workers; 'safetensors': learner rank 0 gathers the whole state "
                    "dict and its bytes go to each worker through Ray's object store.")
    weight_sync_timeout_s: Annotated[float, resumable] = Field(
        120.0, gt=0,
        description="Longest wait for one weight push (and the weight group's collective timeout): a peer "
                    "that hangs is given up on after this, a peer that dies is noticed at once.")


class ClusterConfig(BaseModel):
    """Where Ray runs."""

    model_config = ConfigDict(extra="forbid")
    marks: ClassVar[Mark] = Mark(resume=True, recipe=False)

    address: Optional[str] = Field(None, description="Ray address to join ('auto', 'ray://host:10001'); None starts an embedded local cluster.")
    num_cpus: Optional[int] = Field(None, ge=1, description="Logical CPUs of an embedded local cluster (None: enough for the plan).")
    namespace: str = Field("asymptote", description="Ray namespace of the run's actors.")
    gpu_memory_gb: Optional[float] = Field(
        None, gt=0,
        description="Memory of one GPU in GiB (an H100: 80, an H200: 141), what `launch --dry-run` checks "
                    "the memory plan of a learner rank and a rollout engine against (--gpu-memory-gb "
                    "overrides it). None: the plan is printed without a verdict.")
