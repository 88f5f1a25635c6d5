"""Named recipes for the tiny judge the project trains itself.

A judge spec fixes everything that decides the judge's weights: the
architecture, the synthetic judging corpus (its size and mix of formats), the
base whose real samples join the corpus, the SFT schedule, the seed and the
thread count. Its content hash (with `rl.base.judge_build.BUILD_VERSION`)
names the cache folder, like a base's. Imports only pydantic and the
standard library.
"""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

from rl.base.config import ArchConfig
from rl.base.spec import BatchSize, PeakLr, SftSteps, WarmupSteps, spec_digest


class JudgeSpec(BaseModel):
    """How to build one tiny judge from scratch."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(..., description="Spec name, e.g. tiny-judge.")
    arch: ArchConfig = Field(
        default_factory=lambda: ArchConfig(hidden_size=128, num_layers=4, num_heads=4, num_kv_heads=4,
                                           ffn_size=384, max_positions=512),
        description="Model shape (Qwen2 architecture).")
    policy_base: str = Field("tiny-arith", description="Base spec name or local model folder whose sampled responses join the corpus and the held-out measurement.")
    policy_questions: int = Field(32, gt=0, description="Training questions the policy base is sampled on (8 samples each) for the corpus.")
    corpus_size: int = Field(40000, gt=0, description="Judging examples generated for SFT (question + response(s) + verdict).")
    verify_share: float = Field(0.5, ge=0, le=1, description="Share of examples in the GenRM Yes/No format; the rest are GRM (one or two responses, half each).")
    policy_share: float = Field(0.25, ge=0, le=1, description="Share of judged responses that are real samples of policy_base (the rest synthetic).")
    sft_steps: SftSteps = 5000
    batch_size: BatchSize = 16
    lr: PeakLr = 3e-3
    warmup_steps: WarmupSteps = 20
    seed: int = Field(0, ge=0, description="Seed of the init, the corpus, the policy samples and the batch order.")
    threads: int = Field(2, gt=0, description="Torch CPU threads while training (same count, same weights; on a busy machine one is more robust, as two threads spin against each other).")
    eval_items: int = Field(200, gt=0, le=1000, description="Held-out items per category (near misses, fooling, policy samples) for the Yes/No format.")
    eval_grm_items: int = Field(100, gt=0, le=1000, description="Held-out items per category judged in the GRM format (generation is slower).")

    @model_validator(mode="after")
    def _fits(self) -> "JudgeSpec":
        if self.arch.max_positions < 256:
            raise ValueError("arch.max_positions must be at least 256 (a two-response GRM example)")
        return self

    def content_hash(self, version: str) -> str:
        return spec_digest(version, self.model_dump_json())


JUDGE_SPECS: dict[str, JudgeSpec] = {
    "tiny-judge": JudgeSpec(name="tiny-judge"),
}
