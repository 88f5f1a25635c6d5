"""What a long2short export starts from: a run directory (its checkpoint is
exported to a Hugging Face folder first), a Hugging Face folder, or a
built-in base spec name (its cached folder)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from core.errors import UserError


@dataclass(frozen=True)
class Source:
    folder: Path  # a Hugging Face model folder
    run_dir: Optional[Path]  # the run it came from, if any
    step: Optional[int]  # the run's checkpoint step, if any
    label: str  # how the card names it


def is_run_dir(path: Path) -> bool:
    return (path / "config.yaml").is_file() and (path / "checkpoints").is_dir()


def resolve_source(what: str | Path, work_dir: Path, step: Optional[int] = None) -> Source:
    """A Source for `what`; a run's checkpoint (`step`, else the newest valid
    one) is exported into `work_dir`."""
    from rl.base.build import resolve_base

    path = Path(what).expanduser()
    if is_run_dir(path):
        from rl.export.hf import EXPORT_FILE, export_hf
        import json

        out = work_dir / f"{path.name}-step{'latest' if step is None else step}"
        export_hf(path, out, step=step, force=True, warn=lambda _: None)
        got = json.loads((out / EXPORT_FILE).read_text())["step"]
        return Source(out, path, got, f"{path} step {got}")
    if step is not None:
        raise UserError(f"--step {step}: {what} is not a run directory (only a run has checkpoint steps)")
    if (path / "config.json").is_file():
        return Source(path, None, None, str(path))
    try:
        return Source(resolve_base(str(what)), None, None, str(what))
    except UserError:
        raise UserError(f"{what}: neither a run directory, a Hugging Face folder with config.json, "
                        f"nor a built-in base name") from None
