"""`task: file`: prompt rows read from local JSONL or Parquet files, in the
layouts the open RL stacks write.

Read through `datasets` (so JSONL's nested objects become struct columns, as
in Parquet). Which column feeds which row field (rl/data/rows.py):

- ours: `prompt` text, `answer`, optionally `kind`, `tests`, `entry_point`,
  `test_imports`, `meta`;
- TRL's conversational layout: `prompt` a list of {role, content} messages,
  with an `answer` column;
- verl's: `prompt` as messages, the answer under `reward_model.ground_truth`
  (used when there is no `answer` column), beside `data_source` and
  `extra_info`;
- any other names through `data.columns` ({prompt: question, answer:
  solution}); a dotted path reads inside a struct column
  (answer: reward_model.ground_truth).

`answer` may be missing only from code rows (a `tests` column): it is "" then.
Every other column reaches the row's `meta` under its own name (verl's
`data_source`, `extra_info` and `reward_model` too), None values left out
(Arrow gives a key some rows lack None); a `meta` column's dict is merged in
over them. `kind` defaults to "math".

Without `val_path`, `val_size` rows are held out of `train_path` by a shuffle
seeded with `data.seed` (rl/data/rows.held_out).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from core.errors import UserError
from rl.data.config import DataConfig
from rl.data.rows import ROW_FIELDS, checked_prompt, held_out

_FORMATS = {".jsonl": "json", ".json": "json", ".parquet": "parquet"}
VERL_ANSWER = "reward_model.ground_truth"


def _read_table(path: Path) -> list[dict]:
    """The file's rows as dicts; UserError for a missing, empty or unreadable file."""
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
    return table.to_list()


def sources(found: list[str], columns: Optional[dict[str, str]], path: Path) -> dict[str, str]:
    """Row field -> the column (or dotted path into a struct column) it is
    read from, by the layouts above; UserError naming a missing column."""
    columns = columns or {}
    out = {f: columns.get(f, f) for f in ROW_FIELDS if f in columns or f in found}
    if "answer" not in out and "reward_model" in found:
        out["answer"] = VERL_ANSWER
    listed = ", ".join(found)
    for field, column in out.items():
        if column.split(".")[0] not in found and column not in found:
            raise UserError(f"prompt file {path} has no column '{column}' (data.columns.{field}; found: {listed})")
    if "prompt" not in out:
        raise UserError(f"prompt file {path} has no column 'prompt' (found: {listed}; "
                        "data.columns.prompt names another)")
    if "answer" not in out and "tests" not in out:
        raise UserError(f"prompt file {path} has no column 'answer' nor '{VERL_ANSWER}' (found: {listed}; "
                        "data.columns.answer names another)")
    return out


def _read(row: dict, column: str, where: str) -> Any:
    """`row[column]`, or the value at a dotted path inside struct columns."""
    if column in row:
        return row[column]
    value = row
    for part in column.split("."):
        if not isinstance(value, dict) or part not in value:
            raise UserError(f"{where}: no '{column}' (stopped at '{part}')")
        value = value[part]
    return value


def to_row(raw: dict, src: dict[str, str], where: str) -> dict:
    """One file row in the row shape of rl/data/rows.py."""
    used = {column for column in src.values() if column in raw}
    answer = _read(raw, src["answer"], where) if "answer" in src else None
    row = {"prompt": checked_prompt(_read(raw, src["prompt"], where), where),
           "answer": "" if answer is None else str(answer),
           "kind": _read(raw, src["kind"], where) if "kind" in src else None}
    row["kind"] = row["kind"] or "math"
    for field in ("tests", "entry_point", "test_imports"):
        value = _read(raw, src[field], where) if field in src else None
        if value is not None:
            row[field] = value
    meta = {k: v for k, v in raw.items() if k not in used and v is not None}
    given = _read(raw, src["meta"], where) if "meta" in src else None
    if given is not None and not isinstance(given, dict):
        raise UserError(f"{where}: 'meta' must be a mapping (got {type(given).__name__})")
    meta.update(given or {})
    if meta:
        row["meta"] = meta
    return row


def load_prompts(path: str | Path, columns: Optional[dict[str, str]] = None) -> list[dict]:
    """The rows of a JSONL/Parquet prompt file in any layout above."""
    path = Path(path)
    raw_rows = _read_table(path)
    src = sources(list(raw_rows[0]), columns, path)
    return [to_row(raw, src, f"prompt file {path}, row {i}") for i, raw in enumerate(raw_rows)]


class FileTask:
    """`task: file`: rows from `train_path`, validation from `val_path` (its
    first `val_size` rows) or held out of `train_path`."""

    def __init__(self, cfg: DataConfig):
        self.cfg = cfg
        self._splits: Optional[tuple[list[dict], list[dict]]] = None

    def splits(self) -> tuple[list[dict], list[dict]]:
        if self._splits is None:
            self._splits = self._load()
        return self._splits

    def reward_kinds(self) -> tuple[str, ...]:
        train, val = self.splits()
        return tuple(sorted({row["kind"] for row in train + val}))

    def _load(self) -> tuple[list[dict], list[dict]]:
        cfg = self.cfg
        train = load_prompts(cfg.train_path, cfg.columns)
        if cfg.val_path:
            return train, load_prompts(cfg.val_path, cfg.columns)[: cfg.val_size]
        if len(train) <= cfg.val_size:
            raise UserError(f"data.train_path {cfg.train_path}: {len(train)} rows cannot spare "
                            f"val_size={cfg.val_size} for validation (set data.val_path)")
        return held_out(train, cfg.val_size, cfg.seed)
