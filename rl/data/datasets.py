"""The data a run starts from: its (train, validation) rows and the token
ids of a prompt.

`load_splits` is `make_task(cfg).splits()` (rl/data/task.py has the sources);
`render_prompt` is the one place that turns a row's prompt (text, or chat
messages) into the token ids the engine is given, with the run's
`data.system_prompt`. `load_prompts`, `arith_difficulty` and `prompt_text`
are re-exported for the imports that predate their modules; the order
prompts are drawn in lives in rl/data/sampler.py.
"""
from __future__ import annotations

from typing import Optional

from core.errors import UserError
from rl.data.arith import arith_difficulty
from rl.data.config import DataConfig
from rl.data.file_layouts import load_prompts
from rl.data.rows import Prompt, prompt_text
from rl.data.task import make_task

__all__ = ["arith_difficulty", "load_prompts", "load_splits", "prompt_text", "render_prompt"]


def load_splits(cfg: DataConfig) -> tuple[list[dict], list[dict]]:
    """(training prompts, validation prompts) for a data config."""
    return make_task(cfg).splits()


def chat_messages(prompt: Prompt, system_prompt: Optional[str] = None) -> list[dict]:
    """The chat messages of a prompt: text is one user turn; `system_prompt`
    goes first as a system turn unless the messages already start with one."""
    out = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)
    if system_prompt is not None and out[0].get("role") != "system":
        out.insert(0, {"role": "system", "content": system_prompt})
    return out


def render_prompt(tokenizer, prompt: Prompt, system_prompt: Optional[str] = None) -> list[int]:
    """Token ids of a prompt in the chat template, ending at the assistant
    marker (add_generation_prompt=True). A template with a default system
    turn (SmolLM2's) uses it only when no system turn is given."""
    ids = tokenizer.apply_chat_template(chat_messages(prompt, system_prompt), add_generation_prompt=True,
                                        tokenize=True, return_dict=False)
    return list(ids)


def check_system_prompt(tokenizer, system_prompt: Optional[str]) -> None:
    """UserError when the model's chat template drops a system turn (the
    project's tiny bases have none): the recipe's system prompt would be lost
    without a word."""
    if system_prompt and system_prompt.strip() not in tokenizer.decode(render_prompt(tokenizer, "?", system_prompt)):
        raise UserError("data.system_prompt: this model's chat template has no system turn, so the system "
                        "prompt would be dropped; put the instruction in the prompts instead")
