"""Which prompts are generated for which learner step, and which groups each
step trains on: the controller's side of the rollout pipeline.

Three ways of feeding the learner, one switch each:

- PipelineRL-k (`pipeline.mode: pipeline`, the default): the job of step t is
  submitted while the learner trains step t-k..t-1 and enters an engine only
  once its weights are at least version t-k, so no sample is more than k
  versions old.
- PPO-off-policy (`pipeline.mode: ppo`): one job generates the prompts of
  `ppo_minibatches` = M steps at once with the weights of the cycle's first
  step; the learner then takes M optimizer steps on it, one minibatch each,
  and the engines get new weights only when the cycle ends (or an evaluation
  needs them). Staleness grows from 0 to M-1 within a cycle. ScaleRL compares
  this with PipelineRL-8 and finds they move the efficiency B, not A.
- DAPO dynamic sampling (`algo.dynamic_sampling`): after a step's groups
  arrive, groups whose samples all scored the same are dropped and fresh
  prompts are generated, one more batch at a time, until the step has
  `prompts_per_step` informative groups or `dynamic_sampling_max_rounds`
  extra batches were tried (then it trains on what it has and says so in
  `data/dynamic_short`).
- Partial rollouts (`rollout.partial_segment_tokens`, Kimi k1.5): a group
  with a sample cut at the segment budget is not trained; it is carried and
  continued in the next job submitted, with the newer weights.

State that must survive a resume lives in the RunState (`pending`: the
prompts drawn for steps not yet trained; `carried`: unfinished groups); the
jobs in flight do not (they are regenerated, see rl/run_state.py).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from rl.algo.batch import informative
from rollout.types import Group, RolloutBatch


@dataclass
class _Job:
    steps: list[int]  # the learner steps whose prompts it generates, in order
    sizes: list[int]  # prompts of each step (carried groups are counted with the first)
    min_version: int  # the engines' weights it needs before it starts
    parts: list = field(default_factory=list)  # the fleet's job parts


class RolloutSchedule:
    def __init__(self, recipe, state, fleet, render: Callable[[str], list[int]]):
        self.recipe, self.state, self.fleet, self.render = recipe, state, fleet, render
        self.mode = recipe.pipeline.mode
        self.k = recipe.pipeline.max_off_policy_steps if self.mode == "pipeline" else 0
        self.m = recipe.pipeline.ppo_minibatches if self.mode == "ppo" else 1
        self._jobs: dict[int, _Job] = {}  # first step of a job -> job
        self._ready: dict[int, RolloutBatch] = {}  # step -> its generated groups, collected
        self._extra = 0  # dynamic-sampling batches submitted (names their jobs)

    # ---- submitting ---------------------------------------------------------
    def fill(self, step: int) -> None:
        """Keep in flight every job the pipeline allows while step `step` is
        being prepared."""
        total = self.recipe.run.steps
        if step >= total:
            return
        if self.mode == "ppo":
            if step in self._ready or any(step in j.steps for j in self._jobs.values()):
                return
            end = min(total, (step // self.m + 1) * self.m)  # the cycle's end
            self._submit(list(range(step, end)), min_version=step)
            return
        for s in range(step, min(step + self.k + 1, total)):
            if s not in self._jobs and s not in self._ready:
                self._submit([s], min_version=max(0, s - self.k))

    def _prompts(self, s: int) -> list[dict]:
        prompts = self.state.pending.get(s)
        if prompts is None:
            prompts = self.state.sampler.next_batch(self.recipe.rollout.prompts_per_step)
            self.state.pending[s] = prompts
        return prompts

    def _submit(self, steps: list[int], min_version: int) -> None:
        per_step = [self._prompts(s) for s in steps]
        carried = [Group.from_dict(g) for g in self.state.carried]
        self.state.carried = []
        rows = [g.prompt for g in carried] + [p for ps in per_step for p in ps]
        slots = [g for g in carried] + [None] * (len(rows) - len(carried))
        sizes = [len(ps) for ps in per_step]
        sizes[0] += len(carried)
        job = _Job(steps, sizes, min_version)
        job.parts = self._send(f"train/{steps[0]}", steps[0], rows, min_version, slots if carried else None)
        self._jobs[steps[0]] = job
        # a carried group must be continued even if the run stops before this job
        # is collected: keep it in the state until then
        self.state.carried_inflight[steps[0]] = [g.to_dict() for g in carried]

    def _send(self, job_id: str, step: int, rows: list[dict], min_version: int, carried=None,
              partial: bool = True) -> list:
        ro = self.recipe.rollout
        ids = [self.render(row["prompt"]) for row in rows]
        return self.fleet.submit(job_id, step, rows, ids, ro.samples_per_prompt, ro.temperature,
                                 min_version=min_version, priority=0, carried=carried, partial=partial)

    # ---- collecting -----------------------------------------------------------
    def take(self, step: int) -> tuple[RolloutBatch, dict]:
        """The groups step `step` trains on (waiting for them if needed) and the
        schedule's metrics for the step."""
        if step not in self._ready:
            first = next(s0 for s0, j in self._jobs.items() if step in j.steps)
            self._collect(first)
        batch = self._ready.pop(step)
        # observed when trained, not when collected: a PPO cycle collected whole and
        # cut by a resume is regenerated, and would otherwise count twice
        self._observe(batch.groups)
        metrics: dict = {}
        if self.recipe.algo.dynamic_sampling:
            batch, metrics = self._dynamic(step, batch)
        if self.recipe.rollout.partial_segment_tokens:
            metrics["rollout/partial_carried"] = len(self.state.carried)
        self.state.pending.pop(step, None)
        self.state.carried_inflight.pop(step, None)
        return batch, metrics

    def _collect(self, first: int) -> None:
        job = self._jobs.pop(first)
        result = self.fleet.collect(job.parts)
        groups = result.groups
        # until its step is trained, a carried group that finished here is saved
        # in its earlier form (resume continues it again); one still unfinished
        # is saved as continued, in `carried`
        finished = {g.prompt.get("uid") for g in groups if not g.unfinished}
        self.state.carried_inflight[first] = [g for g in self.state.carried_inflight.get(first, [])
                                              if g["prompt"].get("uid") in finished]
        at = 0
        for s, size in zip(job.steps, job.sizes):
            mine = groups[at:at + size]
            at += size
            done = [g for g in mine if not g.unfinished]
            self.state.carried += [g.to_dict() for g in mine if g.unfinished]
            self._ready[s] = RolloutBatch(step=s, groups=done, gen_seconds=result.gen_seconds)

    def _observe(self, groups: list[Group]) -> None:
        observe = getattr(self.state.sampler, "observe", None)
        if observe is not None and groups:
            # over scored samples: a masked one (its reward failed) is no evidence either way
            observe([(g.prompt["uid"], sum(bool(s.correct) for s in g.samples if s.scored),
                      sum(s.scored for s in g.samples)) for g in groups if "uid" in g.prompt])

    def _dynamic(self, step: int, batch: RolloutBatch) -> tuple[RolloutBatch, dict]:
        """DAPO: generate more prompts until the step has prompts_per_step
        groups with reward variance (the rest carry no gradient)."""
        want = self.recipe.rollout.prompts_per_step
        keep = [g for g in batch.groups if informative(g)]
        made = list(batch.groups)
        rounds, gen_seconds = 0, batch.gen_seconds
        while len(keep) < want and rounds < self.recipe.algo.dynamic_sampling_max_rounds:
            rounds += 1
            self._extra += 1
            rows = self.state.sampler.next_batch(want)
            # an extra batch is generated whole (no segment budget): it is needed now
            more = self.fleet.collect(self._send(f"extra/{step}/{self._extra}", step, rows,
                                                 min_version=max(0, step - self.k), partial=False))
            self._observe(more.groups)
            made += more.groups
            keep += [g for g in more.groups if informative(g)]
            gen_seconds += more.gen_seconds
        kept = keep[:want]
        # what was generated and then dropped is compute spent all the same
        dropped = sum(len(s.token_ids) for g in made if not any(g is k for k in kept) for s in g.samples)
        metrics = {"data/dynamic_rounds": rounds, "data/dynamic_short": max(0, want - len(keep)),
                   "rollout/gen_tokens_dropped": dropped}
        return RolloutBatch(step=step, groups=kept, gen_seconds=gen_seconds), metrics

    # ---- weights ---------------------------------------------------------------
    def runs_at(self, step: int, version: int) -> bool:
        """Whether step `step`'s groups are generated, or on their way with
        engines at weight version `version`: so the engines may stay at that
        version (an evaluation in flight) without the learner waiting forever."""
        if step >= self.recipe.run.steps or step in self._ready:
            return True
        job = next((j for j in self._jobs.values() if step in j.steps), None)
        return job is not None and job.min_version <= version

    def sync_due(self, step_done: int) -> bool:
        """Whether the engines need the weights of version `step_done` now:
        always under PipelineRL; under PPO-off-policy only when a cycle ends
        (the next job generates from them)."""
        return self.mode != "ppo" or step_done % self.m == 0 or step_done >= self.recipe.run.steps
