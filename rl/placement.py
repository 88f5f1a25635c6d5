"""The resource plan: which actors a recipe needs and where Ray puts them.

Rollout workers and learner ranks go into one placement group (one bundle
each, PACK strategy, so a single machine or a small cluster keeps them close);
reward-hub replicas are placed by the hub itself. `--dry-run` prints this plan.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass


@dataclass
class Role:
    name: str
    count: int
    cpus: float
    gpus: float


@dataclass
class ResourcePlan:
    roles: list[Role]
    strategy: str = "PACK"

    @property
    def bundles(self) -> list[dict[str, float]]:
        out = []
        for role in self.roles:
            if role.name == "reward-hub":
                continue
            for _ in range(role.count):
                b = {"CPU": role.cpus}
                if role.gpus:
                    b["GPU"] = role.gpus
                out.append(b)
        return out

    def total(self, key: str) -> float:
        return sum(r.count * (r.cpus if key == "CPU" else r.gpus) for r in self.roles)

    def describe(self) -> str:
        lines = [f"resource plan (placement group, {self.strategy}):"]
        for r in self.roles:
            gpu = f", {r.gpus:g} GPU" if r.gpus else ""
            lines.append(f"  {r.name:<16} x{r.count}  {r.cpus:g} CPU{gpu} each")
        lines.append(f"  total            {self.total('CPU'):g} CPU, {self.total('GPU'):g} GPU")
        return "\n".join(lines)


def plan_resources(recipe) -> ResourcePlan:
    ro, le, rw = recipe.rollout, recipe.learner, recipe.rewards
    return ResourcePlan([
        Role("rollout-worker", ro.workers, ro.cpus_per_worker, ro.gpus_per_worker),
        Role("learner-rank", le.ranks, le.cpus_per_rank, le.gpus_per_rank),
        Role("reward-hub", rw.replicas, rw.replica_cpus, 0.0),
    ])


def local_cluster_cpus(plan: ResourcePlan) -> int:
    """Logical CPUs for an embedded cluster: the plan plus one for the driver,
    and never fewer than the machine has."""
    return max(os.cpu_count() or 1, math.ceil(plan.total("CPU")) + 1)
