"""Which task can a pretrained base partly do? mean@k of the base on held-out
prompts of reasoning-gym candidates, each with a system prompt format, through
the same engine, rendering and reward hub scorer a run uses.

    python bench/base_tasks.py --base smollm2-135m --prompts 200 --k 4 \\
        --candidate 'chain_sum:{"min_terms":2,"max_terms":2,"min_digits":1,"max_digits":1}' --format direct

Each candidate is `dataset:json-config`; `--format` names reasoning-gym's
system prompts (reasoning_gym.utils.SYSTEM_PROMPTS), or `none` for the
model's own default, tried with each; `--answer-pattern` scores the regex's
last match instead of the `<answer>` tag (rewards.answer_pattern). Prints
one line per (candidate, format): mean@k, pass@k, the fraction of samples
with an <answer> tag, mean response tokens, and seconds; `--json` writes
them to a file as well. A recipe wants a task between 5% and 50% mean@k,
so that groups have reward variance and there is room to learn.
"""
from __future__ import annotations

import argparse
import json
import time


def measure(engine, tokenizer, scorer, rows, system_prompt, k, max_tokens, temperature=1.0):
    from rl.data.datasets import render_prompt

    prompts = [render_prompt(tokenizer, r["prompt"], system_prompt) for r in rows]
    t0 = time.perf_counter()
    completions = engine.generate(prompts, temperature=temperature, max_tokens=max_tokens, n=k)
    seconds = time.perf_counter() - t0
    texts = [tokenizer.decode(c.token_ids, skip_special_tokens=True) for c in completions]
    samples = [{"kind": r["kind"], "response": t, "answer": r["answer"], "meta": r.get("meta")}
               for i, r in enumerate(rows) for t in texts[i * k:(i + 1) * k]]
    results = scorer.score_items(samples)
    scores = [r.score if not r.masked else 0.0 for r in results]
    per_prompt = [scores[i * k:(i + 1) * k] for i in range(len(rows))]
    return {"mean_at_k": round(sum(scores) / len(scores), 4),
            "pass_at_k": round(sum(max(p) >= 1.0 for p in per_prompt) / len(rows), 4),
            "tagged": round(sum("<answer>" in t for t in texts) / len(texts), 3),
            "tokens": round(sum(len(c.token_ids) for c in completions) / len(completions), 1),
            "seconds": round(seconds, 1), "masked": sum(r.masked for r in results)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", default="smollm2-135m")
    ap.add_argument("--prompts", type=int, default=200)
    ap.add_argument("--k", type=int, default=4)
    ap.add_argument("--max-tokens", type=int, default=192)
    ap.add_argument("--candidate", action="append", required=True, help="dataset:json-config")
    ap.add_argument("--format", action="append", default=None, help="reasoning-gym system prompt name")
    ap.add_argument("--answer-pattern", default=None,
                    help="rewards.answer_pattern: score the regex's last match instead of the <answer> tag")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    from reasoning_gym.utils import SYSTEM_PROMPTS
    from transformers import AutoTokenizer

    from rewards.config import RewardsConfig
    from rewards.scorer import Scorer
    from rl.base.build import resolve_base
    from rl.data.config import DataConfig
    from rl.data.task import make_task
    from rollout.config import EngineConfig
    from rollout.engine import Engine

    path = str(resolve_base(args.base))
    tokenizer = AutoTokenizer.from_pretrained(path)
    engine = Engine(path, EngineConfig(max_model_len=512 + args.max_tokens, max_num_seqs=256, kv_cache_gib=2,
                                       dtype="float32", threads_bind="nobind", seed=0))
    scorer = Scorer(RewardsConfig(cache_size=0, answer_pattern=args.answer_pattern))
    out = []
    try:
        for cand in args.candidate:
            name, _, config = cand.partition(":")
            data = DataConfig(task="reasoning_gym", val_size=args.prompts, train_size=1,
                              reasoning_gym={"datasets": {name: {"config": json.loads(config or "{}")}}})
            _, val = make_task(data).splits()
            for fmt in args.format or ["direct"]:
                system = None if fmt == "none" else SYSTEM_PROMPTS[fmt]
                line = {"candidate": cand, "format": fmt, "answer_pattern": args.answer_pattern, "base": args.base,
                        "k": args.k, "prompts": len(val),
                        **measure(engine, tokenizer, scorer, val, system, args.k, args.max_tokens)}
                print(json.dumps(line), flush=True)
                out.append(line)
    finally:
        scorer.close()
        engine.close()
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
