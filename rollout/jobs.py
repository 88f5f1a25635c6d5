"""A rollout job and its bookkeeping on one engine: which engine requests
each sample needs (rollout.draft), which prompt groups are settled, which of
those are finished and go to the reward hub, and the groups handed back.

Kept apart from the Ray actor (rollout.worker) so that the request logic runs
against a plain `rollout.engine.Engine` in tests: the worker only adds the
requests a `JobRun` asks for, feeds it completions, and scores the groups it
reports finished.

A prompt group is *settled* when every sample is finished or partial (cut at
the segment budget). A settled group with a partial sample is not scored: its
responses are not answers yet. It is returned with reward 0 for the caller to
carry into a later job (`Job.carried`), where only the partial samples are
continued.
"""
from __future__ import annotations

import dataclasses
import logging
import random
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple, Optional

from core.errors import UserError
from rollout.config import EnvConfig, InterruptionConfig
from rollout.draft import Draft
from rollout.env import make_env
from rollout.types import Episode, Group, Sample

log = logging.getLogger(__name__)


@dataclass
class Job:
    job_id: str
    step: int
    prompts: list[dict[str, Any]]  # dataset rows: prompt, answer, kind, tests...
    prompt_ids: list[list[int]]
    n: int
    temperature: float
    max_tokens: int
    min_version: int = 0
    priority: int = 0  # higher is admitted first (evaluation)
    seed: Optional[int] = None
    interruption: Optional[InterruptionConfig] = None  # forced interruption; None = off
    segment_tokens: Optional[int] = None  # partial rollouts: tokens per sample in this job; None = off
    env: Optional[EnvConfig] = None  # multi-turn environment (rollout/env.py); None = one turn
    # prompt index -> a group from an earlier job with partial samples; its
    # prompt and prompt_ids are used in place of the job's for that index
    carried: dict[int, Group] = field(default_factory=dict)


class Request(NamedTuple):
    """One engine request a job needs sent."""

    request_id: str
    prompt_ids: list[int]
    max_tokens: int
    seed: Optional[int]


def job_of(request_id: str) -> str:
    """The job id of a request id `job#prompt#sample#request`."""
    return request_id.rsplit("#", 3)[0]


def stop_token_ids(tokenizer, stops: tuple[str, ...]) -> list[int]:
    """The token id of each stop string; ValueError when one is not a single token."""
    ids = []
    for text in stops:
        encoded = list(tokenizer.encode(text, add_special_tokens=False))
        if len(encoded) != 1:
            raise ValueError(f"the environment's stop string {text!r} is {len(encoded)} tokens of this "
                             "model's vocabulary; a turn can only stop on one token")
        ids.extend(encoded)
    return ids


def check_env(tokenizer, env: Optional[EnvConfig]) -> None:
    """UserError, before anything starts, when the recipe's environment is
    unknown or cannot stop a turn with this model's tokenizer."""
    if env is None:
        return
    try:
        stop_token_ids(tokenizer, make_env(env.name, env.options).stop)
    except (ValueError, TypeError) as err:
        raise UserError(f"rollout.env: {err}") from None


def encode_text(tokenizer, text: str) -> list[int]:
    """Token ids of the interruption text; warns when the tokenizer cannot
    spell some of it (an unknown token, or a character a byte-level
    vocabulary drops)."""
    ids = list(tokenizer.encode(text, add_special_tokens=False))
    if tokenizer.decode(ids) != text:  # an unknown token decodes to its own name
        log.warning("the interruption text %r has characters the tokenizer cannot spell", text)
    return ids


class JobRun:
    """One job on one engine. Call `start()` once, then `absorb()` with each
    of its completions; send every request either returns. `take_settled()`
    drains the prompt indices settled since the last call."""

    def __init__(self, job: Job, tokenizer, context: int, version: int):
        self.job, self.tokenizer, self.context = job, tokenizer, context
        self._text_ids = encode_text(tokenizer, job.interruption.text) if job.interruption else []
        self.slots: list[list[Draft | Sample]] = []
        self._left: list[int] = []  # samples of each prompt not settled yet
        self._settled: list[int] = []
        self._version = version
        self.sampled = 0  # tokens the engine sampled for this job
        self.env = None if job.env is None else make_env(job.env.name, job.env.options)
        self.stop_ids = [] if self.env is None else stop_token_ids(tokenizer, self.env.stop)

    # ---- drafts --------------------------------------------------------------
    def _draft_kwargs(self, p: int, i: int) -> dict:
        job = self.job
        kw = dict(seed=None if job.seed is None else job.seed + p * job.n + i, max_tokens=job.max_tokens,
                  context=self.context, budget=job.segment_tokens)
        if job.interruption is not None:
            lo, hi = job.interruption.window
            kw.update(interrupt_at=random.Random(f"interrupt/{job.seed}/{p}/{i}").randint(lo, hi),
                      text_ids=self._text_ids, answer_tokens=job.interruption.answer_tokens)
        return kw

    def _slot(self, p: int, i: int) -> Draft | Sample:
        carried = self.job.carried.get(p)
        if carried is None:
            return self._new_draft(p, i)
        sample = carried.samples[i]
        if sample.finished:
            # finished in an earlier iteration: its reward still counts towards the group's
            # baseline, but none of its tokens trains (only the newest segment is on-policy,
            # and the staleness bound k holds for every trained token)
            return replace(sample, loss_mask=[False] * len(sample.token_ids))
        if sample.episode is not None and not getattr(self.env, "json_state", True):
            # its environment's state stayed with the object that ran its first part: start again
            return self._new_draft(p, i, requests=sample.requests, restarts=sample.episode.restarts + 1)
        return Draft.resume(sample, carried.prompt_ids, self._version, **self._draft_kwargs(p, i))

    def _new_draft(self, p: int, i: int, requests: int = 0, restarts: int = 0) -> Draft:
        """A sample's first draft; with an environment, its episode started
        (`requests`: the engine requests of an earlier start, so the seeds differ)."""
        draft = Draft(prompt_ids=list(self._row_ids(p)), requests=requests, **self._draft_kwargs(p, i))
        if self.env is not None:
            draft.episode = Episode(state={}, restarts=restarts)
            try:
                draft.episode.state = self.env.start(self._row(p))
            except Exception as err:  # the environment's failure, not the model's: mask the sample
                self._env_failed(draft, err)
                draft.finish_reason = "stop"  # nothing to sample: the episode never began
        return draft

    def _env_failed(self, draft: Draft, err: Exception) -> None:
        draft.episode.failed = f"{type(err).__name__}: {err}"[:300]
        log.warning("environment %s failed: %s", self.job.env.name, draft.episode.failed)

    def _ask(self, p: int, i: int) -> Optional[Request]:
        slot = self.slots[p][i]
        ask = slot.next_request() if isinstance(slot, Draft) else None
        if ask is None:
            self._left[p] -= 1
            if self._left[p] == 0:
                self._settled.append(p)
            return None
        rid = f"{self.job.job_id}#{p}#{i}#{slot.requests}"
        return Request(rid, ask.prompt_ids, ask.max_tokens, ask.seed)

    # ---- driving ---------------------------------------------------------------
    def start(self) -> list[Request]:
        job = self.job
        for p in range(len(job.prompts)):
            carried = job.carried.get(p)
            if carried is not None and len(carried.samples) != job.n:
                raise ValueError(f"carried group {p} has {len(carried.samples)} samples, the job asks {job.n}")
            self.slots.append([self._slot(p, i) for i in range(job.n)])
            self._left.append(job.n)
        asks = [self._ask(p, i) for p in range(len(job.prompts)) for i in range(job.n)]
        return [a for a in asks if a is not None]

    def absorb(self, completion, version: int) -> list[Request]:
        """Take a finished engine request of this job (`version`: the engine's
        now); returns the follow-up request, if the sample needs one."""
        _, p, i, _ = completion.request_id.rsplit("#", 3)
        p, i = int(p), int(i)
        self.sampled += len(completion.token_ids)
        draft = self.slots[p][i]
        draft.absorb(list(completion.token_ids), list(completion.logprobs),
                     list(completion.versions), completion.finish_reason, version)
        if draft.episode is not None and draft.finish_reason == "stop":
            self._answer_turn(draft, version)
        ask = self._ask(p, i)
        return [] if ask is None else [ask]

    def _answer_turn(self, draft: Draft, version: int) -> None:
        """The environment's reply to the model turn that just stopped: an
        observation and the next turn, or the end of the episode."""
        ep = draft.episode
        turn = self.tokenizer.decode(draft.token_ids[ep.turn_start:], skip_special_tokens=True)
        try:
            reply = self.env.step(ep.state, turn)
        except Exception as err:  # the environment's failure, not the model's: mask the sample
            self._env_failed(draft, err)
            return
        ep.state = reply.state
        ep.tool_calls += int(reply.tool_call)
        ep.tool_errors += int(reply.error)
        for name, value in reply.reward.items():  # a None (could not score) stays None: masked by the hub
            before = ep.reward.get(name, 0.0)
            ep.reward[name] = None if value is None or before is None else before + float(value)
        if reply.observation is None:
            return
        if ep.turns >= self.job.env.max_turns:  # wants another turn it may not have: truncated
            draft.finish_reason = "length"
            return
        draft.observe(list(self.tokenizer.encode(reply.observation, add_special_tokens=False)), version)

    def close_env(self) -> None:
        """The job is done: let the environment end what it still holds (an
        environment may define `close()`: sessions of episodes stopped by a limit)."""
        close = getattr(self.env, "close", None)
        if callable(close):
            try:
                close()
            except Exception as err:  # the episodes are over; what is left to close is not the job's failure
                log.warning("environment %s failed to close: %s", self.job.env.name, err)

    def take_settled(self) -> list[int]:
        settled, self._settled = self._settled, []
        return settled

    @property
    def done(self) -> bool:
        return all(left == 0 for left in self._left)

    # ---- results -------------------------------------------------------------------
    def samples(self, p: int) -> list[Sample]:
        return [dataclasses.replace(s) if isinstance(s, Sample)
                else s.to_sample(self.tokenizer.decode(s.token_ids, skip_special_tokens=True))
                for s in self.slots[p]]

    def finished(self, p: int) -> bool:
        """Settled with every sample finished: ready to score."""
        return self._left[p] == 0 and all(
            (s.finished if isinstance(s, Sample) else s.finish_reason != "partial") for s in self.slots[p])

    def reward_items(self, p: int) -> list[dict]:
        """The hub's input for group p (one dict per sample)."""
        row = self._row(p)
        # the prompt (text or chat messages) is the question for judge kinds and custom functions
        return [{"kind": row.get("kind", "math"), "response": s.text, "answer": row.get("answer"),
                 "tests": row.get("tests"), "entry_point": row.get("entry_point"),
                 "test_imports": row.get("test_imports"), "meta": row.get("meta"),
                 "length": s.model_tokens, "prompt": row.get("prompt"),
                 **({"env": s.episode.reward} if s.episode is not None and s.episode.reward else {})}
                for s in self.samples(p)]

    def _row(self, p: int) -> dict:
        carried = self.job.carried.get(p)
        return carried.prompt if carried is not None else self.job.prompts[p]

    def _row_ids(self, p: int) -> list[int]:
        carried = self.job.carried.get(p)
        return carried.prompt_ids if carried is not None else self.job.prompt_ids[p]

    def group(self, p: int, scored: Optional[list] = None) -> Group:
        """Group p with its rewards (`scored`: the hub's results), or unscored."""
        samples = self.samples(p)
        for s, r in zip(samples, scored or []):
            # a failed reward is no reward (rewards.types: RewardResult.masked)
            s.reward, s.reward_masked = (None if r.masked else float(r.score)), r.mask_reason
            s.correct, s.reward_details = r.details.get("correct"), dict(r.details)
            if s.episode is not None and s.episode.failed:  # no reward for an episode the environment broke
                s.reward, s.reward_masked = None, "env_error"
        return Group(prompt=self._row(p), prompt_ids=list(self._row_ids(p)), samples=samples)
