"""Supervised fine-tuning of a tiny model on CPU, shared by the base build
(`rl.base.build`) and the judge build (`rl.base.judge_build`).

`run_sft` trains with TRL's `SFTTrainer` on prompt-completion rows (loss on
the completion only), sets the generation config (EOS as BOS and stop) and
saves the model and tokenizer in the standard Hugging Face layout under
`out`. Deterministic: same arguments, same weights.

On a terminal the trainer draws its tqdm bar; in a log (stderr not a
terminal) it prints one plain line per logging step instead (step, rate,
loss, token accuracy, learning rate: `PlainSFTLog`), and the datasets and
weight-loading bars of the libraries are off for the build.
"""
from __future__ import annotations

import shutil
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from rl.progress import duration, interactive, plain_line


@contextmanager
def quiet_library_bars(quiet: bool = True):
    """With `quiet`, the datasets and transformers bars (dataset maps, loading
    and writing weights) off for the block, restored afterwards."""
    if not quiet:
        yield
        return
    import datasets
    from transformers.utils import logging as hf_logging

    datasets_on = datasets.is_progress_bar_enabled()
    hf_on = hf_logging.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if datasets_on:
            datasets.enable_progress_bars()
        if hf_on:
            hf_logging.enable_progress_bar()


def plain_sft_log(label: str = "sft", stream=None):
    """A `TrainerCallback` printing one plain line per logging step."""
    from transformers import TrainerCallback

    class PlainSFTLog(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            self.t0 = time.perf_counter()

        def on_log(self, args, state, control, logs=None, **kwargs):
            logs, out = logs or {}, stream or sys.stderr
            elapsed = max(time.perf_counter() - self.t0, 1e-9)
            if "train_runtime" in logs:
                print(f"{label}: done {state.global_step} steps in {duration(elapsed)}, "
                      f"mean loss {logs.get('train_loss', float('nan')):.4f}", file=out, flush=True)
                return
            fields = {name: f"{logs[key]:{fmt}}" for key, name, fmt in
                      (("loss", "loss", ".4f"), ("mean_token_accuracy", "tok_acc", ".3f"),
                       ("learning_rate", "lr", ".2e")) if isinstance(logs.get(key), (int, float))}
            print(plain_line(label, state.global_step, state.max_steps, state.global_step / elapsed, fields),
                  file=out, flush=True)

    return PlainSFTLog()


def run_sft(model, tokenizer, dataset, out: Path, *, steps: int, batch_size: int, lr: float,
            warmup_steps: int, weight_decay: float, seed: int, max_length: int,
            max_new_tokens: int) -> None:
    """Train `model` on `dataset` and save it with `tokenizer` into `out`;
    `max_new_tokens` goes into the saved generation config."""
    from transformers import GenerationConfig, PrinterCallback
    from transformers.utils import logging as hf_logging
    from trl import SFTConfig, SFTTrainer

    plain = not interactive(sys.stderr)
    args = SFTConfig(
        output_dir=str(out / "_trainer"),
        max_steps=steps,
        per_device_train_batch_size=batch_size,
        learning_rate=lr,
        lr_scheduler_type="cosine",
        warmup_steps=warmup_steps,
        weight_decay=weight_decay,
        max_grad_norm=1.0,
        seed=seed,
        data_seed=seed,
        use_cpu=True,
        bf16=False,
        fp16=False,
        completion_only_loss=True,
        max_length=max_length,
        report_to="none",
        save_strategy="no",
        logging_steps=max(1, steps // 10),
        dataloader_num_workers=0,
        disable_tqdm=plain,
    )
    hf_logging.set_verbosity_warning()
    with quiet_library_bars(plain):
        trainer = SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer)
        if plain:
            trainer.remove_callback(PrinterCallback)  # its raw dicts, replaced by plain lines
            trainer.add_callback(plain_sft_log())
        trainer.train()
        model = trainer.model
        model.generation_config = GenerationConfig(
            eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
            bos_token_id=tokenizer.eos_token_id, max_new_tokens=max_new_tokens)
        model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    shutil.rmtree(out / "_trainer", ignore_errors=True)
