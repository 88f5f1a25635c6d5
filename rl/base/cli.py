"""`asymptote base build NAME`: train (or find cached) a built-in tiny base, or
convert a packaged pretrained one (rl.base.gguf) into float32 and bfloat16 folders;
`asymptote base judge [NAME]`: the same for the tiny judge.

Both always work in the cache: a base committed with the code
(`rl.base.build`) is what a recipe gets by name, and a rebuild here is used
by naming the folder it prints."""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(subparsers) -> None:
    base = subparsers.add_parser("base", help="Build the project's tiny base models.")
    verbs = base.add_subparsers(dest="base_verb", required=True, metavar="VERB")
    build = verbs.add_parser("build", help="Train a named base spec into the cache (or return its cached folder).")
    build.add_argument("name", help="Base spec name, e.g. tiny-arith, or a packaged pretrained base "
                       "(smollm2-135m: converted from its GGUF to float32 and bfloat16 folders).")
    judge = verbs.add_parser("judge", help="Train the tiny judge (a generative reward model) or return its cached folder.")
    judge.add_argument("name", nargs="?", default="tiny-judge", help="Judge spec name (default: tiny-judge).")
    for parser, handler in ((build, build_handler), (judge, judge_handler)):
        parser.add_argument("--cache-dir", default=None,
                            help="Cache folder (default: $ASYMPTOTE_CACHE/bases or <repo>/.cache/asymptote/bases).")
        parser.add_argument("--force", action="store_true", help="Rebuild even if cached.")
        parser.set_defaults(func=handler)


def _built(path: Path, eval_file: str) -> dict | None:
    """Print the built folder; its measurement, when the build wrote one."""
    print(path)
    file = path / eval_file
    return json.loads(file.read_text()) if file.is_file() else None


def build_handler(args: argparse.Namespace) -> int:
    from rl.base import gguf
    from rl.base.build import EVAL_FILE, build_base

    if args.name in gguf.PACKAGED:  # a packaged pretrained base: converted, in both dtypes
        for dtype in gguf.DTYPES:
            print(gguf.convert_gguf(gguf.packaged_file(args.name), dtype, args.cache_dir, args.force))
        return 0

    e = _built(build_base(args.name, cache_dir=args.cache_dir, force=args.force), EVAL_FILE)
    if e:
        print(f"held-out {e['n_prompts']} prompts: greedy {e['greedy']:.3f}  "
              f"mean@{e['k']} {e['mean_at_k']:.3f}  pass@{e['k']} {e['pass_at_k']:.3f}  "
              f"(build {e.get('build_seconds', '?')} s)")
    return 0


def judge_handler(args: argparse.Namespace) -> int:
    from rl.base.judge_build import EVAL_FILE, build_judge

    e = _built(build_judge(args.name, cache_dir=args.cache_dir, force=args.force), EVAL_FILE)
    for fmt in ("verify", "grm") if e else ():
        print(f"{fmt}: " + "  ".join(
            f"{cat} acc {r['accuracy']} fpr {r['false_positive_rate']}" for cat, r in e[fmt].items()))
    return 0
