"""The run lifecycle on real runs: SIGKILL at two points (one mid-checkpoint),
a damaged checkpoint, and resume, the data frontier counted by prompt id, deterministic resume,
faults of every actor kind during a run, and the CLI journey (resume,
extrapolate, compare) on what the real controller wrote.

The runs themselves are made once per session in tests/rl/conftest.py.
"""
from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.rl.conftest import KILLED, RECIPE, ROOT, SMALL, last_step, rows

pytestmark = pytest.mark.slow


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rl.cli", *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)


# ---- SIGKILL x2 and resume ----------------------------------------------------------

def test_killed_run_logs_every_step_exactly_once(killed_run):
    r = rows(killed_run.run_dir)
    assert [x["step"] for x in r] == list(range(13))
    # two resumes, each from the newest checkpoint that was whole: step 4, then step 2 (the step-6
    # checkpoint was killed mid-write, the step-4 one truncated on disk)
    events = [json.loads(line) for line in (killed_run.run_dir / "events.jsonl").read_text().splitlines()]
    assert [(e["event"], e["step"]) for e in events] == [("resume", 4), ("resume", 2)]
    assert r[-1]["fault/resumes"] == 2
    # the ledger continues across every resume: compute only grows
    dev = [x["compute/device_seconds"] for x in r]
    assert all(b > a for a, b in zip(dev[1:], dev[2:]))
    assert r[-1]["policy_version"] == 12


def test_every_sampled_prompt_reached_one_training_step(killed_run):
    from rl.data.config import DataConfig
    from rl.data.datasets import load_splits
    from rl.data.sampler import PromptSampler
    from rl.recipe import load_recipe

    r = [x for x in rows(killed_run.run_dir) if x["step"] > 0]
    uids = [u for x in r for u in x["data/prompt_uids"]]
    assert len(uids) == len(set(uids)) == 12 * 16  # never twice
    drawn = r[-1]["data/prompts_drawn"]
    assert drawn == 12 * 16  # nothing was drawn that did not reach a step
    recipe = load_recipe(RECIPE, KILLED)
    train, _ = load_splits(DataConfig(**recipe.data.model_dump()))
    expected = {p["uid"] for p in PromptSampler(train, seed=recipe.run.seed).next_batch(drawn)}
    assert set(uids) == expected  # never skipped: exactly the prompts an unbroken run draws
    assert sum(x["data/prompts_trained"] + x["data/prompts_filtered"] for x in r) == len(uids)


def test_resume_says_what_it_skipped(killed_run):
    out = killed_run.outputs
    assert killed_run.codes["launch-again"] == 2
    assert "holds an unfinished run" in out["launch-again"] and "asymptote resume" in out["launch-again"]
    assert len(out["launch-again"].strip().splitlines()) == 1
    assert "step_000006 skipped: its write did not finish" in out["3"]
    assert f"skipped: {killed_run.truncated.split('/', 1)[1]} has" in out["3"]
    assert "Traceback" not in "".join(out.values())


def test_wandb_resumes_the_same_run(killed_run):
    run_id = (killed_run.run_dir / "wandb_run_id").read_text().strip()
    runs = list((killed_run.run_dir / "wandb").glob("offline-run-*"))
    assert len(runs) == 3 and all(p.name.endswith(run_id) for p in runs)


def test_resume_refuses_overrides_that_corrupt_the_run(killed_run):
    d = killed_run.run_dir
    for override, says in (("algo.loss=grpo", "'algo.loss' changed"), ("learner.ranks=1", "world size"),
                           ("model.base=other", "'model.base' changed")):
        res = cli("resume", d, override)
        assert res.returncode == 2, res.stderr
        assert says in res.stderr and len(res.stderr.strip().splitlines()) == 1, res.stderr
    # a finished run relaunched with its own recipe (as its resumes left it) only reports itself
    res = cli("launch", RECIPE, "--run-dir", d, *KILLED, "run.async_checkpoint=true")
    assert res.returncode == 0 and "done: 12 steps" in res.stderr, res.stderr
    res = cli("resume", d)
    assert res.returncode == 0 and "done: 12 steps" in res.stderr, res.stderr


# ---- monitor verbs on the real run ------------------------------------------------------

def test_extrapolate_and_compare_read_what_launch_wrote(killed_run, det_runs, tmp_path):
    res = cli("extrapolate", killed_run.run_dir, "--json", "--bootstrap", "0")
    assert res.returncode == 0, res.stderr
    fit = json.loads(res.stdout)
    evals = [x for x in rows(killed_run.run_dir) if "eval/pass_rate" in x]
    assert [x["step"] for x in evals] == [0, 2, 4, 6, 8, 10, 12]
    assert fit["x"] == "compute/device_hours" and fit["n_points"] + fit["n_burn_in"] == len(evals) - 1
    # R0 is the step-0 evaluation fitted with its own sampling noise (per-prompt counts in evals.jsonl)
    first = json.loads((killed_run.run_dir / "evals.jsonl").read_text().splitlines()[0])
    rates = [c / first["k"] for c in first["correct"]]
    se = math.sqrt(sum(r * (1 - r) for r in rates) / (first["k"] - 1)) / len(rates)
    assert first["step"] == 0 and abs(fit["R0"] - evals[0]["eval/pass_rate"]) <= 3 * se
    # the deterministic runs fit on tokens: comparing axes that differ is refused
    res = cli("compare", killed_run.run_dir, det_runs.whole, "--plot", tmp_path / "c.png")
    assert res.returncode == 2 and "x columns differ" in res.stderr and len(res.stderr.strip().splitlines()) == 1
    res = cli("compare", killed_run.run_dir, det_runs.whole, "--x", "compute/tokens", "--json",
              "--bootstrap", "0", "--burn-in", "0", "--plot", tmp_path / "c.png")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert [r["run"] for r in out["runs"]] == ["run", "whole"] and (tmp_path / "c.png").is_file()


# ---- deterministic mode -------------------------------------------------------------------

def test_deterministic_resume_equals_the_uninterrupted_run(det_runs):
    assert det_runs.codes["sigterm"] == 1, det_runs.outputs["sigterm"][-2000:]
    assert "stopped by SIGTERM after step" in det_runs.outputs["sigterm"]
    whole, resumed = rows(det_runs.whole), rows(det_runs.resumed)
    assert [x["step"] for x in resumed] == [x["step"] for x in whole] == list(range(7))
    for key in ("rollout/reward_mean", "train/loss", "train/grad_norm", "eval/pass_rate", "compute/tokens"):
        assert [x.get(key) for x in resumed] == [x.get(key) for x in whole], key  # bit for bit
    # the fit after the resume is the uninterrupted run's fit
    fa = json.loads((det_runs.whole / "fit.json").read_text())
    fb = json.loads((det_runs.resumed / "fit.json").read_text())
    assert fa["A"] == fb["A"] and fa["B"] == fb["B"] and fa["step"] == fb["step"] == 6


def test_a_background_checkpoint_holds_its_own_steps_state(det_runs, tmp_path):
    """The interrupted run wrote step 2's checkpoint in the background while
    step 3 trained; it holds step 2's model and optimizer, bit for bit the
    uninterrupted run's, which the learner waited for."""
    import torch
    from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

    def state(run_dir: Path, name: str) -> dict:
        dcp_to_torch_save(run_dir / "checkpoints" / "step_000002" / "learner", tmp_path / name)
        return torch.load(tmp_path / name, weights_only=False)

    assert "async_checkpoint: true" in (det_runs.resumed / "config.yaml").read_text()
    waited, background = state(det_runs.whole, "a.pt"), state(det_runs.resumed, "b.pt")

    def flat(d: dict, prefix: str = "") -> dict:
        out = {}
        for k, v in d.items():
            out.update(flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
        return out

    a, b = flat(waited), flat(background)
    assert a.keys() == b.keys() and any(k.startswith("optim.state.") for k in a)
    differ = [k for k in a if isinstance(a[k], torch.Tensor) and not torch.equal(a[k], b[k])]
    assert not differ, differ[:5]
    assert json.loads((det_runs.resumed / "checkpoints" / "step_000002" / "learner" / "learner.json").read_text())[
        "version"] == 2


# ---- faults during a run -------------------------------------------------------------------

def _kill_actor(handle) -> int:
    """SIGKILL an actor's process, found by its actor id through Ray's state API."""
    import ray
    from ray.util.state import list_actors

    actor_id = handle._actor_id.hex()
    [info] = list_actors(address=ray.get_runtime_context().gcs_address, filters=[("actor_id", "=", actor_id)],
                         detail=True)
    os.kill(info.pid, signal.SIGKILL)
    return info.pid


def _killer(run_dir, plan, ctrl):
    """Kill plan[i][1](ctrl) once step plan[i][0] is logged, in order."""
    killed = []

    def go():
        for step, pick in plan:
            while last_step(run_dir) < step:
                time.sleep(0.1)
            killed.append(_kill_actor(pick(ctrl)))

    t = threading.Thread(target=go, daemon=True)
    t.start()
    return t, killed


def test_actor_deaths_are_recovered_and_a_learner_death_stops_resumably(ray_local, tmp_path):
    from rl.checkpoint import CheckpointStore
    from rl.controller import Controller
    from core.errors import RunStopped
    from rl.recipe import load_recipe

    d = tmp_path / "faults"
    # a rollout worker and a hub replica die and are replaced; then a learner rank dies: the run stops
    # with one line and a checkpoint to resume from
    recipe = load_recipe(RECIPE, SMALL + ["run.steps=10", "run.checkpoint_every=3", "eval.every=4",
                                          "pipeline.max_off_policy_steps=1", "run.wandb_mode=disabled"])
    ctrl = Controller(recipe, d)
    t, killed = _killer(d, [(2, lambda c: c.ctx.fleet.workers[0]), (4, lambda c: c.ctx.hub.replicas[0]),
                            (7, lambda c: c.ctx.learner.actors[1])], ctrl)
    with pytest.raises(RunStopped) as err:
        ctrl.run()
    t.join(timeout=5)
    assert len(killed) == 3
    r = [x for x in rows(d) if x["step"] <= 7]
    assert [x["step"] for x in r] == list(range(8))
    assert r[-1]["fault/rollout_restarts"] == 1 and r[-1]["fault/hub_restarts"] == 1
    assert max(x["pipeline/staleness_max"] for x in r[1:]) <= 1
    assert all(x["rollout/samples"] == 16 * 8 for x in r[1:])  # regenerated, not lost
    msg = str(err.value)
    assert "learner rank 1 died" in msg and f"asymptote resume {d}" in msg and "\n" not in msg
    assert CheckpointStore(d).latest().step == 6 and "step 6" in msg
    # with run.max_restarts the next learner death restarts every actor from the checkpoint
    again = load_recipe(d / "config.yaml", ["run.max_restarts=1"])
    ctrl = Controller(again, d)
    t, killed = _killer(d, [(9, lambda c: c.ctx.learner.actors[0])], ctrl)
    summary = ctrl.run()
    t.join(timeout=5)
    assert len(killed) == 1
    r = rows(d)
    assert [x["step"] for x in r] == list(range(11)) and summary["steps"] == 10
    events = [json.loads(line)["event"] for line in (d / "events.jsonl").read_text().splitlines()]
    assert events == ["resume", "learner_restart"]
    assert r[-1]["fault/resumes"] == 1 and r[-1]["fault/learner_restarts"] == 1


def test_an_engine_error_is_retried_on_a_new_worker_then_stops_resumably(ray_local, tmp_path, caplog, monkeypatch):
    """A job part that raises inside vLLM (here its own input check: a token id
    outside the vocabulary, put by the driver into the job step 5 trains on) gets one more
    try on a replacement worker; raising again, it stops the run with one line
    naming the worker and the error, with a checkpoint to resume from."""
    from rl.checkpoint import CheckpointStore
    from rl.controller import Controller
    from core.errors import RunStopped
    from rl.fleet import Fleet
    from rl.recipe import load_recipe

    d = tmp_path / "engine-error"
    submit = Fleet.submit

    def submit_a_bad_token(fleet, job_id, step, prompts, prompt_ids, *args, **kwargs):
        if step == 4 and job_id.startswith("train"):
            prompt_ids = [list(p) for p in prompt_ids]
            prompt_ids[0][-1] = 10**6  # the engine rejects it, as it would a tokenizer/model vocabulary mismatch
        return submit(fleet, job_id, step, prompts, prompt_ids, *args, **kwargs)

    monkeypatch.setattr(Fleet, "submit", submit_a_bad_token)
    recipe = load_recipe(RECIPE, SMALL + ["run.steps=5", "run.checkpoint_every=2", "eval.every=2",
                                          "pipeline.max_off_policy_steps=1", "run.wandb_mode=disabled"])
    with pytest.raises(RunStopped) as err:
        Controller(recipe, d).run()
    msg, log = str(err.value), caplog.text
    assert "\n" not in msg and "rollout worker 0 failed twice on the same job" in msg, msg
    assert "out of vocabulary" in msg and "at step 5" in msg and f"asymptote resume {d}" in msg, msg
    # the first failure was logged with the engine's traceback, and the worker replaced once
    assert log.count("starting a replacement and running it again") == 1 and "rollout/worker.py\", line" in log
    assert log.count("rollout worker 0 raised; starting a replacement") == 1
    assert [x["step"] for x in rows(d)] == list(range(5))  # nothing lost, nothing half-written
    # the checkpoint a resume starts from (a resume after a stop: the learner death's test above)
    assert CheckpointStore(d).latest().step == 4 and "checkpoint of step 4" in msg


def test_retention_keeps_the_last_k_and_the_best(finished_run, tmp_path):
    import shutil

    from rl.checkpoint import CheckpointStore

    real = CheckpointStore(finished_run).latest()
    store = CheckpointStore(tmp_path, keep=2)
    for step, score in ((3, 0.5), (6, 0.9), (9, None), (12, 0.6), (15, 0.4)):
        tmp = store.begin(step)
        shutil.copytree(real.learner, tmp / "learner")
        shutil.copy(real.run_state, tmp / "run_state.json")
        store.commit(tmp, step, score)
    assert [p.name for p in store.all()] == ["step_000006", "step_000012", "step_000015"]
    assert store.latest().step == 15 and store.load(store.all()[0]).eval == 0.9


@pytest.fixture
def small_disk(tmp_path):
    """A real 12 MiB filesystem (tmpfs): room for one checkpoint of the tiny
    model (8.3 MB) but not for a second beside it."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=12m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {res.stderr.strip()}")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_disk_full_and_a_peer_dead_at_broadcast(ray_local, tmp_path, small_disk, capfd, monkeypatch):
    import psutil

    from rl.checkpoint import CheckpointStore
    from rl.controller import Controller
    from rl.fleet import Fleet
    from rl.recipe import load_recipe

    d = tmp_path / "full"
    d.mkdir()
    (d / "checkpoints").symlink_to(small_disk)  # checkpoints on their own (small) volume
    # the rollout worker is SIGKILLed just before the learner broadcasts version 3 to it
    push, killed = Fleet._push, []

    def push_to_a_dead_peer(fleet, targets):
        if fleet.version == 3 and not killed:
            pid = _kill_actor(fleet.workers[0])
            psutil.Process(pid).wait(timeout=30) if psutil.pid_exists(pid) else None
            killed.append(pid)
        return push(fleet, targets)

    monkeypatch.setattr(Fleet, "_push", push_to_a_dead_peer)
    recipe = load_recipe(RECIPE, SMALL + ["run.steps=5", "run.checkpoint_every=2", "eval.every=2",
                                          "pipeline.weight_transport=broadcast", "run.wandb_mode=disabled"])
    summary = Controller(recipe, d).run()
    err = capfd.readouterr().err
    assert killed and summary["steps"] == 5
    r = rows(d)
    assert [x["step"] for x in r] == list(range(6))
    # the broadcast to the dead peer failed at once, the group was rebuilt with a new worker,
    # and that worker got the weights: engine and learner agree on the probe batch
    assert r[3]["fault/rollout_restarts"] == 1
    assert max(x["mismatch/probe_max_abs_logprob"] for x in r[1:]) < 1e-3
    # step 2's checkpoint fit; those of steps 4 and 5 did not: the run went on, said so and
    # counted them, and step 2's stays valid
    assert "checkpoint of step 4 not written" in err and "step_000002 stays valid" in err, err[-2000:]
    assert r[5]["fault/checkpoint_failures"] == 1 and summary["fault/checkpoint_failures"] == 2
    assert CheckpointStore(d).latest().step == 2
    assert not list(small_disk.glob(".partial-*"))  # the half-written one is gone
