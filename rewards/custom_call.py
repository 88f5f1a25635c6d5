"""Your own reward function: how a target is named, found and called, in the
shapes users already have. Standard library only: the hub's driver imports
it to check a target before any replica starts, and the function worker
(rewards.fn_worker) to call it.

A target is `package.module:function` (found on the Python path) or
`path/to/file.py:function`. Its shape is read from its signature:

- `verl`: `compute_score(data_source, solution_str, ground_truth, extra_info)`
  (the parameter names verl passes), returning a float or a dict with
  `score`. `data_source` and `extra_info` come from the row's metadata
  (verl's columns of those names).
- `trl`: TRL's batched reward function, `(prompts, completions, **kwargs)`,
  returning one float (or None) per completion. Every metadata column is
  passed as a keyword list (TRL passes the dataset's other columns), plus
  `answer`. When the prompts are chat messages the completions are too
  (`[{"role": "assistant", "content": text}]`), as in TRL.
- `sample`: one sample at a time, `(prompt, response, answer, metadata)`
  → float or None.

A shape can also be named explicitly (`{function: ..., shape: ...}` in the
recipe). A value is a real number; None masks the sample (no reward, counted);
anything else, or an exception, is a failure of the check (rewards.types:
run again alone, then a verdict of 0 if it fails the same way).
"""
from __future__ import annotations

import importlib
import importlib.util
import inspect
import math
import os
import sys
from pathlib import Path
from typing import Any, Callable

SHAPES = ("sample", "trl", "verl")
VERL_PARAMS = ("data_source", "solution_str", "ground_truth", "extra_info")


class TargetError(Exception):
    """A target that cannot be used; the message is one line naming it."""


def split_target(target: str) -> tuple[str, str]:
    """(module or file, function) of `module:function`."""
    where, sep, name = target.rpartition(":")
    if not sep or not where or not name.isidentifier():
        raise TargetError(f"'{target}' is not 'package.module:function' or 'path/file.py:function'")
    return where, name


def search_path(target: str) -> str | None:
    """The directory a worker must have on its path to import `target`'s module:
    a file target's directory, or the path entry (the driver's) a module is found
    under; None for a module inside this project or an installed package."""
    where, _ = split_target(target)
    if where.endswith(".py"):
        return str(Path(where).expanduser().resolve().parent)
    spec = importlib.util.find_spec(where.split(".")[0])
    if spec is None or spec.origin is None:
        return None
    origin = Path(spec.origin).resolve()
    top = origin.parent.parent if origin.name == "__init__.py" else origin.parent
    return None if "site-packages" in top.parts else str(top)


def load_function(target: str) -> Callable:
    where, name = split_target(target)
    try:
        if where.endswith(".py"):
            path = Path(where).expanduser().resolve()
            if not path.is_file():
                path = _shipped_copy(path)
            if path is None:
                raise TargetError(f"reward function '{target}': file {Path(where).expanduser().resolve()} "
                                  "does not exist")
            spec = importlib.util.spec_from_file_location(f"asymptote_custom_{path.stem}", path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[spec.name] = module
            spec.loader.exec_module(module)
        else:
            module = importlib.import_module(where)
    except TargetError:
        raise
    except Exception as err:  # noqa: BLE001  (the user's module: any failure is one line)
        raise TargetError(f"reward function '{target}': cannot import {where} "
                          f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})") from None
    fn = getattr(module, name, None)
    if not callable(fn):
        raise TargetError(f"reward function '{target}': {where} has no function '{name}'")
    return fn


def _shipped_copy(path: Path) -> Path | None:
    """On a node without the driver's file: the copy Ray's runtime_env shipped
    (py_modules puts a file's folder on PYTHONPATH, rewards.hub), found on the
    path by its name; None when there is none."""
    for entry in filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep)):
        candidate = Path(entry) / path.name
        if candidate.is_file():
            return candidate
    return None


def shipped_code(custom: dict, project: Path) -> list[str]:
    """The local files and folders holding the custom functions' code (a
    file target's file; a module target's top-level package or module under
    its python_path), which Ray's runtime_env uploads so that replicas on
    other nodes import the same code. Code of this project or an installed
    package is already there: not shipped."""
    out = set()
    for c in custom.values():
        where, _ = split_target(c.function)
        if where.endswith(".py"):
            out.add(str(Path(where).expanduser().resolve()))
        elif c.python_path and Path(c.python_path).resolve() != project.resolve():
            top = Path(c.python_path) / where.split(".")[0]
            for candidate in (top, top.with_suffix(".py")):
                if candidate.exists():
                    out.add(str(candidate))
                    break
    return sorted(out)


def detect_shape(fn: Callable, target: str) -> str:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        raise TargetError(f"reward function '{target}': its signature cannot be read; name its shape") from None
    names = [p.name for p in params.values() if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if tuple(names[:4]) == VERL_PARAMS:
        return "verl"
    if names[:2] == ["prompts", "completions"]:
        return "trl"
    if len(names) >= 4 or any(p.kind == p.VAR_POSITIONAL for p in params.values()):
        return "sample"
    raise TargetError(f"reward function '{target}': signature ({', '.join(names)}) fits no shape: "
                      f"(prompt, response, answer, metadata), (prompts, completions, **kwargs) or "
                      f"compute_score({', '.join(VERL_PARAMS)})")


def resolve(target: str, shape: str | None) -> tuple[Callable, str]:
    """The function and its shape (given, or read from its signature)."""
    fn = load_function(target)
    if shape is not None and shape not in SHAPES:
        raise TargetError(f"reward function '{target}': shape must be one of {', '.join(SHAPES)}")
    return fn, shape or detect_shape(fn, target)


def value_of(raw: Any) -> float | None:
    """A returned value as a reward: a real number, or None (masks). Raises
    ValueError on anything else (verl's dict form gives its `score`)."""
    if isinstance(raw, dict) and "score" in raw:
        raw = raw["score"]
    if raw is None:
        return None
    if isinstance(raw, bool) or not isinstance(raw, (int, float)) and not hasattr(raw, "__float__"):
        raise ValueError(f"returned {type(raw).__name__}, not a number or None")
    value = float(raw)
    if not math.isfinite(value):
        raise ValueError(f"returned {value}")
    return value


def call_one(fn: Callable, shape: str, item: dict) -> float | None:
    """One item's value (`item`: prompt, response, answer, meta)."""
    meta = item.get("meta") or {}
    if shape == "verl":
        return value_of(fn(meta.get("data_source"), item["response"], item.get("answer"), meta.get("extra_info")))
    if shape == "trl":
        values = call_batch(fn, shape, [item])
        return values[0]
    return value_of(fn(item.get("prompt"), item["response"], item.get("answer"), meta))


def call_batch(fn: Callable, shape: str, items: list[dict]) -> list[float | None]:
    """Values of a batch: TRL's shape in one call; the others item by item."""
    if shape != "trl":
        return [call_one(fn, shape, item) for item in items]
    prompts = [item.get("prompt") for item in items]
    chat = any(isinstance(p, list) for p in prompts)
    completions = [[{"role": "assistant", "content": item["response"]}] if chat else item["response"]
                   for item in items]
    metas = [item.get("meta") or {} for item in items]
    columns = {key: [m.get(key) for m in metas] for key in dict.fromkeys(k for m in metas for k in m)}
    columns.setdefault("answer", [item.get("answer") for item in items])
    out = fn(prompts, completions, **columns)
    if not isinstance(out, (list, tuple)) or len(out) != len(items):
        raise ValueError(f"returned {type(out).__name__} of length {len(out) if hasattr(out, '__len__') else '?'}"
                         f" for {len(items)} completions")
    return [value_of(v) for v in out]
