"""`asymptote base build NAME`: train (or find cached) a built-in tiny base."""
from __future__ import annotations

import argparse


def register(subparsers) -> None:
    base = subparsers.add_parser("base", help="Build the project's tiny base models.")
    verbs = base.add_subparsers(dest="base_verb", required=True, metavar="VERB")
    build = verbs.add_parser("build", help="Train a named base spec (or return its cached folder).")
    build.add_argument("name", help="Base spec name, e.g. tiny-arith.")
    build.add_argument("--cache-dir", default=None,
                       help="Cache folder (default: $ASYMPTOTE_CACHE/bases or <repo>/.cache/asymptote/bases).")
    build.add_argument("--force", action="store_true", help="Rebuild even if cached.")
    build.set_defaults(func=build_handler)


def build_handler(args: argparse.Namespace) -> int:
    import json

    from rl.base.build import EVAL_FILE, build_base

    path = build_base(args.name, cache_dir=args.cache_dir, force=args.force)
    print(path)
    eval_file = path / EVAL_FILE
    if eval_file.is_file():
        e = json.loads(eval_file.read_text())
        print(f"held-out {e['n_prompts']} prompts: greedy {e['greedy']:.3f}  "
              f"mean@{e['k']} {e['mean_at_k']:.3f}  pass@{e['k']} {e['pass_at_k']:.3f}  "
              f"(build {e.get('build_seconds', '?')} s)")
    return 0
