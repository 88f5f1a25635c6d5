"""A run directory written by someone else is read, never run.

Each test copies a real run directory (the deterministic run that was
stopped with SIGTERM and resumed, tests/rl/conftest.py) and tampers with it
the way an attacker who writes the whole directory would: a pickle that
creates a marker file when unpickled is planted in one of a checkpoint's
pickled parts, and the manifest is rewritten to match, so the checksums
pass. `asymptote resume` and `asymptote export hf` must refuse in one line
and the marker must never appear; an untampered copy exports, and RNG
states in the older `.pt` form read back as the states they were.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import random
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.rl.conftest import RECIPE, ROOT, rows

CKPT = "step_000006"  # the newest checkpoint of det_runs.resumed, the one a resume or an export picks


class Plant:
    """Unpickled, it opens (creates) `marker`: what any code could do instead."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rl.cli", *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, timeout=400, env={**os.environ, "WANDB_MODE": "offline"})


def copy_run(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("wandb"))
    return dst


def reseal(ckpt: Path) -> None:
    """Rewrite the checkpoint's manifest to match its files, as an attacker
    who writes the whole run directory can."""
    manifest = json.loads((ckpt / "manifest.json").read_text())
    manifest["files"] = {
        f.relative_to(ckpt).as_posix(): {"bytes": f.stat().st_size, "sha256": hashlib.sha256(f.read_bytes()).hexdigest()}
        for f in sorted(ckpt.rglob("*")) if f.is_file() and f.name != "manifest.json"}
    (ckpt / "manifest.json").write_text(json.dumps(manifest, indent=1))


def real_metadata(learner: Path):
    from rl.checkpoint_read import SafeReader

    return SafeReader(str(learner)).read_metadata()


def plant_in_metadata(learner: Path, marker: Path) -> None:
    """The real `.metadata`, with a field carrying the payload."""
    md = real_metadata(learner)
    md.storage_meta.modules = [Plant(marker)]
    (learner / ".metadata").write_bytes(pickle.dumps(md))


def plant_old_rng(learner: Path, marker: Path) -> None:
    """rank 0's RNG states in the older `.pt` form (torch.save of a dict),
    with the payload as numpy's state; the JSON is removed, as in a
    checkpoint the previous version wrote."""
    (learner / "rng_rank0.json").unlink()
    torch.save({"torch": torch.get_rng_state(), "numpy": Plant(marker), "python": (3, tuple(range(625)), None)},
               learner / "rng_rank0.pt")


def plant_in_optim_entry(learner: Path, marker: Path) -> None:
    """A non-tensor DCP entry (AdamW's lr) pointed at a torch.save'd payload
    appended to its shard: the metadata names only DCP's own classes."""
    md = real_metadata(learner)
    [index] = [i for i in md.storage_data if i.fqn == "optim.param_groups.0.lr"]
    info = md.storage_data[index]
    buf = io.BytesIO()
    torch.save(Plant(marker), buf)
    shard = learner / info.relative_path
    info.offset, info.length = shard.stat().st_size, len(buf.getvalue())
    with shard.open("ab") as f:
        f.write(buf.getvalue())
    (learner / ".metadata").write_bytes(pickle.dumps(md))


PLANTS = {"metadata": (plant_in_metadata, ".metadata refers to io.open"),
          "old_rng": (plant_old_rng, "rng_rank0.pt refers to io.open"),
          "optim_entry": (plant_in_optim_entry, "entry 'optim.param_groups.0.lr' refers to io.open")}


def tampered(det_runs, tmp_path: Path, kind: str) -> tuple[Path, Path]:
    run = copy_run(det_runs.resumed, tmp_path / "run")
    marker = tmp_path / "ran.txt"
    PLANTS[kind][0](run / "checkpoints" / CKPT / "learner", marker)
    reseal(run / "checkpoints" / CKPT)
    return run, marker


def assert_refused_in_one_line(res: subprocess.CompletedProcess, says: str) -> None:
    """Exit 2 and the error as the last line of stderr, the only one of ours
    (resume refuses before it starts Ray; export never starts it)."""
    assert res.returncode == 2, res.stdout[-2000:] + res.stderr[-3000:]
    assert "Traceback" not in res.stdout + res.stderr, res.stderr[-3000:]
    lines = res.stderr.strip().splitlines()
    assert [x for x in lines if x.startswith("asymptote:")] == lines[-1:], res.stderr[-3000:]
    assert says in lines[-1] and lines[-1].endswith("which a checkpoint never holds: refusing to load it"), lines[-1]


@pytest.mark.slow
def test_the_planted_files_run_code_when_read_as_before(det_runs, tmp_path):
    """The payloads are live: DCP's own reader, its default load planner and
    `torch.load(weights_only=False)` (what resume and export used) each
    create the marker."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint import FileSystemReader

    for kind in PLANTS:
        run, marker = tampered(det_runs, tmp_path / kind, kind)
        learner = run / "checkpoints" / CKPT / "learner"
        if kind == "metadata":
            FileSystemReader(str(learner)).read_metadata()
        elif kind == "old_rng":
            torch.load(learner / "rng_rank0.pt", weights_only=False)
        else:
            dcp.load({"optim.param_groups.0.lr": None}, checkpoint_id=str(learner), no_dist=True)
        assert marker.is_file(), kind


@pytest.mark.slow
@pytest.mark.parametrize("kind", list(PLANTS))
def test_resume_refuses_a_checkpoint_that_names_code(det_runs, tmp_path, kind):
    run, marker = tampered(det_runs, tmp_path, kind)
    res = cli("resume", run, "run.steps=7")
    assert_refused_in_one_line(res, PLANTS[kind][1])
    assert not marker.exists()
    assert [r["step"] for r in rows(run)] == list(range(7))  # nothing was run, nothing rolled back


def export_in_process(capsys, *args) -> subprocess.CompletedProcess:
    """`asymptote export hf ARGS` run by `rl.cli.main` in this process (the
    subprocess form is the resume tests'): its exit code and what it printed."""
    from rl.cli import main

    capsys.readouterr()
    code = main(["export", "hf", *map(str, args)])
    out = capsys.readouterr()
    return subprocess.CompletedProcess(args, code, out.out, out.err)


@pytest.mark.slow
@pytest.mark.parametrize("kind", list(PLANTS))
def test_export_refuses_a_checkpoint_that_names_code(det_runs, tmp_path, capsys, kind):
    run, marker = tampered(det_runs, tmp_path, kind)
    for step in ([], ["--step", "6"]):
        res = export_in_process(capsys, run, *step, tmp_path / "out")
        assert_refused_in_one_line(res, PLANTS[kind][1])
    assert not marker.exists() and not (tmp_path / "out").exists()


@pytest.mark.slow
def test_a_pt_beside_the_json_is_never_opened_and_a_clean_copy_exports(det_runs, tmp_path, capsys):
    run = copy_run(det_runs.resumed, tmp_path / "run")
    learner = run / "checkpoints" / CKPT / "learner"
    marker = tmp_path / "ran.txt"
    torch.save({"torch": torch.get_rng_state(), "numpy": Plant(marker), "python": None}, learner / "rng_rank0.pt")
    reseal(run / "checkpoints" / CKPT)
    res = export_in_process(capsys, run, tmp_path / "out")
    assert res.returncode == 0, res.stderr[-3000:]
    assert json.loads((tmp_path / "out" / "export.json").read_text())["step"] == 6
    assert not marker.exists()


@pytest.mark.slow
def test_older_pt_rng_states_read_as_the_json_they_were(det_runs, tmp_path):
    """Each rank's RNG states converted to the `.pt` the previous version wrote
    (torch.save of the torch ByteTensor, numpy's state tuple and Python's):
    the allowlisted weights-only load gives back the same states the JSON
    held, so a resume restores them as it does from JSON (the det_runs
    resume, bit for bit against the uninterrupted run)."""
    from rl.checkpoint_read import read_rng_state

    learner = copy_run(det_runs.resumed, tmp_path / "run") / "checkpoints" / "step_000004" / "learner"
    ranks = sorted(learner.glob("rng_rank*.json"))
    assert len(ranks) == 2
    for path in ranks:
        rank = int(path.stem.removeprefix("rng_rank"))
        state = read_rng_state(learner, rank)  # the ByteTensor, numpy's and Python's state tuples
        torch.save(state, learner / f"rng_rank{rank}.pt")  # what the old writer did with them
        path.unlink()
        old = read_rng_state(learner, rank)
        assert sorted(old) == sorted(state) == ["numpy", "python", "torch"]
        assert torch.equal(old["torch"], state["torch"]) and old["python"] == state["python"]
        draws = []
        for s in (old, state):  # generators set to them draw the same numbers
            t, n, p = torch.Generator(), np.random.RandomState(), random.Random()
            t.set_state(s["torch"]), n.set_state(s["numpy"]), p.setstate(s["python"])
            draws.append((torch.rand(4, generator=t).tolist(), n.random_sample(4).tolist(), p.random()))
        assert draws[0] == draws[1]


def test_run_name_is_a_plain_name(tmp_path):
    for bad in ("../x", "a/b", "..", ".", "/tmp/x", "x y"):
        res = cli("launch", RECIPE, f"run.name={bad}", "--dry-run")
        assert res.returncode == 2, res.stdout[-1000:]
        [line] = res.stderr.strip().splitlines()
        assert "key 'run.name'" in line and "plain folder name" in line and repr(bad) in line, line
    res = cli("launch", RECIPE, "run.name=tiny-arith_v2.1", "--dry-run")
    assert res.returncode == 0 and "# run dir: runs/tiny-arith_v2.1" in res.stdout, res.stderr
