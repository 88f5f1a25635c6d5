"""Read a checkpoint that someone else may have written without running their code.

A run directory can come from anywhere (a colleague's disk, a bucket, a
download), and its manifest's checksums sit beside the files they cover: they
catch damage, not a writer. Unpickling runs whatever callable the pickle
names, and three parts of a learner checkpoint were pickles:

- DCP's `.metadata` (`FileSystemReader.read_metadata` is a bare
  `pickle.load`). `SafeReader` unpickles it with `find_class` limited to the
  exact globals a checkpoint of this project holds (`METADATA_GLOBALS`, read
  off real checkpoints with `pickletools`, plus torch's dtypes); anything else
  is refused, naming the file and the global. It also refuses a storage entry
  that points outside the checkpoint's folder.
- DCP's non-tensor entries (the optimizer's `param_groups`: lr, betas,
  params...), which `DefaultLoadPlanner.load_bytes` reads with
  `torch.load(weights_only=False)`. `SafePlanner` reads them with
  `weights_only=True` (tensor entries DCP already reads that way).
- Each rank's RNG states, once `rng_rank<r>.pt` (`torch.save` of a torch
  ByteTensor, numpy's state tuple and Python's). They are now written as JSON
  (`rng_rank<r>.json`, `write_rng_state`) and restored bit for bit. An older
  checkpoint's `.pt` is still read, with `weights_only=True` and only the
  three numpy globals its array needs allowed.

Every DCP read of a checkpoint goes through `SafeReader` and `SafePlanner`
(`read_dcp`): the learner ranks on resume, the export. `check_learner_dir`
does all of these reads in the driver before any learner rank does, so a
refusal reaches the user as one `UserError` line: raised inside a Ray actor it
would come back wrapped in a traceback.
"""
from __future__ import annotations

import base64
import io
import json
import pickle
import random
import re
import warnings
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint import FileSystemReader
from torch.distributed.checkpoint._traverse import set_element
from torch.distributed.checkpoint.api import CheckpointException
from torch.distributed.checkpoint.default_planner import DefaultLoadPlanner
from torch.distributed.checkpoint.filesystem import _StorageInfo
from torch.distributed.checkpoint.metadata import BytesStorageMetadata, Metadata, TensorStorageMetadata

from core.errors import UserError

_META = "torch.distributed.checkpoint.metadata"

# The globals a `.metadata` written by this project's learner refers to (and
# every torch dtype, `_metadata_global`): read with pickletools off real
# checkpoints (FSDP2 model + AdamW state, 1 and 2 ranks, in the foreground and
# with async_save).
METADATA_GLOBALS = frozenset({
    (_META, "Metadata"),
    (_META, "TensorStorageMetadata"),
    (_META, "BytesStorageMetadata"),
    (_META, "ChunkStorageMetadata"),
    (_META, "TensorProperties"),
    (_META, "_MEM_FORMAT_ENCODING"),  # TensorProperties' memory format, as an Enum value
    (_META, "MetadataIndex"),
    (_META, "StorageMeta"),
    ("torch.distributed.checkpoint.filesystem", "_StorageInfo"),
    ("torch", "Size"),
    ("torch.serialization", "_get_layout"),  # a torch.layout by its name ("torch.strided")
    ("pathlib", "PosixPath"),  # StorageMeta.checkpoint_id as the writer was given it
    ("pathlib._local", "PosixPath"),  # the same class, as Python 3.13 names it
})

# What numpy's `get_state()` array needs under `torch.load(weights_only=True)`
# in an old `rng_rank<r>.pt`: the array, its dtype (uint32) and the function
# that rebuilds it (named numpy._core in numpy 2, numpy.core in numpy 1).
_NUMPY_RNG_GLOBALS = [np.ndarray, np.dtype, np.dtypes.UInt32DType, np._core.multiarray._reconstruct,
                      (np._core.multiarray._reconstruct, "numpy.core.multiarray._reconstruct")]

RNG_FORMAT = 1
_PLAIN_FILE = re.compile(r"[A-Za-z0-9._-]+")  # a DCP shard's name (__0_0.distcp), inside the folder


def refused(path: Path | str, what: str) -> UserError:
    return UserError(f"{path} refers to {what}, which a checkpoint never holds: refusing to load it")


# ---- DCP ----------------------------------------------------------------------------------------

class _Foreign(pickle.UnpicklingError):
    def __init__(self, what: str):
        super().__init__(what)
        self.what = what


class _MetadataUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in METADATA_GLOBALS:
            return super().find_class(module, name)
        if module == "torch" and isinstance(getattr(torch, name, None), torch.dtype):
            return getattr(torch, name)
        raise _Foreign(f"{module}.{name}")

    def persistent_load(self, pid: Any) -> Any:
        raise _Foreign("a persistent id")


class SafeReader(FileSystemReader):
    """`FileSystemReader` whose `.metadata` is unpickled through the
    allowlist above; refusals are `UserError`s naming the file."""

    def read_metadata(self, *args: Any, **kwargs: Any) -> Metadata:
        path = Path(self._get_metadata_path(kwargs.get("rank")))
        try:
            with path.open("rb") as f:
                metadata = _MetadataUnpickler(f).load()
        except _Foreign as err:
            raise refused(path, err.what) from None
        except OSError as err:
            raise UserError(f"{path}: cannot be read ({err.strerror or err})") from None
        except Exception as err:  # noqa: BLE001 - a truncated or garbled pickle, a bad enum value...
            raise UserError(f"{path}: not a checkpoint's metadata ({type(err).__name__}: {err})"[:300]) from None
        _check_metadata(path, metadata)
        if metadata.storage_meta is not None:  # as FileSystemReader does
            metadata.storage_meta.load_id = self.load_id
        return metadata


def _check_metadata(path: Path, metadata: Any) -> None:
    """The shape DCP expects, and every storage entry inside the folder."""
    if not isinstance(metadata, Metadata):
        raise UserError(f"{path}: holds a {type(metadata).__name__}, not a checkpoint's metadata")
    if not isinstance(metadata.state_dict_metadata, dict) or not isinstance(metadata.storage_data, dict):
        raise UserError(f"{path}: not a checkpoint's metadata (no state dict or storage index)")
    for key, md in metadata.state_dict_metadata.items():
        if not isinstance(md, (TensorStorageMetadata, BytesStorageMetadata)):
            raise UserError(f"{path}: entry '{key}' is a {type(md).__name__}, not a tensor or bytes entry")
    for info in metadata.storage_data.values():
        rel = getattr(info, "relative_path", None)
        if not isinstance(info, _StorageInfo) or not isinstance(rel, str) or not _PLAIN_FILE.fullmatch(rel) \
                or rel in (".", ".."):
            raise UserError(f"{path}: a storage entry points at {rel!r}, outside the checkpoint's folder; "
                            "refusing to load it")


class SafePlanner(DefaultLoadPlanner):
    """DCP's default load planner, reading non-tensor entries with
    `torch.load(weights_only=True)` (DCP's own uses weights_only=False)."""

    def __init__(self, checkpoint: Path | str, **kwargs: Any):
        super().__init__(**kwargs)
        self.checkpoint = checkpoint

    def load_bytes(self, read_item, value: io.BytesIO) -> None:
        fqn = read_item.dest_index.fqn
        obj = _load_weights_only(value, f"{self.checkpoint}: entry '{fqn}'")
        if self.flatten_state_dict:
            set_element(self.original_state_dict, self.mappings[fqn], obj)
        else:
            self.state_dict[fqn] = obj


def read_dcp(state: dict, checkpoint: Path | str, no_dist: bool = False) -> None:
    """`dcp.load(state, ...)` through SafeReader and SafePlanner. A refusal
    is raised as its UserError, not inside DCP's CheckpointException."""
    try:
        with warnings.catch_warnings():  # "assuming the intent is to load in a single process": it is
            warnings.filterwarnings("ignore", message="torch.distributed is disabled")
            dcp.load(state, storage_reader=SafeReader(str(checkpoint)), planner=SafePlanner(checkpoint),
                     no_dist=no_dist)
    except CheckpointException as err:
        for exc, _ in err.failures.values():
            if isinstance(exc, UserError):
                raise UserError(str(exc)) from None
        raise


def _load_weights_only(data: io.BytesIO | Path, where: str, allowed: Optional[list] = None) -> Any:
    """torch.load(weights_only=True) with `allowed` globals on top of
    torch's own; a refused global becomes `refused(where, ...)`."""
    try:
        with torch.serialization.safe_globals(allowed or []):
            return torch.load(data, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if isinstance(data, io.BytesIO):
            data.seek(0)
        try:
            names = torch.serialization.get_unsafe_globals_in_checkpoint(data)
        except Exception:  # noqa: BLE001 - not a torch.save file at all
            names = []
        allowed_names = {a[1] if isinstance(a, tuple) else f"{a.__module__}.{a.__qualname__}"
                         for a in allowed or []}
        foreign = [n for n in names if n not in allowed_names]
        if foreign:
            raise refused(where, ", ".join(foreign)) from None
        raise UserError(f"{where}: cannot be read ({_unpickler_reason(err)})") from None
    except (OSError, RuntimeError, ValueError, EOFError) as err:
        raise UserError(f"{where}: cannot be read ({type(err).__name__}: {str(err).strip()[:200]})") from None


def _unpickler_reason(err: pickle.UnpicklingError) -> str:
    """The line of torch's weights-only error that says what it met."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    after = [i + 1 for i, line in enumerate(lines) if "WeightsUnpickler error" in line]
    reason = lines[after[0]] if after and after[0] < len(lines) else (lines[-1] if lines else type(err).__name__)
    return reason[:200]


# ---- RNG states ----------------------------------------------------------------------------------

def rng_state() -> dict:
    """This process's torch, numpy and Python RNG states."""
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])


def write_rng_state(learner_dir: Path | str, rank: int) -> None:
    """This process's RNG states as `rng_rank<rank>.json` (no pickle)."""
    state = rng_state()
    kind, key, pos, has_gauss, cached = state["numpy"]
    version, internal, gauss_next = state["python"]
    doc = {
        "format": RNG_FORMAT,
        "torch": base64.b64encode(state["torch"].numpy().tobytes()).decode("ascii"),
        "numpy": {"algorithm": kind, "key": key.tolist(), "pos": int(pos), "has_gauss": int(has_gauss),
                  "cached_gaussian": float(cached)},
        "python": {"version": version, "state": list(internal), "gauss_next": gauss_next},
    }
    Path(learner_dir, f"rng_rank{rank}.json").write_text(json.dumps(doc))


def read_rng_state(learner_dir: Path | str, rank: int) -> Optional[dict]:
    """Rank `rank`'s saved RNG states in `rng_state()`'s form: from
    `rng_rank<rank>.json`, else an older checkpoint's `rng_rank<rank>.pt`,
    else None. A `.pt` beside a `.json` is never opened."""
    new, old = Path(learner_dir, f"rng_rank{rank}.json"), Path(learner_dir, f"rng_rank{rank}.pt")
    if new.is_file():
        return _rng_from_json(new)
    if old.is_file():
        return _rng_from_pt(old)
    return None


def _rng_from_json(path: Path) -> dict:
    try:
        doc = json.loads(path.read_text())
        if doc.get("format") != RNG_FORMAT:
            raise ValueError(f"format {doc.get('format')!r}, expected {RNG_FORMAT}")
        t = torch.frombuffer(bytearray(base64.b64decode(doc["torch"], validate=True)), dtype=torch.uint8)
        n, p = doc["numpy"], doc["python"]
        state = {
            "torch": t,
            "numpy": (n["algorithm"], np.array(n["key"], dtype=np.uint32), n["pos"], n["has_gauss"],
                      n["cached_gaussian"]),
            "python": (p["version"], tuple(p["state"]), p["gauss_next"]),
        }
    except (OSError, ValueError, TypeError, KeyError, AttributeError, OverflowError) as err:
        raise UserError(f"{path}: not an RNG state this program writes ({type(err).__name__}: {err})"[:300]) from None
    return _checked_rng(path, state)


def _rng_from_pt(path: Path) -> dict:
    state = _load_weights_only(path, path, allowed=_NUMPY_RNG_GLOBALS)
    if not isinstance(state, dict) or set(state) != {"torch", "numpy", "python"}:
        raise UserError(f"{path}: not an RNG state this program writes (a dict of torch, numpy, python)")
    try:
        return _checked_rng(path, {"torch": state["torch"], "numpy": tuple(state["numpy"]),
                                   "python": (state["python"][0], tuple(state["python"][1]), state["python"][2])})
    except (TypeError, IndexError) as err:
        raise UserError(f"{path}: not an RNG state this program writes ({err})") from None


def _checked_rng(path: Path, state: dict) -> dict:
    """`state` in `rng_state()`'s types, if each part is a state its
    generator accepts (tried on generators of their own, leaving this
    process's untouched)."""
    try:
        t = state["torch"]
        if not (isinstance(t, torch.Tensor) and t.dtype == torch.uint8):
            raise TypeError("the torch state is not a byte tensor")
        kind, key, pos, has_gauss, cached = state["numpy"]
        if not (isinstance(key, np.ndarray) and key.dtype == np.uint32 and key.shape == (624,)):
            raise TypeError("the numpy state is not 624 uint32 words")
        out = {"torch": t, "numpy": (str(kind), key, int(pos), int(has_gauss), float(cached)),
               "python": state["python"]}
        torch.Generator().set_state(out["torch"])
        np.random.RandomState().set_state(out["numpy"])
        random.Random().setstate(out["python"])
    except (TypeError, ValueError, RuntimeError, OverflowError) as err:
        raise UserError(f"{path}: not an RNG state this program writes ({err})"[:300]) from None
    return out


# ---- the driver's check -----------------------------------------------------------------------------

def check_learner_dir(learner_dir: Path | str) -> None:
    """Read everything of the learner checkpoint in `learner_dir` that could
    name code (the metadata, the non-tensor entries, each rank's RNG states)
    the way the learner ranks will; raises one UserError line if any of it
    is refused. Tensors are not read (a weights_only load, and large)."""
    learner_dir = Path(learner_dir)
    metadata = SafeReader(str(learner_dir)).read_metadata()
    entries = {k: None for k, md in metadata.state_dict_metadata.items() if isinstance(md, BytesStorageMetadata)}
    if entries:
        read_dcp(entries, learner_dir, no_dist=True)
    ranks = {int(m.group(1)) for f in learner_dir.glob("rng_rank*.*")
             if (m := re.fullmatch(r"rng_rank(\d+)\.(json|pt)", f.name))}
    for rank in sorted(ranks):
        read_rng_state(learner_dir, rank)
