"""long2short by shortest rejection sampling (Kimi k1.5 §2.4): draw n
samples per training prompt from the long model with the real vLLM engine,
keep each prompt's shortest correct one, and fine-tune the long model on
those with TRL's `SFTTrainer`. Prompts with no correct sample are left out.
"""
from __future__ import annotations

from pathlib import Path

from core.errors import UserError
from rl.export.long2short import trainers
from rl.export.long2short.bench import Bench
from rl.export.long2short.config import SampleSettings, TrainSettings
from rl.export.long2short.pairs import shortest_correct
from rl.export.long2short.weights import write_model_folder


def sft_rows(rows: list[dict], groups: list[list[dict]]) -> list[dict]:
    """{"prompt", "response", "tokens"} of each prompt's shortest correct sample."""
    out = []
    for row, group in zip(rows, groups):
        best = shortest_correct(group)
        if best is not None:
            out.append({"prompt": row["prompt"], "response": best["text"], "tokens": best["tokens"]})
    return out


def sample_stats(groups: list[list[dict]], kept: list[dict]) -> dict:
    correct = [s["tokens"] for g in groups for s in g if s["correct"]]
    return {"prompts_sampled": len(groups), "prompts_kept": len(kept),
            "mean_correct_tokens": round(sum(correct) / max(1, len(correct)), 2),
            "mean_kept_tokens": round(sum(r["tokens"] for r in kept) / max(1, len(kept)), 2)}


def run(bench: Bench, long: Path, out: Path, sample: SampleSettings, train: TrainSettings) -> dict:
    rows, groups = bench.training_groups(long, sample)
    kept = sft_rows(rows, groups)
    if not kept:
        raise UserError(f"shortest-rs: none of {len(rows)} prompts got a correct sample from {long}; "
                        f"raise --sample-prompts or --n")
    model, tokenizer = trainers.sft(long, kept, train)
    write_model_folder(model, tokenizer, out, copy_from=long)
    return {"settings": {"sample": sample.model_dump(), "train": train.model_dump()},
            "data": sample_stats(groups, kept)}
