"""Sample and measure models of one architecture with one real vLLM engine
(rollout.engine.Engine): the engine is built once on the first model and
every other model's weights are swapped in with `load_weights`, so an export
that measures five models starts vLLM once.

A sample is correct when it stopped on its own (EOS) and its last
`\\boxed{}` equals the true sum (rl.data.arith.is_correct); a truncated
sample is wrong. Tokens are the sampled response tokens, EOS included.
"""
from __future__ import annotations

from pathlib import Path

from rl.export.long2short.config import EvalSettings, SampleSettings
from rl.export.long2short.weights import check_same_architecture, read_state

_PROMPT_ROOM = 32  # the longest arith prompt renders to 12 tokens


class Bench:
    def __init__(self, folder: Path, max_new_tokens: int = 128, seed: int = 0):
        from rollout.config import EngineConfig
        from rollout.engine import Engine

        self.first = Path(folder)
        self.max_new_tokens = max_new_tokens
        self.engine = Engine(str(folder), EngineConfig(
            max_model_len=max_new_tokens + _PROMPT_ROOM, max_num_seqs=256, seed=seed, threads_bind="nobind"))
        from transformers import AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        self.loaded = self.first

    def use(self, folder: Path) -> None:
        """Make `folder`'s weights the ones sampled (same architecture as the first)."""
        folder = Path(folder)
        if folder == self.loaded:
            return
        check_same_architecture(self.first, folder)
        self.engine.load_weights(read_state(folder), version=self.engine.version + 1)
        self.loaded = folder

    def sample(self, rows: list[dict], n: int, temperature: float, max_new_tokens: int,
               seed: int) -> list[list[dict]]:
        """n samples of each row's prompt: per row a list of
        {"text", "tokens", "correct", "finish_reason"}."""
        from rl.data import arith
        from rl.data.datasets import render_prompt

        if max_new_tokens > self.max_new_tokens:
            raise ValueError(f"max_new_tokens {max_new_tokens} exceeds the engine's {self.max_new_tokens}")
        prompts = [render_prompt(self.tokenizer, r["prompt"]) for r in rows]
        done = self.engine.generate(prompts, temperature=temperature, max_tokens=max_new_tokens, n=n, seed=seed)
        groups = []
        for i, row in enumerate(rows):
            group = []
            for c in done[i * n:(i + 1) * n]:
                stopped = c.finish_reason == "stop"
                group.append({"text": c.text, "tokens": len(c.token_ids), "finish_reason": c.finish_reason,
                              "correct": stopped and arith.is_correct(c.text, row["answer"])})
            groups.append(group)
        return groups

    def measure(self, folder: Path, cfg: EvalSettings) -> dict:
        """Held-out mean@k, pass@k, mean response tokens and truncation rate of `folder`."""
        from rl.data import arith

        self.use(folder)
        groups = self.sample(arith.validation_prompts(cfg.prompts), cfg.k, cfg.temperature,
                             cfg.max_new_tokens, cfg.seed)
        flat = [s for g in groups for s in g]
        return {
            "accuracy": round(sum(s["correct"] for s in flat) / len(flat), 4),
            "pass_at_k": round(sum(any(s["correct"] for s in g) for g in groups) / len(groups), 4),
            "mean_tokens": round(sum(s["tokens"] for s in flat) / len(flat), 2),
            "truncation_rate": round(sum(s["finish_reason"] == "length" for s in flat) / len(flat), 4),
            "prompts": cfg.prompts, "k": cfg.k,
        }

    def training_groups(self, folder: Path, cfg: SampleSettings) -> tuple[list[dict], list[list[dict]]]:
        """(training prompts, their sample groups) drawn from `folder`'s model;
        the prompts come from seed `cfg.seed` and are never validation prompts."""
        from rl.data import arith

        self.use(folder)
        rows = arith.make_prompts(cfg.prompts, cfg.seed)
        return rows, self.sample(rows, cfg.n, cfg.temperature, cfg.max_new_tokens, cfg.seed)

    def close(self) -> None:
        self.engine.close()
