"""The `asymptote` command: one verb per capability, each registered by the
module that owns it.

Verb modules import only argparse-level code at registration; torch, vLLM and
Ray are imported inside the handlers, so `asymptote --help` and
`asymptote launch RECIPE --dry-run` stay fast on any laptop.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from core.errors import RunStopped, UserError
from rl.progress import quiet_library_bars_in_logs
from rewards.cli import register as register_rewards

# Each module has `register(subparsers)`; it adds its verbs with
# `set_defaults(func=handler)` where `handler(args) -> int`.
VERB_MODULES = (
    "rl.launch",  # launch, resume
    "rl.submit",  # submit, jobs, stop (Ray Jobs)
    "rl.export.cli",  # export hf
    "rl.base.cli",  # base build
    "rl.monitor.cli",  # extrapolate, compare
    "rl.report.cli",  # backtest, report
)  # then rewards.cli (hub serve, reward score), given the default judge: see build_parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="asymptote",
        description="RL post-training on Ray that forecasts where a run will end.",
    )
    sub = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    for name in VERB_MODULES:
        importlib.import_module(name).register(sub)
    register_rewards(sub, default_judge=_default_judge)
    return parser


def _default_judge():
    """The judge of a reward config naming no `rewards.judge.model`: the
    project's tiny judge, built first when not cached. Resolved on this side
    (rewards/ never imports rl/); imported on use to keep `--help` fast."""
    from rl.base.judge_build import judge_path

    return judge_path()


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # `launch R --run-dir D k=v`: argparse leaves overrides after an option unparsed
    if extra and hasattr(args, "overrides") and all("=" in a and not a.startswith("-") for a in extra):
        args.overrides = list(args.overrides) + extra
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    quiet_library_bars_in_logs()  # before a handler imports transformers or datasets
    try:
        return int(args.func(args) or 0)
    except UserError as err:
        print(f"asymptote: error: {err}", file=sys.stderr)
        return 2
    except RunStopped as err:
        print(f"asymptote: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("asymptote: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
