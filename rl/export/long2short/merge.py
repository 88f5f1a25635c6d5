"""long2short by model merging (Kimi k1.5 §2.4): average the weights of a
long-thinking and a short-thinking model of the same architecture,
alpha * long + (1 - alpha) * short, for each alpha of a sweep.

Every alpha is measured on the held-out prompts; the one written to OUT_DIR
is the shortest (fewest mean tokens) among those within
`max_accuracy_drop` of the long model's accuracy, else the most accurate.
Two models of different architectures (config, vocabulary, tensor names or
shapes) are refused with one line before any weight is read twice.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

from rl.export.long2short.bench import Bench
from rl.export.long2short.config import EvalSettings, MergeSettings
from rl.export.long2short.weights import (average, check_same_architecture, model_with_state,
                                          read_state, write_model_folder)


def pick_alpha(sweep: list[dict], before: dict, max_accuracy_drop: float) -> dict:
    """The sweep point to keep (see the module docstring)."""
    ok = [p for p in sweep if p["accuracy"] >= before["accuracy"] - max_accuracy_drop - 1e-12]
    if ok:
        return min(ok, key=lambda p: (p["mean_tokens"], -p["accuracy"]))
    return max(sweep, key=lambda p: (p["accuracy"], -p["mean_tokens"]))


def run(bench: Bench, long: Path, short: Path, out: Path, cfg: MergeSettings, ev: EvalSettings,
        before: dict) -> dict:
    """Sweep alpha, write the kept merge to `out`; returns what the card records."""
    from transformers import AutoTokenizer

    check_same_architecture(long, short)
    a, b = read_state(long), read_state(short)
    sweep = []
    with tempfile.TemporaryDirectory() as work:
        tokenizer = AutoTokenizer.from_pretrained(long)
        for alpha in cfg.alphas:
            folder = write_model_folder(model_with_state(long, average(a, b, alpha)), tokenizer,
                                        Path(work) / f"alpha-{alpha:g}", copy_from=long)
            sweep.append({"alpha": alpha, **bench.measure(folder, ev)})
        kept = pick_alpha(sweep, before, cfg.max_accuracy_drop)
        write_model_folder(model_with_state(long, average(a, b, kept["alpha"])), tokenizer, out, copy_from=long)
    bench.use(out)
    return {"settings": {"short": str(short), **cfg.model_dump()}, "after": {k: v for k, v in kept.items() if k != "alpha"},
            "chosen": f"alpha {kept['alpha']:g}", "sweep": sweep}
