"""Prompt rendering with real chat templates: text or messages, with and
without `data.system_prompt`; and `prompt_text`, the question as text."""
from __future__ import annotations

import pytest
from transformers import AutoTokenizer

from rl.base.build import resolve_base
from rl.data.datasets import prompt_text, render_prompt

SYSTEM = "Answer inside <answer></answer>."
SMOL_DEFAULT = "You are a helpful AI assistant named SmolLM"


@pytest.fixture(scope="module")
def tiny():
    return AutoTokenizer.from_pretrained(str(resolve_base("tiny-arith")))


@pytest.fixture(scope="module")
def smol():
    return AutoTokenizer.from_pretrained(str(resolve_base("smollm2-135m")))


def test_tiny_text_and_messages_render_alike(tiny):
    ids = render_prompt(tiny, "347+2861=")
    assert tiny.decode(ids) == "<|user|>347+2861=<|assistant|>" and len(ids) == len("347+2861=") + 2
    assert render_prompt(tiny, [{"role": "user", "content": "347+2861="}]) == ids
    turns = [{"role": "user", "content": "1+1="}, {"role": "assistant", "content": "2"},
             {"role": "user", "content": "2+2="}]
    assert tiny.decode(render_prompt(tiny, turns)) == "<|user|>1+1=<|assistant|>2<|end|><|user|>2+2=<|assistant|>"
    # the tiny template has no system role: a system prompt renders as nothing
    assert render_prompt(tiny, "347+2861=", system_prompt=SYSTEM) == ids


def test_smollm2_default_system_turn_is_replaced_by_the_system_prompt(smol):
    plain = smol.decode(render_prompt(smol, "What is 2+3?"))
    assert plain == (f"<|im_start|>system\n{SMOL_DEFAULT}, trained by Hugging Face<|im_end|>\n"
                     "<|im_start|>user\nWhat is 2+3?<|im_end|>\n<|im_start|>assistant\n")
    given = smol.decode(render_prompt(smol, "What is 2+3?", system_prompt=SYSTEM))
    assert given == (f"<|im_start|>system\n{SYSTEM}<|im_end|>\n"
                     "<|im_start|>user\nWhat is 2+3?<|im_end|>\n<|im_start|>assistant\n")
    as_messages = render_prompt(smol, [{"role": "user", "content": "What is 2+3?"}], system_prompt=SYSTEM)
    assert smol.decode(as_messages) == given


def test_messages_that_start_with_a_system_turn_keep_it(smol):
    own = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 2+3?"}]
    text = smol.decode(render_prompt(smol, own, system_prompt=SYSTEM))
    assert text.startswith("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nWhat is 2+3?")
    assert SYSTEM not in text and SMOL_DEFAULT not in text
    assert own[0]["content"] == "Be brief." and len(own) == 2  # the row is not changed


def test_prompt_text_is_the_last_user_turn():
    assert prompt_text("347+2861=") == "347+2861="
    assert prompt_text([{"role": "system", "content": "s"}, {"role": "user", "content": "first"},
                        {"role": "assistant", "content": "a"}, {"role": "user", "content": "second"}]) == "second"
    assert prompt_text([{"role": "system", "content": "s"}]) == ""


def test_a_system_prompt_the_template_would_drop_is_refused():
    from transformers import AutoTokenizer

    from core.errors import UserError
    from rl.base.build import resolve_base
    from rl.data.datasets import check_system_prompt

    tiny = AutoTokenizer.from_pretrained(resolve_base("tiny-arith"))
    with pytest.raises(UserError, match="no system turn"):
        check_system_prompt(tiny, "Answer in <answer> tags.")
    check_system_prompt(tiny, None)
    check_system_prompt(AutoTokenizer.from_pretrained(resolve_base("smollm2-135m")), "Answer in <answer> tags.")
