"""`asymptote export long2short --method merge|shortest-rs|dpo|rl SOURCE OUT_DIR`:
a long-thinking model made short (Kimi k1.5 §2.4), written as a Hugging
Face folder with its model card. See docs/long2short.md."""
from __future__ import annotations

import argparse


def register(formats) -> None:
    p = formats.add_parser(
        "long2short", help="A shorter-thinking model from a long one (merge, shortest-rs, dpo, rl).",
        description="Make a long-thinking model short and write it as a Hugging Face folder with a model card "
                    "(held-out accuracy and mean tokens before/after, settings, Pareto plot of every method tried "
                    "on the source). SOURCE: a run directory, a Hugging Face folder or a built-in base name.")
    p.add_argument("source", metavar="SOURCE", help="The long model: run directory, HF folder or base name.")
    p.add_argument("out_dir", metavar="OUT_DIR", help="Folder to write; must not exist or be empty.")
    p.add_argument("--method", required=True, choices=["merge", "shortest-rs", "dpo", "rl"])
    p.add_argument("--short", help="merge: the short model (run directory, HF folder or base name).")
    p.add_argument("--step", type=int, help="A run's checkpoint step (default: newest; rl: best accuracy per token).")
    p.add_argument("--force", action="store_true", help="Replace OUT_DIR if it is not empty.")
    p.add_argument("--trials", help="Trials file (default: RUN_DIR/long2short.jsonl, else next to OUT_DIR).")
    # A flag left out is None and its setting keeps config.py's default (the one place defaults live).
    g = p.add_argument_group("measurement (before and after)")
    g.add_argument("--eval-prompts", type=int, help="Held-out prompts measured.")
    g.add_argument("--eval-k", type=int, help="Samples per prompt.")
    g.add_argument("--eval-max-tokens", type=int, help="Longest response, measured and sampled.")
    g = p.add_argument_group("merge")
    g.add_argument("--alphas", help="Weights of the long model, comma separated.")
    g.add_argument("--max-accuracy-drop", type=float, help="Accuracy an alpha may lose and be kept.")
    g = p.add_argument_group("shortest-rs and dpo")
    g.add_argument("--sample-prompts", type=int, help="Training prompts sampled.")
    g.add_argument("--n", type=int, help="Samples per prompt.")
    g.add_argument("--steps", type=int, help="Trainer steps.")
    g.add_argument("--batch-size", type=int, help="Examples or pairs per step.")
    g.add_argument("--lr", type=float, help="Learning rate (default 1e-3 SFT, 1e-4 DPO).")
    g.add_argument("--beta", type=float, help="DPO beta.")
    g.add_argument("--length-ratio", type=float, help="DPO: a correct negative is this many times longer.")
    g = p.add_argument_group("rl")
    g.add_argument("--recipe", help="Recipe file.")
    g.add_argument("--rl-run-dir", help="Where the RL run goes (default OUT_DIR-run).")
    g.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="rl: recipe overrides, e.g. run.steps=20.")
    p.set_defaults(func=long2short_handler)


def settings_from_args(args: argparse.Namespace):
    from pydantic import ValidationError

    from core.errors import UserError
    from rl.export.long2short.config import (EvalSettings, MergeSettings, PairSettings, RLSettings,
                                             SampleSettings, TrainSettings)
    from rl.export.long2short.export import Settings

    alphas = None
    if args.alphas is not None:
        try:
            alphas = [float(a) for a in args.alphas.split(",") if a.strip()]
        except ValueError:
            raise UserError(f"--alphas {args.alphas!r}: expected numbers separated by commas") from None
    lr = args.lr if args.lr is not None else (1e-4 if args.method == "dpo" else 1e-3)

    def given(**kw):  # the flags given; the rest keep config.py's defaults
        return {k: v for k, v in kw.items() if v is not None}

    try:
        return Settings(
            eval=EvalSettings(**given(prompts=args.eval_prompts, k=args.eval_k, max_new_tokens=args.eval_max_tokens)),
            merge=MergeSettings(**given(alphas=alphas, max_accuracy_drop=args.max_accuracy_drop)),
            sample=SampleSettings(**given(prompts=args.sample_prompts, n=args.n, max_new_tokens=args.eval_max_tokens)),
            train=TrainSettings(**given(steps=args.steps, batch_size=args.batch_size, lr=lr, beta=args.beta)),
            pairs=PairSettings(**given(length_ratio=args.length_ratio)),
            rl=RLSettings(**given(recipe=args.recipe), overrides=list(args.overrides)))
    except ValidationError as err:
        e = err.errors()[0]
        raise UserError(f"--{str(e['loc'][-1]).replace('_', '-')}: {e['msg']}") from None


def long2short_handler(args: argparse.Namespace) -> int:
    from pathlib import Path

    from core.errors import UserError
    from rl.export.long2short.export import export_long2short

    if args.overrides and args.method != "rl":
        raise UserError(f"recipe overrides ({args.overrides[0]} ...) are only read by --method rl")
    record = export_long2short(args.method, args.source, Path(args.out_dir), short=args.short, step=args.step,
                               force=args.force, settings=settings_from_args(args),
                               trials=Path(args.trials) if args.trials else None,
                               rl_run_dir=Path(args.rl_run_dir) if args.rl_run_dir else None)
    print(f"wrote {record['out']} (model card: {Path(record['out']) / 'README.md'})")
    return 0
