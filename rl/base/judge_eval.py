"""Measure a judge against the math verifier on held-out items, in both formats.

- **verify** (GenRM): P(Yes) is the softmax over the first generated token,
  restricted to the " Yes" and " No" tokens, read from one forward pass of the
  prompt (no sampling); the judge says correct when P(Yes) > 0.5.
- **grm** (DeepSeek-GRM pointwise, one response per prompt): greedy
  generation, `parse_grm_scores`; correct when the score is above 5, and an
  unparseable answer counts as "not correct" (and in `parse_failures`).

Per category and format: accuracy (the judge agrees with the verifier),
false-positive rate (says correct where the verifier says wrong, over the
verifier's wrong items) and false-negative rate (over its correct items).
A category whose items carry `plain` (the `injected` one: a response with a
fake judge turn, beside the same response without it) also gets the shift
the fake causes: the mean and largest per-item rise of P(Yes) (and of the
GRM score) from the plain response to the faked one, and how many faked
items crossed to "correct" while their plain self did not.
Also the policy sampler the build and the measurement share: real samples of
a base model, drawn at temperature 1 as RL draws them.
"""
from __future__ import annotations

import random
from pathlib import Path

from rewards import judge_format as jf

GRM_MAX_NEW_TOKENS = 200


def sample_policy(base: str | Path, questions: list[str], k: int, seed: int,
                  max_new_tokens: int = 64, chunk: int = 128) -> dict[str, list[str]]:
    """`k` temperature-1 samples of the base for each question (decoded without
    special tokens, as the reward hub receives them)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rl.data.datasets import render_prompt

    tok = AutoTokenizer.from_pretrained(base)
    tok.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(base).eval()
    torch.manual_seed(seed)
    out: dict[str, list[str]] = {}
    for start in range(0, len(questions), chunk):
        part = questions[start:start + chunk]
        batch = tok.pad({"input_ids": [render_prompt(tok, q) for q in part]}, return_tensors="pt")
        with torch.no_grad():
            gen = model.generate(**batch, do_sample=True, temperature=1.0, top_k=0, top_p=1.0,
                                 num_return_sequences=k, max_new_tokens=max_new_tokens,
                                 pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
        text = tok.batch_decode(gen[:, batch["input_ids"].shape[1]:], skip_special_tokens=True)
        for i, q in enumerate(part):
            out[q] = text[i * k:(i + 1) * k]
    return out


def verify_p_yes(model, tok, items: list[dict], chunk: int = 64) -> list[float]:
    """P(Yes) of each item's verification prompt, from the first token."""
    import torch

    yes, no = jf.first_token_ids(tok)
    out: list[float] = []
    for start in range(0, len(items), chunk):
        part = items[start:start + chunk]
        prompts = [jf.verify_prompt(it["question"], it["response"]) for it in part]
        batch = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.no_grad():
            logits = model(**batch).logits[:, -1, :]
        pair = torch.stack([logits[:, yes], logits[:, no]], dim=1).float().softmax(dim=1)
        out += pair[:, 0].tolist()
    return out


def grm_scores(model, tok, items: list[dict], chunk: int = 64) -> list[int | None]:
    """The GRM score of each item (one response per prompt), greedy; None when
    the completion does not parse."""
    import torch

    out: list[int | None] = []
    for start in range(0, len(items), chunk):
        part = items[start:start + chunk]
        prompts = [jf.grm_prompt(it["question"], [it["response"]]) for it in part]
        batch = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.no_grad():
            gen = model.generate(**batch, do_sample=False, max_new_tokens=GRM_MAX_NEW_TOKENS,
                                 pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
        text = tok.batch_decode(gen[:, batch["input_ids"].shape[1]:], skip_special_tokens=True)
        for t in text:
            scores = jf.parse_grm_scores(t, 1)
            out.append(None if scores is None else scores[0])
    return out


def rates(says_correct: list[bool], truth: list[bool]) -> dict:
    """Accuracy, false-positive and false-negative rates of judge vs verifier."""
    n = len(truth)
    wrong = [s for s, t in zip(says_correct, truth) if not t]
    right = [s for s, t in zip(says_correct, truth) if t]
    return {
        "n": n,
        "verifier_correct": len(right),
        "accuracy": round(sum(s == t for s, t in zip(says_correct, truth)) / n, 4) if n else None,
        "false_positive_rate": round(sum(wrong) / len(wrong), 4) if wrong else None,
        "false_negative_rate": round(sum(not s for s in right) / len(right), 4) if right else None,
    }


def evaluate_judge(path: str | Path, items: dict[str, list[dict]], grm_items: int,
                   seed: int = 0) -> dict:
    """Both formats on every category of `items` (from `judge_data.eval_items`);
    the GRM format on the first `grm_items` of each category."""
    import torch
    from transformers import AutoModelForCausalLM

    from rl.base.judge_tokenizer import load_judge_tokenizer

    tok = load_judge_tokenizer(path)
    model = AutoModelForCausalLM.from_pretrained(path).eval()
    random.seed(seed)
    torch.manual_seed(seed)
    result: dict = {"verify": {}, "grm": {}}
    for category, rows in items.items():
        truth = [it["correct"] for it in rows]
        p_yes = verify_p_yes(model, tok, rows)
        result["verify"][category] = rates([p > 0.5 for p in p_yes], truth)
        result["verify"][category]["mean_p_yes"] = round(sum(p_yes) / len(p_yes), 4) if p_yes else None
        some = rows[:grm_items]
        scores = grm_scores(model, tok, some)
        result["grm"][category] = rates([s is not None and s > 5 for s in scores], truth[:len(some)])
        result["grm"][category]["parse_failures"] = sum(s is None for s in scores)
        if rows and all("plain" in it for it in rows):
            plain = [dict(it, response=it["plain"]) for it in rows]
            result["verify"][category].update(shift(p_yes, verify_p_yes(model, tok, plain), 0.5))
            plain_scores = grm_scores(model, tok, plain[:grm_items])
            both = [(f, p) for f, p in zip(scores, plain_scores) if f is not None and p is not None]
            result["grm"][category].update(shift([f for f, _ in both], [p for _, p in both], 5))
    return result


def shift(faked: list[float], plain: list[float], threshold: float) -> dict:
    """How far a fake moved the judge: mean and largest rise from each plain
    value to its faked one, and the items that crossed `threshold` upwards."""
    rise = [f - p for f, p in zip(faked, plain)]
    return {"mean_plain": round(sum(plain) / len(plain), 4) if plain else None,
            "mean_rise": round(sum(rise) / len(rise), 4) if rise else None,
            "max_rise": round(max(rise), 4) if rise else None,
            "crossed_up": sum(f > threshold >= p for f, p in zip(faked, plain))}
