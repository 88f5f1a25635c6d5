"""Supervised fine-tuning of a tiny model on CPU, shared by the base build
(`rl.base.build`) and the judge build (`rl.base.judge_build`).

`run_sft` trains with TRL's `SFTTrainer` on prompt-completion rows (loss on
the completion only), sets the generation config (EOS as BOS and stop) and
saves the model and tokenizer in the standard Hugging Face layout under
`out`. Deterministic: same arguments, same weights.
"""
from __future__ import annotations

import shutil
from pathlib import Path


def run_sft(model, tokenizer, dataset, out: Path, *, steps: int, batch_size: int, lr: float,
            warmup_steps: int, weight_decay: float, seed: int, max_length: int,
            max_new_tokens: int) -> None:
    """Train `model` on `dataset` and save it with `tokenizer` into `out`;
    `max_new_tokens` goes into the saved generation config."""
    from transformers import GenerationConfig
    from transformers.utils import logging as hf_logging
    from trl import SFTConfig, SFTTrainer

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
        disable_tqdm=False,
    )
    hf_logging.set_verbosity_warning()
    trainer = SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer)
    trainer.train()
    model = trainer.model
    model.generation_config = GenerationConfig(
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.eos_token_id, max_new_tokens=max_new_tokens)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    shutil.rmtree(out / "_trainer", ignore_errors=True)
