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

from rl.errors import UserError

# Each module has `register(subparsers)`; it adds its verbs with
# `set_defaults(func=handler)` where `handler(args) -> int`.
VERB_MODULES = (
    "rl.launch",  # launch
    "rl.base.cli",  # base build
    "rl.monitor.cli",  # extrapolate, compare
    "rewards.cli",  # hub serve, reward score
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="asymptote",
        description="RL post-training on Ray that forecasts where a run will end.",
    )
    sub = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    for name in VERB_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except UserError as err:
        print(f"asymptote: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("asymptote: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
