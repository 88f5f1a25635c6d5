"""One response under construction, across engine requests: forced
interruption and partial rollouts as a small state machine.

Why not one engine request per sample: both length controls change what is
sampled mid-response. Forced interruption (ScaleRL) stops at a drawn point,
appends text the policy never sampled, and asks for an answer after it;
partial rollouts (Kimi k1.5) stop at a per-iteration token budget and pick
the same response up in a later job under newer weights. Each of those is a
new engine request whose prompt is the prompt plus the tokens so far, so
the KV cache of the earlier part is recomputed (prefix caching, when on,
can reuse it); the tokens, log-probs and version stamps already taken are
kept unchanged, which is what makes a continuation an exact extension.

Engine-free on purpose: `rollout.jobs` feeds it completions and sends the
requests it asks for, and it can be tested without vLLM.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import NamedTuple, Optional

from rollout.types import Episode, Sample

# A continuation's seed is the sample's seed + requests * SEED_STRIDE: never
# the seed of its first request (no replay), and far from its neighbours'
# seeds (seed + p * n + i).
SEED_STRIDE = 1_000_003


class Ask(NamedTuple):
    """The next engine request a draft needs."""

    prompt_ids: list[int]
    max_tokens: int
    seed: Optional[int]


@dataclass
class Draft:
    prompt_ids: list[int]
    seed: Optional[int]  # the sample's seed in this job (None: the engine draws)
    max_tokens: int  # max_new_tokens of the response (before any interruption)
    context: int  # the engine's max_model_len: prompt + response never exceed it
    budget: Optional[int] = None  # tokens it may still sample in this job (None: no segment budget)
    interrupt_at: Optional[int] = None  # response position of the forced interruption
    text_ids: list[int] = field(default_factory=list)  # the interruption text's tokens
    answer_tokens: int = 0  # tokens allowed after the text
    token_ids: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    versions: list[int] = field(default_factory=list)
    loss_mask: list[bool] = field(default_factory=list)
    interrupted: bool = False
    answering: bool = False  # reached its point with thinking already closed: not interrupted
    requests: int = 0  # engine requests made so far, over all jobs
    finish_reason: Optional[str] = None  # set when this job is done with it
    asked: int = 0  # max_tokens of the request in flight
    episode: Optional[Episode] = None  # multi-turn (rollout/env.py); None = one turn

    @classmethod
    def resume(cls, sample: Sample, prompt_ids: list[int], version: int, **kw) -> "Draft":
        """Continue a partial sample: its tokens, log-probs and versions stay
        as they are, and none of them trains again (an earlier segment).
        `version`: the engine's now (stamped on forced text, if any is due)."""
        d = cls(prompt_ids=list(prompt_ids), token_ids=list(sample.token_ids),
                logprobs=list(sample.logprobs), versions=list(sample.versions),
                loss_mask=[False] * len(sample.token_ids), interrupted=sample.interrupted,
                requests=sample.requests, episode=copy.deepcopy(sample.episode), **kw)
        if sample.interrupt_at is not None:  # the point drawn in its first job holds
            d.interrupt_at = sample.interrupt_at
        d._settle(version)
        return d

    # ---- the state machine ------------------------------------------------------
    def _cap(self) -> int:
        """Response length at which it ends as 'length' (or is interrupted)."""
        if self.interrupted:
            return self.interrupt_at + len(self.text_ids) + self.answer_tokens
        if self.interrupt_at is not None and not self.answering:
            return self.interrupt_at
        return self.max_tokens

    def _room(self) -> int:
        return self.context - len(self.prompt_ids) - len(self.token_ids)

    def _settle(self, version: int) -> None:
        """After new tokens: interrupt, finish, pause (partial) or go on."""
        n = len(self.token_ids)
        due = self.interrupt_at is not None and not self.interrupted and n >= self.interrupt_at
        if due and self.text_ids and self.text_ids[-1] in self.token_ids:
            self.answering, due = True, False  # thinking already closed (e.g. </think>): let it answer
        if due:
            if self._room() <= len(self.text_ids):  # no room for the text and an answer
                self.finish_reason = "length"
                return
            self.interrupted, self.interrupt_at = True, n  # n == interrupt_at unless drawn late
            self.token_ids += self.text_ids
            self.logprobs += [0.0] * len(self.text_ids)
            self.versions += [version] * len(self.text_ids)
            self.loss_mask += [False] * len(self.text_ids)
        if len(self.token_ids) >= self._cap() or self._room() <= 0:
            self.finish_reason = "length"
        elif self.budget is not None and self.budget <= 0:
            self.finish_reason = "partial"

    def next_request(self) -> Optional[Ask]:
        """The request to send now, or None if this job is done with it."""
        if self.finish_reason is not None:
            return None
        limit = min(self._cap() - len(self.token_ids), self._room())
        if self.budget is not None:
            limit = min(limit, self.budget)
        if limit <= 0:  # a prompt that fills the context by itself
            self.finish_reason = "length"
            return None
        seed = None if self.seed is None else self.seed + self.requests * SEED_STRIDE
        self.asked = limit
        self.requests += 1
        return Ask(self.prompt_ids + self.token_ids, limit, seed)

    def absorb(self, token_ids: list[int], logprobs: list[float], versions: list[int],
               finish_reason: str, version: int) -> None:
        """Take one finished engine request (`version`: the engine's now, for
        forced text)."""
        self.token_ids += token_ids
        self.logprobs += logprobs
        self.versions += versions
        self.loss_mask += [True] * len(token_ids)
        if self.budget is not None:
            self.budget -= len(token_ids)
        if finish_reason == "stop":
            self.finish_reason = "stop"
        elif len(token_ids) < self.asked:  # cut short by the engine (context full)
            self.finish_reason = "length"
        else:
            self._settle(version)

    def observe(self, obs_ids: list[int], version: int) -> None:
        """After a finished model turn: append the environment's observation
        (never trained; `version`: the engine's now) and open the next turn,
        or end as 'length' when the observation does not fit."""
        if len(self.token_ids) + len(obs_ids) >= self.max_tokens or self._room() <= len(obs_ids):
            self.finish_reason = "length"
            return
        self.token_ids += obs_ids
        self.logprobs += [0.0] * len(obs_ids)
        self.versions += [version] * len(obs_ids)
        self.loss_mask += [False] * len(obs_ids)
        ep = self.episode
        ep.observation_tokens += len(obs_ids)
        ep.turns += 1
        ep.turn_start = len(self.token_ids)
        self.finish_reason = "partial" if self.budget is not None and self.budget <= 0 else None

    def to_sample(self, text: str) -> Sample:
        return Sample(token_ids=self.token_ids, logprobs=self.logprobs, versions=self.versions,
                      finish_reason=self.finish_reason or "partial", text=text,
                      loss_mask=None if all(self.loss_mask) else list(self.loss_mask),
                      interrupted=self.interrupted, interrupt_at=self.interrupt_at,
                      requests=self.requests, episode=self.episode)
