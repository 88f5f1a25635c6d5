"""`export_long2short`: one method, from a source to OUT_DIR, measured
before and after on the same held-out prompts with one engine, with its
model card. The methods themselves are merge.py, rs.py, dpo.py and
rl_recipe.py; this module only wires them to the source, the bench and the
card.
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Callable, Optional

from pydantic import BaseModel, ConfigDict, Field

from core.errors import UserError
from rl.export.long2short import card
from rl.export.long2short.config import (METHODS, EvalSettings, MergeSettings, PairSettings, RLSettings,
                                         SampleSettings, TrainSettings)
from rl.export.long2short.source import is_run_dir, resolve_source
from rl.export.long2short.weights import check_out_dir


class Settings(BaseModel):
    """Everything one export reads besides its source and OUT_DIR: the
    per-concern settings of config.py, each read by the method that needs it."""

    model_config = ConfigDict(extra="forbid")

    eval: EvalSettings = Field(default_factory=EvalSettings, description="How before and after are measured.")
    merge: MergeSettings = Field(default_factory=MergeSettings, description="merge: the alphas tried.")
    sample: SampleSettings = Field(default_factory=SampleSettings, description="shortest-rs, dpo: the samples.")
    train: TrainSettings = Field(default_factory=TrainSettings, description="shortest-rs, dpo: the trainer.")
    pairs: PairSettings = Field(default_factory=PairSettings, description="dpo: which samples make a pair.")
    rl: RLSettings = Field(default_factory=RLSettings, description="rl: the recipe run.")


def trials_file(source: str | Path, out: Path) -> Path:
    """Where the trials on `source` are recorded (see card.py)."""
    path = Path(source)
    return path / card.TRIALS if is_run_dir(path) else out.parent / card.TRIALS


def export_long2short(method: str, source: str | Path, out: str | Path, *, short: Optional[str] = None,
                      step: Optional[int] = None, force: bool = False, settings: Optional[Settings] = None,
                      trials: Optional[Path] = None, rl_run_dir: Optional[Path] = None, bench=None,
                      log: Callable[[str], None] = print) -> dict:
    """Run `method` on `source`, write OUT_DIR with its card; returns the record.
    `bench` (a long2short.bench.Bench) may be shared by several exports."""
    from rl.export.long2short import dpo, merge, rl_recipe, rs
    from rl.export.long2short.bench import Bench
    from rl.export.long2short.weights import check_same_architecture

    if method not in METHODS:
        raise UserError(f"--method {method}: expected one of {', '.join(METHODS)}")
    if method == "merge" and not short:
        raise UserError("--method merge needs --short (the short model: a run, a folder or a base name)")
    s, out = settings or Settings(), Path(out)
    check_out_dir(out, force)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as work:
        choice = None
        if method == "rl" and step is None and is_run_dir(Path(source)):
            choice = rl_recipe.pick_efficient_checkpoint(Path(source))
            step = choice["step"]
            log(f"long2short rl: starting from {rl_recipe.describe(choice)}")
        keep = None if method != "rl" else Path(rl_run_dir or out.parent / f"{out.name}-run")
        src = resolve_source(source, Path(work) if keep is None else keep.parent / f"{keep.name}-start", step)
        short_src = resolve_source(short, Path(work)) if method == "merge" else None
        if short_src is not None:
            check_same_architecture(src.folder, short_src.folder)
        own = bench is None
        bench = bench or Bench(src.folder, max_new_tokens=max(s.eval.max_new_tokens, s.sample.max_new_tokens))
        try:
            before = bench.measure(src.folder, s.eval)
            log(f"before: accuracy {before['accuracy']:.3f}, {before['mean_tokens']:.1f} tokens")
            if method == "merge":
                result = merge.run(bench, src.folder, short_src.folder, out, s.merge, s.eval, before)
            elif method == "shortest-rs":
                result = rs.run(bench, src.folder, out, s.sample, s.train)
            elif method == "dpo":
                result = dpo.run(bench, src.folder, out, s.sample, s.pairs, s.train)
            else:
                result = rl_recipe.run(src.folder, out, s.rl, keep, choice)
            after = result.pop("after", None) or bench.measure(out, s.eval)
        finally:
            if own:
                bench.close()
    record = {"method": method, "source": src.label, "out": str(out), "before": before, "after": after,
              "change": card.change(before, after), "eval": s.eval.model_dump(),
              "seconds": round(time.perf_counter() - started, 1), **result}
    trials_path = trials or trials_file(source, out)
    card.write(out, record, trials_path)
    log(f"after: accuracy {after['accuracy']:.3f}, {after['mean_tokens']:.1f} tokens "
        f"({record['change']['tokens_pct']:+.1f}% tokens, {record['change']['accuracy_points']:+.1f} points)")
    return record
