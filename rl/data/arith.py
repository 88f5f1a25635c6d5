"""The built-in verifiable task: add two numbers of 2–4 digits, showing the
column-wise working.

Prompt `347+2861=`; ideal response

    <think>7+1+0=8,4+6+0=10,3+8+1=12,0+2+1=3</think>\\boxed{3208}

Each step is `a+b+c=s` for one column, least-significant first: the two
digits, the carry in, their sum. The answer's digits are the steps' last
digits, with the last step's tens digit in front.

The supervised corpus is deliberately imperfect so that RL has room to
improve: every true carry is
dropped (written as `+0`) with probability `carry_drop`, and the working and
the boxed answer follow the dropped carry consistently, so the base model
learns a plausible but often wrong procedure. A fraction `check_rate` of
examples end the working with a redundant `,check:N` step that repeats the
result (length that a long-to-short reward can later remove).

The tool-use variant (`tool_rate > 0`, the `tiny-calc` base) writes that
fraction of examples, chosen independently of the sum, as a calculator call
instead: `<think>calc[347+2861]=3208;</think>\\boxed{3208}`, where
`calc[...]` is the model's turn and `=3208;` the calculator environment's
reply (rollout/env.py), so a base trained on it calls the tool on some sums
and adds by hand on the others.

The long-thinking variant (`recheck_max > 0`, the `tiny-arith-long` base)
appends to each example's working a random number, 0..recheck_max drawn
uniformly, of redundant items: the result checked (`check:3208`), then
column steps restated (`again:7+1+0=8`) or the result checked again. They
never change the answer, so a
model trained on them thinks for a length that varies from sample to sample
and can be cut without losing accuracy (docs/long2short.md).

Everything is deterministic from a seed. Validation prompts come from their
own seed, and the training generators skip every pair in the validation pool,
so the held-out split never leaks into training. `ArithTask` is this task
behind the task interface (rl/data/task.py): training rows carry their carry
count as `meta.difficulty` for the curriculum.
"""
from __future__ import annotations

import random

from core.errors import UserError
from rewards.boxed import last_boxed
from rl.data.config import DataConfig
from rl.data.markers import BOXED, THINK_CLOSE, THINK_OPEN

KIND = "math"
# The calculator's tags in the tool-use corpus (tiny-calc): the character
# tokenizer spells no '<' or '>', and a turn stops on one token (']').
CALC_OPEN, CALC_CLOSE, RESULT_OPEN, RESULT_CLOSE = "calc[", "]", "=", ";"
CALC_TAGS = {"open_tag": CALC_OPEN, "close_tag": CALC_CLOSE, "result_open": RESULT_OPEN, "result_close": RESULT_CLOSE}
VAL_SEED = 1_000_003  # the validation pool's own seed, never a training seed
VAL_POOL = 1000  # validation_prompts(n) takes the first n of this fixed pool
CARRY_DROP = 0.65  # chosen for a base with mean@16 ≈ 0.25, pass@16 ≈ 0.65
CHECK_RATE = 0.30


def _number(rng: random.Random, digits_min: int, digits_max: int) -> int:
    digits = rng.randint(digits_min, digits_max)
    return rng.randint(10 ** (digits - 1), 10**digits - 1)


def _pairs(rng: random.Random, n: int, digits_min: int, digits_max: int,
           exclude: frozenset[tuple[int, int]] = frozenset()) -> list[tuple[int, int]]:
    out = []
    while len(out) < n:
        pair = (_number(rng, digits_min, digits_max), _number(rng, digits_min, digits_max))
        if pair not in exclude:
            out.append(pair)
    return out


def _validation_pairs(digits_min: int, digits_max: int) -> list[tuple[int, int]]:
    rng = random.Random(VAL_SEED)
    pairs: list[tuple[int, int]] = []
    seen: set[tuple[int, int]] = set()
    while len(pairs) < VAL_POOL:  # distinct pairs, so n held-out prompts are n problems
        pair = _pairs(rng, 1, digits_min, digits_max)[0]
        if pair not in seen:
            seen.add(pair)
            pairs.append(pair)
    return pairs


def prompt_text(a: int, b: int) -> str:
    return f"{a}+{b}="


def working(a: int, b: int, carry_drop: float = 0.0, rng: random.Random | None = None, *,
            drop: frozenset[int] | set[int] = frozenset(), extra: frozenset[int] | set[int] = frozenset(),
            sum_off: dict[int, int] | None = None) -> tuple[list[str], int]:
    """The column steps for `a+b` and the sum they imply; later columns follow
    every error.

    With `carry_drop > 0` each true carry is written as 0 with that
    probability (drawn from `rng`: the corpus noise). The judge's near misses
    place errors by column instead: the carry after each column in `drop` is
    dropped, a spurious one follows each column in `extra`, and the column
    sums are shifted by `sum_off` (column -> offset, floored at 0).
    """
    da, db = str(a)[::-1], str(b)[::-1]
    width = max(len(da), len(db))
    steps, digits, carry = [], [], 0
    for i in range(width):
        x = int(da[i]) if i < len(da) else 0
        y = int(db[i]) if i < len(db) else 0
        s = max(0, x + y + carry + (sum_off or {}).get(i, 0))
        steps.append(f"{x}+{y}+{carry}={s}")
        digits.append(s % 10)
        carry = s // 10
        if i == width - 1:
            break
        if i in drop:
            carry = 0
        elif i in extra and carry == 0:
            carry = 1
        elif carry and carry_drop and rng.random() < carry_drop:
            carry = 0
    value = int(str(carry) * bool(carry) + "".join(str(d) for d in reversed(digits)))
    return steps, value


def format_response(steps: list[str], value: int, check: bool = False,
                    redundant: list[str] | tuple[str, ...] = ()) -> str:
    body = ",".join([*steps, *redundant]) + (f",check:{value}" if check else "")
    return f"{THINK_OPEN}{body}{THINK_CLOSE}{BOXED}{value}}}"


def redundant_items(steps: list[str], value: int, recheck_max: int, rng: random.Random) -> list[str]:
    """0..recheck_max (uniform) redundant items. The first is the result
    (`check:<value>`), read off the column steps just before it as the base's
    own check step is; each later one restates a column step
    (`again:<step>`) or the result again (probability 1/2 each). So every
    item repeats something already written and the boxed answer copies the
    nearest check. (When the first item could be `again:`, the tiny model
    had to read the result off steps an item further back; it learned that
    badly, and the long base boxed a right sum 3% of the time against the
    short one's 20%.)"""
    n = rng.randint(0, recheck_max)
    out = [f"check:{value}"] if n else []
    for _ in range(n - 1):
        out.append(f"again:{rng.choice(steps)}" if rng.random() < 0.5 else f"check:{value}")
    return out


def make_prompts(n: int, seed: int, digits_min: int = 2, digits_max: int = 4) -> list[dict]:
    """`n` training prompts `{"prompt", "answer", "kind"}`; never a validation pair."""
    rng = random.Random(seed)
    exclude = frozenset(_validation_pairs(digits_min, digits_max))
    return [{"prompt": prompt_text(a, b), "answer": str(a + b), "kind": KIND}
            for a, b in _pairs(rng, n, digits_min, digits_max, exclude)]


def tool_response(a: int, b: int) -> str:
    """A worked example that asks the calculator (the `calculator`
    environment with CALC_TAGS): the call, the environment's reply, the
    boxed value the reply gave."""
    call = f"{CALC_OPEN}{a}+{b}{CALC_CLOSE}"
    return f"{THINK_OPEN}{call}{RESULT_OPEN}{a + b}{RESULT_CLOSE}{THINK_CLOSE}{BOXED}{a + b}}}"


def make_sft_examples(n: int, seed: int, digits_min: int = 2, digits_max: int = 4,
                      carry_drop: float = CARRY_DROP,
                      check_rate: float = CHECK_RATE, recheck_max: int = 0, tool_rate: float = 0.0) -> list[dict]:
    """`n` supervised examples `{"prompt", "response", "answer"}` with noisy working.

    `answer` is the true sum (for measuring the noise); `response` boxes the
    value of the (possibly wrong) working. With `recheck_max > 0` each
    working ends in 0..recheck_max redundant items (`redundant_items`); with
    0 the random stream, and so the corpus, is exactly the one without it.
    With `tool_rate > 0` that fraction of examples, drawn independently of
    the sum, calls the calculator instead of adding by hand (`tool_response`).
    """
    rng = random.Random(seed)
    exclude = frozenset(_validation_pairs(digits_min, digits_max))
    out = []
    for a, b in _pairs(rng, n, digits_min, digits_max, exclude):
        if tool_rate and rng.random() < tool_rate:
            out.append({"prompt": prompt_text(a, b), "response": tool_response(a, b), "answer": str(a + b)})
            continue
        steps, value = working(a, b, carry_drop, rng)
        extra = redundant_items(steps, value, recheck_max, rng) if recheck_max else []
        response = format_response(steps, value, check=rng.random() < check_rate, redundant=extra)
        out.append({"prompt": prompt_text(a, b), "response": response, "answer": str(a + b)})
    return out


def validation_prompts(n: int = 200, digits_min: int = 2, digits_max: int = 4) -> list[dict]:
    """The fixed held-out split: the first `n` of a pool of distinct pairs drawn
    with `VAL_SEED`; the same on every call and machine."""
    if not 0 < n <= VAL_POOL:
        raise ValueError(f"validation size must be in 1..{VAL_POOL}, got {n}")
    pairs = _validation_pairs(digits_min, digits_max)[:n]
    return [{"prompt": prompt_text(a, b), "answer": str(a + b), "kind": KIND} for a, b in pairs]


def boxed_answer(text: str) -> str | None:
    """The content of the last `\\boxed{...}` in `text`, or None: the math
    reward's parser (rewards.boxed), so evaluation and reward agree."""
    return last_boxed(text)


def is_correct(response: str, answer: str) -> bool:
    """Exact integer compare of the last boxed value against the answer."""
    got = boxed_answer(response)
    try:
        return got is not None and int(got.strip()) == int(answer)
    except ValueError:
        return False


def arith_difficulty(prompt: str) -> int:
    """Carries an arith sum passes on to a next column (a carry out of the
    last column only writes the leading digit). The SFT corpus drops each such
    carry with probability CARRY_DROP = 0.65 and is then wrong, so the base
    model boxes a sum with c carries right about 0.35^c of the time: carries,
    not digit counts, are what the corpus's noise acts on."""
    a, b = prompt.rstrip("=").split("+")
    steps, _ = working(int(a), int(b))
    return sum(int(step.split("=")[1]) >= 10 for step in steps[:-1])


class ArithTask:
    """`task: arith`: `train_size` generated sums from `data.seed`, each with
    its carry count as meta.difficulty; the first `val_size` of the fixed
    validation pool."""

    def __init__(self, cfg: DataConfig):
        self.cfg = cfg

    def splits(self) -> tuple[list[dict], list[dict]]:
        cfg = self.cfg
        if cfg.val_size > VAL_POOL:
            raise UserError(f"data.val_size: at most {VAL_POOL} for task 'arith'")
        train = [{**row, "meta": {"difficulty": arith_difficulty(row["prompt"])}}
                 for row in make_prompts(cfg.train_size, cfg.seed, cfg.digits_min, cfg.digits_max)]
        return train, validation_prompts(cfg.val_size, cfg.digits_min, cfg.digits_max)

    def reward_kinds(self) -> tuple[str, ...]:
        return (KIND,)
