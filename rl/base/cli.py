"""`asymptote base build NAME`: train (or find cached) a built-in tiny base;
`asymptote base judge [NAME]`: the same for the tiny judge."""
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
    judge = verbs.add_parser("judge", help="Train the tiny judge (a generative reward model) or return its cached folder.")
    judge.add_argument("name", nargs="?", default="tiny-judge", help="Judge spec name (default: tiny-judge).")
    judge.add_argument("--cache-dir", default=None, help="Cache folder (default: the bases' cache).")
    judge.add_argument("--force", action="store_true", help="Rebuild even if cached.")
    judge.set_defaults(func=judge_handler)


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


def judge_handler(args: argparse.Namespace) -> int:
    import json

    from rl.base.judge_build import EVAL_FILE, build_judge

    path = build_judge(args.name, cache_dir=args.cache_dir, force=args.force)
    print(path)
    eval_file = path / EVAL_FILE
    if eval_file.is_file():
        e = json.loads(eval_file.read_text())
        for fmt in ("verify", "grm"):
            print(f"{fmt}: " + "  ".join(
                f"{cat} acc {r['accuracy']} fpr {r['false_positive_rate']}" for cat, r in e[fmt].items()))
    return 0
