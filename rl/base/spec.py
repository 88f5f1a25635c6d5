"""Named recipes for the tiny base models the project builds itself.

A spec fixes everything that decides the weights: the architecture, the
supervised corpus (size, noise), the SFT schedule and the seed. Its content
hash (with `rl.base.build.BUILD_VERSION`) names the cache folder, so a change
to any field builds a new base instead of reusing a stale one.
Imports only pydantic and the standard library.
"""
from __future__ import annotations

import hashlib
from typing import Annotated, Optional

from pydantic import BaseModel, ConfigDict, Field

from rl.base.config import ArchConfig

# The supervised schedule, shared with the judge's spec (rl.base.judge_spec);
# each spec sets its own defaults.
SftSteps = Annotated[int, Field(gt=0, description="Optimizer steps of supervised training.")]
BatchSize = Annotated[int, Field(gt=0, description="Sequences per optimizer step.")]
PeakLr = Annotated[float, Field(gt=0, description="Peak learning rate (cosine decay, short warmup).")]
WarmupSteps = Annotated[int, Field(ge=0, description="Linear warmup steps.")]


def spec_digest(version: str, body: str) -> str:
    """The 12-hex-digit name part of a spec's cache folder."""
    return hashlib.sha256(f"{version}\n{body}".encode()).hexdigest()[:12]


class BaseSpec(BaseModel):
    """How to build one tiny base model from scratch."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(..., description="Spec name, as written in a recipe's model field.")
    task: str = Field("arith", description="Synthetic task whose noisy corpus the base is trained on.")
    arch: ArchConfig = Field(default_factory=ArchConfig, description="Model shape.")
    corpus_size: int = Field(32000, gt=0, description="Supervised examples generated (cycled if steps need more).")
    carry_drop: float = Field(0.65, ge=0, le=1, description="Probability that a true carry is dropped in the corpus.")
    check_rate: float = Field(0.30, ge=0, le=1, description="Fraction of examples with a redundant ',check:N' step.")
    recheck_max: int = Field(0, ge=0, le=16, description="Long-thinking corpus: each working ends in 0..recheck_max (uniform) redundant re-checks or restated steps (rl.data.arith.redundant_items); 0: none.")
    tool_rate: float = Field(0.0, ge=0, le=1, description="Tool-use corpus: this fraction of examples, drawn independently of the sum, calls the calculator instead of adding by hand (rl.data.arith.tool_response); 0: none.")
    digits_min: int = Field(2, ge=1, le=9, description="Fewest digits of an operand in the corpus and the build's measurement.")
    digits_max: int = Field(4, ge=1, le=9, description="Most digits of an operand in the corpus and the build's measurement.")
    sft_steps: SftSteps = 1000
    batch_size: BatchSize = 32
    lr: PeakLr = 3e-3
    warmup_steps: WarmupSteps = 20
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay.")
    seed: int = Field(0, ge=0, description="Seed of the init, the corpus and the batch order.")
    eval_prompts: int = Field(200, gt=0, le=1000, description="Held-out prompts measured after the build.")
    eval_k: int = Field(16, gt=0, description="Samples per prompt for mean@k / pass@k after the build.")
    eval_max_new_tokens: int = Field(64, gt=0, description="Longest response sampled when the build measures the base.")
    init_from: Optional[str] = Field(None, description="Start SFT from this built-in base's weights (same arch) instead of a random init; None: random init.")

    def content_hash(self, version: str) -> str:
        # fields added after bases were cached count only when set, so those
        # bases keep their names (their corpus and eval are what the default gives)
        late = {name for name in _LATE_FIELDS if getattr(self, name) == type(self).model_fields[name].default}
        parent = SPECS[self.init_from].content_hash(version) if self.init_from in SPECS else ""
        return spec_digest(version, self.model_dump_json(exclude=late) + parent)


_LATE_FIELDS = ("recheck_max", "eval_max_new_tokens", "init_from", "tool_rate", "digits_min", "digits_max")

# The long2short pair (docs/long2short.md): one thinking at a length that
# varies from sample to sample (0..4 redundant items, about +25 tokens on
# average), one thinking tersely (no check step). Both are tiny-arith
# fine-tuned for 150 steps on their own corpus, so they share its shape and
# its (noisy) procedure and their weights can be averaged; a warm start keeps
# each build to a few minutes. Fewer eval samples: long traces make the
# build's measurement the slow part.
_PAIR = dict(check_rate=0.0, init_from="tiny-arith", corpus_size=19200, sft_steps=600, lr=2e-3, warmup_steps=20,
             eval_prompts=100, eval_k=8, eval_max_new_tokens=128)


SPECS: dict[str, BaseSpec] = {
    # 245 steps of 128 at 3e-3 reached only loss 0.36 and mean@16 0.002. The same 32k sequences in 1000 steps of 32 learn the digit
    # alignment (loss 0.41 vs 1.0 after 6k sequences) in about the same time.
    "tiny-arith": BaseSpec(name="tiny-arith"),
    "tiny-arith-long": BaseSpec(name="tiny-arith-long", recheck_max=4, **_PAIR),
    "tiny-arith-short": BaseSpec(name="tiny-arith-short", **_PAIR),
    # The tool-use base (recipes/tiny-calc.yaml): sums of 3-6 digits, where the noisy
    # hand procedure is rarely right, with half of the examples calling the calculator
    # instead; warm-started from tiny-arith (same shape and tokenizer). The calculator's
    # replies carry no loss (rl.base.build): trained on them, the base boxed its own
    # guess of the sum instead of copying the reply. Copying the reply into the box
    # took the 32k calls of 3000 steps (1500 steps with 30% calls: 10 of 60 copies
    # right; weights/README.md).
    "tiny-calc": BaseSpec(name="tiny-calc", tool_rate=0.5, digits_min=3, digits_max=6, check_rate=0.0,
                          init_from="tiny-arith", corpus_size=64000, sft_steps=3000, lr=3e-3, warmup_steps=20,
                          eval_prompts=100, eval_k=8, eval_max_new_tokens=96),
}
