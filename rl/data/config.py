"""Which prompts a run trains and validates on, and in which order it draws them.

`task` names the source (rl/data/task.py's registry): 'arith', the built-in
synthetic addition task (rl/data/arith.py), generated from `seed`; 'file',
local JSONL or Parquet files in one of the layouts of rl/data/file_layouts.py
(`columns` maps other names); 'reasoning_gym', procedurally generated tasks
of the reasoning-gym library (`reasoning_gym`); 'humaneval', the 164
HumanEval problems as code rows. A setting read only by some tasks is refused
with the others, as the sampling modes' settings are.

Batch shaping (rl/data/sampler.py) is three switches here: `sampling` picks the
draw ('uniform' seeded epochs, Kimi k1.5's 'prioritised' ∝ 1 − success and
'curriculum' easy to hard), and `npr_threshold` turns on ScaleRL's
No-Positive-Resampling. (Zero-variance filtering is the algorithm's:
`algo.zero_variance_filter`.)
Imports only pydantic, so a recipe validates without torch.
"""
from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from core.config_marks import Mark, not_recipe

SamplingName = Literal["uniform", "prioritised", "curriculum"]
TaskName = Literal["arith", "file", "reasoning_gym", "humaneval"]  # rl.data.task.TASKS's keys
RowField = Literal["prompt", "answer", "kind", "tests", "entry_point", "test_imports", "meta"]

# settings read only by some tasks: (field, the tasks that read it)
_TASK_FIELDS = (("train_path", ("file",)), ("val_path", ("file",)), ("columns", ("file",)),
                ("train_size", ("arith", "reasoning_gym")), ("digits_min", ("arith",)),
                ("digits_max", ("arith",)), ("reasoning_gym", ("reasoning_gym",)))
# reasoning_gym config keys the run sets itself (data.seed, data.train_size / val_size)
_RUN_SET = ("seed", "size")

# settings read only by one sampling mode: (field, the mode that reads it)
_MODE_FIELDS = (("prioritised_floor", "prioritised"), ("curriculum_warmup_epochs", "curriculum"),
                ("curriculum_hard_fraction", "curriculum"))


def _bad(message: str) -> PydanticCustomError:
    return PydanticCustomError("data_setting", message)


class ReasoningGymDataset(BaseModel):
    """One reasoning-gym dataset of a mix."""

    model_config = ConfigDict(extra="forbid")

    weight: float = Field(
        1.0, gt=0, description="Relative share of the rows drawn from this dataset (ignored when it is the only one).")
    config: dict[str, Any] = Field(
        default_factory=dict,
        description="Keyword arguments of the dataset's config class (reasoning_gym.factory.DATASETS[name][1]), "
                    "e.g. {min_terms: 2, max_terms: 4} for chain_sum; not seed or size, which the run sets.")

    @field_validator("config")
    @classmethod
    def _no_run_keys(cls, config: dict[str, Any]) -> dict[str, Any]:
        taken = [key for key in _RUN_SET if key in config]
        if taken:
            raise ValueError(f"{', '.join(taken)} is set by the run (data.seed, data.train_size, data.val_size)")
        return config


class ReasoningGymConfig(BaseModel):
    """The reasoning-gym datasets a run draws its rows from (names are checked
    against reasoning_gym.factory.DATASETS when the task loads, so a recipe
    validates without importing the library)."""

    model_config = ConfigDict(extra="forbid")

    datasets: dict[str, ReasoningGymDataset] = Field(
        ..., min_length=1,
        description="Dataset name -> {weight, config}. One dataset: its rows alone; several: reasoning-gym's "
                    "composite dataset, each row drawn from a dataset with probability ∝ weight.")


class DataConfig(BaseModel):
    """Training and validation prompts, and how training prompts are drawn."""

    model_config = ConfigDict(extra="forbid")
    marks: ClassVar[Mark] = Mark(resume=False, recipe=True)

    task: TaskName = Field(
        "arith", description="'arith': built-in addition task; 'file': prompts from train_path/val_path; "
                             "'reasoning_gym': generated from the datasets in data.reasoning_gym; "
                             "'humaneval': the 164 HumanEval problems (code rows).")
    train_path: str | None = Field(
        None, description="JSONL or Parquet file of training prompts (task='file' only).")
    val_path: str | None = Field(
        None, description="JSONL or Parquet file of validation prompts (task='file'); "
                          "when absent, val_size rows are held out of train_path after a seeded shuffle.")
    columns: Optional[dict[RowField, str]] = Field(
        None, description="task='file': the file's column for a row field when it is not the field's own name, "
                          "e.g. {prompt: question, answer: solution}; a dotted path reads inside a struct column "
                          "(answer: reward_model.ground_truth).")
    val_size: int = Field(
        200, gt=0, description="Number of validation prompts (task='file' with val_path: its first val_size rows; "
                               "'humaneval': problems held out of the 164).")
    train_size: int = Field(
        20000, gt=0, description="Number of training prompts generated (task='arith' or 'reasoning_gym').")
    seed: Annotated[int, not_recipe] = Field(
        0, ge=0, description="Seed of the generated training prompts (task='arith' or 'reasoning_gym'; their "
                             "validation prompts are a fixed set) or of the held-out split (task='file' without "
                             "val_path, 'humaneval'); the draw order follows run.seed.")
    reasoning_gym: Optional[ReasoningGymConfig] = Field(
        None, description="task='reasoning_gym': the datasets, {datasets: {name: {weight, config}}}; a bare name "
                          "(data.reasoning_gym=chain_sum) is that one dataset with its default config.")
    system_prompt: Optional[str] = Field(
        None, description="A system turn put before every prompt unless its messages start with one (reasoning-gym's "
                          "scorers read <answer>...</answer>, which reasoning_gym.utils.SYSTEM_PROMPTS['default'] "
                          "asks for). None: the chat template's own default, if any.")
    digits_min: int = Field(2, ge=1, le=9, description="Fewest digits of an operand (task='arith').")
    digits_max: int = Field(4, ge=1, le=9, description="Most digits of an operand (task='arith').")

    sampling: SamplingName = Field(
        "uniform",
        description="How training prompts are drawn. 'uniform': every prompt once per epoch, in a fresh seeded "
                    "shuffle each epoch. 'prioritised' (Kimi k1.5): each batch drawn without replacement with "
                    "probability ∝ max(prioritised_floor, 1 − s), s the prompt's running pass rate. 'curriculum' "
                    "(Kimi k1.5): each epoch ordered easy to hard by difficulty (the row's meta.difficulty when "
                    "the rows have one, else the observed failure rate 1 − s); after curriculum_warmup_epochs "
                    "only the hardest curriculum_hard_fraction of the pool.")
    npr_threshold: Optional[float] = Field(
        None, gt=0, le=1,
        description="No-Positive-Resampling (ScaleRL; the paper uses 0.9): a prompt whose running pass rate "
                    "(correct / samples over the whole run) reaches this after npr_min_samples samples leaves the "
                    "pool for good. None: off.")
    npr_min_samples: int = Field(
        16, ge=1,
        description="No-Positive-Resampling: samples a prompt needs before it can retire. 16 is one ScaleRL group; "
                    "a prompt that truly passes 70% of the time shows >= 0.9 on 16 samples 2.6% of the time "
                    "(5.8% on 8, 24% on 4).")
    prior_success: float = Field(
        0.5, ge=0, le=1,
        description="The pass rate assumed for a prompt not yet observed ('prioritised' weights, and "
                    "'curriculum' without meta.difficulty). 0.5: no opinion either way.")
    prioritised_floor: float = Field(
        0.1, gt=0, le=1,
        description="'prioritised': the least weight a prompt gets, so a prompt that looks solved is still "
                    "drawn now and then (1 − s from 8 all-correct samples is 0, yet a true failure rate of 0.25 "
                    "gives 8/8 10% of the time). 1 = uniform without replacement.")
    curriculum_warmup_epochs: int = Field(
        1, ge=0,
        description="'curriculum': epochs over the whole pool (easy to hard) before the hard-only phase.")
    curriculum_hard_fraction: float = Field(
        0.5, gt=0, le=1,
        description="'curriculum': after the warm-up, each epoch takes only this hardest fraction of the "
                    "remaining pool (rounded up; 1 = the whole pool every epoch), still easy to hard.")

    @field_validator("reasoning_gym", mode="before")
    @classmethod
    def _one_name(cls, value: Any) -> Any:
        return {"datasets": {value: {}}} if isinstance(value, str) else value

    @model_validator(mode="after")
    def _consistent(self) -> "DataConfig":
        if self.digits_min > self.digits_max:
            raise _bad("digits_min must not exceed digits_max")
        if self.task == "file" and not self.train_path:
            raise _bad("train_path: task='file' needs train_path")
        if self.task == "reasoning_gym" and self.reasoning_gym is None:
            raise _bad("reasoning_gym: task='reasoning_gym' needs data.reasoning_gym (a dataset name or "
                       "{datasets: {name: {weight, config}}})")
        # a setting counts as given when it differs from its default: a dumped
        # config (run_dir/config.yaml) sets every key and must load again
        for name, tasks in _TASK_FIELDS:
            if self.task not in tasks and self._given(name):
                readers = " or ".join(f"'{t}'" for t in tasks)
                raise _bad(f"{name} is only read with task {readers} (task is '{self.task}')")
        if self.npr_threshold is None and self._given("npr_min_samples"):
            raise _bad("npr_min_samples is only read with npr_threshold set (No-Positive-Resampling is off)")
        if self.sampling == "uniform" and self._given("prior_success"):
            raise _bad("prior_success is only read with sampling 'prioritised' or 'curriculum'")
        for name, mode in _MODE_FIELDS:
            if self.sampling != mode and self._given(name):
                raise _bad(f"{name} is only read with sampling '{mode}' (sampling is '{self.sampling}')")
        return self

    def _given(self, name: str) -> bool:
        return getattr(self, name) != type(self).model_fields[name].default
