"""`asymptote export FORMAT ...`: the `export` verb group (one sub-verb per
format: `hf`, and `long2short` in rl/export/long2short/). What each format writes is in its module's docstring."""
from __future__ import annotations

import argparse

from rl.export.long2short.cli import register as register_long2short


def register(subparsers) -> None:
    export = subparsers.add_parser("export", help="Write a run's checkpoint in a format other tools load.")
    formats = export.add_subparsers(dest="export_format", required=True, metavar="FORMAT")

    hf = formats.add_parser(
        "hf", help="A plain Hugging Face model folder (transformers, vLLM).",
        description="Write the policy of a run's checkpoint as a Hugging Face folder: model.safetensors, "
                    "config.json, tokenizer files, generation_config.json and export.json.")
    hf.add_argument("run_dir", metavar="RUN_DIR", help="A run directory that `asymptote launch` wrote.")
    hf.add_argument("out_dir", metavar="OUT_DIR", help="Folder to write; must not exist or be empty.")
    hf.add_argument("--step", type=int, default=None,
                    help="Export the checkpoint of this step (default: the newest valid one).")
    hf.add_argument("--force", action="store_true", help="Replace OUT_DIR if it is not empty.")
    hf.set_defaults(func=export_hf_handler)
    register_long2short(formats)


def export_hf_handler(args: argparse.Namespace) -> int:
    import json

    from rl.export.hf import EXPORT_FILE, export_hf

    out = export_hf(args.run_dir, args.out_dir, step=args.step, force=args.force)
    info = json.loads((out / EXPORT_FILE).read_text())
    score = info.get("eval_pass_rate")
    print(f"exported step {info['step']} of {args.run_dir} to {out}"
          + (f" (held-out pass rate {score:.3f} at that step)" if score is not None else ""))
    return 0
