"""Model folders as weights: read a folder's tensors, check that two folders
share an architecture, average two state dicts, and write a finished model
folder atomically. The low layer every long2short method uses."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from core.errors import UserError

# config.json keys that say nothing about the weights' shape or meaning
_IGNORED = {"_name_or_path", "transformers_version", "torch_dtype", "dtype", "use_cache",
            "output_attentions", "output_hidden_states", "return_dict"}


def read_state(folder: Path) -> dict:
    """{Hugging Face name: tensor} of every *.safetensors file in `folder`."""
    from safetensors.torch import load_file

    files = sorted(Path(folder).glob("*.safetensors"))
    if not files:
        raise UserError(f"{folder}: no *.safetensors weights")
    state: dict = {}
    for f in files:
        state.update(load_file(f))
    return state


def _config(folder: Path) -> dict:
    path = Path(folder) / "config.json"
    if not path.is_file():
        raise UserError(f"{folder}: no config.json (not a Hugging Face model folder)")
    return {k: v for k, v in json.loads(path.read_text()).items() if k not in _IGNORED}


def _vocab(folder: Path) -> dict | None:
    path = Path(folder) / "tokenizer.json"
    if not path.is_file():
        return None
    tok = json.loads(path.read_text())
    return {"vocab": tok.get("model", {}).get("vocab"),
            "added": sorted((t["id"], t["content"]) for t in tok.get("added_tokens", []))}


def architecture_difference(a: Path, b: Path) -> str | None:
    """Why folders `a` and `b` cannot be averaged weight by weight (the first
    difference, in a few words), or None when they can: the same config
    (shape keys), the same tokenizer vocabulary, the same tensor names and shapes."""
    ca, cb = _config(a), _config(b)
    nested = lambda k: isinstance(ca.get(k, cb.get(k)), (list, dict))  # noqa: E731  scalars read best
    for key in sorted(set(ca) | set(cb), key=lambda k: (nested(k), k)):
        if ca.get(key) != cb.get(key):
            return f"config '{key}' is {ca.get(key)!r} vs {cb.get(key)!r}"
    if _vocab(a) != _vocab(b):
        return "the tokenizers' vocabularies differ"
    sa, sb = read_state(a), read_state(b)
    for name in sorted(set(sa) | set(sb)):
        if name not in sa or name not in sb:
            return f"tensor '{name}' is in only one of them"
        if sa[name].shape != sb[name].shape:
            return f"tensor '{name}' has shape {tuple(sa[name].shape)} vs {tuple(sb[name].shape)}"
    return None


def check_same_architecture(a: Path, b: Path) -> None:
    why = architecture_difference(a, b)
    if why is not None:
        raise UserError(f"{a} and {b} differ in architecture ({why}); long2short needs two models of the same one")


def average(long: dict, short: dict, alpha: float) -> dict:
    """alpha * long + (1 - alpha) * short, tensor by tensor, computed in
    float32 and cast back to each tensor's dtype (same names and shapes)."""
    import torch

    out = {}
    for name, t in long.items():
        mixed = alpha * t.to(torch.float32) + (1.0 - alpha) * short[name].to(torch.float32)
        out[name] = mixed.to(t.dtype)
    return out


def model_with_state(folder: Path, state: dict):
    """The model of `folder` with `state` loaded into it (a tied head may be absent)."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(folder)
    missing, unexpected = model.load_state_dict(state, strict=False)
    tied = {"lm_head.weight"} if model.config.tie_word_embeddings else set()
    if set(missing) - tied or unexpected:
        raise UserError(f"{folder}: the weights do not fit the model (missing {sorted(missing)[:3]}, "
                        f"unexpected {sorted(unexpected)[:3]})")
    return model


def check_out_dir(out: Path, force: bool) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not force:
        raise UserError(f"{out}: exists and is not empty; pick another OUT_DIR or pass --force to replace it")


def write_model_folder(model, tokenizer, out: Path, extra_files: dict[str, str] | None = None,
                       copy_from: Path | None = None) -> Path:
    """Save `model` + `tokenizer` (+ generation_config.json copied from
    `copy_from`, + `extra_files`) under a temporary name, then rename to `out`."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        gen = Path(copy_from or "") / "generation_config.json"
        if copy_from is not None and gen.is_file():
            shutil.copy(gen, tmp / gen.name)
        for name, text in (extra_files or {}).items():
            (tmp / name).write_text(text)
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out
