"""Config of the reward hub: which reward terms, their weights, and how the
hub serves them (replicas, batching, timeouts, cache, code sandbox limits).

This is a recipe's `rewards:` section. It imports pydantic, the standard
library and the reward registry (rewards.registry, whose keys are the kinds
`terms` may name; its kind modules are standard-library code), so a recipe
validates without Ray or math-verify.

Item terms (`math`, `code`, `format`) score one sample each; a sample is always
scored by its own `kind` (weight from `terms`, 1.0 if absent), and `format` is
added to every sample when it is listed in `terms`. The length terms need the
whole group and live in their own fields (`overlong`, `kimi_length`) so each
weight is written in exactly one place.

The generative kinds (`genrm`, `grm`; rewards.judge) are terms like `format`:
listed in `terms`, they are added to every sample with their weight, and a
sample may also have one as its own kind. They need `judge:` (the engines).
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, ClassVar, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from core.config_marks import Mark, resumable
from rewards.judge.config import JUDGE_KINDS, JudgeConfig
from rewards.registry import KINDS  # the kinds themselves are standard-library modules

ITEM_KINDS = tuple(KINDS)


class OverlongConfig(BaseModel):
    """DAPO soft overlong penalty: 0 up to max_len - cache_len tokens, then a
    linear ramp to -1 at max_len: clip((max_len - L) / cache_len - 1, -1, 0)."""

    model_config = ConfigDict(extra="forbid")
    marks: ClassVar[Mark] = Mark(resume=False, recipe=True)

    max_len: int = Field(..., gt=0, description="L_max: response length (tokens) at which the penalty reaches -1.")
    cache_len: int = Field(..., gt=0, description="L_cache: width of the linear ramp before max_len.")
    weight: float = Field(1.0, description="Weight of the penalty in the total reward.")
    correct_only: bool = Field(
        False, description="Apply only to correct traces (ScaleRL's variant); False applies it to every trace (DAPO).")

    @model_validator(mode="after")
    def _check(self) -> "OverlongConfig":
        if self.cache_len > self.max_len:
            raise ValueError("overlong.cache_len must be <= overlong.max_len")
        return self


class SandboxConfig(BaseModel):
    """Limits of one sandboxed process run (the program of a `code` sample, or the
    process that judges its assert-style tests)."""

    model_config = ConfigDict(extra="forbid")
    marks: ClassVar[Mark] = Mark(resume=False, recipe=True)

    wall_s: float = Field(
        5.0, gt=0, le=600, description="Wall-clock limit of one stdin/stdout test run, and of one assert-style test "
        "(the verdict process waits no longer for the program's answers); enforced from outside the program.")
    cpu_s: int = Field(
        4, gt=0, le=600, description="CPU seconds per process (RLIMIT_CPU); the program and verdict processes of a "
        "sample with n assert-style tests get n times this (at most 600).")
    memory_mb: int = Field(
        512, ge=64, description="Memory of one run in MiB: each process's address space (RLIMIT_AS) and, with a "
        "memory cgroup, everything the run holds at once (processes, shared memory, memfds, pipes, kernel memory); "
        "the cgroup's limit is memory_mb + disk_mb, since the run's files are memory too.")
    memory_account: Literal["auto", "cgroup", "seccomp"] = Field(
        "auto", description="How a run's memory is held to its limit. 'cgroup': a memory cgroup per run (v2, or v1 "
        "where only that is writable), charged with every page; refuse to run without one. 'seccomp': no cgroup; "
        "refuse the calls whose memory no rlimit counts (memfd_create, shmget, msgget, Unix sockets). 'auto': "
        "the cgroup where one can be made, else seccomp.")
    max_procs: int = Field(16, ge=1, le=4096, description="Processes/threads the program may run at once (RLIMIT_NPROC on a private uid).")
    file_size_mb: int = Field(16, ge=1, description="Largest file the program may write, MiB (RLIMIT_FSIZE).")
    disk_mb: int = Field(32, ge=1, description="Writable space of one run, MiB: the tmpfs working directory gets 3/4, /dev/shm 1/4; nothing else is writable.")
    output_bytes: int = Field(1 << 20, ge=1024, description="stdout+stderr bytes kept; a program that writes more is killed.")
    concurrency: int = Field(2, ge=1, le=64, description="Sandboxed runs one replica executes at once.")
    python: Optional[str] = Field(
        None, description="Interpreter run inside the sandbox; None picks /usr/bin/python3, else the hub's base interpreter.")


class CustomReward(BaseModel):
    """A reward function of the user's (rewards.custom_call says how it is found and called)."""

    model_config = ConfigDict(extra="forbid")
    marks: ClassVar[Mark] = Mark(resume=False, recipe=True)

    function: str = Field(..., description="'package.module:function' or 'path/to/file.py:function'.")
    shape: Optional[Literal["sample", "trl", "verl"]] = Field(
        None, description="'sample': (prompt, response, answer, metadata) -> float | None; 'trl': (prompts, "
        "completions, **columns) -> list; 'verl': compute_score(data_source, solution_str, ground_truth, "
        "extra_info). None: read from the signature.")
    python_path: Optional[str] = Field(
        None, description="Directory the function's workers import it from; None: where the driver finds it "
        "when the hub starts.")

    @field_validator("function")
    @classmethod
    def _check_function(cls, function: str) -> str:
        from rewards.custom_call import TargetError, split_target

        try:
            split_target(function)
        except TargetError as err:
            raise ValueError(str(err)) from None
        return function


class RewardsConfig(BaseModel):
    """The reward hub and the reward recipe it scores with."""

    model_config = ConfigDict(extra="forbid")
    marks: ClassVar[Mark] = Mark(resume=False, recipe=True)

    terms: dict[str, float] = Field(
        default_factory=lambda: {"math": 1.0},
        description="Item term -> weight, from 'math', 'code', 'format', 'reasoning_gym', 'genrm', 'grm' and the "
        "names in `custom`. A sample's own kind is always scored (weight 1.0 if not listed); 'format', 'genrm', "
        "'grm' and custom names are added to every sample when listed.",
    )
    env_terms: dict[str, float] = Field(
        default_factory=dict,
        description="Weight of each reward term an environment awards in an episode (rollout/env.py "
        "`Reply.reward`), added to the row's own reward; a term not listed weighs 1.0. Set the row's kind to "
        "weight 0 in `terms` when the environment's terms are the whole reward.")
    custom: dict[str, CustomReward] = Field(
        default_factory=dict,
        description="Your own reward functions: name -> 'package.module:function' (or {function, shape}). A "
        "name listed in `terms` is added to every sample with its weight; a row whose kind is the name is "
        "scored by it alone. They run on killable workers with timeout_s per item (rewards.custom).")
    overlong: Optional[OverlongConfig] = Field(None, description="DAPO overlong penalty; None disables it.")
    kimi_length: float = Field(
        0.0, description="Weight of the Kimi k1.5 group length reward (0 disables it; the paper starts without it).")
    code_scoring: Literal["fraction", "all"] = Field(
        "fraction", description="'fraction': score = passed tests / tests; 'all': 1 only when every test passes.")
    answer_pattern: Optional[str] = Field(
        None, description="Regex whose last match (group 1 if any) is the math answer; None uses the last \\boxed{}. "
        "RE2 syntax, run by RE2 in time linear in the response (no backreferences or lookaround; \\d, \\w, \\s "
        "are ASCII; '.' matches newlines).")
    max_answer_chars: int = Field(4096, ge=1, description="Longer extracted math answers score 0 without being parsed.")
    replicas: Annotated[int, resumable] = Field(1, ge=1, le=256, description="Number of hub replicas (Ray actors).")
    replica_cpus: Annotated[float, resumable] = Field(0.5, ge=0, description="CPUs Ray reserves per replica.")
    replica_max_restarts: Annotated[int, resumable] = Field(
        3, ge=0, description="Times Ray may restart one replica whose process died; its pending calls are re-run "
        "on the new process. Past this the replica is dead and its calls raise RayActorError.")
    timeout_s: float = Field(
        5.0, gt=0, le=600, description="Per-item time limit. A math check past it (or one that raises or dies) runs "
        "again alone with this many CPU seconds: failing again scores 0 unmasked with details.checker_failure, "
        "unless the failure is not the response's doing (then it is masked). A code sample's tests share this "
        "budget; a test that runs out of time runs again on fresh sandboxes, and a second timeout is its verdict "
        "(details.timeout, unmasked).")
    max_batch: Annotated[int, resumable] = Field(64, ge=1, description="Most samples one replica call carries; larger requests are split.")
    cache_size: int = Field(10000, ge=0, description="Results kept per replica in an LRU keyed by content hash (0 disables).")
    sandbox: SandboxConfig = Field(default_factory=SandboxConfig, description="Limits of the code sandbox.")
    judge: Optional[JudgeConfig] = Field(
        None, description="Judge engines serving the generative kinds (genrm, grm); None starts none.")

    @field_validator("custom", mode="before")
    @classmethod
    def _custom_strings(cls, custom):
        if isinstance(custom, dict):
            return {k: {"function": v} if isinstance(v, str) else v for k, v in custom.items()}
        return custom

    @model_validator(mode="after")
    def _check_terms(self) -> "RewardsConfig":
        for name in self.custom:
            if name in ITEM_KINDS or name in ("overlong", "kimi_length") or not name.isidentifier():
                raise ValueError(f"custom.{name}: the name must be an identifier that is not a built-in kind")
        for name in self.terms:
            if name in ("overlong", "kimi_length"):
                raise ValueError(f"terms.{name}: set the length term in rewards.{name}, not in terms")
            if name not in ITEM_KINDS and name not in self.custom:
                raise ValueError(f"terms.{name}: unknown reward kind (known: {', '.join(ITEM_KINDS)}, "
                                 f"or a name in rewards.custom)")
        return self

    def with_custom_checked(self) -> "RewardsConfig":
        """This config with each custom function imported here (the driver) to
        check it, its shape read, a file path made absolute and the directory
        its workers import it from filled in. UserError naming the function
        that cannot be used."""
        from core.errors import UserError
        from rewards.custom_call import TargetError, resolve, search_path, split_target

        checked = {}
        for name, c in self.custom.items():
            function = c.function
            where, fn_name = split_target(function)  # valid: the field's validator split it
            if where.endswith(".py"):
                function = f"{Path(where).expanduser().resolve()}:{fn_name}"
            try:
                _, shape = resolve(function, c.shape)
                path = c.python_path or search_path(function)
            except TargetError as err:
                raise UserError(f"rewards.custom.{name}: {err}") from None
            checked[name] = c.model_copy(update={"function": function, "shape": shape, "python_path": path})
        return self.model_copy(update={"custom": checked})

    @model_validator(mode="after")
    def _check_judge(self) -> "RewardsConfig":
        for name in JUDGE_KINDS:
            if name in self.terms and self.judge is None:
                raise ValueError(f"terms.{name}: a generative term needs rewards.judge (the judge engines)")
        return self

    @field_validator("answer_pattern")
    @classmethod
    def _check_pattern(cls, pattern: Optional[str]) -> Optional[str]:
        if pattern is not None:
            try:
                re.compile(pattern)
            except re.error as err:
                raise ValueError(f"answer_pattern: not a valid regex ({err})") from None
            from rewards.math import answer_regex  # imports re2 (a small C extension) on first use

            try:
                answer_regex(pattern)
            except ValueError as err:
                raise ValueError(f"answer_pattern: RE2, which reads answers in linear time, cannot run this regex "
                                 f"({err}); backreferences and lookaround are not supported") from None
        return pattern
