"""Prompt datasets and prompt rendering.

`load_prompts` reads a local JSONL or Parquet file through `datasets` and
returns plain dicts `{"prompt", "answer", "kind", ...}`. `load_splits` turns a
`DataConfig` into (train, validation) lists; arith training rows get
`meta.difficulty` (their carry count) for the curriculum. `render_prompt` is
the one place that turns prompt text into the token ids the engine is given.
The order prompts are drawn in lives in rl/data/sampler.py (`PromptSampler`,
re-exported here for the imports that predate that module).
"""
from __future__ import annotations

import random
from pathlib import Path

from rl.data.config import DataConfig
from core.errors import UserError

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
        train = [{**row, "meta": {"difficulty": arith_difficulty(row["prompt"])}}
                 for row in arith.make_prompts(cfg.train_size, cfg.seed, cfg.digits_min, cfg.digits_max)]
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


def arith_difficulty(prompt_text: str) -> int:
    """Carries an arith sum passes on to a next column (a carry out of the
    last column only writes the leading digit). The SFT corpus drops each such
    carry with probability arith.CARRY_DROP = 0.65 and is then wrong, so the
    base model boxes a sum with c carries right about 0.35^c of the time:
    carries, not digit counts, are what the corpus's noise acts on."""
    from rl.data import arith

    a, b = prompt_text.rstrip("=").split("+")
    steps, _ = arith.working(int(a), int(b))
    return sum(int(step.split("=")[1]) >= 10 for step in steps[:-1])


def render_prompt(tokenizer, prompt_text: str) -> list[int]:
    """Token ids of a user prompt in the chat template, ending at the
    assistant marker (add_generation_prompt=True)."""
    ids = tokenizer.apply_chat_template([{"role": "user", "content": prompt_text}],
                                        add_generation_prompt=True, tokenize=True,
                                        return_dict=False)
    return list(ids)
