"""`asymptote export hf RUN_DIR [--step N] OUT_DIR`: a run's policy as a
plain Hugging Face model folder.

    asymptote export hf runs/tiny-arith exports/tiny-arith            # newest valid checkpoint
    asymptote export hf runs/tiny-arith --step 100 exports/step100    # that step's checkpoint
    asymptote export hf runs/tiny-arith exports/tiny-arith --force    # replace a non-empty OUT_DIR

OUT_DIR gets `config.json` and `model.safetensors` (the learner's weights at
that checkpoint, in the dtype it trained in), the base model's tokenizer
files and chat template, `generation_config.json` (EOS and pad from the
tokenizer) and `export.json` (run dir, step, checkpoint, recipe name, base,
held-out pass rate at that step). `transformers.AutoModelForCausalLM
.from_pretrained(OUT_DIR)` and `vllm.LLM(OUT_DIR)` load it as they load any
model. Without `--step` the newest checkpoint whose files match its manifest
is used (damaged ones are skipped with a message). It refuses, with one line,
a RUN_DIR without config.yaml, a run with no valid checkpoint, a `--step`
that has none, a checkpoint whose pickled parts refer to anything but what a
checkpoint holds (rl.checkpoint_read), and an OUT_DIR that exists and is not
empty (`--force` replaces it, never when OUT_DIR holds the run itself). The
folder is written under a temporary name and renamed, so OUT_DIR is whole or
absent.

How, and what it departs from:
- The checkpoint is torch.distributed.checkpoint (DCP) shards of
  `{"model": ..., "optim": ...}` written by N FSDP2 ranks. Only the model
  entries are read, in this one process without a process group
  (`dcp.load(..., no_dist=True)`), straight into the parameters of the base
  model built from RUN_DIR's `model.base`; DCP reassembles the shards. Its
  pickled parts are read without running code (rl.checkpoint_read: the
  metadata through an allowlist of the classes a checkpoint holds). The
  optimizer's tensors (twice the model's size under AdamW) are never read
  (its few non-tensor entries are, by that check), which rules out
  `format_utils.dcp_to_torch_save` (it loads everything).
- DCP keys are `model.<fqn>` with the Hugging Face fqn
  (`model.model.layers.0.self_attn.q_proj.weight`), so no renaming is needed.
- Tied weights: the learner's `get_state_dict` writes a tied LM head under
  both names (`model.lm_head.weight` and `model.model.embed_tokens.weight`).
  The export loads one tensor per storage; a second name of the same tensor
  may be absent from the checkpoint, and when present must equal the first
  (else one line saying so, since saving would silently drop it). The saved
  folder keeps `tie_word_embeddings` and, like `save_pretrained` always does,
  holds the tied tensor once.
- A checkpoint that does not fit the base (a key missing, a shape differing:
  the base spec changed since the run) is refused with the key named.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path
from typing import Callable, Optional

from rl.base.build import resolve_base
from rl.checkpoint import Checkpoint, CheckpointStore
from core.errors import UserError

EXPORT_FILE = "export.json"
_MODEL = "model."  # the DCP prefix of the model's entries (the rest is "optim.")


def export_hf(run_dir: str | Path, out_dir: str | Path, step: Optional[int] = None,
              force: bool = False, warn: Optional[Callable[[str], None]] = None) -> Path:
    """Write the Hugging Face folder of `run_dir`'s checkpoint (newest valid,
    or of `step`) to `out_dir`; returns `out_dir`."""
    from transformers import AutoTokenizer

    warn = warn or (lambda msg: print(msg, file=sys.stderr))
    run_dir, out = Path(run_dir), Path(out_dir)
    config = read_run_config(run_dir)
    _check_out_dir(out, run_dir, force)
    ckpt = pick_checkpoint(run_dir, step, warn)
    base = resolve_base(config["model"]["base"])  # a built-in spec's committed or cached folder, or a path

    model = load_policy(ckpt.learner, base)
    tokenizer = AutoTokenizer.from_pretrained(base)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        _generation_config(model, tokenizer).save_pretrained(tmp)
        (tmp / EXPORT_FILE).write_text(json.dumps({
            "run_dir": str(run_dir.resolve()),
            "step": ckpt.step,
            "checkpoint": str(ckpt.path.resolve()),
            "recipe": (config.get("run") or {}).get("name"),
            "base": str(config["model"]["base"]),
            "eval_pass_rate": ckpt.eval,
        }, indent=2) + "\n")
        _move_into_place(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def read_run_config(run_dir: Path) -> dict:
    """RUN_DIR/config.yaml as a dict (raw: an export must not fail because a
    newer version renamed some unrelated recipe key)."""
    import yaml

    path = run_dir / "config.yaml"
    if not path.is_file():
        why = "does not exist" if not run_dir.exists() else "has no config.yaml"
        raise UserError(f"{run_dir}: not a run directory ({why}); `asymptote launch` writes one")
    try:
        config = yaml.safe_load(path.read_text())
    except yaml.YAMLError:
        config = None
    if not (isinstance(config, dict) and isinstance(config.get("model"), dict) and config["model"].get("base")):
        raise UserError(f"{path}: unreadable, or it has no model.base")
    return config


def pick_checkpoint(run_dir: Path, step: Optional[int], warn: Callable[[str], None]) -> Checkpoint:
    """The checkpoint of `step`, or the newest valid one."""
    skipped: list[str] = []
    store = CheckpointStore(run_dir, warn=skipped.append)
    if step is not None:
        return store.at_step(step)  # UserError when absent or damaged
    ckpt = store.latest()
    if ckpt is None:
        why = f"all {len(skipped)} are damaged, the newest: {skipped[0]}" if skipped else "none was written yet"
        raise UserError(f"{run_dir}: no valid checkpoint to export ({why})")
    for line in skipped:  # why an older step than the newest is exported
        warn(line)
    return ckpt


def load_policy(learner_dir: Path, base: Path):
    """The base model with the model weights of the DCP checkpoint in
    `learner_dir` (optimizer state untouched), on CPU, in the checkpoint's dtype."""
    import torch
    from transformers import AutoModelForCausalLM

    from rl.checkpoint_read import read_dcp

    saved = _saved_model_tensors(learner_dir)
    dtypes = {m.properties.dtype for m in saved.values()}
    dtype = dtypes.pop() if len(dtypes) == 1 else torch.float32
    model = AutoModelForCausalLM.from_pretrained(base, dtype=dtype)
    state = model.state_dict()  # detached views of the parameters: loading fills them in place

    into, aliases = {}, []  # one checkpoint entry per storage; other names checked after
    for names in _alias_groups(state):
        present = [n for n in names if n in saved]
        if not present:
            raise UserError(f"{learner_dir}: checkpoint has no '{names[0]}' that base {base} has "
                            f"(was the run made from another base?)")
        into[present[0]] = state[present[0]]
        aliases += [(present[0], n, torch.empty(tuple(saved[n].size), dtype=saved[n].properties.dtype))
                    for n in present[1:]]
    into.update({alias: t for _, alias, t in aliases})
    for name, tensor in into.items():
        if tuple(saved[name].size) != tuple(tensor.shape):
            raise UserError(f"{learner_dir}: '{name}' has shape {tuple(saved[name].size)} in the "
                            f"checkpoint but {tuple(tensor.shape)} in base {base}")
    read_dcp({"model": into}, learner_dir, no_dist=True)
    for first, alias, tensor in aliases:
        if not torch.equal(tensor, state[first]):
            raise UserError(f"{learner_dir}: '{alias}' differs from '{first}', but base {base} ties "
                            f"them; this export would lose one")
    return model.eval()


def _saved_model_tensors(learner_dir: Path) -> dict:
    """{fqn: TensorStorageMetadata} of the model entries of a DCP checkpoint."""
    from torch.distributed.checkpoint.metadata import TensorStorageMetadata

    from rl.checkpoint_read import SafeReader

    meta = SafeReader(str(learner_dir)).read_metadata()  # UserError if unreadable or naming foreign code
    return {k[len(_MODEL):]: v for k, v in meta.state_dict_metadata.items()
            if k.startswith(_MODEL) and isinstance(v, TensorStorageMetadata)}


def _alias_groups(state: dict) -> list[list[str]]:
    """State-dict names grouped by the tensor they name (a tied LM head and
    the input embedding are one group), in state-dict order."""
    groups: dict[tuple, list[str]] = {}
    for name, t in state.items():
        groups.setdefault((t.data_ptr(), t.dtype, tuple(t.shape), t.stride()), []).append(name)
    return list(groups.values())


def _generation_config(model, tokenizer):
    """The base's generation config (or the model's defaults) with the special
    tokens taken from the tokenizer, which is what stops generation."""
    from transformers import GenerationConfig

    gen = model.generation_config if model.generation_config is not None \
        else GenerationConfig.from_model_config(model.config)
    gen.eos_token_id = tokenizer.eos_token_id
    gen.pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    if tokenizer.bos_token_id is not None:
        gen.bos_token_id = tokenizer.bos_token_id
    return gen


def _check_out_dir(out: Path, run_dir: Path, force: bool) -> None:
    if not out.exists():
        return
    if not out.is_dir():
        raise UserError(f"{out}: exists and is not a folder")
    if not any(out.iterdir()):
        return
    if not force:
        raise UserError(f"{out}: exists and is not empty; pick another OUT_DIR or pass --force to replace it")
    run, target = run_dir.resolve(), out.resolve()
    if run == target or target in run.parents:
        raise UserError(f"{out}: holds the run {run_dir}; --force would delete it")


def _move_into_place(tmp: Path, out: Path) -> None:
    """Rename the finished folder to `out`, replacing what is there (the
    checks above have allowed it)."""
    old = None
    if out.exists():
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        out.rename(old)
    tmp.rename(out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
