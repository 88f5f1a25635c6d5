"""Writing a run's checkpoints: the learner's shards, the controller's state
and the manifest as one atomic unit (rl.checkpoint), either waited for or
with the shards written in the background while training goes on
(`run.async_checkpoint`).

In the background (DCP `async_save`, rl.learner.rank): the learner ranks copy
model and optimizer to memory and return; a thread in each writes the
shards while the next step trains. The controller's state is taken at the
checkpoint's step, right away, and written with the manifest when the shards
are done (`seal`): before the next step's weights go out, before the next
checkpoint, and at once for the run's last step or a stop. Until sealed, the
checkpoint is a `.partial-` folder that a resume ignores, so a crash in
between falls back to the previous checkpoint, as a crash during a waited-for
write does.

A write that fails (disk full) keeps the previous checkpoint and the run
goes on, counted in `fault/checkpoint_failures`; a learner that dies during
it stops or restarts the run as anywhere else.
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable, Optional

from rl.checkpoint import CheckpointStore
from core.errors import error_line
from rl.learner.group import LearnerFailure

# Test hook: seconds to pause after the learner's shards are written and
# before the checkpoint is sealed, so a test can kill the driver mid-write.
PAUSE_ENV = "ASYMPTOTE_TEST_CHECKPOINT_PAUSE_S"


class CheckpointWriter:
    def __init__(self, store: CheckpointStore, learner, faults: dict, warn: Callable[[str], None]):
        self.store, self.learner, self.faults, self.warn = store, learner, faults, warn
        self._open: Optional[tuple[Path, int, Optional[float], str]] = None  # written, not sealed

    def write(self, step: int, eval_score: Optional[float], state: Callable[[], str],
              background: bool = False) -> None:
        """Checkpoint `step`: the learner's shards, then `state()` (the
        controller's state as JSON, taken now); sealed now unless `background`."""
        self.seal()
        tmp = None
        try:
            tmp = self.store.begin(step)
            self.learner.save_checkpoint(str(tmp / "learner"), background)
            if os.environ.get(PAUSE_ENV):
                time.sleep(float(os.environ[PAUSE_ENV]))
            self._open = (tmp, step, eval_score, state())
        except BaseException as err:  # DCP's CheckpointException is a BaseException
            self._failed(tmp, step, err)
            return
        if not background:
            self.seal()

    def seal(self) -> None:
        """Finish the checkpoint written last, if it is not yet: wait for the
        learner's shards, then write the state and the manifest."""
        if self._open is None:
            return
        (tmp, step, eval_score, state), self._open = self._open, None
        try:
            self.learner.finish_checkpoint()
            (tmp / "run_state.json").write_text(state)
            self.store.commit(tmp, step, eval_score)
        except BaseException as err:  # noqa: BLE001
            self._failed(tmp, step, err)

    def _failed(self, tmp: Optional[Path], step: int, err: BaseException) -> None:
        self.store.abort(tmp)
        if isinstance(err, (LearnerFailure, KeyboardInterrupt, SystemExit)):
            raise err
        self.faults["checkpoint_failures"] += 1
        prev = self.store.latest()
        self.warn(f"warning: checkpoint of step {step} not written ({error_line(err)}); "
                  + (f"{prev.path} stays valid" if prev else "no earlier checkpoint exists"))
