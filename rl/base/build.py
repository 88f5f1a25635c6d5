"""Build, cache, resolve and measure the tiny base models (no hub is reachable,
so the project trains its own starting points).

`build_base("tiny-arith")` makes the tokenizer and a fresh Qwen2 model, trains
it with supervised fine-tuning on the task's deliberately noisy corpus (loss on
response tokens only), measures it on the held-out prompts and saves it in
the standard Hugging Face layout (safetensors, tokenizer, generation_config
with EOS) under `<cache>/<name>-<spec hash>` (`rl.base.cache`: written under
a temporary name and renamed). Same spec, same machine → same weights; but
another CPU gives other weights (float reduction order), so a base built on
each machine would make every machine's numbers its own.

Hence the committed bases: `resolve_base("tiny-arith")` (what a recipe's
`model.base` goes through) returns the folder committed with the code under
`rl/base/weights/<name>-<spec hash>/` when one matches the spec's current
hash, so a fresh checkout trains nothing and every machine starts from the
same weights. Only a spec without a committed folder (or whose hash no longer
matches one) is built into the cache on first use. `asymptote base build
NAME` always builds into the cache and never touches the committed folder; a
recipe runs from such a rebuild by naming its folder (printed by the build) in
`model.base`. A name never prefers the cache over a committed base, so there
is no flag to remember.

SFT runs through TRL's `SFTTrainer` (prompt-completion data, completion-only
loss), as the house prefers; the prompt is pre-rendered with the chat
template so that the masked prefix is exactly what the engine is later given.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from rl.base import gguf
from rl.base.cache import build_once, cached_folder, named_spec
from rl.base.spec import SPECS, BaseSpec
from rl.progress import interactive
from core.errors import UserError

# Bump when a code change alters the weights a spec produces (corpus format,
# training loop) or the files saved beside them (the tokenizer): every cached base is then rebuilt.
BUILD_VERSION = "3"  # 2: byte-level tokenizer files (AutoTokenizer read the WordLevel ones without spaces);
# 3: the long corpus checks the result before restating steps (rl.data.arith.redundant_items)
EVAL_FILE = "base_eval.json"
SPEC_FILE = "base_spec.json"
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"  # the committed bases


def _spec(name_or_spec: str | BaseSpec) -> BaseSpec:
    return named_spec(name_or_spec, SPECS, "base")


def base_path(spec: str | BaseSpec, cache_dir: str | Path | None = None) -> Path:
    """Where the base for this spec is (or would be) cached."""
    spec = _spec(spec)
    return cached_folder(spec.name, spec.content_hash(BUILD_VERSION), cache_dir)


def committed_path(spec: str | BaseSpec) -> Path | None:
    """The base committed with the code for this spec (same name and hash), or None."""
    spec = _spec(spec)
    path = WEIGHTS_DIR / f"{spec.name}-{spec.content_hash(BUILD_VERSION)}"
    return path if (path / "config.json").is_file() else None


def build_base(name: str | BaseSpec, cache_dir: str | Path | None = None,
               force: bool = False) -> Path:
    """The cached folder of the named base, training it first unless already cached."""
    spec = _spec(name)

    def fill(tmp: Path) -> None:
        started = time.perf_counter()
        _train(spec, tmp)
        build_s = time.perf_counter() - started
        result = evaluate_base(tmp, spec.eval_prompts, spec.eval_k, seed=spec.seed,
                               max_new_tokens=spec.eval_max_new_tokens, digits=(spec.digits_min, spec.digits_max))
        result["build_seconds"] = round(build_s, 1)
        (tmp / EVAL_FILE).write_text(json.dumps(result, indent=2) + "\n")
        (tmp / SPEC_FILE).write_text(json.dumps(
            {"build_version": BUILD_VERSION, **spec.model_dump()}, indent=2) + "\n")

    return build_once(base_path(spec, cache_dir), fill, force)


def resolve_base(name_or_path: str | Path, cache_dir: str | Path | None = None) -> Path:
    """A local model folder (has config.json) as is; a built-in spec's committed
    base when one matches its hash, else its cached base (built on first use);
    a packaged pretrained base's name or a `.gguf` file: its converted folder
    (rl.base.gguf, converted on first use)."""
    path = Path(name_or_path).expanduser()
    if (path / "config.json").is_file():
        return path
    if str(name_or_path) in SPECS:
        return committed_path(str(name_or_path)) or build_base(str(name_or_path), cache_dir=cache_dir)
    if str(name_or_path) in gguf.NAMES:
        return gguf.resolve_named(str(name_or_path), cache_dir)
    if path.suffix.lower() == ".gguf":
        return gguf.convert_gguf(path, cache_dir=cache_dir)
    raise UserError(f"model '{name_or_path}' is neither a local model folder with config.json, a .gguf "
                    f"file, nor a known base ({', '.join(sorted([*SPECS, *gguf.NAMES]))})")


def built_folder(name_or_path: str | Path, cache_dir: str | Path | None = None) -> Path | None:
    """The folder `resolve_base` would return, without building anything: a
    local model folder, or a built-in spec's committed or cached base; None
    when the spec is not built yet or the name is neither (what a dry run asks)."""
    path = Path(name_or_path).expanduser()
    if (path / "config.json").is_file():
        return path
    if str(name_or_path) in gguf.NAMES:
        return gguf.built_named(str(name_or_path), cache_dir)
    if path.suffix.lower() == ".gguf" and path.is_file():
        folder = gguf.folder_for(path.resolve(), "float32", cache_dir)
        return folder if (folder / "config.json").is_file() else None
    if str(name_or_path) not in SPECS:
        return None
    cached = base_path(str(name_or_path), cache_dir)
    return committed_path(str(name_or_path)) or (cached if (cached / "config.json").is_file() else None)


def _sft_dataset(spec: BaseSpec, tokenizer):
    """Prompt-completion rows: the rendered chat prompt and the response + EOS."""
    import datasets

    from rl.data import arith

    if spec.task != "arith":
        raise UserError(f"base spec {spec.name}: unknown task '{spec.task}'")
    rows = arith.make_sft_examples(spec.corpus_size, spec.seed, spec.digits_min, spec.digits_max,
                                   carry_drop=spec.carry_drop, check_rate=spec.check_rate,
                                   recheck_max=spec.recheck_max, tool_rate=spec.tool_rate)
    prompts = [tokenizer.apply_chat_template([{"role": "user", "content": r["prompt"]}],
                                             add_generation_prompt=True, tokenize=False)
               for r in rows]
    if spec.tool_rate:  # tokenized here, so that the calculator's replies carry no loss
        return datasets.Dataset.from_list([_with_replies_masked(tokenizer, p, r["response"])
                                           for p, r in zip(prompts, rows)])
    return datasets.Dataset.from_dict({
        "prompt": prompts,
        "completion": [r["response"] + tokenizer.eos_token for r in rows],
    })


def _with_replies_masked(tokenizer, prompt: str, response: str) -> dict:
    """A pre-tokenized SFT row whose loss skips the prompt and the
    calculator's reply (`=SUM;` after a call): the environment writes those
    tokens, and in RL they are masked too. Each piece is tokenized on its own,
    as the engine tokenizes an observation."""
    from rl.data.arith import CALC_CLOSE, RESULT_CLOSE

    def enc(text: str) -> list[int]:
        return list(tokenizer.encode(text, add_special_tokens=False))

    ids, mask = enc(prompt), []
    mask += [0] * len(ids)
    pieces = [(response, 1)]
    if CALC_CLOSE in response:
        head, rest = response.split(CALC_CLOSE, 1)
        reply, tail = rest.split(RESULT_CLOSE, 1)
        pieces = [(head + CALC_CLOSE, 1), (reply + RESULT_CLOSE, 0), (tail, 1)]
    for text, trains in pieces:
        piece = enc(text)
        ids += piece
        mask += [trains] * len(piece)
    return {"input_ids": ids + [tokenizer.eos_token_id], "completion_mask": mask + [1]}


def _train(spec: BaseSpec, out: Path) -> None:
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # same reduction order on any machine; robust on a busy one
    try:
        _sft(spec, out)
    finally:
        torch.set_num_threads(threads)


def _sft(spec: BaseSpec, out: Path) -> None:
    import torch

    from rl.base.model import build_model
    from rl.base.sft import run_sft
    from rl.base.tokenizer import build_tokenizer

    torch.manual_seed(spec.seed)
    tokenizer = build_tokenizer()
    model = build_model(spec.arch, tokenizer, seed=spec.seed)
    if spec.init_from:  # warm start: another built-in base's weights, same shape
        if _spec(spec.init_from).arch != spec.arch:
            raise UserError(f"base spec {spec.name}: init_from '{spec.init_from}' has another arch")
        model = type(model).from_pretrained(resolve_base(spec.init_from))
    run_sft(model, tokenizer, _sft_dataset(spec, tokenizer), out,
            steps=spec.sft_steps, batch_size=spec.batch_size, lr=spec.lr,
            warmup_steps=spec.warmup_steps, weight_decay=spec.weight_decay, seed=spec.seed,
            max_length=spec.arch.max_positions, max_new_tokens=64)


def evaluate_base(path: str | Path, n_prompts: int = 200, k: int = 16, seed: int = 0,
                  max_new_tokens: int = 64, chunk: int = 64, digits: tuple[int, int] = (2, 4)) -> dict:
    """Greedy accuracy, sampled mean@k and pass@k (temperature 1, no top-k/top-p)
    on the first `n_prompts` held-out arithmetic prompts of `digits` digits, by
    an exact integer compare of the last \\boxed{...} against the true sum.
    No environment answers: a tool-use base's calls get no reply here."""
    import torch
    from tqdm import tqdm
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rl.base.sft import quiet_library_bars
    from rl.data import arith
    from rl.data.datasets import render_prompt

    plain = not interactive(sys.stderr)  # in a log: no bars (carriage returns); the build prints the result
    tokenizer = AutoTokenizer.from_pretrained(path)
    tokenizer.padding_side = "left"
    with quiet_library_bars(plain):
        model = AutoModelForCausalLM.from_pretrained(path).eval()
    val = arith.validation_prompts(n_prompts, *digits)
    greedy_ok, sampled_ok, lengths = [], [], []
    torch.manual_seed(seed)
    for start in tqdm(range(0, len(val), chunk), desc="evaluate base", leave=False, disable=plain):
        rows = val[start:start + chunk]
        batch = tokenizer.pad({"input_ids": [render_prompt(tokenizer, r["prompt"]) for r in rows]},
                              return_tensors="pt")
        width = batch["input_ids"].shape[1]
        common = dict(max_new_tokens=max_new_tokens, pad_token_id=tokenizer.pad_token_id,
                      eos_token_id=tokenizer.eos_token_id)
        with torch.no_grad():
            greedy = model.generate(**batch, do_sample=False, **common)
            sampled = model.generate(**batch, do_sample=True, temperature=1.0, top_k=0, top_p=1.0,
                                     num_return_sequences=k, **common)
        greedy_text = tokenizer.batch_decode(greedy[:, width:], skip_special_tokens=False)
        sampled_new = sampled[:, width:]
        sampled_text = tokenizer.batch_decode(sampled_new, skip_special_tokens=False)
        lengths += (sampled_new != tokenizer.pad_token_id).sum(1).tolist()
        for i, r in enumerate(rows):
            greedy_ok.append(arith.is_correct(greedy_text[i], r["answer"]))
            sampled_ok.append([arith.is_correct(t, r["answer"])
                               for t in sampled_text[i * k:(i + 1) * k]])
    n = len(val)
    return {
        "n_prompts": n, "k": k,
        "greedy": round(sum(greedy_ok) / n, 4),
        "mean_at_k": round(sum(sum(s) for s in sampled_ok) / (n * k), 4),
        "pass_at_k": round(sum(any(s) for s in sampled_ok) / n, 4),
        "mean_response_tokens": round(sum(lengths) / len(lengths), 1),
    }
