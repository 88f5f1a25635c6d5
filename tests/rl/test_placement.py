"""The per-node plan (rl/placement.py) and its one-line refusals, through the
real `asymptote launch --dry-run` and against the real local Ray cluster."""
from __future__ import annotations

import pytest

from rl.cli import main
from core.errors import UserError
from rl.placement import Node, place, plan_resources
from rl.recipe import load_recipe

SCALERL = ["launch", "recipes/gpu/scalerl.yaml", "rollout.workers=64", "learner.ranks=16", "--dry-run"]


def _plan_lines(out: str) -> dict[str, str]:
    """'# node-3 rollout-worker 8..15 [...]' -> {'node-3': 'rollout-worker 8..15'}"""
    lines = []
    for ln in out.split("# per-node plan")[1].splitlines()[1:]:
        if not ln.startswith("#  "):
            break  # the memory plan follows
        lines.append(ln)
    return {ln[1:].split()[0]: ln[1:].split("[")[0].split(None, 1)[1].strip() for ln in lines}


def test_scalerl_64_plus_16_gpus_on_8_gpu_nodes(capsys):
    assert main(SCALERL + ["--nodes", "10", "--cpus-per-node", "96"]) == 0
    plan = _plan_lines(capsys.readouterr().out)
    # learner ranks packed 8 per node first, then 8 engines per node; the hub's 8 replicas (2 CPU) fit beside
    assert plan == {"node-0": "learner-rank 0..7, reward-hub 0..7", "node-1": "learner-rank 8..15",
                    **{f"node-{n}": f"rollout-worker {8 * (n - 2)}..{8 * (n - 2) + 7}" for n in range(2, 10)}}


def test_tensor_parallel_engines_stay_on_one_node(capsys):
    # 16 engines of 4 GPUs: two per 8-GPU node, never split
    assert main(SCALERL[:2] + ["rollout.workers=16", "rollout.gpus_per_worker=4", "learner.ranks=16",
                               "--dry-run", "--nodes", "10"]) == 0
    plan = _plan_lines(capsys.readouterr().out)
    assert [plan[f"node-{n}"] for n in range(2, 10)] == [f"rollout-worker {2 * k}..{2 * k + 1}" for k in range(8)]


@pytest.mark.parametrize("extra, reason", [
    (["--nodes", "9"], "the recipe needs 80 GPU, the cluster has 72"),
    (["--nodes", "10", "--cpus-per-node", "64"], "the recipe needs 656 CPU, the cluster has 640"),
    (["rollout.workers=4", "rollout.gpus_per_worker=16", "--nodes", "30"], "one rollout-worker needs 8 CPU, 16 GPU on one node and no node has 16 GPU"),
    (["learner.resources={learner_node: 1}", "--nodes", "10"], "learner-rank needs custom resource 'learner_node' and no node has it"),
])
def test_plans_that_cannot_fit_are_one_line(extra, reason, capsys):
    assert main(SCALERL + extra) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and reason in err, err


def test_fragmented_nodes_say_what_is_left():
    recipe = load_recipe("recipes/gpu/scalerl.yaml", ["rollout.workers=2", "rollout.gpus_per_worker=3",
                                                      "learner.ranks=2", "rewards.replicas=1"])
    # 8 GPUs in total, enough in sum, but after the ranks no node has 3 left for the second engine
    nodes = [Node("a", {"CPU": 64, "GPU": 4}), Node("b", {"CPU": 64, "GPU": 4})]
    with pytest.raises(UserError, match="no node has 8 CPU, 3 GPU left for rollout-worker"):
        plan_resources(recipe).nodes_plan(nodes)


def test_bundles_carry_custom_resources_in_the_controllers_order():
    recipe = load_recipe("recipes/tiny-arith.yaml", ["rollout.workers=2", "rollout.resources={rollout_node: 1}",
                                                     "learner.resources={learner_node: 1}"])
    plan = plan_resources(recipe)
    # bundle i is worker i, bundle workers + r is rank r (rl/fleet.py, rl/learner/group.py)
    assert plan.bundles == [{"CPU": 1.0, "rollout_node": 1.0}] * 2 + [{"CPU": 0.5, "learner_node": 1.0}] * 2


def test_the_live_cluster_refuses_a_plan_at_once(ray_local):
    # ray_local has 4 CPUs and no custom resources: both refusals come before any bundle is requested
    recipe = load_recipe("recipes/tiny-arith.yaml", ["rollout.resources={rollout_node: 1}"])
    with pytest.raises(UserError, match="rollout-worker needs custom resource 'rollout_node' and no node has it"):
        place(plan_resources(recipe))
    recipe = load_recipe("recipes/tiny-arith.yaml", ["learner.ranks=3", "learner.cpus_per_rank=2"])
    with pytest.raises(UserError, match="the recipe needs 7.5 CPU, the cluster has 4"):
        place(plan_resources(recipe))
    assert ray_local.util.placement_group_table() == {} or all(
        pg["state"] != "PENDING" for pg in ray_local.util.placement_group_table().values())


_BAD_ADDRESSES = [
    ("127.0.0.1:1", "cannot reach the Ray cluster at 127.0.0.1:1 (127.0.0.1:1: Connection refused)"),
    ("ray://127.0.0.1:1", "cannot reach the Ray cluster at ray://127.0.0.1:1"),
    ("http://127.0.0.1:8265", "is a dashboard (Ray Jobs) address"),
    ("127.0.0.1:notaport", "the port is not a number"),
]
# each address through the command's own entry point, one after another in one fresh process
_LAUNCH_EACH = """
import contextlib, io, json, sys
from rl.cli import main
out = []
for address in sys.argv[2:]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            code = main(["launch", "recipes/tiny-arith.yaml", "--run-dir", sys.argv[1], "--address", address])
        except SystemExit as e:
            code = e.code
    out.append([code, err.getvalue()])
print(json.dumps(out))
"""


def test_launch_with_a_bad_address_is_one_line(tmp_path):
    # a fresh process: in this one the session's Ray is already up and launch would reuse it
    import json
    import os
    import subprocess
    import sys

    p = subprocess.run([sys.executable, "-c", _LAUNCH_EACH, str(tmp_path / "r"), *[a for a, _ in _BAD_ADDRESSES]],
                       capture_output=True, text=True, timeout=300, env={**os.environ, "WANDB_MODE": "disabled"})
    assert p.returncode == 0, p.stderr[-2000:]
    for (address, says), (code, err) in zip(_BAD_ADDRESSES, json.loads(p.stdout.splitlines()[-1]), strict=True):
        assert code == 2 and err.count("\n") == 1 and says in err, (address, err)
