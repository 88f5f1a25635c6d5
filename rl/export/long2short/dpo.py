"""long2short by DPO (Kimi k1.5 §2.4): from n samples per training prompt
of the long model, the shortest correct sample is the positive; the
negatives are the correct samples at least 1.5x as long and the wrong ones
(rl.export.long2short.pairs). Trained with TRL's `DPOTrainer`, the frozen
long model as reference.
"""
from __future__ import annotations

from pathlib import Path

from core.errors import UserError
from rl.export.long2short import trainers
from rl.export.long2short.bench import Bench
from rl.export.long2short.config import PairSettings, SampleSettings, TrainSettings
from rl.export.long2short.pairs import dpo_pairs
from rl.export.long2short.weights import write_model_folder


def pair_rows(rows: list[dict], groups: list[list[dict]], cfg: PairSettings) -> list[dict]:
    """{"prompt", "chosen", "rejected", "kind"} rows, kind 'long' or 'wrong'."""
    out = []
    for row, group in zip(rows, groups):
        for chosen, rejected in dpo_pairs(group, cfg.length_ratio, cfg.max_pairs_per_prompt):
            out.append({"prompt": row["prompt"], "chosen": chosen["text"], "rejected": rejected["text"],
                        "kind": "long" if rejected["correct"] else "wrong"})
    return out


def run(bench: Bench, long: Path, out: Path, sample: SampleSettings, pairs_cfg: PairSettings,
        train: TrainSettings) -> dict:
    rows, groups = bench.training_groups(long, sample)
    pairs = pair_rows(rows, groups, pairs_cfg)
    if not pairs:
        raise UserError(f"dpo: no pair from {len(rows)} prompts of {long} (no prompt had a correct sample "
                        f"and a negative); raise --sample-prompts or --n")
    model, tokenizer = trainers.dpo(long, pairs, train)
    write_model_folder(model, tokenizer, out, copy_from=long)
    kinds = [p["kind"] for p in pairs]
    return {"settings": {"sample": sample.model_dump(), "pairs": pairs_cfg.model_dump(), "train": train.model_dump()},
            "data": {"prompts_sampled": len(rows), "pairs": len(pairs),
                     "long_negatives": kinds.count("long"), "wrong_negatives": kinds.count("wrong")}}
