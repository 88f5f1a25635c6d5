"""The resource plan: which actors a recipe needs, on which nodes they land,
and the placement group that holds them.

Every rollout worker and learner rank gets one bundle of one placement group
(the controller hands bundle i to worker i and bundle `workers + r` to rank
r). A bundle always lives on one node, so a rollout engine that holds
`rollout.gpus_per_worker = 4` GPUs (tensor parallel 4) is one bundle of 4 GPUs
and its shards never straddle nodes; a learner rank is a bundle of one GPU,
and the ranks come last and in order so that PACK fills a node with learner
ranks before it opens the next one. Reward-hub replicas place themselves
(rewards/hub.py) but need room too, so the per-node plan counts them, each in
its own bundle. A recipe's custom resources (`rollout.resources`,
`learner.resources`, e.g. `{rollout_node: 1}`) go into its role's bundles:
that is how a role is tied to a node type (the node started with
`ray start --resources '{"rollout_node": 8}'`).

Departure from the obvious: one placement group with PACK, not one
STRICT_PACK group per node. The controller, the fleet and the learner group
address actors by bundle index in a single group, and a single group is what
lets Ray move a lost node's bundles to another node by itself (a bundle
pinned to a node id could never move). What STRICT_PACK would guarantee is
checked before anything starts instead: `nodes_plan` places every bundle on
the cluster's nodes first-fit (learner ranks first, packed node by node) and
refuses, in one line naming the resource, a plan that cannot fit.
`--dry-run` prints that per-node plan.
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field

from core.errors import UserError

PLACE_TIMEOUT_S = 120.0  # how long `place` waits for Ray to reserve the bundles


@dataclass
class Role:
    name: str
    count: int
    cpus: float
    gpus: float
    resources: dict[str, float] = field(default_factory=dict)
    in_group: bool = True  # False: the actor places itself (reward-hub replicas)

    def bundle(self) -> dict[str, float]:
        b = {"CPU": self.cpus, **self.resources}
        if self.gpus:
            b["GPU"] = self.gpus
        return b


@dataclass
class Node:
    """A node's total resources ('CPU', 'GPU' and custom keys)."""

    name: str
    resources: dict[str, float]


@dataclass
class NodePlan:
    nodes: list[Node]
    units: dict[str, list[str]]  # node name -> the units placed on it ("learner-rank 3", ...)
    used: dict[str, dict[str, float]]  # node name -> resources used

    def describe(self) -> str:
        lines = [f"per-node plan ({len(self.nodes)} nodes):"]
        for node in self.nodes:
            units = self.units[node.name]
            if not units:
                lines.append(f"  {node.name:<8} (idle)")
                continue
            used = self.used[node.name]
            have = ", ".join(f"{_fmt(used.get(k, 0))}/{_fmt(v)} {k}" for k, v in sorted(node.resources.items())
                             if k in ("CPU", "GPU") or used.get(k))
            lines.append(f"  {node.name:<8} {_summarise(units)}  [{have}]")
        return "\n".join(lines)


@dataclass
class ResourcePlan:
    roles: list[Role]
    strategy: str = "PACK"

    @property
    def bundles(self) -> list[dict[str, float]]:
        """The placement group's bundles: rollout workers, then learner ranks."""
        return [role.bundle() for role in self.roles if role.in_group for _ in range(role.count)]

    def total(self, key: str) -> float:
        return sum(r.count * r.bundle().get(key, 0.0) for r in self.roles)

    def describe(self) -> str:
        lines = [f"resource plan (placement group, {self.strategy}, one bundle per actor):"]
        for r in self.roles:
            extra = "".join(f", {v:g} {k}" for k, v in r.resources.items())
            gpu = f", {r.gpus:g} GPU" if r.gpus else ""
            where = "" if r.in_group else " (own placement)"
            lines.append(f"  {r.name:<16} x{r.count}  {r.cpus:g} CPU{gpu}{extra} each{where}")
        lines.append(f"  total            {self.total('CPU'):g} CPU, {self.total('GPU'):g} GPU")
        return "\n".join(lines)

    def nodes_plan(self, nodes: list[Node]) -> NodePlan:
        """Place every unit on `nodes`, first fit: learner ranks first (so they
        pack node by node), then rollout engines, largest first, then
        everything else. Raises UserError with one line when a unit fits
        nowhere, naming the resource that is short."""
        free = {n.name: dict(n.resources) for n in nodes}
        plan = NodePlan(nodes, {n.name: [] for n in nodes}, {n.name: {} for n in nodes})
        order = sorted(self.roles, key=lambda r: (r.name != "learner-rank", -r.gpus))
        for role in order:
            need = role.bundle()
            for k in range(role.count):
                spot = next((n.name for n in nodes if _fits(need, free[n.name])), None)
                if spot is None:
                    raise UserError(self._why_not(role, need, nodes))
                for key, v in need.items():
                    free[spot][key] -= v
                    plan.used[spot][key] = plan.used[spot].get(key, 0.0) + v
                plan.units[spot].append(f"{role.name} {k}")
        return plan

    def _why_not(self, role: Role, need: dict[str, float], nodes: list[Node]) -> str:
        """One line: the first resource the cluster lacks for this plan."""
        head = f"the plan does not fit the cluster ({len(nodes)} nodes)"
        for key in need:
            have = sum(n.resources.get(key, 0.0) for n in nodes)
            if have == 0 and key not in ("CPU", "GPU"):
                return (f"{head}: {role.name} needs custom resource '{key}' and no node has it "
                        f"(start a node with ray start --resources '{{\"{key}\": N}}')")
            want = self.total(key)
            if want > have + 1e-9:
                return f"{head}: the recipe needs {_fmt(want)} {key}, the cluster has {_fmt(have)}"
        biggest = max(nodes, key=lambda n: [n.resources.get(k, 0.0) for k in need], default=None)
        what = ", ".join(f"{_fmt(v)} {k}" for k, v in need.items())
        if biggest is not None and not _fits(need, biggest.resources):
            short = next(k for k, v in need.items() if biggest.resources.get(k, 0.0) < v)
            return (f"{head}: one {role.name} needs {what} on one node and no node has "
                    f"{_fmt(need[short])} {short}")
        return f"{head}: no node has {what} left for {role.name} once the others are placed"


def plan_resources(recipe) -> ResourcePlan:
    ro, le, rw = recipe.rollout, recipe.learner, recipe.rewards
    return ResourcePlan([
        Role("rollout-worker", ro.workers, ro.cpus_per_worker, ro.gpus_per_worker, dict(ro.resources)),
        Role("learner-rank", le.ranks, le.cpus_per_rank, le.gpus_per_rank, dict(le.resources)),
        Role("reward-hub", rw.replicas, rw.replica_cpus, 0.0, in_group=False),
    ] + ([Role("judge-engine", rw.judge.replicas, rw.judge.cpus_per_replica, rw.judge.gpus_per_replica,
               in_group=False)] if rw.judge is not None else []))  # own placement groups (rewards.judge.pool)


def local_cluster_cpus(plan: ResourcePlan) -> int:
    """Logical CPUs for an embedded cluster: the plan plus one for the driver,
    and never fewer than the machine has."""
    return max(os.cpu_count() or 1, math.ceil(plan.total("CPU")) + 1)


def uniform_nodes(count: int, gpus: float, cpus: float | None) -> list[Node]:
    """`count` identical nodes (what `--dry-run --nodes N --gpus-per-node G`
    plans against); CPUs unchecked when `cpus` is None."""
    res = {"GPU": float(gpus), "CPU": float(cpus) if cpus is not None else math.inf}
    return [Node(f"node-{i}", dict(res)) for i in range(count)]


def live_nodes() -> list[Node]:
    """The alive nodes of the connected Ray cluster, with their total
    resources (Ray's per-node bookkeeping keys left out)."""
    import ray

    alive = [n for n in ray.nodes() if n.get("Alive")]
    alive.sort(key=lambda n: (not n.get("Resources", {}).get("node:__internal_head__"), n["NodeID"]))
    out = []
    for i, n in enumerate(alive):
        res = {k: float(v) for k, v in n.get("Resources", {}).items()
               if not k.startswith(("node:", "accelerator_type:")) and k not in ("memory", "object_store_memory")}
        out.append(Node("head" if i == 0 and n["Resources"].get("node:__internal_head__") else f"node-{i}", res))
    return out


def place(plan: ResourcePlan, timeout_s: float = PLACE_TIMEOUT_S):
    """Check the plan against the connected cluster, then reserve its
    placement group. A plan that cannot fit, or bundles Ray cannot reserve
    within `timeout_s` (the cluster is busy), is one UserError line, not a
    run that waits forever."""
    import ray
    from ray.util.placement_group import placement_group, remove_placement_group

    plan.nodes_plan(live_nodes())
    pg = placement_group(plan.bundles, strategy=plan.strategy)
    deadline = time.monotonic() + timeout_s
    ready = pg.ready()
    while True:
        done, _ = ray.wait([ready], timeout=5.0)
        if done:
            ray.get(ready)
            return pg
        if time.monotonic() > deadline:
            remove_placement_group(pg)
            free = ray.available_resources()
            raise UserError(f"the cluster could not reserve the run's {len(plan.bundles)} bundles in "
                            f"{timeout_s:g} s (free now: {_fmt(free.get('CPU', 0))} CPU, "
                            f"{_fmt(free.get('GPU', 0))} GPU; other jobs hold the rest?)")


def _fits(need: dict[str, float], free: dict[str, float]) -> bool:
    return all(free.get(k, 0.0) + 1e-9 >= v for k, v in need.items())


def _fmt(x: float) -> str:
    return "inf" if x == math.inf else f"{x:g}"


def _summarise(units: list[str]) -> str:
    """'learner-rank 0..7, rollout-worker 0' from the per-unit list."""
    runs: list[tuple[str, int, int]] = []
    for u in units:
        role, k = u.rsplit(" ", 1)
        if runs and runs[-1][0] == role and runs[-1][2] == int(k) - 1:
            runs[-1] = (role, runs[-1][1], int(k))
        else:
            runs.append((role, int(k), int(k)))
    return ", ".join(f"{r} {a}" if a == b else f"{r} {a}..{b}" for r, a, b in runs)
