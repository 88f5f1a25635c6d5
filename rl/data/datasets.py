"""Prompt datasets, the training prompt order, and prompt rendering.

`load_prompts` reads a local JSONL or Parquet file through `datasets` and
returns plain dicts `{"prompt", "answer", "kind", ...}`. `load_splits` turns a
`DataConfig` into (train, validation) lists. `PromptSampler` owns the order in
which training prompts are used, so that a resumed run continues with exactly
the prompts an uninterrupted one would have seen. `render_prompt` is the one
place that turns prompt text into the token ids the engine is given.
"""
from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from rl.data.config import DataConfig
from rl.errors import UserError

REQUIRED = ("prompt", "answer")
OPTIONAL = ("kind", "tests", "meta")
_FORMATS = {".jsonl": "json", ".json": "json", ".parquet": "parquet"}


def load_prompts(path: str | Path) -> list[dict]:
    """Rows of a JSONL/Parquet prompt file with `prompt`, `answer` (as str),
    `kind` (default "math") and, when present, `tests` and `meta`."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"prompt file {path} does not exist")
    fmt = _FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise UserError(f"prompt file {path}: expected .jsonl, .json or .parquet")
    if path.stat().st_size == 0:
        raise UserError(f"prompt file {path} is empty")
    import datasets

    try:
        table = datasets.load_dataset(fmt, data_files=str(path), split="train")
    except Exception as err:  # a parse error is the user's file, not our bug
        raise UserError(f"prompt file {path} could not be read: {str(err).splitlines()[0]}") from err
    if len(table) == 0:
        raise UserError(f"prompt file {path} is empty")
    for column in REQUIRED:
        if column not in table.column_names:
            raise UserError(f"prompt file {path} has no column '{column}' "
                            f"(found: {', '.join(table.column_names)})")
    rows = []
    for i, row in enumerate(table):
        if not isinstance(row["prompt"], str) or not row["prompt"]:
            raise UserError(f"prompt file {path}, row {i}: 'prompt' must be non-empty text")
        out = {"prompt": row["prompt"], "answer": str(row["answer"]),
               "kind": row.get("kind") or "math"}
        for column in ("tests", "meta"):
            if row.get(column) is not None:
                out[column] = row[column]
        rows.append(out)
    return rows


def load_splits(cfg: DataConfig) -> tuple[list[dict], list[dict]]:
    """(training prompts, validation prompts) for a data config."""
    if cfg.task == "arith":
        from rl.data import arith

        if cfg.val_size > arith.VAL_POOL:
            raise UserError(f"data.val_size: at most {arith.VAL_POOL} for task 'arith'")
        train = arith.make_prompts(cfg.train_size, cfg.seed, cfg.digits_min, cfg.digits_max)
        val = arith.validation_prompts(cfg.val_size, cfg.digits_min, cfg.digits_max)
        return train, val
    train = load_prompts(cfg.train_path)
    if cfg.val_path:
        return train, load_prompts(cfg.val_path)[: cfg.val_size]
    if len(train) <= cfg.val_size:
        raise UserError(f"data.train_path {cfg.train_path}: {len(train)} rows cannot spare "
                        f"val_size={cfg.val_size} for validation (set data.val_path)")
    order = list(range(len(train)))
    random.Random(cfg.seed).shuffle(order)
    held = set(order[: cfg.val_size])
    return ([r for i, r in enumerate(train) if i not in held],
            [train[i] for i in sorted(held)])


class PromptSampler:
    """Training prompts in a fresh seeded order each epoch.

    The sampler owns its RNG; `state_dict()` holds the epoch, the position in
    the epoch and the RNG state the epoch's order was drawn from, so
    `load_state_dict` restores the exact next batches.
    """

    def __init__(self, prompts: list[dict], seed: int = 0):
        if not prompts:
            raise UserError("no training prompts")
        self.prompts = prompts
        self._rng = random.Random(seed)
        self.epoch = -1
        self._new_epoch()

    def _new_epoch(self) -> None:
        self.epoch += 1
        self.position = 0
        self._epoch_rng_state = self._rng.getstate()
        self._order = list(range(len(self.prompts)))
        self._rng.shuffle(self._order)

    @property
    def drawn(self) -> int:
        """Prompts handed out so far (over all epochs)."""
        return self.epoch * len(self.prompts) + self.position

    def next_batch(self, n: int) -> list[dict]:
        """The next `n` prompts, each with `uid` = epoch * len(prompts) + index
        (unique over the run: the data frontier is checked by counting them);
        an epoch boundary inside a batch starts a new order."""
        batch = []
        while len(batch) < n:
            if self.position == len(self._order):
                self._new_epoch()
            take = min(n - len(batch), len(self._order) - self.position)
            base = self.epoch * len(self.prompts)
            batch += [{**self.prompts[i], "uid": base + i} for i in self._order[self.position:self.position + take]]
            self.position += take
        return batch

    def state_dict(self) -> dict[str, Any]:
        version, internal, gauss = self._epoch_rng_state
        return {"epoch": self.epoch, "position": self.position, "num_prompts": len(self.prompts),
                "rng_state": [version, list(internal), gauss]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["num_prompts"] != len(self.prompts):
            raise UserError(f"resume: the sampler state is for {state['num_prompts']} prompts, "
                            f"the data now has {len(self.prompts)}")
        version, internal, gauss = state["rng_state"]
        self._rng.setstate((version, tuple(internal), gauss))
        self.epoch = state["epoch"] - 1
        self._new_epoch()  # redraws the saved epoch's order, leaving the RNG where it was
        self.position = state["position"]


def render_prompt(tokenizer, prompt_text: str) -> list[int]:
    """Token ids of a user prompt in the chat template, ending at the
    assistant marker (add_generation_prompt=True)."""
    ids = tokenizer.apply_chat_template([{"role": "user", "content": prompt_text}],
                                        add_generation_prompt=True, tokenize=True,
                                        return_dict=False)
    return list(ids)
