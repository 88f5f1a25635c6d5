"""Where built models live, and how one is written there without a half-written
folder ever being read.

Every built model (a base, the judge) is a Hugging Face folder named
`<spec name>-<spec hash>` under one cache root, so a change to a spec (or to
the build code's version) names a new folder instead of reusing a stale one.
A build fills a temporary folder, which is then renamed into place: a crash
leaves no folder a later call would take for finished, and two processes
building the same spec at once both end with the one folder.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Callable, Mapping, TypeVar

from core.errors import UserError

REPO_ROOT = Path(__file__).resolve().parents[2]
S = TypeVar("S")


def default_cache_dir() -> Path:
    env = os.environ.get("ASYMPTOTE_CACHE")
    return Path(env) / "bases" if env else REPO_ROOT / ".cache" / "asymptote" / "bases"


def named_spec(name_or_spec: str | S, specs: Mapping[str, S], kind: str) -> S:
    """The spec itself, or the built-in one of that name (UserError naming the known ones)."""
    if not isinstance(name_or_spec, str):
        return name_or_spec
    if name_or_spec not in specs:
        raise UserError(f"unknown {kind} spec '{name_or_spec}' (known: {', '.join(sorted(specs))})")
    return specs[name_or_spec]


def cached_folder(name: str, content_hash: str, cache_dir: str | Path | None) -> Path:
    root = Path(cache_dir) if cache_dir else default_cache_dir()
    return root / f"{name}-{content_hash}"


def build_once(final: Path, fill: Callable[[Path], None], force: bool = False) -> Path:
    """`final` as it is when it holds a model (config.json), unless `force`;
    else `fill(tmp)` writes the model into a temporary folder beside it,
    which then replaces `final`."""
    if (final / "config.json").is_file() and not force:
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".{final.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        fill(tmp)
        if final.exists():  # force, or a leftover without config.json
            old = final.parent / f".{final.name}.old-{os.getpid()}"
            final.rename(old)
            shutil.rmtree(old)
        try:
            tmp.rename(final)
        except OSError:
            if not (final / "config.json").is_file():
                raise  # not a concurrent build of the same spec finishing first
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final
