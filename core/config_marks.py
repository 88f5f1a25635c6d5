"""Two questions every recipe key answers, said once beside the field.

- May `asymptote resume` change it? Yes for settings that cannot corrupt the
  run: its length, bookkeeping, logging, where Ray runs and how much hardware
  each role gets. No for what is learned and for the shape of the saved state.
- Does it separate recipes? `compare` and `backtest` fit the seeds of one
  recipe jointly; a key that differs between seeds (a seed) or does not
  change what is trained (logging, checkpoints, the fit's own settings) is
  not part of the recipe.

A config class states its default as `marks: ClassVar[Mark]`, a field that
departs from it carries `resumable` or `not_recipe` in its annotation
(`Annotated[int, resumable]`), and a section without marks of its own takes
those of the field that holds it. `marked_keys` walks a model and gives the
dotted keys (a whole section as one 'section.' prefix) that `rl.launch` and
`rl.monitor.recipes` read, so neither keeps a list by hand.

Imports only pydantic and the standard library, like every config module.
"""
from __future__ import annotations

import types
import typing
from dataclasses import dataclass
from typing import Iterator, Optional

from pydantic import BaseModel


@dataclass(frozen=True)
class Mark:
    """resume: a resume may change the key; recipe: the key separates recipes
    (False: a seed, or a setting that does not change what is trained).
    None leaves the answer to the class or the section above."""

    resume: Optional[bool] = None
    recipe: Optional[bool] = None

    def over(self, under: "Mark") -> "Mark":
        return Mark(self.resume if self.resume is not None else under.resume,
                    self.recipe if self.recipe is not None else under.recipe)


resumable = Mark(resume=True)
not_recipe = Mark(recipe=False)


def _own(field) -> Mark:
    mark = Mark()
    for item in field.metadata:
        if isinstance(item, Mark):
            mark = item.over(mark)
    return mark


def _section(annotation) -> Optional[type[BaseModel]]:
    """The config class a field holds (also inside Optional[...]), else None."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        found = [a for a in typing.get_args(annotation) if isinstance(a, type) and issubclass(a, BaseModel)]
        return found[0] if len(found) == 1 else None
    return None


def leaf_marks(model: type[BaseModel], prefix: str = "", under: Mark = Mark()) -> Iterator[tuple[str, Mark]]:
    """(dotted key, its marks) for every leaf field below `model`."""
    under = getattr(model, "marks", Mark()).over(under)
    for name, field in model.model_fields.items():
        mark = _own(field).over(under)
        section = _section(field.annotation)
        if section is None:
            yield prefix + name, mark
        else:
            yield from leaf_marks(section, f"{prefix}{name}.", mark)


def undecided(model: type[BaseModel]) -> list[str]:
    """Leaf keys that one of the two questions is left open for."""
    return [key for key, mark in leaf_marks(model) if mark.resume is None or mark.recipe is None]


def marked_keys(model: type[BaseModel], prefix: str = "", under: Mark = Mark(), **want: bool) -> tuple[str, ...]:
    """Dotted keys whose marks equal `want` (e.g. resume=True): a section whose
    every leaf agrees is one 'section.' prefix (an optional section also by its
    own key, which a config shows when it is None), and a dict field is its key
    and 'key.' (a config flattened to dotted keys shows a filled dict's entries)."""
    under = getattr(model, "marks", Mark()).over(under)
    keys: list[str] = []
    for name, field in model.model_fields.items():
        key, mark = prefix + name, _own(field).over(under)
        section = _section(field.annotation)
        if section is None:
            if all(getattr(mark, k) == v for k, v in want.items()):
                keys += [key, key + "."] if typing.get_origin(field.annotation) is dict else [key]
            continue
        leaves = list(leaf_marks(section, key + ".", mark))
        if all(getattr(m, k) == v for _, m in leaves for k, v in want.items()):
            keys += [key, key + "."] if section is not field.annotation else [key + "."]
        else:
            keys += marked_keys(section, key + ".", mark, **want)
    return tuple(keys)


def covers(keys: tuple[str, ...] | frozenset[str], key: str) -> bool:
    """Whether `key` is one of `keys` or lies under one of its 'section.' prefixes."""
    return key in keys or any(k.endswith(".") and key.startswith(k) for k in keys)
