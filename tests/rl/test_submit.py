"""`asymptote submit / jobs / stop` against a real Ray head with its
dashboard, started with `ray start` (cluster/local-multinode.sh, one node):
the tiny recipe runs to completion as a Ray Job and its run directory holds
the metrics; bad input is one line each."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.rl.conftest import SMALL
from tests.rl.test_cluster import SCRIPT, _free_base_port

ROOT = Path(__file__).resolve().parents[2]


def asymptote(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rl.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "WANDB_MODE": "disabled"})


@pytest.fixture(scope="module")
def head():
    state = Path(f"/tmp/asy-job-{os.getpid()}")
    base = _free_base_port()
    env = {**os.environ, "NUM_CPUS": "4", "BASE_PORT": str(base), "PYTHON": sys.executable,
           "RAY": str(Path(sys.executable).parent / "ray"), "STOP_GRACE_S": "3"}  # a test cluster: no grace
    try:
        started = subprocess.run(["bash", str(SCRIPT), "start", str(state)], env=env, timeout=1200,
                                 capture_output=True, text=True)
        assert started.returncode == 0, started.stderr[-3000:]
        yield base
    finally:
        subprocess.run(["bash", str(SCRIPT), "stop", str(state)], env=env, timeout=300)
        subprocess.run(["rm", "-rf", str(state)])


@pytest.mark.slow
def test_submit_runs_the_tiny_recipe_as_a_ray_job(head, tmp_path):
    dashboard = f"http://127.0.0.1:{head + 1}"
    run_dir = tmp_path / "run"
    done = asymptote("submit", "recipes/tiny-arith.yaml", *SMALL, "run.steps=2", "eval.every=2",
                     "run.wandb_mode=disabled", "--run-dir", str(run_dir), "--address", dashboard)
    assert done.returncode == 0, done.stderr[-3000:]
    job = done.stderr.split("asymptote: submitted ")[1].split(":")[0]
    assert f"asymptote: {job} succeeded; run dir {run_dir}" in done.stderr
    # the job's driver wrote the run directory: every step's metrics, the summary, the checkpoint
    steps = [json.loads(line)["step"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert steps == [0, 1, 2]
    assert json.loads((run_dir / "summary.json").read_text())["steps"] == 2
    assert (run_dir / "checkpoints" / "step_000002" / "manifest.json").is_file()
    listed = asymptote("jobs", "--address", dashboard)
    assert listed.returncode == 0
    assert any(ln.startswith(job) and "SUCCEEDED" in ln and str(run_dir) in ln for ln in listed.stdout.splitlines())
    # stopping a finished job says so; an unknown id is one line
    assert "had already finished" in asymptote("stop", job, "--address", dashboard).stderr
    bad = asymptote("stop", "raysubmit_nosuchjob", "--address", dashboard)
    assert bad.returncode == 2 and bad.stderr == f"asymptote: error: no job raysubmit_nosuchjob on {dashboard} " \
                                                 "(`asymptote jobs` lists them)\n"


@pytest.mark.slow
def test_bad_addresses_are_one_line(head):
    cases = [
        (f"http://127.0.0.1:{head}", "no Ray dashboard answers at"),  # the GCS port, not the dashboard
        ("http://127.0.0.1:1", "cannot reach the Ray dashboard (a head started with --include-dashboard true)"),
        (f"127.0.0.1:{head}", "Ray Jobs need the head's dashboard, http://HEAD:8265"),
    ]
    for address, says in cases:
        out = asymptote("jobs", "--address", address, timeout=120)
        assert out.returncode == 2 and out.stderr.count("\n") == 1 and says in out.stderr, (address, out.stderr)


def test_a_recipe_outside_the_working_dir_is_refused_before_upload(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text((ROOT / "recipes" / "tiny-arith.yaml").read_text())
    out = asymptote("submit", str(recipe), "--address", "http://127.0.0.1:1", timeout=120)
    assert out.returncode == 2 and "is outside the working dir" in out.stderr and out.stderr.count("\n") == 1
