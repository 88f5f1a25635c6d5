"""Which run directories are seeds of one recipe.

`compare` fits such runs jointly and `backtest` backtests them jointly
(rl/monitor/fit_joint.py). Two runs are seeds of one recipe when their
config.yaml agree on every key both have, leaving out the keys that differ
between seeds or do not change what is trained (`rl.recipe.SEED_KEYS`, read
off the config fields' marks); a key only one config has is a setting added
since the other run started, at its default.
"""
from __future__ import annotations

from pathlib import Path


def recipe_of(run_dir: Path | None) -> dict | None:
    """The run's config.yaml as flat {dotted key: value}, without its seeds (None for files)."""
    if run_dir is None:
        return None
    import yaml

    from core.config_marks import covers
    from rl.recipe import SEED_KEYS

    try:
        cfg = yaml.safe_load((Path(run_dir) / "config.yaml").read_text())
    except (OSError, yaml.YAMLError):
        return None
    if not isinstance(cfg, dict):
        return None

    def flat(d, prefix=""):
        for k, v in d.items():
            key = f"{prefix}{k}"
            if isinstance(v, dict):
                yield from flat(v, key + ".")
            elif not covers(SEED_KEYS, key):
                yield key, v

    return dict(flat(cfg))


def same_recipe(a: dict, b: dict) -> bool:
    """Equal on every key both configs have."""
    return all(a[k] == b[k] for k in a.keys() & b.keys())


def seed_groups(run_dirs: list[Path | None]) -> list[list[int]]:
    """Indices of runs that are seeds of one recipe (groups of two or more)."""
    groups: list[tuple[dict, list[int]]] = []
    for i, d in enumerate(run_dirs):
        cfg = recipe_of(d)
        if cfg is None:
            continue
        for first, members in groups:
            if same_recipe(first, cfg):
                members.append(i)
                break
        else:
            groups.append((cfg, [i]))
    return [members for _, members in groups if len(members) >= 2]
