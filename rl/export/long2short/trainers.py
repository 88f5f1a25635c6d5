"""The two supervised trainers long2short uses, both TRL's: `SFTTrainer` on
(prompt, shortest correct response) rows and `DPOTrainer` on (prompt,
chosen, rejected) rows. Prompts are pre-rendered with the chat template, as
in rl.base.build, so the masked prefix is exactly what the engine is given.
Both start from a model folder and return the trained model on CPU.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

from rl.export.long2short.config import TrainSettings


def _common(cfg: TrainSettings, out: str, n_rows: int) -> dict:
    return dict(
        output_dir=out, max_steps=cfg.steps, per_device_train_batch_size=min(cfg.batch_size, n_rows),
        learning_rate=cfg.lr, lr_scheduler_type="cosine", warmup_steps=min(10, cfg.steps // 10),
        max_grad_norm=1.0, seed=cfg.seed, data_seed=cfg.seed, use_cpu=True, bf16=False, fp16=False,
        report_to="none", save_strategy="no", logging_steps=max(1, cfg.steps // 5),
        dataloader_num_workers=0, disable_tqdm=True,
    )


def _rendered(tokenizer, prompt: str) -> str:
    return tokenizer.apply_chat_template([{"role": "user", "content": prompt}],
                                         add_generation_prompt=True, tokenize=False)


def _load(folder: Path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(folder), AutoTokenizer.from_pretrained(folder)


def sft(folder: Path, rows: list[dict], cfg: TrainSettings) -> tuple:
    """(model, tokenizer): `folder`'s model fine-tuned on rows {"prompt", "response"}
    (loss on the response + EOS only)."""
    import datasets
    from trl import SFTConfig, SFTTrainer

    model, tokenizer = _load(folder)
    data = datasets.Dataset.from_dict({
        "prompt": [_rendered(tokenizer, r["prompt"]) for r in rows],
        "completion": [r["response"] + tokenizer.eos_token for r in rows],
    })
    with tempfile.TemporaryDirectory() as out:
        args = SFTConfig(**_common(cfg, out, len(rows)), completion_only_loss=True,
                         max_length=model.config.max_position_embeddings)
        trainer = SFTTrainer(model=model, args=args, train_dataset=data, processing_class=tokenizer)
        trainer.train()
    return trainer.model.eval(), tokenizer


def dpo(folder: Path, pairs: list[dict], cfg: TrainSettings) -> tuple:
    """(model, tokenizer): `folder`'s model trained with DPO (sigmoid loss,
    the frozen starting model as reference) on rows {"prompt", "chosen", "rejected"}."""
    import datasets
    from trl import DPOConfig, DPOTrainer

    model, tokenizer = _load(folder)
    data = datasets.Dataset.from_dict({
        "prompt": [_rendered(tokenizer, p["prompt"]) for p in pairs],
        "chosen": [p["chosen"] + tokenizer.eos_token for p in pairs],
        "rejected": [p["rejected"] + tokenizer.eos_token for p in pairs],
    })
    with tempfile.TemporaryDirectory() as out:
        args = DPOConfig(**_common(cfg, out, len(pairs)), beta=cfg.beta, loss_type=["sigmoid"],
                         max_length=model.config.max_position_embeddings)
        trainer = DPOTrainer(model=model, args=args, train_dataset=data, processing_class=tokenizer)
        trainer.train()
    return trainer.model.eval(), tokenizer
