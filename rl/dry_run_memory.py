"""The memory section of `asymptote launch RECIPE --dry-run`: where the
model's config.json and the memory to check against come from, the plans of
one learner rank and one rollout engine (rl/learner/memory_plan.py), and the
one line that refuses a recipe that cannot fit.

config.json: `--model-config PATH` (a file, or a folder holding one), else
model.base's own (a local model folder, or a built-in base that is committed
or already cached: a dry run builds nothing), else the committed shape
`recipes/gpu/shapes/<basename of model.base>/config.json` (the GPU recipes
name /models/Qwen3-8B, which a laptop does not have). None found: one line
saying memory is not planned, and the dry run goes on.

Memory: `--gpu-memory-gb`, else cluster.gpu_memory_gb, for the roles with
GPUs (no verdict when neither is set); the roles without GPUs share this
machine, checked together against its MemTotal, and only warned about.
Standard library and the light config modules only, like the rest of the
dry run.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

from core.errors import UserError
from rl.base.cache import REPO_ROOT
from rl.learner.memory_plan import (
    MemoryPlan, ModelShape, cpu_engine_plan, engine_plan, judge, learner_plan,
)

SHAPES_DIR = REPO_ROOT / "recipes" / "gpu" / "shapes"


def memory_section(recipe, gpu_memory_gb: Optional[float] = None,
                   model_config: Optional[str] = None) -> tuple[str, Optional[str]]:
    """(the plan as text, the refusal line or None). `gpu_memory_gb` and
    `model_config` are the command line's overrides."""
    found = find_model_config(recipe.model.base, model_config)
    if isinstance(found, str):
        return f"memory: not planned ({found})", None
    config, source = found
    try:
        shape = ModelShape.from_config(config)
    except ValueError as err:
        if model_config:
            raise UserError(f"--model-config {model_config}: {err}") from None
        return f"memory: not planned ({source}: {err})", None
    device = gpu_memory_gb if gpu_memory_gb is not None else recipe.cluster.gpu_memory_gb
    plans = _role_plans(recipe, shape, device)
    host = _host_plan(recipe, plans)
    gpus = recipe.learner.gpus_per_rank > 0 or recipe.rollout.gpus_per_worker > 0
    text = [_header(shape, source, device, gpus)] + [p.describe() for p in plans.values()]
    if host is not None:
        text.append(host.describe())
    refusals = [p.refusal for p in plans.values() if p.level == "refuse" and p.refusal]
    return "\n".join(text), (refusals[0] if refusals else None)


def find_model_config(base: str, override: Optional[str]) -> tuple[dict, str] | str:
    """(config.json as a dict, where it came from), or why there is none.
    A bad --model-config is a UserError."""
    from rl.base.build import built_folder
    from rl.base.spec import SPECS

    if override:
        path = Path(override).expanduser()
        path = path / "config.json" if path.is_dir() else path
        if not path.is_file():
            raise UserError(f"--model-config {override}: no such file")
        return _read(path, strict=True), str(path)
    folder = built_folder(base)
    if folder is not None:
        path = folder / "config.json"
    elif base in SPECS:
        return f"base {base} is not built yet; `asymptote base build {base}` builds it"
    else:
        path = SHAPES_DIR / Path(base).name / "config.json"
        if not path.is_file():
            return f"no config.json for {base}; pass --model-config PATH"
    found = _read(path, strict=False)
    return (found, _shown(path)) if isinstance(found, dict) else found


def _read(path: Path, strict: bool) -> dict | str:
    try:
        config = json.loads(path.read_text())
        if not isinstance(config, dict):
            raise ValueError("not a JSON object")
        return config
    except (OSError, ValueError) as err:
        why = f"{path}: not a readable config.json ({str(err).splitlines()[0] if str(err) else type(err).__name__})"
        if strict:
            raise UserError(f"--model-config {why}") from None
        return why


def _shown(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


def _role_plans(recipe, shape: ModelShape, device_gib: Optional[float]) -> dict[str, MemoryPlan]:
    le, ro = recipe.learner, recipe.rollout
    on_gpu = le.gpus_per_rank > 0
    plans = {"learner": learner_plan(shape, le, recipe.model.fp32_lm_head, device_gib if on_gpu else None,
                                     on_gpu=on_gpu, longest_sequence=ro.engine.max_model_len)}
    engine = recipe.model.engine_config(ro.engine)
    plans["engine"] = (engine_plan(shape, engine, device_gib) if ro.gpus_per_worker > 0
                       else cpu_engine_plan(shape, engine))
    return plans


def _host_plan(recipe, plans: dict[str, MemoryPlan]) -> Optional[MemoryPlan]:
    """The roles without GPUs together against this machine's MemTotal (warn only)."""
    le, ro = recipe.learner, recipe.rollout
    parts = []
    if le.gpus_per_rank == 0:
        parts.append((f"learner ranks x {le.ranks}", le.ranks * plans["learner"].total))
    if ro.gpus_per_worker == 0:
        parts.append((f"rollout engines x {ro.workers}", ro.workers * plans["engine"].total))
    if not parts:
        return None
    total = host_memory_bytes()
    plan = MemoryPlan("this machine (roles without GPUs)", parts, capacity=total,
                      capacity_name="this machine's MemTotal")
    if total is None:
        plan.verdict = "(no /proc/meminfo: not checked)"
    return judge(plan, refuse=False)


def host_memory_bytes() -> Optional[float]:
    """MemTotal from /proc/meminfo, or None where there is none."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return float(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _header(shape: ModelShape, source: str, device_gib: Optional[float], gpus: bool) -> str:
    p, m = shape.params(), _millions
    head = "tied" if shape.tied else m(p["LM head"])
    against = (f"one GPU of {device_gib:g} GiB" if device_gib is not None
               else "GPU memory unknown: set cluster.gpu_memory_gb or pass --gpu-memory-gb")
    against = against if gpus else "no GPUs: every role on this machine"
    return (f"memory plan (GiB = 2^30 bytes; {against}), model shape from {source}:\n"
            f"  {shape.total_params:,} parameters = embedding {m(p['embedding'])} + {shape.layers} layers x "
            f"{m(shape.layer_total)} + final norm + LM head {head}")


def _millions(n: float) -> str:
    return f"{n / 1e6:,.1f}M" if n >= 1e6 else f"{n:,}"
