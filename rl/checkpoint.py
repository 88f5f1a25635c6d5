"""Checkpoints of a run: written whole or not at all, checked before use.

Layout of one checkpoint, `RUN_DIR/checkpoints/step_000040/`:

    learner/         torch.distributed.checkpoint shards of model + optimizer,
                     learner.json (policy version, LR schedule) and
                     rng_rank<r>.json (each rank's torch/numpy/python RNG
                     states; rng_rank<r>.pt in older checkpoints)
    run_state.json   the controller's state (rl.run_state.RunState)
    manifest.json    every file above with its size and sha256, the step and
                     the held-out pass rate evaluated at that step (if any)

A checkpoint is written into `checkpoints/.partial-step_000040/`, the
manifest last, then renamed into place: a folder named `step_*` is complete
or was damaged afterwards, and `manifest.json` tells which. `latest()` walks
from the newest checkpoint back, skipping (with a message) any whose files are
missing, truncated or changed, so a resume falls back to the previous good
one. Retention keeps the last `keep` checkpoints plus the best by evaluation.

The manifest proves a checkpoint whole, not who wrote it: its checksums sit
beside the files they cover. So the checkpoint `latest()` or `at_step()`
picks is also read for anything that could name code (rl.checkpoint_read:
DCP's pickled metadata and non-tensor entries, the RNG states), and one that
does is refused with one line rather than skipped: that is not damage from a
kill, someone wrote it.

Why hand-written and not DCP's own `async_save`/checkpoint managers: DCP
writes the learner's shards, but a resume also needs the controller's state
in the same atomic unit, and DCP has no notion of "complete" beyond its
`.metadata` file, which is written before the driver's files exist.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from core.errors import UserError

MANIFEST = "manifest.json"
_PARTIAL = ".partial-"


@dataclass(frozen=True)
class Checkpoint:
    path: Path
    step: int
    eval: Optional[float]  # held-out pass rate evaluated at this step, if one was

    @property
    def learner(self) -> Path:
        return self.path / "learner"

    @property
    def run_state(self) -> Path:
        return self.path / "run_state.json"


def step_name(step: int) -> str:
    return f"step_{step:06d}"


class CheckpointStore:
    """The checkpoints folder of one run directory."""

    def __init__(self, run_dir: str | Path, keep: int = 2, checksums: bool = True,
                 warn: Callable[[str], None] = print):
        self.root = Path(run_dir) / "checkpoints"
        self.keep, self.checksums, self.warn = keep, checksums, warn

    # ---- writing --------------------------------------------------------------
    def begin(self, step: int) -> Path:
        """An empty staging folder for the checkpoint of `step` (stale partial
        folders of killed writers are removed first)."""
        self.root.mkdir(parents=True, exist_ok=True)
        for stale in self.root.glob(_PARTIAL + "*"):
            shutil.rmtree(stale, ignore_errors=True)
        tmp = self.root / (_PARTIAL + step_name(step))
        tmp.mkdir()
        return tmp

    def commit(self, tmp: Path, step: int, eval_score: Optional[float] = None) -> Checkpoint:
        """Seal `tmp` with its manifest and rename it into place."""
        files = {}
        for f in sorted(p for p in tmp.rglob("*") if p.is_file()):
            rel = f.relative_to(tmp).as_posix()
            files[rel] = {"bytes": f.stat().st_size, "sha256": _sha256(f) if self.checksums else None}
        manifest = {"step": step, "eval": eval_score, "files": files}
        _write_synced(tmp / MANIFEST, json.dumps(manifest, indent=1))
        final = self.root / step_name(step)
        if final.exists():  # a re-run of a step after a rollback replaces its old checkpoint
            shutil.rmtree(final)
        os.rename(tmp, final)
        _fsync_dir(self.root)
        self._prune()
        return Checkpoint(final, step, eval_score)

    def abort(self, tmp: Optional[Path]) -> None:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)

    # ---- reading --------------------------------------------------------------
    def all(self) -> list[Path]:
        """Checkpoint folders, oldest first (complete or not)."""
        if not self.root.is_dir():
            return []
        return sorted(p for p in self.root.glob("step_*") if p.is_dir())

    def problem(self, path: Path) -> Optional[str]:
        """Why the checkpoint at `path` cannot be used, or None if it can."""
        mpath = path / MANIFEST
        if not mpath.is_file():
            return "no manifest.json (the write did not finish)"
        try:
            manifest = json.loads(mpath.read_text())
            files = manifest["files"]
        except (ValueError, KeyError):
            return "manifest.json is unreadable"
        for rel, meta in files.items():
            f = path / rel
            if not f.is_file():
                return f"{rel} is missing"
            if f.stat().st_size != meta["bytes"]:
                return f"{rel} has {f.stat().st_size} bytes, the manifest says {meta['bytes']}"
            if meta.get("sha256") and _sha256(f) != meta["sha256"]:
                return f"{rel} does not match its checksum"
        return None

    def load(self, path: Path) -> Checkpoint:
        manifest = json.loads((path / MANIFEST).read_text())
        return Checkpoint(path, int(manifest["step"]), manifest.get("eval"))

    def latest(self) -> Optional[Checkpoint]:
        """The newest valid checkpoint; invalid ones are
        reported through `warn` and skipped."""
        for partial in sorted(self.root.glob(_PARTIAL + "*")) if self.root.is_dir() else []:
            self.warn(f"checkpoint {partial.name.removeprefix(_PARTIAL)} skipped: its write did not finish "
                      f"({partial} is removed at the next checkpoint)")
        for path in reversed(self.all()):
            why = self.problem(path)
            if why is None:
                return self._checked(path)
            self.warn(f"checkpoint {path} skipped: {why}")
        return None

    def at_step(self, step: int) -> Checkpoint:
        path = self.root / step_name(step)
        if not path.is_dir():
            have = ", ".join(str(_step_of(p)) for p in self.all()) or "none"
            raise UserError(f"{self.root}: no checkpoint of step {step} (steps: {have})")
        why = self.problem(path)
        if why is not None:
            raise UserError(f"checkpoint {path} cannot be used: {why}")
        return self._checked(path)

    def _checked(self, path: Path) -> Checkpoint:
        """The checkpoint at `path` once what could name code in it has been
        read without running it; UserError if anything does."""
        from rl.checkpoint_read import check_learner_dir

        check_learner_dir(path / "learner")
        return self.load(path)

    # ---- retention ------------------------------------------------------------
    def _prune(self) -> None:
        """Keep the last `keep` valid checkpoints and the best by evaluation."""
        sealed = [self.load(p) for p in self.all() if (p / MANIFEST).is_file()]
        keep = {c.path for c in sealed[-self.keep:]}
        scored = [c for c in sealed if c.eval is not None]
        if scored:
            keep.add(max(scored, key=lambda c: (c.eval, c.step)).path)
        for c in sealed:
            if c.path not in keep:
                shutil.rmtree(c.path, ignore_errors=True)


def _step_of(path: Path) -> Optional[int]:
    try:
        return int(path.name.split("_", 1)[1])
    except (IndexError, ValueError):
        return None


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _write_synced(path: Path, text: str) -> None:
    with path.open("w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
