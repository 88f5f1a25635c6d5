"""The launch files in cluster/, checked as far as this machine can check
them (the ray up YAMLs against Ray's own schema, the KubeRay manifests for
the fields KubeRay requires, the shell scripts with shellcheck), and a
multi-node run on one machine: a head and worker nodes started with `ray start`
on loopback (cluster/local-multinode.sh), each with its own custom
resources, and a real run placed across them.

- The learner ranks carry `learner.resources: {learner_node: 1}` (only the
  head has it), the two rollout workers `rollout.resources: {rollout_node: 1}`
  (only node 1 has it); where each actor landed is read from Ray's state API.
- The run finishes with rising reward; both workers confirmed every weight
  version (the fleet's acks) and no sample was staler than k.
- The run is resumed; mid-run a node 2 with rollout_node joins and node 1 is
  killed (SIGKILL of its process group, as a crash): both workers restart on
  node 2 and the run goes on. Then node 2 is killed too: no node has
  rollout_node left, so the run stops with one line naming the resource and
  the checkpoint `asymptote resume` continues from.

The driver is a subprocess (it joins the cluster with `ray.init(address)`,
which must not meet the session's `ray_local`); it records the fleet's acks
and the actors' nodes in a JSON file.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.rl.conftest import SMALL, last_step, rows

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "cluster" / "local-multinode.sh"
K = 2
N = 36  # steps of the first run: enough for the reward to rise above its noise (below)
RUN = SMALL + [f"run.steps={N}", "run.checkpoint_every=6", "eval.every=12", "run.wandb_mode=disabled",
               "learner.warmup_steps=2",
               f"pipeline.max_off_policy_steps={K}", "rollout.workers=2", "rollout.cpus_per_worker=1",
               "rollout.engine.threads_bind=nobind", "rollout.restart_wait_s=20",
               "rollout.resources={rollout_node: 1}", "learner.resources={learner_node: 1}"]

# The driver: the real controller, with the fleet captured so its acks (and
# the actors' nodes, from the state API, once placed) can be written out.
DRIVER = r"""
import json, sys
import ray
from ray.util.state import list_actors
import rl.fleet
from rl.cli import main

out = sys.argv[1]
seen = {"acks": None, "placement": None}
orig_init, orig_sync = rl.fleet.Fleet.__init__, rl.fleet.Fleet.sync

def init(self, *a, **kw):
    orig_init(self, *a, **kw)
    seen["fleet"] = self

def sync(self, *a, **kw):
    orig_sync(self, *a, **kw)
    seen["acks"] = self.acks
    nodes = {n["NodeID"]: sorted(k for k in n["Resources"] if k.endswith("_node")) for n in ray.nodes() if n["Alive"]}
    try:
        seen["placement"] = [[a.class_name, nodes.get(a.node_id, ["?"]), a.node_id] for a in
                             list_actors(address=ray.get_runtime_context().gcs_address,
                                         filters=[("state", "=", "ALIVE")], detail=True, limit=1000)
                             if a.class_name in ("RolloutWorker", "LearnerRank")]
    except Exception as err:  # the test fails on the missing placement, the run goes on
        seen["placement"] = [["error", [repr(err)[:300]], None]]
    json.dump({k: v for k, v in seen.items() if k != "fleet"}, open(out, "w"))

rl.fleet.Fleet.__init__, rl.fleet.Fleet.sync = init, sync
sys.exit(main(sys.argv[2:]))
"""


def _free_base_port() -> int:
    """A base port whose block (base..base+1199) looks free."""
    for base in range(27000, 40000, 1300):
        try:
            for p in (base, base + 1, base + 2, base + 10, base + 20, base + 30):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", p))
            return base
        except OSError:
            continue
    raise RuntimeError("no free port block")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    state = Path(f"/tmp/asy-mn-{os.getpid()}")  # short: Ray's socket paths live under it
    env = {**os.environ, "NUM_CPUS": "4", "BASE_PORT": str(_free_base_port()), "PYTHON": sys.executable,
           "RAY": str(Path(sys.executable).parent / "ray")}
    try:
        started = subprocess.run(["bash", str(SCRIPT), "start", str(state), '{"learner_node": 2}',
                                  '{"rollout_node": 2}'], env=env, timeout=1200, capture_output=True, text=True)
        assert started.returncode == 0, started.stderr[-3000:]
        yield state, env
    finally:
        subprocess.run(["bash", str(SCRIPT), "stop", str(state)], env=env, timeout=300)
        subprocess.run(["rm", "-rf", str(state)])


def _drive(args: list[str], out: Path, log: Path, env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", DRIVER, str(out), *args], cwd=ROOT,
                            env={**env, "WANDB_MODE": "disabled"}, stdout=log.open("w"), stderr=subprocess.STDOUT)


def _wait(proc, what, predicate, log: Path, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"{what}: driver {proc.returncode}\n{log.read_text()[-3000:]}")
        time.sleep(0.5)


@pytest.mark.slow
@pytest.mark.full
def test_run_across_two_nodes_then_lose_rollout_nodes(cluster, tmp_path):
    state, env = cluster
    address = f"127.0.0.1:{env['BASE_PORT']}"
    run_dir, out = tmp_path / "run", tmp_path / "driver.json"

    # 1. a real short run across the head (learner) and node 1 (two rollout workers)
    proc = _drive(["launch", "recipes/tiny-arith.yaml", "--run-dir", str(run_dir), "--address", address, *RUN],
                  out, tmp_path / "1.log", env)
    assert proc.wait(timeout=900) == 0, (tmp_path / "1.log").read_text()[-3000:]
    seen = json.loads(out.read_text())
    where = {}
    for cls, keys, _ in seen["placement"]:
        where.setdefault(cls, []).append(keys)
    node1 = {node for cls, _, node in seen["placement"] if cls == "RolloutWorker"}
    assert where["LearnerRank"] == [["learner_node"]] * 2  # both ranks on the head
    assert where["RolloutWorker"] == [["rollout_node"]] * 2  # both workers on node 1
    steps = [r for r in rows(run_dir) if r["step"] > 0]
    assert [r["step"] for r in steps] == list(range(1, N + 1))
    # every weight version reached both workers (each confirmed it)
    assert all(set(range(1, N + 1)) <= set(acks) for acks in seen["acks"]), seen["acks"]
    assert max(r["pipeline/staleness_max"] for r in steps) <= K
    # Rising: steps 25-36 against 1-12. One step's reward scatters by ~0.08
    # (step to step, 12 real runs of the zoo), so a 12-step mean by ~0.023; on
    # those runs the default recipe's rise between the two windows was
    # 0.07-0.14 (4 runs), 0.02-0.20 over every recipe. 4 steps against 4 (12
    # steps in all) rose by less than their noise and failed.
    first = sum(r["rollout/reward_mean"] for r in steps[:12]) / 12
    last = sum(r["rollout/reward_mean"] for r in steps[-12:]) / 12
    assert last > first, [round(r["rollout/reward_mean"], 3) for r in steps]

    # 2. resumed for more steps; node 2 joins, node 1 is lost: both workers restart on node 2
    proc = _drive(["resume", str(run_dir), f"run.steps={N + 48}", "--address", address], out, tmp_path / "2.log", env)
    _wait(proc, f"step {N + 2}", lambda: last_step(run_dir) >= N + 2, tmp_path / "2.log")
    subprocess.run(["bash", str(SCRIPT), "add", str(state), '{"rollout_node": 2}'], env=env, check=True,
                   timeout=300, capture_output=True)
    subprocess.run(["bash", str(SCRIPT), "kill", str(state), "1"], env=env, check=True, timeout=120)
    lost_at = last_step(run_dir)
    _wait(proc, "both workers restarted",
          lambda: any(r.get("fault/rollout_restarts", 0) >= 2 for r in rows(run_dir)), tmp_path / "2.log")
    _wait(proc, "two more steps", lambda: last_step(run_dir) >= lost_at + 3, tmp_path / "2.log")
    seen = json.loads(out.read_text())
    moved = [(keys, node) for cls, keys, node in seen["placement"] if cls == "RolloutWorker"]
    assert len(moved) == 2 and all(keys == ["rollout_node"] and node not in node1 for keys, node in moved), moved
    after = [r for r in rows(run_dir) if r["step"] > lost_at]
    assert max(r["pipeline/staleness_max"] for r in after) <= K
    v = after[-1]["step"]  # the newest version reached both new workers
    assert all(v in acks for acks in seen["acks"]), (v, seen["acks"])

    # 3. node 2 lost too: no node has rollout_node; one line, exit 1, a checkpoint to resume from
    subprocess.run(["bash", str(SCRIPT), "kill", str(state), "2"], env=env, check=True, timeout=120)
    code = proc.wait(timeout=300)
    text = (tmp_path / "2.log").read_text()
    assert code == 1, text[-3000:]
    line = [ln for ln in text.splitlines() if ln.startswith("asymptote: rollout worker")]
    assert len(line) == 1 and "rollout_node" in line[0] and "could not be restarted" in line[0], text[-3000:]
    assert "Traceback" not in text
    ckpt = int(line[0].split("checkpoint of step ")[1].split("`")[0].split()[0])
    assert ckpt >= N and (run_dir / "checkpoints" / f"step_{ckpt:06d}" / "manifest.json").is_file()


# ---- the launch files -------------------------------------------------------------------------

def _ray_schema() -> dict:
    import ray

    return json.loads((Path(ray.__file__).parent / "autoscaler" / "ray-schema.json").read_text())


@pytest.mark.parametrize("name", ["ray-up-aws.yaml", "ray-up-gcp.yaml"])
def test_ray_up_yamls_pass_rays_schema(name):
    import jsonschema
    import yaml

    config = yaml.safe_load((ROOT / "cluster" / name).read_text())
    jsonschema.validate(config, _ray_schema())
    types = config["available_node_types"]
    assert types["rollout"]["resources"]["rollout_node"] == types["rollout"]["resources"]["GPU"] == 8
    assert types["learner"]["resources"]["learner_node"] == types["learner"]["resources"]["GPU"] == 8
    assert any("pip install" in c and "asymptote" in c for c in config["setup_commands"])
    # the schema is strict: a misspelt key is refused, so passing it means something
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**config, "setup_comands": []}, _ray_schema())


def _ray_cluster_specs(path: Path) -> list[dict]:
    import yaml

    docs = list(yaml.safe_load_all(path.read_text()))
    specs = [d["spec"] for d in docs if d["kind"] == "RayCluster"]
    specs += [d["spec"]["rayClusterSpec"] for d in docs if d["kind"] == "RayJob"]
    for d in docs:
        assert d["metadata"]["name"] and d["apiVersion"] in ("v1", "ray.io/v1"), d["kind"]
    return specs


@pytest.mark.parametrize("name", ["raycluster.yaml", "rayjob.yaml"])
def test_kuberay_manifests_carry_what_kuberay_requires(name):
    import yaml

    path = ROOT / "cluster" / "kuberay" / name
    specs = _ray_cluster_specs(path)
    assert len(specs) == 1
    spec = specs[0]
    pods = [spec["headGroupSpec"]["template"]["spec"]] + [g["template"]["spec"] for g in spec["workerGroupSpecs"]]
    assert isinstance(spec["headGroupSpec"]["rayStartParams"], dict)
    for pod in pods:  # every container named, with an image; every mount backed by a volume
        assert pod["containers"] and all(c["name"] and c["image"] for c in pod["containers"])
        volumes = {v["name"] for v in pod.get("volumes", [])}
        mounts = {m["name"]: m["mountPath"] for c in pod["containers"] for m in c.get("volumeMounts", [])}
        assert set(mounts) <= volumes and mounts["runs"] == "/shared"
        claim = next(v for v in pod["volumes"] if v["name"] == "runs")["persistentVolumeClaim"]["claimName"]
        assert claim == "asymptote-runs"
    groups = {g["groupName"]: g for g in spec["workerGroupSpecs"]}
    for group, key in (("rollout", "rollout_node"), ("learner", "learner_node")):
        g = groups[group]
        assert g["minReplicas"] <= g["replicas"] <= g["maxReplicas"]
        assert isinstance(g["rayStartParams"], dict)
        # KubeRay passes rayStartParams.resources to `ray start --resources` as a quoted JSON string
        assert json.loads(json.loads(g["rayStartParams"]["resources"])) == {key: 8}
        limits = g["template"]["spec"]["containers"][0]["resources"]["limits"]
        assert limits["nvidia.com/gpu"] == "8"
    docs = list(yaml.safe_load_all(path.read_text()))
    if name == "rayjob.yaml":
        job = docs[0]["spec"]
        assert job["entrypoint"].startswith("asymptote launch ") and "--run-dir /shared/" in job["entrypoint"]
        assert job["shutdownAfterJobFinishes"] is True
    else:
        pvc = next(d for d in docs if d["kind"] == "PersistentVolumeClaim")
        assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]


@pytest.mark.parametrize("script", ["slurm/asymptote.sbatch", "local-multinode.sh"])
def test_shell_scripts_pass_shellcheck(script):
    import shutil

    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck not installed (apt-get install shellcheck)")
    out = subprocess.run(["shellcheck", "--severity=info", str(ROOT / "cluster" / script)],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout
